// IntervalTree+Mutation.swift — insertion with node splits, run removal with
// sibling merges.  Callers have already checked for overlap and made the
// storage unique.  Node allocation may move every pool (realloc), so no
// pointer-derived base is kept across an allocation.

extension _TreeStorage {
    // MARK: Insert

    func insert(_ entry: IOTLBEntry) {
        if let (key, right) = insert(entry, into: root, level: height) {
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
    }

    /// Inserts below `node`; returns the separator key and new right sibling if `node` split.
    private func insert(_ entry: IOTLBEntry, into node: Int32, level: Int) -> (UInt64, Int32)? {
        if level == 0 { return insert(entry, intoLeaf: node) }
        let slot = childSlot(node, entry.first)
        let child = innerChild[Int(node) * Self.innerCapacity + slot]
        guard let (key, right) = insert(entry, into: child, level: level - 1) else { return nil }
        return insertChild(right, key: key, into: node, at: slot + 1)
    }

    private func insert(_ entry: IOTLBEntry, intoLeaf leaf: Int32) -> (UInt64, Int32)? {
        let capacity = Self.leafCapacity
        let n = Int(leafCount[Int(leaf)])
        if n < capacity {
            let base = Int(leaf) * capacity
            let i = Self.countNotAbove(leafFirst, from: base, to: base + n, entry.first) - base
            shiftLeafEntries(leaf, from: i, to: n, by: 1)
            storeEntry(entry, leaf: leaf, index: i)
            leafCount[Int(leaf)] = Int32(n + 1)
            return nil
        }
        let right = allocateLeaf()
        let half = capacity / 2
        moveLeafEntries(from: leaf, at: half, to: right, at: 0, count: capacity - half)
        leafCount[Int(leaf)] = Int32(half)
        leafCount[Int(right)] = Int32(capacity - half)
        let next = leafNext[Int(leaf)]
        leafNext[Int(right)] = next
        leafPrevious[Int(right)] = leaf
        if next >= 0 { leafPrevious[Int(next)] = right }
        leafNext[Int(leaf)] = right
        let target = entry.first < leafFirst[Int(right) * capacity] ? leaf : right
        _ = insert(entry, intoLeaf: target)
        return (leafFirst[Int(right) * capacity], right)
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
        let half = capacity / 2
        let base = Int(node) * capacity, rightBase = Int(right) * capacity
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
        leafLast[k] = entry.last
        leafAddress[k] = entry.address
        leafPermission[k] = entry.permission.rawValue
    }

    /// Moves entries [from, to) of `leaf` by `delta` places (memmove semantics).
    private func shiftLeafEntries(_ leaf: Int32, from: Int, to: Int, by delta: Int) {
        guard from < to else { return }
        moveLeafEntries(from: leaf, at: from, to: leaf, at: from + delta, count: to - from)
    }

    private func moveLeafEntries(from source: Int32, at sourceIndex: Int, to target: Int32, at targetIndex: Int,
                                 count: Int) {
        guard count > 0 else { return }
        let s = Int(source) * Self.leafCapacity + sourceIndex
        let t = Int(target) * Self.leafCapacity + targetIndex
        (leafFirst + t).update(from: leafFirst + s, count: count)
        (leafLast + t).update(from: leafLast + s, count: count)
        (leafAddress + t).update(from: leafAddress + s, count: count)
        (leafPermission + t).update(from: leafPermission + s, count: count)
    }

    // MARK: Remove

    func removeOverlapping(_ s: UInt64, _ l: UInt64) -> Int {
        var total = 0
        // Each round removes the run of intersecting entries held by one leaf.
        while let p = firstOverlapping(s, l) {
            let key = leafFirst[Int(p.leaf) * Self.leafCapacity + Int(p.index)]
            let removed = removeRun(below: root, level: height, from: key, through: l)
            total += removed
            count -= removed
            shrinkRoot()
        }
        return total
    }

    /// Removes, from the leaf holding `key`, the entry starting at `key` and those after it
    /// that start at or below `l`; merges underfull nodes on the way back up.
    private func removeRun(below node: Int32, level: Int, from key: UInt64, through l: UInt64) -> Int {
        if level == 0 {
            let base = Int(node) * Self.leafCapacity
            let n = Int(leafCount[Int(node)])
            let i = Self.countNotAbove(leafFirst, from: base, to: base + n, key) - base - 1
            var j = i
            while j < n && leafFirst[base + j] <= l { j += 1 }
            shiftLeafEntries(node, from: j, to: n, by: i - j)
            leafCount[Int(node)] = Int32(n - (j - i))
            return j - i
        }
        let slot = childSlot(node, key)
        let child = innerChild[Int(node) * Self.innerCapacity + slot]
        let removed = removeRun(below: child, level: level - 1, from: key, through: l)
        rebalanceChild(of: node, at: slot, childIsLeaf: level == 1)
        return removed
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
