// IntervalTree+Invariants.swift — the tests' full structural check of the
// B+ tree: key order, separators, disjointness, leaf chain, counts, uniform
// depth, and no empty node other than an empty root leaf.  In the test
// target, so production code carries no test-only API.
@testable import VDPACore

extension _TreeStorage {
    func checkInvariants() {
        var leaves: [Int32] = []
        let total = check(node: root, level: height, low: 0, high: nil, isRoot: true, leaves: &leaves)
        precondition(total == count, "count \(count) but \(total) entries reachable")
        // The leaf chain must list the leaves in key order, both ways.
        var chained: [Int32] = []
        var n = leaves.first ?? -1
        var previous: Int32 = -1
        while n >= 0 {
            precondition(leafPrevious[Int(n)] == previous, "leaf \(n) has a wrong back link")
            chained.append(n)
            previous = n
            n = leafNext[Int(n)]
        }
        precondition(chained == leaves, "leaf chain \(chained) differs from tree order \(leaves)")
        // Entries are sorted and disjoint across the whole chain.
        var lastSeen: UInt64?
        for leaf in leaves {
            let base = Int(leaf) * Self.leafCapacity
            for j in 0..<Int(leafCount[Int(leaf)]) {
                precondition(leafFirst[base + j] <= leafValue[base + j].last, "entry with first > last")
                if let lastSeen {
                    precondition(leafFirst[base + j] > lastSeen, "entries overlap or are out of order")
                }
                lastSeen = leafValue[base + j].last
            }
        }
    }

    /// Checks the subtree; every first must lie in [low, high).  Returns its entry count.
    private func check(
        node: Int32, level: Int, low: UInt64, high: UInt64?, isRoot: Bool,
        leaves: inout [Int32]
    ) -> Int {
        if level == 0 {
            let n = Int(leafCount[Int(node)])
            precondition(n <= Self.leafCapacity, "leaf overfull")
            precondition(n > 0 || (isRoot && count == 0), "empty leaf \(node) left in the tree")
            let base = Int(node) * Self.leafCapacity
            for j in 0..<n {
                precondition(leafFirst[base + j] >= low, "entry below its separator")
                if let high { precondition(leafFirst[base + j] < high, "entry at or above the next separator") }
            }
            leaves.append(node)
            return n
        }
        let n = Int(innerCount[Int(node)])
        precondition(n <= Self.innerCapacity, "inner node overfull")
        precondition(n >= (isRoot ? 2 : 1), "inner node \(node) has \(n) children")
        let base = Int(node) * Self.innerCapacity
        var total = 0
        for j in 0..<n {
            let lo = j == 0 ? low : innerKey[base + j]
            let hi = j + 1 < n ? innerKey[base + j + 1] : high
            precondition(lo >= low, "separator below the parent's bound")
            if let hi, let high { precondition(hi <= high, "separator above the parent's bound") }
            if let hi { precondition(lo < hi || (j == 0 && lo == hi), "separators out of order") }
            total += check(
                node: innerChild[base + j], level: level - 1, low: lo, high: hi, isRoot: false,
                leaves: &leaves)
        }
        return total
    }
}

extension IntervalTree {
    /// Checks every structural invariant; traps with a description on the first violation.
    func _checkInvariants() { storage.checkInvariants() }
}
