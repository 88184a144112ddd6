// QueueSet.swift — a set of one device's virtqueue indexes as a bitmap.  The
// worker keeps several per wake-up (the vqs kicked, those a run served,
// those stopped at their budget); as `Set<Int>` each cost hashing and an
// allocation or two per run, on a path that runs once per 64 frames.

/// Virtqueue indexes below `capacity`, iterated in ascending order.  No parent has more vqs than that: mlx5_net's
/// 32 pairs and its control queue are 65 (`ParentDriver.virtqueueCount`).
struct QueueSet: Equatable, Sequence, ExpressibleByArrayLiteral {
    static let capacity = 128

    private var words: (UInt64, UInt64) = (0, 0)

    init() {}

    init(_ vqs: some Sequence<Int>) {
        for vq in vqs { insert(vq) }
    }

    init(arrayLiteral vqs: Int...) { self.init(vqs) }

    var isEmpty: Bool { words.0 | words.1 == 0 }

    var count: Int { words.0.nonzeroBitCount + words.1.nonzeroBitCount }

    func contains(_ vq: Int) -> Bool {
        guard (0..<Self.capacity).contains(vq) else { return false }
        return (vq < 64 ? words.0 : words.1) & Self.bit(vq) != 0
    }

    mutating func insert(_ vq: Int) {
        precondition((0..<Self.capacity).contains(vq), "virtqueue \(vq) is outside a QueueSet")
        if vq < 64 { words.0 |= Self.bit(vq) } else { words.1 |= Self.bit(vq) }
    }

    /// Whether `vq` was in the set.
    @discardableResult
    mutating func remove(_ vq: Int) -> Bool {
        guard contains(vq) else { return false }
        if vq < 64 { words.0 &= ~Self.bit(vq) } else { words.1 &= ~Self.bit(vq) }
        return true
    }

    mutating func formUnion(_ other: QueueSet) {
        words = (words.0 | other.words.0, words.1 | other.words.1)
    }

    func isSubset(of other: QueueSet) -> Bool {
        words.0 & ~other.words.0 == 0 && words.1 & ~other.words.1 == 0
    }

    static func == (a: QueueSet, b: QueueSet) -> Bool { a.words == b.words }

    private static func bit(_ vq: Int) -> UInt64 { 1 << UInt64(vq & 63) }

    struct Iterator: IteratorProtocol {
        var words: (UInt64, UInt64)

        /// The lowest index left, taken out.
        mutating func next() -> Int? {
            if words.0 != 0 {
                let vq = words.0.trailingZeroBitCount
                words.0 &= words.0 - 1
                return vq
            }
            guard words.1 != 0 else { return nil }
            let vq = 64 + words.1.trailingZeroBitCount
            words.1 &= words.1 - 1
            return vq
        }
    }

    func makeIterator() -> Iterator { Iterator(words: words) }
}
