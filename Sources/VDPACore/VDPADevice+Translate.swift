// VDPADevice+Translate.swift — a device DMA: which ASID serves a virtqueue
// area, and how the device mapping turns an IOVA range into addresses.
//
// This is the check a VMM author cares about after a shadow-ring switch:
// rings go through the ASID bound to the vq's descriptor group (its own
// group on parents without one; DESC_ASID need not be acked, R29), buffers
// through the ASID bound to its data group.

/// Which part of a virtqueue a DMA touches.
public enum VirtqueueArea: String, Sendable, CaseIterable {
    case desc, driver, device, buffer
}

/// One contiguous piece of a translated DMA.
public struct TranslatedSegment: Equatable, Sendable {
    public var iova: UInt64
    public var size: UInt64
    public var address: UInt64
}

/// What a DMA goes through.
/// Which of an ASID's two tables `dump_iotlb` lists: what the VMM mapped, or what the device translates with.
public enum IOTLBLayer: String, Sendable, CaseIterable {
    case session, device
}

public enum TranslationTarget: Sendable {
    case asid(ASID)
    case virtqueue(VirtqueueIndex, VirtqueueArea)
}

extension VDPADevice {
    /// The ASID a virtqueue area is translated in.
    public func asid(forVirtqueue vq: VirtqueueIndex, area: VirtqueueArea) throws(VDPAError) -> Int {
        let index = try checkVirtqueue(vq.rawValue)
        let group =
            area == .buffer
            ? self.group(ofVirtqueue: index)
            : (descriptorGroup(ofVirtqueue: index) ?? self.group(ofVirtqueue: index))
        return groupASID[group]
    }

    /// The ring bytes of a split virtqueue area, from `set_vring` (desc 16·num, driver 6+2·num, device 6+8·num).
    public func ringExtent(vq: VirtqueueIndex, area: VirtqueueArea) throws(VDPAError) -> (iova: UInt64, size: UInt64) {
        let ring = try vring(vq)
        let address: UInt64?
        switch area {
        case .desc: address = ring.desc
        case .driver: address = ring.driver
        case .device: address = ring.device
        case .buffer: throw VDPAError(.EINVAL, "a buffer DMA needs iova and size")
        }
        guard let address, let num = ring.num.map(UInt64.init) else {
            throw VDPAError(.EINVAL, "vq \(vq) of \(name) has no \(area.rawValue) area and size set; call set_vring first")
        }
        let size: UInt64 =
            switch area {
            case .desc: 16 * num
            case .driver: 6 + 2 * num
            default: 6 + 8 * num
            }
        return (address, size)
    }

    /// Translates `[iova, iova+size−1]` for a device `access` through the device mapping.
    /// - Throws: EINVAL for a bad range, EFAULT on a miss (`miss_iova`), EACCES on a permission mismatch.
    /// - Complexity: O(log n + k) for k segments.
    public mutating func translate(
        _ target: TranslationTarget, access: Access, iova: UInt64?,
        size: UInt64?
    ) throws(VDPAError) -> [TranslatedSegment] {
        let asid: Int
        var iova = iova, size = size
        switch target {
        case .asid(let a):
            asid = try checkASID(a, iotlb: false)
        case .virtqueue(let vq, let area):
            asid = try self.asid(forVirtqueue: vq, area: area)
            if iova == nil || size == nil {
                let extent = try ringExtent(vq: vq, area: area)
                iova = iova ?? extent.iova
                size = size ?? extent.size
            }
        }
        guard let iova, let size else { throw VDPAError(.EINVAL, "translate needs iova and size") }
        guard size > 0 else { throw VDPAError(.EINVAL, "translate of size 0") }
        guard iova <= UInt64.max - (size - 1) else {
            throw VDPAError(.EINVAL, "[\(hex(iova)), +\(hex(size))] wraps past 2^64")
        }
        stats.translateCalls += 1
        let last = iova + (size - 1)
        guard let table = deviceTable(asid: asid) else {
            return [TranslatedSegment(iova: iova, size: size, address: iova)]  // identity
        }
        var segments: [TranslatedSegment] = []
        var cursor = iova
        var failure: VDPAError?
        table.forEachOverlapping(first: iova, last: last) { entry in
            guard entry.first <= cursor else { return false }  // a hole before this entry
            guard entry.permission.contains(access.required) else {
                failure = VDPAError(
                    .EACCES,
                    "\(access.rawValue) at \(hex(cursor)) in ASID \(asid) of \(name) but \(describe(entry.first, entry.last)) is \(entry.permission)",
                    details: [("iova", .integer(cursor))])
                return false
            }
            let end = min(entry.last, last)
            segments.append(
                TranslatedSegment(
                    iova: cursor, size: end - cursor + 1,
                    address: entry.address &+ (cursor - entry.first)))
            if end == last { cursor = last; return false }
            cursor = end + 1
            return true
        }
        if let failure { throw failure }
        if segments.last.map({ $0.iova &+ ($0.size - 1) }) != last {
            throw VDPAError(
                .EFAULT, "no mapping for \(hex(cursor)) in ASID \(asid) of \(name) (\(deviceMapping(asid: asid).name))",
                details: [("miss_iova", .integer(cursor)), ("asid", .integer(UInt64(asid)))])
        }
        return segments
    }

    /// The device-mapping entry of `asid` that holds `iova` — under an identity mapping (passthrough, DMA MR) the
    /// whole space at the same address — or nil on a miss.  What a data path caches: one lookup per entry
    /// instead of a `translate` per access; `translate` stays the one that explains a failure.
    public func mappedEntry(asid: Int, containing iova: UInt64) -> IOTLBEntry? {
        guard asid >= 0, asid < addressSpaceCount else { return nil }
        guard let table = deviceTable(asid: asid) else {
            return IOTLBEntry(first: 0, last: .max, address: 0, permission: .readWrite)
        }
        var found: IOTLBEntry?
        table.forEachOverlapping(first: iova, last: iova) { entry in
            found = entry
            return false
        }
        return found
    }
}
