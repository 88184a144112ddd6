// NetLoopbackTests.swift — vdpa_sim_net's TX→RX loopback on rings in the
// test's own memory, one test per case of the reference that applies
// (docs/kernel-rules.md D4–D10).
import Testing
@testable import VDPAVirtio

@Suite("Net loopback (vdpa_sim_net)")
struct NetLoopbackTests {
    static let mac: [UInt8] = [0x52, 0x54, 0x11, 0x12, 0x34, 0x56]

    /// A TX ring at 0x1000… and an RX ring at 0x1800… in one memory, which gives places to reach in place when
    /// `inPlace` (a shared region's way: a frame's one buffer copied straight into an RX buffer of one).
    static func rings(inPlace: Bool = false) -> (tx: Driver, rx: Driver) {
        let m = FlatMemory(windows: inPlace)
        return (Driver(m: m, num: 16), Driver(m: m, num: 16, desc: 0x1800, avail: 0x2800, used: 0x3800))
    }

    /// A frame: a 12-byte virtio-net header, then destination, source, a sequence number and a payload.
    static func frame(to dst: [UInt8], _ seq: UInt8, length: Int = 64) -> [UInt8] {
        var f = [UInt8](repeating: 0, count: 12) + dst + mac + [0x88, 0xB5, seq]
        while f.count < length { f.append(UInt8(truncatingIfNeeded: f.count &* 31 &+ Int(seq))) }
        return f
    }

    static func send(_ d: inout Driver, _ k: UInt16, _ bytes: [UInt8], writable: Bool = false) {
        let at = 0x8000 + 0x200 * Int(k)
        d.m.bytes.replaceSubrange(at..<at + bytes.count, with: bytes)
        d.descriptor(k, addr: UInt64(at), len: UInt32(bytes.count), flags: writable ? 2 : 0)
        d.post(k)
    }

    static func offer(_ d: inout Driver, _ k: UInt16, length: UInt32 = 0x200) {
        d.descriptor(k, addr: UInt64(0xC000 + 0x200 * Int(k)), len: length, flags: 2)
        d.post(k)
    }

    static func used(_ d: Driver, _ n: Int) -> (id: UInt32, len: UInt32) {
        (d.m.u32(Int(d.used) + 4 + 8 * n), d.m.u32(Int(d.used) + 8 + 8 * n))
    }

    @Test(
        "a frame to the device's MAC and a broadcast come back intact; D6: one to a foreign MAC is dropped and the loop goes on",
        arguments: [false, true]
    )
    func loopback(inPlace: Bool) {
        var (t, r) = Self.rings(inPlace: inPlace)
        let mine = Self.frame(to: Self.mac, 1), broadcast = Self.frame(to: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 2)
        let foreign = Self.frame(to: [0x52, 0x54, 0x11, 0x12, 0x34, 0x99], 3)
        Self.send(&t, 0, mine)
        Self.send(&t, 1, foreign)
        Self.send(&t, 2, broadcast)
        for k in 0..<4 { Self.offer(&r, UInt16(k)) }
        var tx = t.ring(), rx = r.ring()
        let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.txChains == 3 && run.txCompleted == 3 && run.rxCompleted == 2 && run.rxDrops == 1 && run.rxBytes == 128)
        #expect(Self.used(r, 0) == (0, 64) && Self.used(r, 1) == (1, 64))
        #expect(Array(t.m.bytes[0xC000..<0xC000 + 64]) == mine && Array(t.m.bytes[0xC200..<0xC200 + 64]) == broadcast)
        #expect(Self.used(t, 1) == (1, 0), "the dropped frame's TX completes with length 0")
        #expect(run.txCalls == 3 && run.rxCalls == 2 && !run.more)
        // In place, each frame's one buffer is read where it is (the foreign one too: its MAC is read there), and the
        // two delivered are copied straight into their RX buffers: no bounce page.
        // In place, the five frames' places come from two spans (the TX buffers', the RX buffers'), found once each.
        #expect(t.m.bufferWindows == 0 && t.m.bufferSpans == (inPlace ? 2 : 0))
    }

    @Test("NO_INTERRUPT in a queue's avail flags: frames loop as before, and no interrupt is owed on that queue (§1)", arguments: [false, true])
    func noInterrupt(inPlace: Bool) {
        var (t, r) = Self.rings(inPlace: inPlace)
        Self.send(&t, 0, Self.frame(to: Self.mac, 1))
        Self.send(&t, 1, Self.frame(to: Self.mac, 2))
        for k in 0..<2 { Self.offer(&r, UInt16(k)) }
        t.m.put16(1, Int(t.avail))  // the TX queue polled (a NAPI driver), the RX queue still wants interrupts
        var tx = t.ring(), rx = r.ring()
        let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.txCompleted == 2 && run.rxCompleted == 2)
        #expect(run.txCalls == 0 && run.rxCalls == 2)
        t.m.put16(0, Int(t.avail))
        r.m.put16(1, Int(r.avail))
        Self.send(&t, 2, Self.frame(to: Self.mac, 3))
        Self.offer(&r, 2)
        let next = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(next.txCompleted == 1 && next.txCalls == 1 && next.rxCompleted == 1 && next.rxCalls == 0)
    }

    @Test("MRG_RXBUF (mlx5_net): the RX header says num_buffers 1; the rest of the frame is the TX bytes", arguments: [false, true])
    func mergeableHeader(inPlace: Bool) {
        var (t, r) = Self.rings(inPlace: inPlace)
        let mine = Self.frame(to: Self.mac, 1)
        Self.send(&t, 0, mine)
        Self.offer(&r, 0)
        var tx = t.ring(), rx = r.ring()
        let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8, mergeable: true)
        #expect(run.rxCompleted == 1)
        var expected = mine
        expected[10] = 1
        #expect(Array(t.m.bytes[0xC000..<0xC000 + 64]) == expected)
        #expect(t.m.bufferWindows + t.m.bufferSpans == 0, "a header to rewrite goes through the bounce page, never into the driver's TX buffer")
        #expect(t.m.bytes[0x8000 + 10] == 0)
    }

    @Test("D5, departed from: with no RX buffer the frames wait in the TX ring, and arrive once buffers are posted", arguments: [false, true])
    func framesWaitForBuffers(inPlace: Bool) {
        var (t, r) = Self.rings(inPlace: inPlace)
        let first = Self.frame(to: Self.mac, 1), second = Self.frame(to: Self.mac, 2)
        Self.send(&t, 0, first)
        Self.send(&t, 1, second)
        var tx = t.ring(), rx = r.ring()
        var run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.rxWaits == 1 && run.txChains == 0 && run.txCompleted == 0 && run.rxOverruns == 0, "nothing taken, nothing lost")
        Self.offer(&r, 0)
        run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.rxCompleted == 1 && run.rxWaits == 1, "one buffer: one frame, the other waits")
        Self.offer(&r, 1)
        run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.rxCompleted == 1 && run.rxWaits == 0 && run.txCompleted == 1)
        #expect(Array(t.m.bytes[0xC000..<0xC000 + 64]) == first && Array(t.m.bytes[0xC200..<0xC200 + 64]) == second)
    }

    @Test("an RX ring whose avail idx cannot be read: the frames wait, an RX error each run; readable again, they arrive", arguments: [false, true])
    func unreadableReceiveRing(inPlace: Bool) {
        var (t, r) = Self.rings(inPlace: inPlace)
        let frame = Self.frame(to: Self.mac, 1)
        Self.send(&t, 0, frame)
        Self.offer(&r, 0)
        t.m.hole = r.avail..<r.avail + 4  // the RX avail flags and idx unmapped
        var tx = t.ring(), rx = r.ring()
        for _ in 0..<2 {
            let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
            #expect(run.rxErrors == 1 && run.rxWaits == 0 && run.txChains == 0 && run.rxOverruns == 0, "counted, nothing taken")
        }
        t.m.hole = nil
        let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.rxCompleted == 1 && run.txCompleted == 1 && run.rxErrors == 0)
        #expect(Array(t.m.bytes[0xC000..<0xC000 + 64]) == frame)
    }

    @Test("D7: the receive filter made once per run agrees with vdpa_sim's compare, byte by byte, on any MAC and destination")
    func filterAgreesWithTheWalk() {
        /// vdpasim_net_filter_packet's reading, walked as it does: a multicast bit passes; else the bytes are compared
        /// in order and the walk stops, accepting, at the first position both hold 00.
        func walk(_ d: [UInt8], _ mac: [UInt8]) -> Bool {
            guard d.count == 6, mac.count == 6 else { return false }
            if d[0] & 1 != 0 { return true }
            for k in 0..<6 {
                if d[k] != mac[k] { return false }
                if d[k] == 0 { return true }
            }
            return true
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15  // xorshift64: the same draws every run
        func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        // Bytes drawn mostly from {00, 01, 02, FF}: zeros and near-matches are where the compare's stop matters.
        func byte() -> UInt8 {
            let r = next()
            return r % 4 == 0 ? UInt8(truncatingIfNeeded: r >> 8) : [0, 1, 2, 0xFF][Int((r >> 8) % 4)]
        }
        for _ in 0..<20_000 {
            let mac = (0..<6).map { _ in byte() }
            // A third of the destinations are the MAC with one byte drawn again: a match, or a miss in one place.
            let changed = Int(next() % 6)
            let d = next() % 3 == 0 ? mac.enumerated().map { $0.offset == changed ? byte() : $0.element } : (0..<6).map { _ in byte() }
            let filter = NetLoopback.ReceiveFilter(mac: mac)
            #expect(filter.accepts(destination: d) == walk(d, mac), "mac \(mac) destination \(d)")
            let bits = d.enumerated().reduce(UInt64(0xABCD) << 48) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            #expect(filter.accepts(bits) == walk(d, mac), "the two bytes past the destination are not looked at")
        }
        #expect(
            !NetLoopback.ReceiveFilter(mac: [1, 2, 3]).accepts(destination: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            "a MAC not of six bytes takes nothing")
    }

    @Test(
        "D7: an all-zero MAC takes any destination that starts with 00; D8: a 9000-byte frame arrives as its first 4096 bytes",
        arguments: [false, true])
    func zeroMACAndTruncation(inPlace: Bool) {
        #expect(NetLoopback.accepts(destination: [0x00, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE][...], mac: [0, 0, 0, 0, 0, 0]))
        #expect(!NetLoopback.accepts(destination: [0x02, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE][...], mac: [0, 0, 0, 0, 0, 0]))
        #expect(NetLoopback.accepts(destination: [0x01, 0, 0x5E, 0, 0, 1][...], mac: Self.mac), "multicast")
        // The compare stops where both hold 00: a foreign MAC that shares the bytes before a 00 passes.
        #expect(NetLoopback.accepts(destination: [0x02, 0, 0, 0, 0, 0x99][...], mac: [0x02, 0, 0, 0, 0, 0x01]))
        var (t, r) = Self.rings(inPlace: inPlace)
        let big = Self.frame(to: Self.mac, 1, length: 9000)
        t.m.bytes.replaceSubrange(0x4000..<0x4000 + 9000, with: big)
        t.descriptor(0, addr: 0x4000, len: 9000, flags: 0)
        t.post(0)
        r.descriptor(0, addr: 0xD000, len: 8192, flags: 2)
        r.post(0)
        var tx = t.ring(), rx = r.ring()
        let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.rxBytes == 4096 && Self.used(r, 0).len == 4096 && Array(t.m.bytes[0xD000..<0xD000 + 4096]) == Array(big.prefix(4096)))
    }

    @Test(
        "D9: an RX chain that takes no byte is an RX error and neither head completes; D10: a TX chain with a writable part is lost",
        arguments: [false, true])
    func errors(inPlace: Bool) {
        var (t, r) = Self.rings(inPlace: inPlace)
        Self.send(&t, 0, Self.frame(to: Self.mac, 1))
        Self.offer(&r, 0, length: 0)
        var tx = t.ring(), rx = r.ring()
        var run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.rxErrors == 1 && run.txCompleted == 0 && run.rxCompleted == 0)
        var (t2, r2) = Self.rings(inPlace: inPlace)
        Self.send(&t2, 0, Self.frame(to: Self.mac, 1), writable: true)
        Self.offer(&r2, 0)
        var tx2 = t2.ring(), rx2 = r2.ring()
        run = NetLoopback.run(tx: &tx2, rx: &rx2, t2.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.txErrors == 1 && run.txCompleted == 0 && run.rxChains == 0)
    }

    @Test("D4: a run stops at its budget and says more are waiting; the next run serves them", arguments: [false, true])
    func budget(inPlace: Bool) {
        var (t, r) = Self.rings(inPlace: inPlace)
        for k in 0..<12 { Self.send(&t, UInt16(k), Self.frame(to: Self.mac, UInt8(k))) }
        for k in 0..<12 { Self.offer(&r, UInt16(k)) }
        var tx = t.ring(), rx = r.ring()
        var runs: [Int] = []
        while true {
            let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 5)
            runs.append(run.rxCompleted)
            if !run.more { break }
        }
        #expect(runs == [5, 5, 2])
    }

    /// One drawn mix of TX chains and RX chains on fresh rings in `memory`, served by runs until one serves nothing:
    /// what the driver can see afterwards (both used rings, every RX buffer) and the runs' counters.
    static func drawnMix(seed: UInt64, inPlace: Bool) -> (seen: [UInt8], runs: [NetLoopback.Run]) {
        var state = seed | 1
        func draw(_ n: Int) -> Int {  // xorshift64
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return Int(state % UInt64(n))
        }
        var (t, r) = rings(inPlace: inPlace)
        if draw(3) == 0 {  // an unmapped stretch somewhere among the frames or the RX buffers: spans end there
            let start = UInt64([0x8000, 0xC000][draw(2)] + draw(0x1000))
            t.m.hole = start..<start + UInt64(1 + draw(0x300))
        }
        let destinations: [[UInt8]] = [mac, mac, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], [0x52, 0x54, 0x11, 0x12, 0x34, 0x99], [0, 0, 0, 0, 0, 0]]
        for k in 0..<UInt16(draw(9)) {
            let f = frame(to: destinations[draw(destinations.count)], UInt8(k), length: [20, 30, 64, 500][draw(4)])
            let at = 0x8000 + 0x200 * Int(k)
            t.m.bytes.replaceSubrange(at..<at + f.count, with: f)
            switch draw(8) {
            case 0:  // in two buffers
                let cut = 1 + draw(f.count - 1)
                t.descriptor(k, addr: UInt64(at), len: UInt32(cut), flags: 1, next: 8 + k)
                t.descriptor(8 + k, addr: UInt64(at + cut), len: UInt32(f.count - cut), flags: 0)
            case 1: t.descriptor(k, addr: UInt64(at), len: UInt32(f.count), flags: 2)  // writable: D10
            default: t.descriptor(k, addr: UInt64(at), len: UInt32(f.count), flags: 0)
            }
            t.post(k)
        }
        for k in 0..<UInt16(draw(9)) {
            let at = UInt64(0xC000 + 0x200 * Int(k))
            switch draw(8) {
            case 0:  // two buffers
                r.descriptor(k, addr: at, len: 40, flags: 1 | 2, next: 8 + k)
                r.descriptor(8 + k, addr: UInt64(0xE000 + 0x100 * Int(k)), len: 0x100, flags: 2)
            case 1: r.descriptor(k, addr: at, len: 40, flags: 2)  // shorter than most frames
            case 2: r.descriptor(k, addr: at, len: 0x200, flags: 0)  // readable: nothing can be written (D9)
            default: r.descriptor(k, addr: at, len: 0x200, flags: 2)
            }
            r.post(k)
        }
        var (tx, rx) = (t.ring(), r.ring())
        var runs: [NetLoopback.Run] = []
        let budget = 1 + draw(12)
        repeat {
            runs.append(NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: mac, version1: true, budget: budget))
        } while runs.last!.txChains > 0 && runs.count < 20
        var seen: [UInt8] = []
        for used in [Int(t.used), Int(r.used)] { seen += t.m.bytes[used..<used + 4 + 8 * 16] }
        seen += t.m.bytes[0xC000..<0xF000]
        return (seen, runs)
    }

    @Test("in place and through the memory, any drawn mix of frames and RX chains ends the same, run by run")
    func inPlaceAgreesWithTheGeneralWay() {
        for seed in 1...300 {
            let general = Self.drawnMix(seed: UInt64(seed) &* 0x9E37_79B9, inPlace: false)
            let inPlace = Self.drawnMix(seed: UInt64(seed) &* 0x9E37_79B9, inPlace: true)
            #expect(inPlace.runs == general.runs, "seed \(seed)")
            #expect(inPlace.seen == general.seen, "seed \(seed)")
        }
    }

    @Test("in place, a frame the chain cannot take in one place goes through the bounce page: RX in two buffers, RX over the frame")
    func inPlaceFallsBack() {
        var (t, r) = Self.rings(inPlace: true)
        let first = Self.frame(to: Self.mac, 1), second = Self.frame(to: Self.mac, 2, length: 600)
        Self.send(&t, 0, first)
        Self.send(&t, 1, second)
        // RX chain 0: two writable buffers of 40 bytes; RX chain 2: one buffer 16 bytes into the second frame itself.
        r.descriptor(0, addr: 0xC000, len: 40, flags: 1 | 2, next: 1)
        r.descriptor(1, addr: 0xD000, len: 40, flags: 2)
        r.post(0)
        r.descriptor(2, addr: 0x8200 + 16, len: 0x400, flags: 2)
        r.post(2)
        var tx = t.ring(), rx = r.ring()
        let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.rxCompleted == 2 && Self.used(r, 0) == (0, 64) && Self.used(r, 1) == (2, 600))
        #expect(Array(t.m.bytes[0xC000..<0xC000 + 40]) == Array(first[..<40]) && Array(t.m.bytes[0xD000..<0xD000 + 24]) == Array(first[40...]))
        // A copy onto itself would smear the frame; through the bounce page it lands whole.
        #expect(Array(t.m.bytes[0x8210..<0x8210 + 600]) == second)
    }

    @Test(
        "D25: a TX buffer outside the mappings is read as nothing — dropped, TX completed with length 0, the loop goes on; an RX one is an RX error",
        arguments: [false, true])
    func buffersOutsideTheMappings(inPlace: Bool) {
        var (t, r) = Self.rings(inPlace: inPlace)
        let (lost, mine) = (Self.frame(to: Self.mac, 1), Self.frame(to: Self.mac, 2))
        Self.send(&t, 0, lost)
        Self.send(&t, 1, mine)
        t.m.hole = 0x8000..<0x8200  // the first frame's buffer
        for k in 0..<2 { Self.offer(&r, UInt16(k)) }
        var tx = t.ring(), rx = r.ring()
        let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        // vdpa_sim completes it with vringh's negative length and may deliver a stale frame; vdpad reads no byte of it.
        #expect(run.txChains == 2 && run.txCompleted == 2 && run.rxCompleted == 1 && run.rxDrops == 1)
        #expect(Self.used(t, 0) == (0, 0) && Self.used(r, 0) == (0, 64) && Array(t.m.bytes[0xC000..<0xC000 + 64]) == mine)
        // The next RX buffer outside the mappings: nothing written (D9's path), neither head completed, the run ends.
        t.m.hole = 0xC200..<0xC400
        Self.send(&t, 2, Self.frame(to: Self.mac, 3))
        let next = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(next.rxErrors == 1 && next.rxCompleted == 0 && next.txCompleted == 0)
    }

    @Test("in place, RX buffers on either side of an unmapped stretch: each frame lands whole, a span found again at each crossing")
    func spansAcrossAHole() {
        var (t, r) = Self.rings(inPlace: true)
        t.m.hole = 0xA000..<0xA100  // the TX buffers (0x8000…) below it; RX buffers below it and above it in turn
        let frames = (0..<4).map { Self.frame(to: Self.mac, UInt8($0), length: 100) }
        for (k, f) in frames.enumerated() { Self.send(&t, UInt16(k), f) }
        for k in 0..<4 {
            r.descriptor(UInt16(k), addr: UInt64(k % 2 == 0 ? 0xC000 + 0x200 * k : 0x6000 + 0x200 * k), len: 0x200, flags: 2)
            r.post(UInt16(k))
        }
        var tx = t.ring(), rx = r.ring()
        let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.rxCompleted == 4 && run.txCompleted == 4 && run.rxErrors == 0)
        for k in 0..<4 {
            let at = k % 2 == 0 ? 0xC000 + 0x200 * k : 0x6000 + 0x200 * k
            #expect(Self.used(r, k) == (UInt32(k), 100) && Array(t.m.bytes[at..<at + 100]) == frames[k])
        }
        // One span for the TX buffers; the RX side's found again at each of its four buffers (the sides alternate).
        #expect(t.m.bufferSpans == 5 && t.m.bufferWindows == 0)
    }

    @Test("in place, a memory that gives windows but no spans: each frame's two buffers get a window each, every frame whole")
    func windowsWithoutSpans() {
        var (t, r) = Self.rings(inPlace: true)
        t.m.givesSpans = false
        let frames = (0..<3).map { Self.frame(to: Self.mac, UInt8($0)) }
        for (k, f) in frames.enumerated() {
            Self.send(&t, UInt16(k), f)
            Self.offer(&r, UInt16(k))
        }
        var tx = t.ring(), rx = r.ring()
        let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.rxCompleted == 3 && run.txCompleted == 3)
        for k in 0..<3 { #expect(Array(t.m.bytes[0xC000 + 0x200 * k..<0xC000 + 0x200 * k + 64]) == frames[k]) }
        #expect(t.m.bufferWindows == 6 && t.m.bufferSpans == 0)
    }

    @Test("in place, a frame too short for the MAC's 16-byte load goes through the bounce page and comes back intact")
    func inPlaceShortFrame() {
        var (t, r) = Self.rings(inPlace: true)
        let short = [UInt8](repeating: 0, count: 12) + Self.mac + [0x88, 0xB5]  // a header, a destination, two bytes
        Self.send(&t, 0, short)
        Self.offer(&r, 0)
        var tx = t.ring(), rx = r.ring()
        let run = NetLoopback.run(tx: &tx, rx: &rx, t.m, mac: Self.mac, version1: true, budget: 8)
        #expect(run.rxCompleted == 1 && Self.used(r, 0) == (0, 20) && Array(t.m.bytes[0xC000..<0xC000 + 20]) == short)
        #expect(t.m.bufferWindows + t.m.bufferSpans == 0)
    }
}
