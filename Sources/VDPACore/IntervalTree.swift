// IntervalTree.swift — the storage behind every IOTLB: a set of disjoint
// closed ranges [first, last] over 0…2^64−1, each mapped to (address, perm).
//
// Because the ranges never overlap, ordering them by `first` also orders them
// by `last`, so a B+ tree keyed by `first` answers every interval question
// ("which ranges intersect [s, l]?") with one descent plus a walk along the
// leaf chain: O(log n + k).  A B+ tree rather than the kernel's augmented
// red-black tree because memory is the cost here: at a million ranges a
// binary tree pays ~20 dependent cache misses per operation, this one ~4.
//
// Hazards guarded against: values must be cheap to copy (a set_map device
// snapshots the session table on every commit), so the tree is copy-on-write
// over one class holding flat node pools; and no range arithmetic may
// overflow at UInt64.max, so everything works on closed ranges.

/// One IOTLB mapping: `[first, last]` translates to `address + (iova − first)`.
public struct IOTLBEntry: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var first: UInt64
    public var last: UInt64
    public var address: UInt64
    public var permission: Permission

    public init(first: UInt64, last: UInt64, address: UInt64, permission: Permission) {
        precondition(first <= last, "IOTLBEntry needs first <= last")
        self.first = first
        self.last = last
        self.address = address
        self.permission = permission
    }

    @usableFromInline init(unchecked first: UInt64, _ last: UInt64, _ address: UInt64, _ permission: Permission) {
        self.first = first
        self.last = last
        self.address = address
        self.permission = permission
    }

    /// The number of bytes covered, or nil for the whole 2^64 space (which does not fit a UInt64).
    public var size: UInt64? { last &- first == UInt64.max ? nil : last - first + 1 }

    /// Whether `[first, last]` shares at least one byte with this entry (the kernel's intersection test).
    @inlinable public func intersects(first s: UInt64, last l: UInt64) -> Bool { first <= l && s <= last }

    public var description: String { "[\(hex(first)), \(hex(last))] → \(hex(address)) \(permission)" }
}

/// A copy-on-write B+ tree of disjoint ranges.
///
/// Mirrors `struct vhost_iotlb` (drivers/vhost/iotlb.c) without its overlap
/// blindness: ``insert(_:)`` refuses an overlap itself, as
/// `vhost_vdpa_process_iotlb_update` does before calling `add_range`.
public struct IntervalTree: Sendable {
    @usableFromInline var storage: _TreeStorage

    public init() { storage = _TreeStorage() }

    /// Builds a tree from entries, rejecting overlaps (used by tests and state restore).
    public init<S: Sequence>(_ entries: S) where S.Element == IOTLBEntry {
        self.init()
        for entry in entries { _ = insert(entry) }
    }

    /// The number of ranges.  - Complexity: O(1).
    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.count == 0 }

    /// Inserts `entry` unless it intersects an existing range.
    /// - Returns: nil on success, or the first existing entry that overlaps (then nothing changed).
    /// - Complexity: O(log n).
    @discardableResult
    public mutating func insert(_ entry: IOTLBEntry) -> IOTLBEntry? {
        // Copying a shared tree is O(n): do it only when the insert will succeed.
        if !isKnownUniquelyReferenced(&storage) {
            if let hit = storage.firstOverlapping(entry.first, entry.last) { return storage.entry(at: hit) }
            storage = storage.copy()
        }
        return storage.insert(entry)
    }

    /// The first (lowest) entry that intersects `[first, last]`.  - Complexity: O(log n).
    public func firstOverlapping(first: UInt64, last: UInt64) -> IOTLBEntry? {
        storage.firstOverlapping(first, last).map { storage.entry(at: $0) }
    }

    /// The entry containing `iova`, if any.  - Complexity: O(log n).
    @inlinable public func translate(_ iova: UInt64) -> IOTLBEntry? { firstOverlapping(first: iova, last: iova) }

    /// Visits, in ascending order, every entry intersecting `[first, last]`; `body` returns false to stop.
    /// - Complexity: O(log n + k).
    public func forEachOverlapping(first: UInt64, last: UInt64, _ body: (IOTLBEntry) throws -> Bool) rethrows {
        guard var pos = storage.firstOverlapping(first, last) else { return }
        while true {
            let entry = storage.entry(at: pos)
            if entry.first > last { return }
            if try !body(entry) { return }
            guard let next = storage.position(after: pos) else { return }
            pos = next
        }
    }

    /// Every entry intersecting `[first, last]`, in order.  - Complexity: O(log n + k).
    public func entries(first: UInt64 = 0, last: UInt64 = .max) -> [IOTLBEntry] {
        var result: [IOTLBEntry] = []
        forEachOverlapping(first: first, last: last) {
            result.append($0); return true
        }
        return result
    }

    /// Removes every entry intersecting `[first, last]` whole (never trimmed), as
    /// `vhost_iotlb_del_range` does.  - Returns: how many were removed.
    /// - Complexity: O(log n + k).
    @discardableResult
    public mutating func removeOverlapping(first: UInt64, last: UInt64) -> Int {
        // Copying a shared tree is O(n): do it only when something will go.
        if !isKnownUniquelyReferenced(&storage) {
            guard storage.firstOverlapping(first, last) != nil else { return 0 }
            storage = storage.copy()
        }
        return storage.removeOverlapping(first, last)
    }

    /// Removes every entry.  - Complexity: O(1) when shared, O(nodes) otherwise.
    public mutating func removeAll() {
        if isKnownUniquelyReferenced(&storage) { storage.reset() } else { storage = _TreeStorage() }
    }

    /// Leaves in use, for layout tests.
    public var _leafCount: Int {
        var n = 0
        var leaf = storage.root
        for _ in 0..<storage.height { leaf = storage.innerChild[Int(leaf) * _TreeStorage.innerCapacity] }
        while leaf >= 0 { n += 1; leaf = storage.leafNext[Int(leaf)] }
        return n
    }

    /// Whether two trees share storage (a copy not yet written to).  For tests of copy-on-write.
    public func _sharesStorage(with other: IntervalTree) -> Bool { storage === other.storage }
}

extension IntervalTree: Equatable {
    public static func == (lhs: IntervalTree, rhs: IntervalTree) -> Bool {
        lhs.storage === rhs.storage || (lhs.count == rhs.count && lhs.entries() == rhs.entries())
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
