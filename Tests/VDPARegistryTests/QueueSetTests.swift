// QueueSetTests.swift — the worker's set of virtqueue indexes (a bitmap of
// two words): what a Set<Int> would answer, in ascending order, across the
// word boundary and up to mlx5_net's 65 vqs.
import Testing
@testable import VDPADataPath

@Suite("Queue set")
struct QueueSetTests {
    @Test("insert, contains, remove and count agree with Set<Int> for random indexes in both words")
    func agreesWithSet() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var bits = QueueSet()
            var reference = Set<Int>()
            for _ in 0..<40 {
                let vq = Int.random(in: 0..<QueueSet.capacity, using: &rng)
                if Bool.random(using: &rng) {
                    bits.insert(vq)
                    reference.insert(vq)
                } else {
                    #expect(bits.remove(vq) == (reference.remove(vq) != nil))
                }
            }
            #expect(Array(bits) == reference.sorted())
            #expect(bits.count == reference.count && bits.isEmpty == reference.isEmpty)
            for vq in 0..<QueueSet.capacity { #expect(bits.contains(vq) == reference.contains(vq)) }
        }
    }

    @Test("union and subset across the word boundary; indexes outside the set are never members")
    func unionAndSubset() {
        var a: QueueSet = [0, 63, 64]
        let b: QueueSet = [1, 64, 127]
        #expect(!a.isSubset(of: b) && !b.isSubset(of: a))
        a.formUnion(b)
        #expect(Array(a) == [0, 1, 63, 64, 127])
        #expect(b.isSubset(of: a) && QueueSet().isSubset(of: b))
        #expect(a == QueueSet([127, 64, 63, 1, 0]))
        #expect(!a.contains(-1) && !a.contains(128) && !a.contains(Int.max))
        // mlx5_net at its largest: 32 pairs and the control queue.
        let all = QueueSet(0..<65)
        #expect(all.count == 65 && Array(all) == Array(0..<65))
    }
}
