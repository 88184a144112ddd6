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

/// Which of an ASID's two tables `dump_iotlb` lists: what the VMM mapped, or what the device translates with.
public enum IOTLBLayer: String, Sendable, CaseIterable {
    case session, device
}

/// What a DMA goes through.
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
        switch Self.segments(of: deviceTable(asid: asid), access: access, first: iova, last: iova + (size - 1)) {
        case .success(let segments):
            return segments
        case .failure(.permission(let cursor, let entry)):
            throw VDPAError(
                .EACCES,
                "\(access.rawValue) at \(hex(cursor)) in ASID \(asid) of \(name) but \(describe(entry.first, entry.last)) is \(entry.permission)",
                details: [("iova", .integer(cursor))])
        case .failure(.hole(let cursor)):
            throw VDPAError(
                .EFAULT, "no mapping for \(hex(cursor)) in ASID \(asid) of \(name) (\(deviceMapping(asid: asid).name))",
                details: [("miss_iova", .integer(cursor)), ("asid", .integer(UInt64(asid)))])
        }
    }

    /// Why a range does not translate: an entry that does not allow the access, or no entry at an address.
    public enum SegmentFailure: Error, Equatable {
        case permission(at: UInt64, IOTLBEntry)
        case hole(at: UInt64)
    }

    /// `[first, last]` through a device `table` (nil: an identity mapping, the whole space at the same address),
    /// one segment per entry: what `translate` and a data path's `DataPathView` both walk.
    static func segments(of table: IntervalTree?, access: Access, first: UInt64, last: UInt64) -> Result<[TranslatedSegment], SegmentFailure> {
        guard let table else { return .success([TranslatedSegment(iova: first, size: last - first + 1, address: first)]) }
        var segments: [TranslatedSegment] = []
        var cursor = first
        var refused: IOTLBEntry?
        table.forEachOverlapping(first: first, last: last) { entry in
            guard entry.first <= cursor else { return false }  // a hole before this entry
            guard entry.permission.contains(access.required) else {
                refused = entry
                return false
            }
            let end = min(entry.last, last)
            segments.append(TranslatedSegment(iova: cursor, size: end - cursor + 1, address: entry.address &+ (cursor - entry.first)))
            if end == last { cursor = last; return false }
            cursor = end + 1
            return true
        }
        if let refused { return .failure(.permission(at: cursor, refused)) }
        guard segments.last.map({ $0.iova &+ ($0.size - 1) }) == last else { return .failure(.hole(at: cursor)) }
        return .success(segments)
    }

    /// The device-mapping entry of `asid` that holds `iova` — under an identity mapping (passthrough, DMA MR) the
    /// whole space at the same address — or nil on a miss.  What a data path caches: one lookup per entry
    /// instead of a `translate` per access; `translate` stays the one that explains a failure.
    public func mappedEntry(asid: Int, containing iova: UInt64) -> IOTLBEntry? {
        guard asid >= 0, asid < addressSpaceCount else { return nil }
        return Self.entry(of: deviceTable(asid: asid), containing: iova)
    }

    /// The entry of a device `table` (nil: identity) that holds `iova`, or nil on a miss.
    static func entry(of table: IntervalTree?, containing iova: UInt64) -> IOTLBEntry? {
        guard let table else { return IOTLBEntry(first: 0, last: .max, address: 0, permission: .readWrite) }
        var found: IOTLBEntry?
        table.forEachOverlapping(first: iova, last: iova) { entry in
            found = entry
            return false
        }
        return found
    }

    /// What a data-path run reads of the device (`DataPathView`), its rings going through `ringASID` and its
    /// buffers through `bufferASID` (both below nas: `asid(forVirtqueue:area:)` gives them).
    public func dataPathView(ringASID: Int, bufferASID: Int) -> DataPathView {
        DataPathView(
            ringASID: ringASID, bufferASID: bufferASID, ringTable: deviceTable(asid: ringASID), bufferTable: deviceTable(asid: bufferASID),
            sharedMemory: sharedMemory)
    }
}

/// What a data-path run reads of its device, taken under the device's lock: the device tables of the two ASIDs its
/// rings and buffers go through, and the regions the owner shared.  Three references where a copy of the whole
/// device is a retain and a release per field on every run (a guest that kicks per frame pays them per frame).
/// Copy-on-write like the device's own: a map after the snapshot does not change what the run translates with,
/// and a region the owner unshared stays mapped while a view holds it.
public struct DataPathView: Sendable {
    public let ringASID: Int
    public let bufferASID: Int
    /// Nil: an identity mapping (passthrough, DMA MR).
    let ringTable: IntervalTree?
    let bufferTable: IntervalTree?
    public let sharedMemory: SharedRegions

    /// The entry that holds `iova` for the rings (`ring`) or the buffers: as `VDPADevice.mappedEntry`.
    public func mappedEntry(ring: Bool, containing iova: UInt64) -> IOTLBEntry? {
        VDPADevice.entry(of: ring ? ringTable : bufferTable, containing: iova)
    }

    /// `[iova, iova+size−1]` for the rings or the buffers, as `VDPADevice.translate` (size > 0, no wrap past 2^64).
    public func translate(ring: Bool, access: Access, iova: UInt64, size: UInt64) -> Result<[TranslatedSegment], VDPADevice.SegmentFailure> {
        precondition(size > 0 && iova <= UInt64.max - (size - 1), "a data path translates a nonempty range that does not wrap")
        return VDPADevice.segments(of: ring ? ringTable : bufferTable, access: access, first: iova, last: iova + (size - 1))
    }
}
