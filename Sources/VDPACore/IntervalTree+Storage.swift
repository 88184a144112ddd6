// IntervalTree+Storage.swift — the node pools of the B+ tree.
//
// Leaves and inner nodes live in flat, manually grown buffers (structure of
// arrays, one fixed-size block per node, Int32 links, free lists), entered
// through raw pointers so that a descent is a handful of cache lines and no
// retain/release or bounds check.  The class is only ever mutated by an
// IntervalTree that holds the sole reference (copy-on-write), which is what
// makes the @unchecked Sendable sound.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@usableFromInline
struct _Position: Equatable {
    var leaf: Int32
    var index: Int32
}

/// What a leaf stores beside each key: one cache line holds 2⅔ of these, so a hit costs
/// the key search plus one more line.
struct _LeafValue {
    var last: UInt64
    var address: UInt64
    var permission: UInt8
}

@usableFromInline
final class _TreeStorage: @unchecked Sendable {
    /// Entries per leaf: keys in 8 cache lines, values in 24; 64 measured best (16 and 32 slower).
    static let leafCapacity = 64
    /// Children per inner node.
    static let innerCapacity = 64
    /// A node below this many items is merged with a sibling when the pair fits in one node.
    static let leafMinimum = leafCapacity / 4
    static let innerMinimum = innerCapacity / 4

    // Leaves: entry j of leaf n is at n * leafCapacity + j.
    var leafFirst: UnsafeMutablePointer<UInt64>
    var leafValue: UnsafeMutablePointer<_LeafValue>
    var leafCount: UnsafeMutablePointer<Int32>
    var leafNext: UnsafeMutablePointer<Int32>  // also the free-list link of a free leaf
    var leafPrevious: UnsafeMutablePointer<Int32>
    var leafSlots: Int
    var leafUsed: Int
    var leafFree: Int32 = -1

    // Inner nodes: key j / child j of node n is at n * innerCapacity + j.  Child j
    // holds the entries with key[j] <= first < key[j+1]; key[0] is unused.
    var innerKey: UnsafeMutablePointer<UInt64>
    var innerChild: UnsafeMutablePointer<Int32>
    var innerCount: UnsafeMutablePointer<Int32>  // number of children; a free node links through child[0]
    var innerSlots: Int
    var innerUsed: Int
    var innerFree: Int32 = -1

    var root: Int32 = 0
    /// 0 when the root is a leaf.
    var height = 0
    var count = 0

    init(leafSlots: Int = 1, innerSlots: Int = 1) {
        self.leafSlots = leafSlots
        self.innerSlots = innerSlots
        let l = Self.leafCapacity, i = Self.innerCapacity
        leafFirst = .allocateRaw(leafSlots * l)
        leafValue = .allocateRaw(leafSlots * l)
        leafCount = .allocateRaw(leafSlots)
        leafNext = .allocateRaw(leafSlots)
        leafPrevious = .allocateRaw(leafSlots)
        innerKey = .allocateRaw(innerSlots * i)
        innerChild = .allocateRaw(innerSlots * i)
        innerCount = .allocateRaw(innerSlots)
        leafUsed = 0
        innerUsed = 0
        root = allocateLeaf()
    }

    deinit {
        free(leafFirst); free(leafValue)
        free(leafCount); free(leafNext); free(leafPrevious)
        free(innerKey); free(innerChild); free(innerCount)
    }

    /// A copy with the same shape: O(nodes), done only when a shared tree is written.
    func copy() -> _TreeStorage {
        let c = _TreeStorage(leafSlots: max(leafUsed, 1), innerSlots: max(innerUsed, 1))
        let l = Self.leafCapacity, i = Self.innerCapacity
        c.leafFirst.update(from: leafFirst, count: leafUsed * l)
        c.leafValue.update(from: leafValue, count: leafUsed * l)
        c.leafCount.update(from: leafCount, count: leafUsed)
        c.leafNext.update(from: leafNext, count: leafUsed)
        c.leafPrevious.update(from: leafPrevious, count: leafUsed)
        c.innerKey.update(from: innerKey, count: innerUsed * i)
        c.innerChild.update(from: innerChild, count: innerUsed * i)
        c.innerCount.update(from: innerCount, count: innerUsed)
        c.leafUsed = leafUsed
        c.innerUsed = innerUsed
        c.leafFree = leafFree
        c.innerFree = innerFree
        c.root = root
        c.height = height
        c.count = count
        return c
    }

    func reset() {
        leafUsed = 0
        innerUsed = 0
        leafFree = -1
        innerFree = -1
        height = 0
        count = 0
        root = allocateLeaf()
    }

    // MARK: Node allocation

    func allocateLeaf() -> Int32 {
        let n: Int32
        if leafFree >= 0 {
            n = leafFree
            leafFree = leafNext[Int(n)]
        } else {
            if leafUsed == leafSlots { growLeaves() }
            n = Int32(leafUsed)
            leafUsed += 1
        }
        leafCount[Int(n)] = 0
        leafNext[Int(n)] = -1
        leafPrevious[Int(n)] = -1
        return n
    }

    func freeLeaf(_ n: Int32) {
        leafNext[Int(n)] = leafFree
        leafFree = n
    }

    func allocateInner() -> Int32 {
        let n: Int32
        if innerFree >= 0 {
            n = innerFree
            innerFree = innerChild[Int(n) * Self.innerCapacity]
        } else {
            if innerUsed == innerSlots { growInners() }
            n = Int32(innerUsed)
            innerUsed += 1
        }
        innerCount[Int(n)] = 0
        return n
    }

    func freeInner(_ n: Int32) {
        innerChild[Int(n) * Self.innerCapacity] = innerFree
        innerFree = n
    }

    private func growLeaves() {
        let slots = leafSlots * 2, l = Self.leafCapacity
        leafFirst = leafFirst.reallocated(slots * l)
        leafValue = leafValue.reallocated(slots * l)
        leafCount = leafCount.reallocated(slots)
        leafNext = leafNext.reallocated(slots)
        leafPrevious = leafPrevious.reallocated(slots)
        leafSlots = slots
    }

    private func growInners() {
        let slots = innerSlots * 2, i = Self.innerCapacity
        innerKey = innerKey.reallocated(slots * i)
        innerChild = innerChild.reallocated(slots * i)
        innerCount = innerCount.reallocated(slots)
        innerSlots = slots
    }

    // MARK: Search

    /// Number of `keys[from..<to]` that are <= x (the keys are sorted).
    @inline(__always)
    static func countNotAbove(_ keys: UnsafeMutablePointer<UInt64>, from: Int, to: Int, _ x: UInt64) -> Int {
        var lo = from, hi = to
        while lo < hi {
            let mid = (lo &+ hi) >> 1
            if keys[mid] <= x { lo = mid &+ 1 } else { hi = mid }
        }
        return lo
    }

    @inline(__always)
    func childSlot(_ node: Int32, _ x: UInt64) -> Int {
        let base = Int(node) * Self.innerCapacity
        let n = Int(innerCount[Int(node)])
        return Self.countNotAbove(innerKey, from: base + 1, to: base + n, x) - base - 1
    }

    /// The leaf whose key interval holds `x`.
    @inline(__always)
    func leaf(for x: UInt64) -> Int32 {
        var node = root
        var level = height
        while level > 0 {
            node = innerChild[Int(node) * Self.innerCapacity + childSlot(node, x)]
            level -= 1
        }
        return node
    }

    func entry(at p: _Position) -> IOTLBEntry {
        let k = Int(p.leaf) * Self.leafCapacity + Int(p.index)
        let v = leafValue[k]
        return IOTLBEntry(unchecked: leafFirst[k], v.last, v.address, Permission(rawValue: v.permission))
    }

    func position(after p: _Position) -> _Position? {
        if Int(p.index) + 1 < Int(leafCount[Int(p.leaf)]) { return _Position(leaf: p.leaf, index: p.index + 1) }
        let next = leafNext[Int(p.leaf)]
        return next >= 0 ? _Position(leaf: next, index: 0) : nil
    }

    /// The lowest entry intersecting `[s, l]`.  Ranges are disjoint, so it is either the
    /// greatest entry starting at or below `s` (if it reaches `s`) or the next one (if it starts by `l`).
    @inline(__always)
    func firstOverlapping(_ s: UInt64, _ l: UInt64) -> _Position? {
        let leaf = self.leaf(for: s)
        let base = Int(leaf) * Self.leafCapacity
        let n = Int(leafCount[Int(leaf)])
        let i = Self.countNotAbove(leafFirst, from: base, to: base + n, s) - base  // entries [0, i) start <= s
        return firstOverlapping(s, l, leaf: leaf, around: i)
    }

    /// The same question once the descent is done: `i` is where `s` would be inserted in `leaf`.
    /// Insert asks it too, to check for overlap in the leaf it descended to.
    @inline(__always)
    func firstOverlapping(_ s: UInt64, _ l: UInt64, leaf: Int32, around i: Int) -> _Position? {
        let base = Int(leaf) * Self.leafCapacity
        let n = Int(leafCount[Int(leaf)])
        if i > 0 {
            if leafValue[base + i - 1].last >= s { return _Position(leaf: leaf, index: Int32(i - 1)) }
        } else {
            // A stale separator can route s past its predecessor: look at the previous leaf's tail.
            let prev = leafPrevious[Int(leaf)]
            if prev >= 0 {
                let pn = Int(leafCount[Int(prev)])
                let k = Int(prev) * Self.leafCapacity + pn - 1
                if leafValue[k].last >= s { return _Position(leaf: prev, index: Int32(pn - 1)) }
            }
        }
        if i < n {
            return leafFirst[base + i] <= l ? _Position(leaf: leaf, index: Int32(i)) : nil
        }
        let next = leafNext[Int(leaf)]
        if next >= 0, leafFirst[Int(next) * Self.leafCapacity] <= l { return _Position(leaf: next, index: 0) }
        return nil
    }
}

extension UnsafeMutablePointer {
    static func allocateRaw(_ n: Int) -> UnsafeMutablePointer<Pointee> {
        guard let raw = malloc(Swift.max(n, 1) * MemoryLayout<Pointee>.stride) else { fatalError("out of memory") }
        return raw.bindMemory(to: Pointee.self, capacity: n)
    }

    /// `realloc` for trivial element types: large pools grow by mremap, untouched pages stay unresident.
    func reallocated(_ n: Int) -> UnsafeMutablePointer<Pointee> {
        guard let raw = realloc(UnsafeMutableRawPointer(self), n * MemoryLayout<Pointee>.stride) else {
            fatalError("out of memory")
        }
        return raw.bindMemory(to: Pointee.self, capacity: n)
    }
}
