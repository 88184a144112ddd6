// SharedMemory.swift — the VMM's memory that vdpad maps too (share_memory,
// docs/datapath.md "Shared guest memory"): a table of regions, each a range
// of the VMM's own addresses and where the same bytes are in vdpad.  An IOVA
// reaches a buffer through the ASID's IOTLB (which gives the VMM's address)
// and then one region's offset; nothing here assumes an IOVA is a
// guest-physical address.  Pure: the module that does I/O makes each
// mapping after checking that the file really backs the VMM's addresses,
// and unmaps it when the last reference to it goes — a data-path run that
// still holds an old table keeps its mappings alive to its end.

/// A file mapping in vdpad of bytes the VMM has mapped at the addresses of a `SharedRegion`.
public protocol SharedMapping: AnyObject, Sendable {
    /// Where the region's first byte is in vdpad.
    var base: UnsafeMutableRawPointer { get }
}

/// One region: the VMM's addresses [start, start+size) are `mapping.base` onwards in vdpad — the bytes of
/// `file` (the descriptor the VMM passed, kept while the region lives so a restarted daemon can map it again)
/// from its `offset` on.
public struct SharedRegion: Sendable {
    public let start: UInt64
    public let size: UInt64
    public let mapping: any SharedMapping
    public let file: EventFD?
    public let offset: UInt64

    public init(start: UInt64, size: UInt64, mapping: any SharedMapping, file: EventFD? = nil, offset: UInt64 = 0) {
        (self.start, self.size, self.mapping, self.file, self.offset) = (start, size, mapping, file, offset)
    }

    /// One past the last address (the table holds only regions that end below 2^64).
    public var end: UInt64 { start &+ size }
}

/// A session's regions, sorted by start and never overlapping.
public struct SharedRegions: Sendable {
    public private(set) var regions: [SharedRegion] = []

    public init() {}

    public var count: Int { regions.count }
    public var isEmpty: Bool { regions.isEmpty }
    /// Bytes of the VMM's memory vdpad can reach without a system call.
    public var bytes: UInt64 { regions.reduce(0) { $0 + $1.size } }

    /// Adds `region`.  EINVAL for an empty or wrapping range; EEXIST when it overlaps one the table has (the
    /// VMM unshares a region before it unmaps or remaps it, so an overlap is stale or a lie: neither is followed).
    public mutating func insert(_ region: SharedRegion) throws(VDPAError) {
        guard region.size > 0, region.size <= UInt64.max - region.start else {
            throw VDPAError(.EINVAL, "a shared region needs a size > 0 and must end below 2^64")
        }
        let k = firstIndex(endingAfter: region.start)
        if k < regions.count, regions[k].start < region.end {
            let other = regions[k]
            throw VDPAError(
                .EEXIST,
                "[\(hex(region.start)), \(hex(region.end))) overlaps the shared region [\(hex(other.start)), \(hex(other.end))): "
                    + "unshare_memory it first")
        }
        regions.insert(region, at: k)
    }

    /// Removes every region that meets [start, start+size) (a VMM that unmaps part of a region loses all of it);
    /// returns those that went.
    @discardableResult
    public mutating func remove(overlapping start: UInt64, size: UInt64) -> [SharedRegion] {
        let end = size > UInt64.max - start ? UInt64.max : start + size
        let going = regions.filter { $0.start < end && start < $0.end }
        regions.removeAll { $0.start < end && start < $0.end }
        return going
    }

    /// Removes every region; returns those that went.
    @discardableResult
    public mutating func removeAll() -> [SharedRegion] {
        defer { regions = [] }
        return regions
    }

    /// Where the VMM's [address, address+count) is in vdpad, when one region holds all of it; nil for a hole,
    /// a range that crosses into another region or past the last, or count 0.
    public func resolve(_ address: UInt64, count: Int) -> UnsafeMutableRawPointer? {
        guard count > 0 else { return nil }
        let k = firstIndex(endingAfter: address)
        guard k < regions.count else { return nil }
        let r = regions[k]
        guard r.start <= address, UInt64(count) <= r.end - address else { return nil }
        return r.mapping.base + Int(address - r.start)
    }

    /// The first region whose end is above `address` (binary search: a VMM has a handful of regions, QEMU a few
    /// dozen at most, but a lookup is made for every buffer).
    private func firstIndex(endingAfter address: UInt64) -> Int {
        var (low, high) = (0, regions.count)
        while low < high {
            let mid = (low + high) / 2
            if regions[mid].end > address { high = mid } else { low = mid + 1 }
        }
        return low
    }
}
