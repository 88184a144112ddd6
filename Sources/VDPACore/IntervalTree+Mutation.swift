// IntervalTree+Mutation.swift — insertion with node splits, run removal with
// sibling merges.  Callers have already checked for overlap and made the
// storage unique.  Node allocation may move every pool (realloc), so no
// pointer-derived base is kept across an allocation.

extension _TreeStorage {
    // MARK: Insert

    /// Inserts `entry` unless it overlaps; returns the overlapping entry (then nothing changed).
    /// One descent: the overlap check happens in the leaf the entry would go to.
    func insert(_ entry: IOTLBEntry) -> IOTLBEntry? {
        switch insert(entry, into: root, level: height) {
        case .overlap(let hit):
            return hit
        case .inserted:
            break
        case .split(let key, let right):
            let newRoot = allocateInner()
            let base = Int(newRoot) * Self.innerCapacity
            innerChild[base] = root
            innerChild[base + 1] = right
            innerKey[base + 1] = key
            innerCount[Int(newRoot)] = 2
            root = newRoot
            height += 1
        }
        count += 1
        return nil
    }

    private enum InsertOutcome {
        case inserted
        case overlap(IOTLBEntry)
        /// The node split: the separator key and the new right sibling.
        case split(UInt64, Int32)
    }

    private func insert(_ entry: IOTLBEntry, into node: Int32, level: Int) -> InsertOutcome {
        if level == 0 { return insert(entry, intoLeaf: node) }
        let slot = childSlot(node, entry.first)
        let child = innerChild[Int(node) * Self.innerCapacity + slot]
        let outcome = insert(entry, into: child, level: level - 1)
        guard case .split(let key, let right) = outcome else { return outcome }
        if let (separator, sibling) = insertChild(right, key: key, into: node, at: slot + 1) {
            return .split(separator, sibling)
        }
        return .inserted
    }

    private func insert(_ entry: IOTLBEntry, intoLeaf leaf: Int32) -> InsertOutcome {
        let capacity = Self.leafCapacity
        let n = Int(leafCount[Int(leaf)])
        let base = Int(leaf) * capacity
        let i = Self.countNotAbove(leafFirst, from: base, to: base + n, entry.first) - base
        if let hit = firstOverlapping(entry.first, entry.last, leaf: leaf, around: i) { return .overlap(self.entry(at: hit)) }
        if n < capacity {
            shiftLeafEntries(leaf, from: i, to: n, by: 1)
            storeEntry(entry, leaf: leaf, index: i)
            leafCount[Int(leaf)] = Int32(n + 1)
            return .inserted
        }
        let right = allocateLeaf()
        let next = leafNext[Int(leaf)]
        // Appending past the last leaf (guest RAM mapped in ascending order) keeps the left leaf
        // full instead of leaving two half-empty ones behind.
        let half = i == capacity && next < 0 ? capacity : capacity / 2
        moveLeafEntries(from: leaf, at: half, to: right, at: 0, count: capacity - half)
        leafCount[Int(leaf)] = Int32(half)
        leafCount[Int(right)] = Int32(capacity - half)
        leafNext[Int(right)] = next
        leafPrevious[Int(right)] = leaf
        if next >= 0 { leafPrevious[Int(next)] = right }
        leafNext[Int(leaf)] = right
        let (target, index) = i <= half && half < capacity ? (leaf, i) : (right, i - half)
        let n2 = Int(leafCount[Int(target)])
        shiftLeafEntries(target, from: index, to: n2, by: 1)
        storeEntry(entry, leaf: target, index: index)
        leafCount[Int(target)] = Int32(n2 + 1)
        return .split(leafFirst[Int(right) * capacity], right)
    }

    private func insertChild(_ child: Int32, key: UInt64, into node: Int32, at slot: Int) -> (UInt64, Int32)? {
        let capacity = Self.innerCapacity
        let n = Int(innerCount[Int(node)])
        if n < capacity {
            let base = Int(node) * capacity
            (innerKey + base + slot + 1).update(from: innerKey + base + slot, count: n - slot)
            (innerChild + base + slot + 1).update(from: innerChild + base + slot, count: n - slot)
            innerKey[base + slot] = key
            innerChild[base + slot] = child
            innerCount[Int(node)] = Int32(n + 1)
            return nil
        }
        let right = allocateInner()
        let base = Int(node) * capacity, rightBase = Int(right) * capacity
        if slot == capacity {
            // Appending the last child: start a new right node with it alone (see the leaf split).
            innerChild[rightBase] = child
            innerKey[rightBase] = key
            innerCount[Int(right)] = 1
            return (key, right)
        }
        let half = capacity / 2
        (innerKey + rightBase).update(from: innerKey + base + half, count: capacity - half)
        (innerChild + rightBase).update(from: innerChild + base + half, count: capacity - half)
        let separator = innerKey[base + half]
        innerCount[Int(node)] = Int32(half)
        innerCount[Int(right)] = Int32(capacity - half)
        // The new child covers keys just above its left neighbour, so slot == half stays left.
        if slot <= half {
            _ = insertChild(child, key: key, into: node, at: slot)
        } else {
            _ = insertChild(child, key: key, into: right, at: slot - half)
        }
        return (separator, right)
    }

    @inline(__always)
    private func storeEntry(_ entry: IOTLBEntry, leaf: Int32, index: Int) {
        let k = Int(leaf) * Self.leafCapacity + index
        leafFirst[k] = entry.first
        leafValue[k] = _LeafValue(last: entry.last, address: entry.address, permission: entry.permission.rawValue)
    }

    /// Moves entries [from, to) of `leaf` by `delta` places (memmove semantics).
    private func shiftLeafEntries(_ leaf: Int32, from: Int, to: Int, by delta: Int) {
        guard from < to else { return }
        moveLeafEntries(from: leaf, at: from, to: leaf, at: from + delta, count: to - from)
    }

    private func moveLeafEntries(
        from source: Int32, at sourceIndex: Int, to target: Int32, at targetIndex: Int,
        count: Int
    ) {
        guard count > 0 else { return }
        let s = Int(source) * Self.leafCapacity + sourceIndex
        let t = Int(target) * Self.leafCapacity + targetIndex
        (leafFirst + t).update(from: leafFirst + s, count: count)
        (leafValue + t).update(from: leafValue + s, count: count)
    }

    // MARK: Remove

    func removeOverlapping(_ s: UInt64, _ l: UInt64) -> Int {
        var total = 0
        var key = s
        // Usually one descent: each round removes the run one leaf holds and says where to go on.
        while true {
            let (removed, next) = removeRun(below: root, level: height, from: key, through: l)
            total += removed
            count -= removed
            shrinkRoot()
            guard let next else { return total }
            key = next
        }
    }

    /// Removes, from the leaf that `key` routes to, the entries intersecting `[key, l]`, and merges
    /// underfull nodes on the way back up.  Returns how many went, and the key to continue from
    /// when more may intersect: the next leaf's first key, or the first key of the previous leaf's
    /// tail when a stale separator routed `key` past the entry that contains it.
    private func removeRun(
        below node: Int32, level: Int, from key: UInt64,
        through l: UInt64
    ) -> (Int, UInt64?) {
        if level == 0 {
            let base = Int(node) * Self.leafCapacity
            let n = Int(leafCount[Int(node)])
            let i = Self.countNotAbove(leafFirst, from: base, to: base + n, key) - base
            if i == 0, case let prev = leafPrevious[Int(node)], prev >= 0 {
                let k = Int(prev) * Self.leafCapacity + Int(leafCount[Int(prev)]) - 1
                if leafValue[k].last >= key { return (0, leafFirst[k]) }
            }
            let start = i > 0 && leafValue[base + i - 1].last >= key ? i - 1 : i
            var j = start
            while j < n && leafFirst[base + j] <= l { j += 1 }
            var next: UInt64?
            if j == n, case let following = leafNext[Int(node)], following >= 0,
                leafFirst[Int(following) * Self.leafCapacity] <= l
            {
                next = leafFirst[Int(following) * Self.leafCapacity]
            }
            shiftLeafEntries(node, from: j, to: n, by: start - j)
            leafCount[Int(node)] = Int32(n - (j - start))
            return (j - start, next)
        }
        let slot = childSlot(node, key)
        let child = innerChild[Int(node) * Self.innerCapacity + slot]
        let result = removeRun(below: child, level: level - 1, from: key, through: l)
        if result.0 > 0 { rebalanceChild(of: node, at: slot, childIsLeaf: level == 1) }
        return result
    }

    private func itemCount(_ node: Int32, isLeaf: Bool) -> Int {
        Int(isLeaf ? leafCount[Int(node)] : innerCount[Int(node)])
    }

    private func rebalanceChild(of parent: Int32, at slot: Int, childIsLeaf: Bool) {
        let base = Int(parent) * Self.innerCapacity
        let children = Int(innerCount[Int(parent)])
        let child = innerChild[base + slot]
        let n = itemCount(child, isLeaf: childIsLeaf)
        if n == 0 {
            if childIsLeaf {
                unlinkLeaf(child)
                freeLeaf(child)
            } else {
                freeInner(child)
            }
            removeChildSlot(of: parent, at: slot)
            return
        }
        let capacity = childIsLeaf ? Self.leafCapacity : Self.innerCapacity
        let minimum = childIsLeaf ? Self.leafMinimum : Self.innerMinimum
        guard n < minimum else { return }
        if slot + 1 < children, n + itemCount(innerChild[base + slot + 1], isLeaf: childIsLeaf) <= capacity {
            mergeChildren(of: parent, at: slot, areLeaves: childIsLeaf)
        } else if slot > 0, n + itemCount(innerChild[base + slot - 1], isLeaf: childIsLeaf) <= capacity {
            mergeChildren(of: parent, at: slot - 1, areLeaves: childIsLeaf)
        }
    }

    /// Appends child `slot + 1` of `parent` to child `slot` and drops the emptied right node.
    private func mergeChildren(of parent: Int32, at slot: Int, areLeaves: Bool) {
        let base = Int(parent) * Self.innerCapacity
        let left = innerChild[base + slot], right = innerChild[base + slot + 1]
        if areLeaves {
            let ln = Int(leafCount[Int(left)]), rn = Int(leafCount[Int(right)])
            moveLeafEntries(from: right, at: 0, to: left, at: ln, count: rn)
            leafCount[Int(left)] = Int32(ln + rn)
            unlinkLeaf(right)
            freeLeaf(right)
        } else {
            let ln = Int(innerCount[Int(left)]), rn = Int(innerCount[Int(right)])
            let lb = Int(left) * Self.innerCapacity, rb = Int(right) * Self.innerCapacity
            (innerChild + lb + ln).update(from: innerChild + rb, count: rn)
            (innerKey + lb + ln + 1).update(from: innerKey + rb + 1, count: rn - 1)
            innerKey[lb + ln] = innerKey[base + slot + 1]  // the parent's separator now separates inside `left`
            innerCount[Int(left)] = Int32(ln + rn)
            freeInner(right)
        }
        removeChildSlot(of: parent, at: slot + 1)
    }

    private func removeChildSlot(of parent: Int32, at slot: Int) {
        let base = Int(parent) * Self.innerCapacity
        let n = Int(innerCount[Int(parent)])
        // key[0] is unused, so one uniform shift also covers slot 0.
        (innerKey + base + slot).update(from: innerKey + base + slot + 1, count: n - slot - 1)
        (innerChild + base + slot).update(from: innerChild + base + slot + 1, count: n - slot - 1)
        innerCount[Int(parent)] = Int32(n - 1)
    }

    private func unlinkLeaf(_ leaf: Int32) {
        let prev = leafPrevious[Int(leaf)], next = leafNext[Int(leaf)]
        if prev >= 0 { leafNext[Int(prev)] = next }
        if next >= 0 { leafPrevious[Int(next)] = prev }
    }

    private func shrinkRoot() {
        while height > 0 {
            let n = innerCount[Int(root)]
            if n == 0 {
                reset()
                return
            }
            if n > 1 { return }
            let old = root
            root = innerChild[Int(old) * Self.innerCapacity]
            freeInner(old)
            height -= 1
        }
    }
}
