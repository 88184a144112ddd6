// IOTLBWorkload.swift — the anchors' IOTLB workload (shared/anchors/workload.md),
// bit for bit: same splitmix64 stream, same draws in the same order, same
// phases and the same output lines, so this binary can sit beside the C/C++
// peers in `EXTRA_BINS=… ./run.sh`.
#if canImport(Glibc)
    import Glibc
#endif
import VDPACore

/// The anchors' helpers on their generator (workload.h: wl_bounded, the shuffle).
extension SplitMix64 {
    /// High 64 bits of next() × n: in [0, n), no rejection (as wl_bounded).
    mutating func bounded(_ n: UInt64) -> UInt64 { next().multipliedFullWidth(by: n).high }

    mutating func shuffle(_ a: inout [UInt32]) {
        var k = a.count - 1
        while k >= 1 {
            let j = Int(bounded(UInt64(k + 1)))
            a.swapAt(k, j)
            k -= 1
        }
    }
}

struct IOTLBWorkload {
    static let seed: UInt64 = 0x76_6470_6164
    static let page: UInt64 = 4096
    static let space: UInt64 = 1 << 48
    static let maxSize: UInt64 = 2 << 20
    static let miss = UInt64.max

    let n: Int
    let slot: UInt64
    var first: [UInt64] = [], last: [UInt64] = [], address: [UInt64] = [], permission: [UInt8] = []
    var insertOrder: [UInt32] = []
    var overlapFirst: [UInt64] = [], overlapLast: [UInt64] = []
    var hitIOVA: [UInt64] = [], hitIndex: [UInt32] = []
    var mixedIOVA: [UInt64] = [], mixedIndex: [Int64] = []
    var rangeFirst: [UInt64] = [], rangeLast: [UInt64] = []
    var deleteOrder: [UInt32] = []

    init(n: Int) {
        self.n = n
        let n64 = UInt64(n)
        slot = (Self.space / n64) & ~(Self.maxSize - 1)
        var rng = SplitMix64(state: Self.seed)
        for i in 0..<n64 {
            let size = Self.page << rng.bounded(10)
            let offset = rng.bounded((slot - size) / Self.page + 1) * Self.page
            let start = i * slot + offset
            first.append(start)
            last.append(start + size - 1)
            address.append(rng.next() & 0x0000_7FFF_FFFF_F000)
            permission.append(UInt8(1 + rng.bounded(3)))
        }
        insertOrder = (0..<UInt32(n)).map { $0 }
        rng.shuffle(&insertOrder)
        for _ in 0..<(n / 10) {
            let i = Int(rng.bounded(n64))
            let size = last[i] - first[i] + 1
            let p = first[i] + rng.bounded(size / Self.page) * Self.page
            let sz = Self.page << rng.bounded(4)
            overlapFirst.append(p)
            overlapLast.append(p + sz - 1)
        }
        for _ in 0..<n {
            let i = Int(rng.bounded(n64))
            hitIndex.append(UInt32(i))
            hitIOVA.append(first[i] + rng.bounded(last[i] - first[i] + 1))
        }
        for _ in 0..<n {
            let c = rng.bounded(2)
            let i = Int(rng.bounded(n64))
            let size = last[i] - first[i] + 1
            if c == 0 {
                mixedIndex.append(Int64(i))
                mixedIOVA.append(first[i] + rng.bounded(size))
            } else {
                let base = UInt64(i) * slot, offset = first[i] - base
                let g = rng.bounded(slot - size)
                mixedIndex.append(-1)
                mixedIOVA.append(base + (g < offset ? g : g + size))
            }
        }
        for _ in 0..<(n / 10) {
            let i = rng.bounded(n64)
            let s = i * slot + rng.bounded(slot)
            let length = 1 + rng.bounded(4 * slot)
            rangeFirst.append(s)
            rangeLast.append(min(s + length - 1, Self.space - 1))
        }
        deleteOrder = (0..<UInt32(n)).map { $0 }
        rng.shuffle(&deleteOrder)
    }

    static func value(address: UInt64, first: UInt64, permission: UInt8, iova: UInt64) -> UInt64 {
        (address &+ (iova &- first)) | (UInt64(permission) << 60)
    }

    static func mix(_ h: inout UInt64, _ v: UInt64) { h = (h ^ v) &* 0x100_0000_01B3 }

    func referenceRange(_ s: UInt64, _ l: UInt64, _ h: inout UInt64) -> Int {
        var count = 0
        let j0 = Int(s / slot), j1 = min(Int(l / slot), n - 1)
        if j0 <= j1 {
            for j in j0...j1 where first[j] <= l && last[j] >= s {
                Self.mix(&h, first[j])
                count += 1
            }
        }
        return count
    }
}

enum IOTLBBenchmark {
    static let implName = "vdpad_swift"

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func rssBytes() -> Int {
        guard let f = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(f) }
        var pages = 0, rss = 0
        guard
            withUnsafeMutablePointer(
                to: &pages,
                { p in
                    withUnsafeMutablePointer(to: &rss) { r in vfscanf_helper(f, p, r) }
                })
        else { return 0 }
        return rss * sysconf(Int32(_SC_PAGESIZE))
    }

    static func vfscanf_helper(
        _ f: UnsafeMutablePointer<FILE>, _ a: UnsafeMutablePointer<Int>,
        _ b: UnsafeMutablePointer<Int>
    ) -> Bool {
        var buffer = [CChar](repeating: 0, count: 128)
        guard fgets(&buffer, 128, f) != nil else { return false }
        let fields = String(cBuffer: buffer).split(separator: " ")
        guard fields.count >= 2, let x = Int(fields[0]), let y = Int(fields[1]) else { return false }
        a.pointee = x
        b.pointee = y
        return true
    }

    static func report(_ phase: String, n: Int, ops: Int, ns: UInt64) {
        let perOp = ops > 0 ? Double(ns) / Double(ops) : 0
        print("impl=\(implName) n=\(n) phase=\(phase) ops=\(ops) ns_per_op=\(formatOneDecimal(perOp))")
    }

    static func formatOneDecimal(_ x: Double) -> String {
        let tenths = Int((x * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    static func hex16(_ v: UInt64) -> String { String(v, radix: 16).leftPad(16) }

    /// Runs the six phases; returns whether every expectation held.
    static func run(n: Int, verify: Bool) -> Bool {
        let w = IOTLBWorkload(n: n)
        var resultHit = [UInt64](repeating: 0, count: n)
        var resultMixed = [UInt64](repeating: 0, count: n)
        var tree = IntervalTree()
        var badInserts = 0, acceptedOverlaps = 0, visits = 0, deleted = 0
        var rangeHash: UInt64 = 0xCBF2_9CE4_8422_2325
        let rss0 = rssBytes()

        var t0 = now()
        for k in 0..<n {
            let i = Int(w.insertOrder[k])
            let e = IOTLBEntry(
                first: w.first[i], last: w.last[i], address: w.address[i],
                permission: Permission(rawValue: w.permission[i]))
            if tree.insert(e) != nil { badInserts += 1 }
        }
        report("insert", n: n, ops: n, ns: now() - t0)
        let rss1 = rssBytes()

        t0 = now()
        for q in 0..<w.overlapFirst.count {
            let e = IOTLBEntry(first: w.overlapFirst[q], last: w.overlapLast[q], address: 0, permission: .readWrite)
            if tree.insert(e) == nil { acceptedOverlaps += 1 }
        }
        report("insert_overlap", n: n, ops: w.overlapFirst.count, ns: now() - t0)

        func lookup(_ iova: UInt64) -> UInt64 {
            guard let e = tree.translate(iova) else { return IOTLBWorkload.miss }
            return IOTLBWorkload.value(address: e.address, first: e.first, permission: e.permission.rawValue, iova: iova)
        }
        t0 = now()
        resultHit.withUnsafeMutableBufferPointer { out in
            for q in 0..<n { out[q] = lookup(w.hitIOVA[q]) }
        }
        report("translate_hit", n: n, ops: n, ns: now() - t0)

        t0 = now()
        resultMixed.withUnsafeMutableBufferPointer { out in
            for q in 0..<n { out[q] = lookup(w.mixedIOVA[q]) }
        }
        report("translate_mixed", n: n, ops: n, ns: now() - t0)

        t0 = now()
        for q in 0..<w.rangeFirst.count {
            tree.forEachOverlapping(first: w.rangeFirst[q], last: w.rangeLast[q]) { e in
                IOTLBWorkload.mix(&rangeHash, e.first)
                visits += 1
                return true
            }
        }
        report("range_query", n: n, ops: w.rangeFirst.count, ns: now() - t0)
        let sizeBeforeDelete = tree.count

        t0 = now()
        for k in 0..<n {
            let i = Int(w.deleteOrder[k])
            deleted += tree.removeOverlapping(first: w.first[i], last: w.last[i])
        }
        report("delete", n: n, ops: n, ns: now() - t0)
        let finalSize = tree.count

        print("impl=\(implName) n=\(n) metric=rss_bytes_per_range value=\(formatOneDecimal(Double(rss1 - rss0) / Double(n)))")

        var hHit: UInt64 = 0xCBF2_9CE4_8422_2325, hMixed = hHit, mixedHits = 0
        for v in resultHit { IOTLBWorkload.mix(&hHit, v) }
        for v in resultMixed {
            IOTLBWorkload.mix(&hMixed, v)
            if v != IOTLBWorkload.miss { mixedHits += 1 }
        }
        var eHit: UInt64 = 0xCBF2_9CE4_8422_2325, eMixed = eHit, eRange = eHit, eVisits = 0, eMixedHits = 0
        var firstBad = -1, badPhase = "none"
        for q in 0..<n {
            let i = Int(w.hitIndex[q])
            let v = IOTLBWorkload.value(address: w.address[i], first: w.first[i], permission: w.permission[i], iova: w.hitIOVA[q])
            IOTLBWorkload.mix(&eHit, v)
            if verify && v != resultHit[q] && firstBad < 0 { firstBad = q; badPhase = "translate_hit" }
        }
        for q in 0..<n {
            var v = IOTLBWorkload.miss
            if w.mixedIndex[q] >= 0 {
                let i = Int(w.mixedIndex[q])
                v = IOTLBWorkload.value(address: w.address[i], first: w.first[i], permission: w.permission[i], iova: w.mixedIOVA[q])
                eMixedHits += 1
            }
            IOTLBWorkload.mix(&eMixed, v)
            if verify && v != resultMixed[q] && firstBad < 0 { firstBad = q; badPhase = "translate_mixed" }
        }
        for q in 0..<w.rangeFirst.count { eVisits += w.referenceRange(w.rangeFirst[q], w.rangeLast[q], &eRange) }
        if verify && firstBad < 0 && (eRange != rangeHash || eVisits != visits) { badPhase = "range_query"; firstBad = 0 }

        let ok =
            badInserts == 0 && acceptedOverlaps == 0 && deleted == n && finalSize == 0 && sizeBeforeDelete == n
            && hHit == eHit && hMixed == eMixed && mixedHits == eMixedHits && rangeHash == eRange && visits == eVisits
        print(
            "impl=\(implName) n=\(n) check translate_hit=\(hex16(hHit)) translate_mixed=\(hex16(hMixed)) "
                + "mixed_hits=\(mixedHits) range_visits=\(visits) range_hash=\(hex16(rangeHash)) "
                + "overlap_rejects=\(w.overlapFirst.count - acceptedOverlaps) deleted=\(deleted) final_size=\(finalSize) ok=\(ok ? 1 : 0)")
        if verify {
            print(
                "impl=\(implName) n=\(n) verify first_mismatch_phase=\(badPhase) first_mismatch_query=\(firstBad) "
                    + "expected translate_hit=\(hex16(eHit)) translate_mixed=\(hex16(eMixed)) range_hash=\(hex16(eRange))")
        }
        fflush(nil)
        return ok
    }
}

extension String {
    func leftPad(_ width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
