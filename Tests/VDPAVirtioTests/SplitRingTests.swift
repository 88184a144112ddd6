// SplitRingTests.swift — the split-ring walker and the control queue against
// rings built in the test's own memory, one test per edge case of the data
// path rules (docs/kernel-rules.md D11–D13, D22–D24) that applies, and whole
// control-queue runs as vdpasim_handle_cvq does them.
import Testing
@testable import VDPAVirtio

/// Guest memory as a flat byte array (IOVA = offset), with an optional hole.  With `windows`, it also gives the
/// walker and the loopback places in it to reach in place (a shared region's way: guarded loads, stores, copies),
/// except across the hole; its bytes stay where they are for its life, so a place is good as long as the memory.
final class FlatMemory: GuestMemory {
    let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 4096)
    var hole: Range<UInt64>?
    var windows = false
    var indexStores = 0
    /// 16-bit ring fields loaded, by address (the avail idx, flags and entries).
    var indexLoads: [UInt64] = []
    /// Buffer places handed out (the loopback's one-copy way taken), and spans (places for a loop of frames).
    var bufferWindows = 0
    var bufferSpans = 0
    /// Whether it gives spans (a shared region's way); without, each buffer gets a window of its own (an identity
    /// mapping's way in vdpad, whose entry no one region holds).
    var givesSpans = true

    init(windows: Bool = false) {
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
        self.windows = windows
    }
    deinit { bytes.deallocate() }

    func check(_ iova: UInt64, _ count: Int) throws(RingError) {
        guard iova <= UInt64(bytes.count), UInt64(count) <= UInt64(bytes.count) - iova else { throw .fault(iova) }
        if let hole, hole.overlaps(iova..<(iova + UInt64(count))) { throw .fault(iova) }
    }
    func ringWindow(_ iova: UInt64, bytes count: Int, writable: Bool) -> UnsafeMutableRawPointer? {
        guard windows, (try? check(iova, count)) != nil else { return nil }
        return bytes.baseAddress! + Int(iova)
    }
    func bufferWindow(_ iova: UInt64, bytes count: Int, writable: Bool) -> UnsafeMutableRawPointer? {
        guard let p = ringWindow(iova, bytes: count, writable: writable) else { return nil }
        bufferWindows += 1
        return p
    }
    /// The stretch around `iova` on its side of the hole.
    func bufferSpan(_ iova: UInt64, writable: Bool) -> BufferSpan? {
        guard windows, givesSpans, iova < UInt64(bytes.count) else { return nil }
        var (first, last) = (UInt64(0), UInt64(bytes.count - 1))
        if let hole, !hole.isEmpty {
            guard !hole.contains(iova) else { return nil }
            if iova < hole.lowerBound { last = hole.lowerBound - 1 } else { first = hole.upperBound }
        }
        bufferSpans += 1
        return BufferSpan(first: first, last: last, base: bytes.baseAddress! + Int(first))
    }
    func read(_ iova: UInt64, count: Int, ring: Bool) throws(RingError) -> [UInt8] {
        try check(iova, count)
        return Array(bytes[Int(iova)..<Int(iova) + count])
    }
    func write(_ b: [UInt8], at iova: UInt64, ring: Bool) throws(RingError) {
        try check(iova, b.count)
        bytes.replaceSubrange(Int(iova)..<Int(iova) + b.count, with: b)
    }
    func readIndex(at iova: UInt64) throws(RingError) -> UInt16 {
        indexLoads.append(iova)
        let b = try read(iova, count: 2, ring: true)
        return UInt16(b[0]) | UInt16(b[1]) << 8
    }
    func writeIndex(_ value: UInt16, at iova: UInt64) throws(RingError) {
        indexStores += 1
        try write([UInt8(value & 0xFF), UInt8(value >> 8)], at: iova, ring: true)
    }
    func put16(_ v: UInt16, _ at: Int) { bytes[at] = UInt8(v & 0xFF); bytes[at + 1] = UInt8(v >> 8) }
    func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
    func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
}

extension UnsafeMutableRawBufferPointer {
    /// The test memory's bytes at `range` made `new` (as an array's `replaceSubrange` of the same length).
    func replaceSubrange(_ range: Range<Int>, with new: [UInt8]) {
        precondition(range.count == new.count, "a test memory's bytes are replaced in place, never resized")
        UnsafeMutableRawBufferPointer(rebasing: self[range]).copyBytes(from: new)
    }
}

/// A driver's side of one ring of `num` entries at fixed places.
struct Driver {
    let m: FlatMemory
    var num: UInt16 = 8
    var desc: UInt64 = 0x1000, avail: UInt64 = 0x2000, used: UInt64 = 0x3000
    var availIdx: UInt16 = 0

    func descriptor(_ i: UInt16, addr: UInt64, len: UInt32, flags: UInt16, next: UInt16 = 0, table: UInt64? = nil) {
        let at = Int((table ?? desc) + 16 * UInt64(i))
        for k in 0..<8 { m.bytes[at + k] = UInt8(truncatingIfNeeded: addr >> (8 * UInt64(k))) }
        for k in 0..<4 { m.bytes[at + 8 + k] = UInt8(truncatingIfNeeded: len >> (8 * UInt32(k))) }
        m.put16(flags, at + 12)
        m.put16(next, at + 14)
    }
    mutating func post(_ head: UInt16) {
        m.put16(head, Int(avail) + 4 + 2 * Int(availIdx % num))
        availIdx &+= 1
        m.put16(availIdx, Int(avail) + 2)
    }
    func ring(base: UInt16 = 0) -> SplitRing { SplitRing(num: num, desc: desc, avail: avail, used: used, base: base) }
}

@Suite("Split ring and control queue")
struct SplitRingTests {
    @Test(
        "ring areas at the top of the IOVA space wrap past 2^64 as vringh's pointer arithmetic does, never the daemon's end",
        arguments: [false, true])
    func ringAtTheTop(inPlace: Bool) throws {
        // avail at 2^64 − 2: its flags at the top, its idx and entries wrapped to IOVA 0; used at 2^64 − 4: its
        // elements wrapped to 0 as well (over the avail entries, read before), its idx at the top, where nothing is.
        var d = Driver(m: FlatMemory(windows: inPlace), num: 4)
        (d.avail, d.used) = (UInt64.max - 1, UInt64.max - 3)
        d.descriptor(0, addr: 0x4000, len: 8, flags: 0)
        d.m.put16(1, 0)  // the avail idx, wrapped
        d.m.put16(0, 2)  // its entry 0
        var ring = d.ring()
        ring.attach(d.m)
        #expect(!ring.isInPlace, "no window holds an area that wraps")
        let chain = try #require(try ring.fetch(d.m))
        #expect(chain.head == 0 && chain.readable.count == 1)
        #expect(throws: RingError.fault(UInt64.max - 1)) { try ring.complete(0, length: 8, d.m) }
        #expect(d.m.u32(0) == 0 && d.m.u32(4) == 8, "the element went where the wrapped address is; the idx store faulted")
        #expect(ring.detach(d.m) == 0 && ring.lastUsed == 0)
    }

    @Test("a buffer gathered past 2^64 faults where it crosses, as vringh's translation does (SharedMemoryTests maps the top)")
    func gatherPastTheTop() {
        // Past the first 16 bytes of a buffer that starts 16 bytes below 2^64: nothing is read, nothing traps.
        var readable: RingBuffers = [RingBuffer(iova: UInt64.max - 15, length: 64)]
        var into = [UInt8](repeating: 0, count: 48)
        #expect(into.withUnsafeMutableBytes { SplitRing.gather(&readable, FlatMemory(), skipping: 16, into: $0) } == 0)
    }

    @Test("a chain longer than the inline buffers: every buffer in order, and a shorter chain after it in the same chain value")
    func longChain() throws {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        for i in 0..<6 {
            d.descriptor(
                UInt16(i), addr: 0x4000 + 0x100 * UInt64(i), len: UInt32(i + 1), flags: i < 5 ? 1 | (i >= 2 ? 2 : 0) : 2, next: UInt16(i + 1))
        }
        d.post(0)
        d.descriptor(7, addr: 0x7000, len: 9, flags: 0)
        d.post(7)
        var chain = RingChain(head: 0)
        #expect(try ring.fetch(d.m, into: &chain))
        #expect(chain.readable.map(\.length) == [1, 2] && chain.writable.map(\.length) == [3, 4, 5, 6])
        #expect(chain.readable.totalLength == 3 && chain.writable.totalLength == 18)
        #expect(chain.writable.map(\.iova) == [0x4200, 0x4300, 0x4400, 0x4500])
        #expect(try ring.fetch(d.m, into: &chain))
        #expect(chain.head == 7 && chain.readable == [RingBuffer(iova: 0x7000, length: 9)] && chain.writable.isEmpty)
        var spilled = RingBuffers()
        for i in 0..<9 { spilled.append(RingBuffer(iova: UInt64(i), length: 1)) }
        #expect(spilled.count == 9 && spilled.map(\.iova) == Array(0..<9) && spilled[8].iova == 8)
        #expect(spilled.totalLength == 9, "the spilled buffers counted too")
        spilled.removeAll()
        spilled.append(RingBuffer(iova: 42, length: 2))
        #expect(spilled == [RingBuffer(iova: 42, length: 2)])
    }

    @Test(
        "in place and through the memory, every shape of chain is fetched the same: one buffer of either kind, NEXT, a spill, INDIRECT, errors",
        arguments: [false, true])
    func shapesBothWays(inPlace: Bool) throws {
        var d = Driver(m: FlatMemory(windows: inPlace), num: 16)
        var ring = d.ring()
        ring.attach(d.m)
        #expect(ring.isInPlace == inPlace)
        var chain = RingChain(head: 0)
        func next() throws -> RingChain {
            #expect(try ring.fetch(d.m, into: &chain))
            return chain
        }
        // A long chain first (its spill must not show through the one-buffer chains after it).
        for i in 0..<6 { d.descriptor(UInt16(i), addr: 0x4000 + 0x100 * UInt64(i), len: 1, flags: 1 | 2, next: UInt16(i + 1)) }
        d.descriptor(6, addr: 0x4600, len: 1, flags: 2)
        d.post(0)
        #expect(try next().writable.count == 7)
        d.descriptor(8, addr: 0x7800, len: 2048, flags: 2)  // one writable buffer (an RX buffer)
        d.post(8)
        var c = try next()
        #expect(c.head == 8 && c.readable.isEmpty && c.writable == [RingBuffer(iova: 0x7800, length: 2048)])
        d.descriptor(7, addr: 0x7000, len: 60, flags: 0)  // one readable buffer (a TX frame)
        d.post(7)
        c = try next()
        #expect(c.head == 7 && c.readable == [RingBuffer(iova: 0x7000, length: 60)] && c.writable.isEmpty)
        // The long chain again, its buffers moved, after one-buffer chains: the spill holds the new ones only.
        for i in 0..<6 { d.descriptor(UInt16(i), addr: 0x5000 + 0x100 * UInt64(i), len: 1, flags: 1 | 2, next: UInt16(i + 1)) }
        d.descriptor(6, addr: 0x5600, len: 1, flags: 2)
        d.post(0)
        #expect(try next().writable.map(\.iova) == (0..<7).map { 0x5000 + 0x100 * UInt64($0) })
        d.descriptor(9, addr: 0x4000, len: 16, flags: 1, next: 10)  // NEXT: a header, then a status byte
        d.descriptor(10, addr: 0x5000, len: 1, flags: 2)
        d.post(9)
        c = try next()
        #expect(c.readable == [RingBuffer(iova: 0x4000, length: 16)] && c.writable == [RingBuffer(iova: 0x5000, length: 1)])
        d.descriptor(0, addr: 0x6000, len: 4, flags: 2, table: 0x8000)
        d.descriptor(11, addr: 0x8000, len: 16, flags: 4)  // INDIRECT alone: its table's buffer, not the descriptor
        d.post(11)
        c = try next()
        #expect(c.head == 11 && c.readable.isEmpty && c.writable == [RingBuffer(iova: 0x6000, length: 4)])
        d.descriptor(12, addr: 0x4000, len: 1, flags: 1, next: 12)  // a loop
        d.post(12)
        #expect(throws: RingError.loop) { _ = try ring.fetch(d.m, into: &chain) }
        d.descriptor(13, addr: 0x4000, len: 1, flags: 1, next: 99)  // next beyond the table
        d.post(13)
        #expect(throws: RingError.nextOutOfRange(99)) { _ = try ring.fetch(d.m, into: &chain) }
        #expect(ring.lastAvail == 8)
        #expect(try !ring.fetch(d.m, into: &chain))
        ring.detach(d.m)
    }

    @Test("an empty ring has no chain; a NEXT chain yields its readable then writable buffers; completion writes element then idx")
    func basicChain() throws {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        #expect(try ring.fetch(d.m) == nil)
        d.descriptor(0, addr: 0x4000, len: 10, flags: 1, next: 3)
        d.descriptor(3, addr: 0x5000, len: 20, flags: 1 | 2, next: 5)
        d.descriptor(5, addr: 0x6000, len: 1, flags: 2)
        d.post(0)
        let chain = try #require(try ring.fetch(d.m))
        #expect(chain.head == 0 && chain.readable == [RingBuffer(iova: 0x4000, length: 10)])
        #expect(chain.writable == [RingBuffer(iova: 0x5000, length: 20), RingBuffer(iova: 0x6000, length: 1)])
        try ring.complete(chain.head, length: 21, d.m)
        #expect(d.m.u32(Int(d.used) + 4) == 0 && d.m.u32(Int(d.used) + 8) == 21 && d.m.u16(Int(d.used) + 2) == 1)
        #expect(d.m.indexStores == 1, "the used idx is one 16-bit store")
        #expect(try ring.fetch(d.m) == nil)
    }

    @Test("the avail idx is loaded once per batch the driver publishes, and again only when its chains are all taken")
    func availIndexPerBatch() throws {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        for i: UInt16 in 0..<3 {
            d.descriptor(i, addr: 0x4000 + 0x100 * UInt64(i), len: 8, flags: 0)
            d.post(i)
        }
        ring.attach(d.m)
        #expect(!ring.isInPlace, "memory that copies has no place to reach in place")
        // Loads of the avail idx itself (the entries are 16-bit loads of their own, one per chain).
        let idxLoads = { d.m.indexLoads.count { $0 == d.avail + 2 } }
        #expect(try ring.hasWork(d.m) && idxLoads() == 1)
        for i: UInt16 in 0..<3 { #expect(try ring.fetch(d.m)?.head == i) }
        #expect(idxLoads() == 1, "three chains of one published batch: one load")
        #expect(try ring.fetch(d.m) == nil && idxLoads() == 2, "all taken: loaded again, nothing new")
        d.descriptor(3, addr: 0x4300, len: 8, flags: 0)
        d.post(3)
        #expect(try ring.fetch(d.m)?.head == 3 && idxLoads() == 3, "the next batch is seen at the next load")
        #expect(d.m.indexLoads.count { $0 >= d.avail + 4 } == 4, "each entry one 16-bit load")
    }

    @Test("a run reads the avail idx afresh: a ring kept across a reset does not take entries read before it")
    func availIndexForgottenPerRun() throws {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        d.descriptor(0, addr: 0x4000, len: 8, flags: 0)
        d.post(0)
        // A run that read the index and took nothing (TX waiting for RX buffers)...
        ring.attach(d.m)
        #expect(try ring.hasWork(d.m))
        ring.detach(d.m)
        // ...then a reset: the driver sets the same addresses and base 0 (the worker keeps this ring) and has
        // published nothing yet.
        d.m.put16(0, Int(d.avail) + 2)
        ring.attach(d.m)
        #expect(try ring.fetch(d.m) == nil)
    }

    @Test("D22: avail->ring entry ≥ num is refused without being consumed: the queue stays stuck")
    func headOutOfRange() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        d.post(8)
        #expect(throws: RingError.headOutOfRange(8)) { _ = try ring.fetch(d.m) }
        #expect(throws: RingError.headOutOfRange(8)) { _ = try ring.fetch(d.m) }
        #expect(ring.lastAvail == 0)
    }

    @Test("next ≥ num is EINVAL, consumed")
    func nextOutOfRange() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        d.descriptor(0, addr: 0x4000, len: 1, flags: 1, next: 9)
        d.post(0)
        #expect(throws: RingError.nextOutOfRange(9)) { _ = try ring.fetch(d.m) }
        #expect(ring.lastAvail == 1)
    }

    @Test("D23: a descriptor loop is ELOOP after num+1 reads, consumed")
    func loop() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        d.descriptor(0, addr: 0x4000, len: 1, flags: 1, next: 1)
        d.descriptor(1, addr: 0x4000, len: 1, flags: 1, next: 0)
        d.post(0)
        #expect(throws: RingError.loop) { _ = try ring.fetch(d.m) }
        #expect(ring.lastAvail == 1)
    }

    @Test("a readable descriptor after a writable one is EINVAL, consumed")
    func readableAfterWritable() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        d.descriptor(0, addr: 0x4000, len: 1, flags: 1 | 2, next: 1)
        d.descriptor(1, addr: 0x4000, len: 1, flags: 0)
        d.post(0)
        #expect(throws: RingError.readableAfterWritable) { _ = try ring.fetch(d.m) }
    }

    @Test("INDIRECT is followed (not offered, followed anyway); with NEXT the walk continues; nested or a bad length is EINVAL")
    func indirect() throws {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        let table: UInt64 = 0x8000
        d.descriptor(0, addr: 0x4000, len: 2, flags: 1, next: 1, table: table)
        d.descriptor(1, addr: 0x5000, len: 1, flags: 2, table: table)
        d.descriptor(2, addr: table, len: 32, flags: 4 | 2)  // its WRITE flag is ignored
        d.post(2)
        let chain = try #require(try ring.fetch(d.m))
        #expect(chain.readable == [RingBuffer(iova: 0x4000, length: 2)] && chain.writable == [RingBuffer(iova: 0x5000, length: 1)])
        d.descriptor(3, addr: table, len: 32, flags: 4 | 1, next: 4)
        d.descriptor(4, addr: 0x6000, len: 3, flags: 2)
        d.post(3)
        #expect(try ring.fetch(d.m)?.writable.count == 2, "INDIRECT with NEXT: the walk goes on at next")
        d.descriptor(0, addr: table, len: 16, flags: 4, table: table)  // an indirect inside the table
        d.descriptor(5, addr: table, len: 16, flags: 4)
        d.post(5)
        #expect(throws: RingError.badIndirect) { _ = try ring.fetch(d.m) }
        d.descriptor(6, addr: table, len: 24, flags: 4)
        d.post(6)
        #expect(throws: RingError.badIndirect) { _ = try ring.fetch(d.m) }
    }

    @Test("indices run free and wrap at 2^16: a ring based at 0xFFFF serves across the wrap")
    func wrap() throws {
        var d = Driver(m: FlatMemory())
        d.availIdx = 0xFFFF
        d.m.put16(0xFFFF, Int(d.avail) + 2)
        var ring = d.ring(base: 0xFFFF)
        for k: UInt16 in 0..<3 {
            d.descriptor(k, addr: 0x4000, len: 1, flags: 0)
            d.post(k)
        }
        for k: UInt16 in 0..<3 {
            let c = try #require(try ring.fetch(d.m))
            #expect(c.head == k)
            try ring.complete(c.head, length: 0, d.m)
        }
        #expect(ring.lastAvail == 2 && d.m.u16(Int(d.used) + 2) == 2)
    }

    @Test("an unmapped descriptor table is a fault (EFAULT), consumed")
    func fault() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        d.post(0)
        d.m.hole = 0x1000..<0x1100
        #expect(throws: RingError.fault(0x1000)) { _ = try ring.fetch(d.m) }
        #expect(ring.lastAvail == 1)
    }

    @Test("CVQ: MAC_ADDR_SET with 6 bytes sets the MAC, OK; D11: 4 bytes give ERR with bytes 0–3 already replaced")
    func macAddrSet() {
        var cvq = ControlQueue()
        var counters = ControlQueue.Counters()
        let mac: [UInt8] = [0x52, 0x54, 0, 1, 2, 3]
        #expect(
            cvq.process([1, 1, 2, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE], mac: mac, counters: &counters)
                == .answered(ack: 0, newMAC: [2, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE]))
        var fresh = ControlQueue()
        #expect(fresh.process([1, 1, 9, 9, 9, 9], mac: mac, counters: &counters) == .answered(ack: 1, newMAC: [9, 9, 9, 9, 2, 3]))
        #expect(
            counters
                == {
                    var c = ControlQueue.Counters(); c.requests = 2; c.successes = 1; c.errors = 1; return c
                }())
    }

    @Test("CVQ: other classes are ERR; D12: after a successful MAC_ADDR_SET in the same run they are acked OK (kept); D13: 1 byte is malformed")
    func staleAckAndMalformed() {
        var counters = ControlQueue.Counters()
        var run = ControlQueue()
        #expect(run.process([4, 0, 1, 0], mac: [0, 0, 0, 0, 0, 0], counters: &counters) == .answered(ack: 1, newMAC: nil))
        _ = run.process([1, 1, 1, 2, 3, 4, 5, 6], mac: [0, 0, 0, 0, 0, 0], counters: &counters)
        #expect(run.process([4, 0, 1, 0], mac: [1, 2, 3, 4, 5, 6], counters: &counters) == .answered(ack: 0, newMAC: nil), "stale ack")
        #expect(run.process([1], mac: [1, 2, 3, 4, 5, 6], counters: &counters) == .malformed)
        #expect(counters.requests == 4 && counters.errors == 2 && counters.successes == 2)
    }

    /// A MAC_ADDR_SET command at 0x4000 (8 bytes) and its ack byte at 0x5000, as descriptors `head`, `head`+1.
    static func postCommand(_ d: inout Driver, head: UInt16, command: UInt64 = 0x4000, length: UInt32 = 8) {
        d.m.bytes.replaceSubrange(0x4000..<0x4008, with: [1, 1, 2, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE])
        d.descriptor(head, addr: command, len: length, flags: 1, next: head + 1)
        d.descriptor(head + 1, addr: 0x5000, len: 1, flags: 2)
        d.post(head)
    }

    @Test("CVQ run: a chain vringh refuses (D23 loop, a fault in the table) counts nothing, as vdpasim_handle_cvq breaks before requests++")
    func refusedChainCountsNothing() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        d.descriptor(0, addr: 0x4000, len: 8, flags: 1, next: 1)
        d.descriptor(1, addr: 0x5000, len: 1, flags: 1, next: 0)
        d.post(0)
        let run = ControlQueue.run(&ring, d.m, mac: [0, 0, 0, 0, 0, 0], budget: 64)
        #expect(run == ControlQueue.Run(), "no request, no error, no completion, no call")
        #expect(ring.lastAvail == 1, "the head is lost")
        // The good command after it is served by the next run.
        Self.postCommand(&d, head: 2)
        let next = ControlQueue.run(&ring, d.m, mac: [0, 0, 0, 0, 0, 0], budget: 64)
        #expect(next.counters.successes == 1 && next.completed == 1 && next.calls == 1)
        #expect(d.m.bytes[0x5000] == ControlQueue.ok && d.m.u32(Int(d.used) + 4) == 2)
    }

    @Test("CVQ run: an avail idx that cannot be read (the VMM gone) counts nothing and consumes nothing")
    func unreadableAvailIndex() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        Self.postCommand(&d, head: 0)
        d.m.hole = 0x2000..<0x2004
        #expect(ControlQueue.run(&ring, d.m, mac: [0, 0, 0, 0, 0, 0], budget: 64) == ControlQueue.Run())
        #expect(ring.lastAvail == 0)
    }

    @Test("CVQ run: a header in an unmapped buffer is a request and an error, ends the run, never completed (D13's path)")
    func unmappedHeader() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        Self.postCommand(&d, head: 0, command: 0x8000)
        d.m.hole = 0x8000..<0x9000
        Self.postCommand(&d, head: 2)
        let run = ControlQueue.run(&ring, d.m, mac: [0, 0, 0, 0, 0, 0], budget: 64)
        #expect(
            run.counters
                == {
                    var c = ControlQueue.Counters(); c.requests = 1; c.errors = 1; return c
                }())
        #expect(run.completed == 0 && run.calls == 0 && ring.lastAvail == 1, "the run ended at the bad command")
        let next = ControlQueue.run(&ring, d.m, mac: [0, 0, 0, 0, 0, 0], budget: 64)
        #expect(next.counters.successes == 1 && next.newMAC == [2, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE])
    }

    @Test("CVQ run: a chain of gigabytes is read only as far as a command can use")
    func hugeChainReadsLittle() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        Self.postCommand(&d, head: 0, length: 0xFFFF_FFF0)  // far past the test memory: reading it all would fault
        let run = ControlQueue.run(&ring, d.m, mac: [0, 0, 0, 0, 0, 0], budget: 64)
        #expect(run.counters.successes == 1 && run.newMAC == [2, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE], "the first 64 bytes were enough")
    }

    @Test("CVQ run: an ack byte that cannot be written is not an error; used.len is the push's -EFAULT as 32 bits")
    func failedAckPush() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        Self.postCommand(&d, head: 0)
        d.m.hole = 0x5000..<0x5001
        let run = ControlQueue.run(&ring, d.m, mac: [0, 0, 0, 0, 0, 0], budget: 64)
        #expect(run.counters.successes == 1 && run.counters.errors == 0 && run.completed == 1 && run.calls == 1)
        #expect(d.m.u32(Int(d.used) + 8) == 0xFFFF_FFF2)
    }

    @Test("D24: a used idx that cannot be stored: the element is written, the completion never appears, the call still fires")
    func usedIndexStoreFails() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        Self.postCommand(&d, head: 0)
        d.m.hole = 0x3002..<0x3004
        let run = ControlQueue.run(&ring, d.m, mac: [0, 0, 0, 0, 0, 0], budget: 64)
        #expect(run.counters.successes == 1 && run.completed == 0 && run.calls == 1)
        #expect(d.m.u32(Int(d.used) + 4) == 0 && d.m.u32(Int(d.used) + 8) == 1, "the element is there")
        #expect(ring.lastUsed == 0, "last_used did not move: the next completion reuses the slot")
    }

    @Test("CVQ run: the budget stops a run with chains left, and says so")
    func budget() {
        var d = Driver(m: FlatMemory())
        var ring = d.ring()
        for _ in 0..<3 { Self.postCommand(&d, head: 0) }
        let first = ControlQueue.run(&ring, d.m, mac: [0, 0, 0, 0, 0, 0], budget: 2)
        #expect(first.completed == 2 && first.more)
        let second = ControlQueue.run(&ring, d.m, mac: [0, 0, 0, 0, 0, 0], budget: 2)
        #expect(second.completed == 1 && !second.more)
    }
}
