// IntervalTreeTests.swift — the B+ tree against a naive model, plus edges.
import Testing
@testable import VDPACore
import _VDPATestSupport

/// The obviously-correct model: a sorted array.
struct NaiveIOTLB {
    var entries: [IOTLBEntry] = []

    mutating func insert(_ e: IOTLBEntry) -> Bool {
        if entries.contains(where: { $0.intersects(first: e.first, last: e.last) }) { return false }
        entries.append(e)
        entries.sort { $0.first < $1.first }
        return true
    }

    mutating func remove(_ s: UInt64, _ l: UInt64) -> Int {
        let before = entries.count
        entries.removeAll { $0.intersects(first: s, last: l) }
        return before - entries.count
    }

    func overlapping(_ s: UInt64, _ l: UInt64) -> [IOTLBEntry] { entries.filter { $0.intersects(first: s, last: l) } }
}

func entry(_ first: UInt64, _ last: UInt64, _ address: UInt64 = 0, _ permission: Permission = .readWrite) -> IOTLBEntry {
    IOTLBEntry(first: first, last: last, address: address, permission: permission)
}

@Suite("IntervalTree")
struct IntervalTreeTests {
    @Test("random operation sequences agree with a naive model (10,000 seeds)")
    func propertyAgainstModel() {
        for seed in 0..<10_000 as Range<UInt64> {
            var rng = SplitMix64(state: seed)
            var tree = IntervalTree()
            var model = NaiveIOTLB()
            // Small spaces make collisions likely; some seeds use the top of the 64-bit space.
            let span: UInt64 = seed % 3 == 0 ? 64 : 4096
            let offset: UInt64 = seed % 5 == 0 ? UInt64.max - span : 0
            let steps = 20 + Int(seed % 200)
            for _ in 0..<steps {
                let a = offset + UInt64.random(in: 0...span, using: &rng)
                let len = UInt64.random(in: 0...(span / 8), using: &rng)
                let b = a > UInt64.max - len ? UInt64.max : a + len
                switch UInt64.random(in: 0..<10, using: &rng) {
                case 0..<5:
                    let e = entry(a, b, UInt64.random(in: 0...1000, using: &rng), Permission(rawValue: UInt8.random(in: 1...3, using: &rng)))
                    let ok = model.insert(e)
                    let conflict = tree.insert(e)
                    #expect((conflict == nil) == ok, "seed \(seed): insert \(e)")
                    if let conflict { #expect(conflict.intersects(first: a, last: b)) }
                case 5..<7:
                    #expect(tree.removeOverlapping(first: a, last: b) == model.remove(a, b), "seed \(seed)")
                case 7:
                    #expect(tree.translate(a) == model.overlapping(a, a).first, "seed \(seed)")
                default:
                    #expect(tree.entries(first: a, last: b) == model.overlapping(a, b), "seed \(seed)")
                }
                tree._checkInvariants()
            }
            #expect(tree.count == model.entries.count)
            #expect(tree.entries() == model.entries)
        }
    }

    @Test("large trees split and merge nodes and stay consistent")
    func largeTreeGrowsAndShrinks() {
        var rng = SplitMix64(state: 42)
        var tree = IntervalTree()
        var starts = (0..<20_000 as Range<UInt64>).map { $0 * 16 }
        starts.shuffle(using: &rng)
        for s in starts { #expect(tree.insert(entry(s, s + 7)) == nil) }
        tree._checkInvariants()
        #expect(tree.count == 20_000)
        starts.shuffle(using: &rng)
        for (k, s) in starts.enumerated() {
            #expect(tree.removeOverlapping(first: s + 3, last: s + 3) == 1)
            if k % 1000 == 0 { tree._checkInvariants() }
        }
        tree._checkInvariants()
        #expect(tree.isEmpty)
    }

    @Test("removing a wide range takes every entry it touches across many leaves")
    func wideRemoval() {
        var tree = IntervalTree((0..<5000 as Range<UInt64>).map { entry($0 * 10, $0 * 10 + 4) })
        #expect(tree.removeOverlapping(first: 102, last: 40_003) == 3991)
        tree._checkInvariants()
        #expect(tree.count == 1009)
        #expect(tree.translate(100) == nil, "[100, 104] touches 102 and goes whole")
        #expect(tree.translate(94) == entry(90, 94))
        #expect(tree.translate(40_010) == entry(40_010, 40_014))
    }

    @Test("edges: 0, UInt64.max, the full range, one-byte and adjacent ranges")
    func edges() {
        var tree = IntervalTree()
        #expect(tree.insert(entry(0, 0)) == nil)
        #expect(tree.insert(entry(1, 1)) == nil)  // adjacent, one byte
        #expect(tree.insert(entry(.max, .max)) == nil)
        #expect(tree.insert(entry(.max - 1, .max)) == entry(.max, .max))
        #expect(tree.translate(.max) == entry(.max, .max))
        #expect(tree.translate(2) == nil)
        #expect(tree.entries(first: 1, last: .max).count == 2)
        #expect(tree.removeOverlapping(first: 0, last: .max) == 3)
        #expect(tree.insert(entry(0, .max)) == nil)  // the whole 64-bit space as one entry
        #expect(tree.translate(1 << 63)?.size == nil)
        #expect(tree.insert(entry(5, 5)) == entry(0, .max))
        tree._checkInvariants()
    }

    @Test("a copy shares storage until either side is written (copy-on-write)")
    func copyOnWrite() {
        var a = IntervalTree([entry(0, 9), entry(20, 29)])
        let b = a
        #expect(a._sharesStorage(with: b))
        a.insert(entry(40, 49))
        #expect(!a._sharesStorage(with: b))
        #expect(b.count == 2 && a.count == 3)
        var c = a
        #expect(c.removeOverlapping(first: 100, last: 200) == 0)
        #expect(c._sharesStorage(with: a), "a removal that removes nothing does not copy")
        c.removeAll()
        #expect(a.count == 3 && c.isEmpty)
    }
}

@Suite("IntervalTree layout")
struct IntervalTreeLayoutTests {
    @Test("ascending inserts (guest RAM in order) fill nodes instead of leaving them half empty")
    func ascendingInsertsPack() {
        var tree = IntervalTree()
        for k in 0..<100_000 as Range<UInt64> { #expect(tree.insert(entry(k * 8192, k * 8192 + 4095)) == nil) }
        tree._checkInvariants()
        #expect(tree._leafCount <= 100_000 / _TreeStorage.leafCapacity + 1)
        for k in stride(from: 0, to: 100_000 as UInt64, by: 3) { tree.removeOverlapping(first: k * 8192, last: k * 8192) }
        tree._checkInvariants()
        #expect(tree.count == 66_666)
    }
}
