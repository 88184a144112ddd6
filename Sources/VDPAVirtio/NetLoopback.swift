// NetLoopback.swift — vdpa_sim_net's data queues: every frame the driver
// sends on a TX queue comes back on the RX queue of the same pair when its
// destination passes the receive filter (the device's MAC, broadcast or
// multicast), as vdpasim_net_work does it (docs/datapath.md;
// docs/kernel-rules.md D4–D10).  No I/O of its own: the rings and buffers
// are reached through `GuestMemory` and the places in it the memory gives
// (guarded by CVDPAShim), so a run is tested on rings in the test's own
// memory, both ways.
import CVDPAShim

public enum NetLoopback {
    /// vdpa_sim pulls at most a page of a frame into its bounce buffer: a longer frame is truncated (D8).
    public static let maxFrame = 4096

    /// vdpa_sim's bounce buffer: a page a frame is pulled into, then pushed out of.  A caller that runs a pair
    /// over and over keeps one (a worker, for its life) instead of allocating a page per run.
    public final class Bounce {
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: maxFrame, alignment: 16)
        public init() {}
        deinit { bytes.deallocate() }
    }

    /// The counters of one run, per direction, as vdpa_sim_net's stats name them.
    public struct Run: Equatable, Sendable {
        public var txChains = 0, txCompleted = 0, txBytes = 0, txErrors = 0
        public var rxChains = 0, rxCompleted = 0, rxBytes = 0, rxErrors = 0, rxDrops = 0, rxOverruns = 0
        /// Interrupts owed on each queue.
        public var txCalls = 0, rxCalls = 0
        /// Runs that stopped with frames waiting because the RX ring had no buffer (vdpa_sim would drop one: D5).
        public var rxWaits = 0
        /// The run stopped at its budget with frames left.
        public var more = false
        public init() {}
    }

    /// The virtio-net header's length: `virtio_net_hdr_v1` under VERSION_1, else the legacy header.
    public static func headerLength(version1: Bool) -> Int { version1 ? 12 : 10 }

    /// vdpa_sim's receive filter on the destination MAC: broadcast and multicast pass; unicast passes when it "matches"
    /// `mac` with a string-like compare that stops at the first position both hold 00 (D7).
    public static func accepts(destination d: some Collection<UInt8>, mac: [UInt8]) -> Bool {
        ReceiveFilter(mac: mac).accepts(destination: d)
    }

    /// The receive filter (`accepts`) made for one MAC: the string-like compare looks at the bytes up to and including
    /// the MAC's first 00, or all six, so it is a mask and one compare of the destination's bytes as an integer.  A
    /// run makes one; a frame's test is then a few instructions, not a walk of two arrays.
    public struct ReceiveFilter: Sendable {
        /// The MAC's six bytes, the first in the lowest; the bytes the compare looks at; whether the MAC has six.
        let mac: UInt64, mask: UInt64, valid: Bool

        public init(mac: [UInt8]) {
            valid = mac.count == 6
            var (bits, mask) = (UInt64(0), UInt64(0))
            for (k, b) in mac.prefix(6).enumerated() {
                bits |= UInt64(b) << (8 * UInt64(k))
                mask |= 0xFF << (8 * UInt64(k))
                if b == 0 { break }  // the compare stops here when the destination holds 00 too
            }
            (self.mac, self.mask) = (bits, mask)
        }

        /// `destination`: the frame's first six bytes, the first in the lowest (the two above them are not looked at).
        @inline(__always)
        public func accepts(_ destination: UInt64) -> Bool {
            guard valid else { return false }
            return destination & 1 != 0 || (destination ^ mac) & mask == 0  // the group bit: broadcast, multicast
        }

        public func accepts(destination d: some Collection<UInt8>) -> Bool {
            guard d.count == 6 else { return false }
            var bits: UInt64 = 0
            for (k, b) in d.enumerated() { bits |= UInt64(b) << (8 * UInt64(k)) }
            return accepts(bits)
        }
    }

    /// One run: up to `budget` TX chains, each answered as vdpasim_net_work answers it, but for one departure:
    /// a frame never waits in a bounce buffer for an RX buffer that is not there to be lost (D5).  The run
    /// looks at the RX ring before it takes a TX chain and stops, leaving the frame in the TX ring, when the
    /// RX ring is empty (counted in `rxWaits`); the RX kick that brings buffers runs the pair again.  An RX ring
    /// whose avail idx cannot be read holds the frames the same way, and counts an RX error each run.
    ///
    /// `mergeable` (MRG_RXBUF negotiated, which mlx5_net offers and vdpa_sim never does): the RX header's
    /// num_buffers is set to 1, the count of buffers the frame took, as the spec requires of the device — a
    /// guest that reads 0 there counts the frame as broken and drops it.  Without it the header goes unchanged.
    ///
    /// The interrupts owed on each queue are gated by the driver's NO_INTERRUPT flag, read once at the run's end
    /// (`SplitRing.interruptsSuppressed`).
    public static func run(
        tx: inout SplitRing, rx: inout SplitRing, _ memory: some GuestMemory, mac: [UInt8], version1: Bool, budget: Int,
        mergeable: Bool = false, bounce: Bounce = Bounce()
    ) -> Run {
        tx.attach(memory)
        rx.attach(memory)
        var run = loop(tx: &tx, rx: &rx, memory, mac: mac, version1: version1, budget: budget, mergeable: mergeable, bounce: bounce.bytes)
        // RX's completions are published before TX's, as each frame's are made (restart: a frame twice, never lost).
        run.rxCompleted -= rx.detach(memory)
        run.txCompleted -= tx.detach(memory)
        if run.txCalls > 0 && tx.interruptsSuppressed(memory) { run.txCalls = 0 }
        if run.rxCalls > 0 && rx.interruptsSuppressed(memory) { run.rxCalls = 0 }
        return run
    }

    /// A TX chain's frame where the driver wrote it: its one readable buffer (at most a page of it, D8), when the
    /// memory has all of it in place, and the frame's destination MAC, read there with one guarded 16-byte load
    /// (the first six of those bytes).  Nil sends the frame through the bounce page: more than one buffer, none in
    /// place, a frame too short for the load, or a load that faults (the bounce page's pull then finds out how much
    /// of it can be read).  A frame copied once, not twice: the bounce page is vdpa_sim's, and nothing a driver sees
    /// tells the two apart but a driver that changes a frame it has posted, which the virtio spec forbids.
    @inline(__always)
    static func frameInPlace(
        _ readable: inout RingBuffers, _ memory: some GuestMemory, header: Int
    ) -> (frame: UnsafeRawBufferPointer, destination: (UInt64, UInt64))? {
        guard readable.count == 1 else { return nil }
        return frameInPlace(readable[0], memory, header: header)
    }

    /// `frameInPlace` of a chain's one readable buffer `b`.
    @inline(__always)
    static func frameInPlace(
        _ b: RingBuffer, _ memory: some GuestMemory, header: Int
    ) -> (frame: UnsafeRawBufferPointer, destination: (UInt64, UInt64))? {
        guard let length = inPlaceLength(b, header: header), let p = memory.bufferWindow(b.iova, bytes: length, writable: false)
        else { return nil }
        return frame(at: p, length: length, header: header)
    }

    /// How much of `b` a frame in place is (at most a page, D8); nil when that is too short for the MAC's 16-byte load.
    @inline(__always)
    static func inPlaceLength(_ b: RingBuffer, header: Int) -> Int? {
        let length = min(Int(b.length), maxFrame)
        return length >= header + 16 ? length : nil
    }

    /// The frame of `length` bytes at `p`, and its destination read with one guarded 16-byte load (nil: it faults).
    @inline(__always)
    static func frame(
        at p: UnsafeMutableRawPointer, length: Int, header: Int
    ) -> (frame: UnsafeRawBufferPointer, destination: (UInt64, UInt64))? {
        var destination: (UInt64, UInt64) = (0, 0)
        guard withUnsafeMutableBytes(of: &destination, { vdpad_guarded_load_16_bytes(p + header, $0.baseAddress) }) == 0 else { return nil }
        return (UnsafeRawBufferPointer(start: p, count: length), destination)
    }

    /// Copies a frame in place straight into an RX chain of one writable buffer in place, as much as it holds: one
    /// guarded copy.  Nil (nothing written) when the chain is longer, its buffer is not in place, it overlaps the
    /// frame (a copy onto itself would show the driver a smeared frame where the bounce page gives a clean one), or
    /// the copy faults: the caller then goes through the bounce page, which tells how far each side can be reached.
    @inline(__always)
    static func deliverInPlace(_ frame: UnsafeRawBufferPointer, into writable: inout RingBuffers, _ memory: some GuestMemory) -> Int? {
        guard writable.count == 1 else { return nil }
        return deliverInPlace(frame, into: writable[0], memory)
    }

    /// `deliverInPlace` into a chain's one writable buffer `b`.
    @inline(__always)
    static func deliverInPlace(_ frame: UnsafeRawBufferPointer, into b: RingBuffer, _ memory: some GuestMemory) -> Int? {
        let n = min(frame.count, Int(b.length))
        guard n > 0, let p = memory.bufferWindow(b.iova, bytes: n, writable: true), copy(frame, to: p, n) else { return nil }
        memory.countWindowAccesses(2, indexStores: 0)  // the frame read and written: two accesses, as pull and push are
        return n
    }

    /// The first `n` bytes of `frame` copied to `p` in one guarded copy; false (nothing written) when the two overlap
    /// or the copy faults.
    @inline(__always)
    static func copy(_ frame: UnsafeRawBufferPointer, to p: UnsafeMutableRawPointer, _ n: Int) -> Bool {
        guard let source = frame.baseAddress else { return false }
        guard UnsafeRawPointer(p) >= source + frame.count || UnsafeRawPointer(p) + n <= source else { return false }
        return vdpad_guarded_copy(p, source, n) == 0
    }

    /// Where [iova, iova + bytes) is in place for a loop of frames that keeps `span`, the span it was last found in (one
    /// for reading, one for writing): an offset while the frames stay in one mapping, as a run's nearly always do; a
    /// new span when one leaves it; a window of its own where the memory gives no span.
    @inline(__always)
    static func place(
        _ iova: UInt64, bytes: Int, writable: Bool, _ memory: some GuestMemory, span: inout BufferSpan?
    ) -> UnsafeMutableRawPointer? {
        if let p = span?.window(iova, bytes: bytes) { return p }
        if let s = memory.bufferSpan(iova, writable: writable), let p = s.window(iova, bytes: bytes) {
            span = s
            return p
        }
        return memory.bufferWindow(iova, bytes: bytes, writable: writable)
    }

    /// A chain's readable bytes pulled into the bounce page, at most a page of them (D8), as vdpa_sim pulls a frame.
    @inline(__always)
    private static func pull(
        _ readable: inout RingBuffers, _ memory: some GuestMemory, into bounce: UnsafeMutableRawBufferPointer
    ) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bounce[..<SplitRing.gather(&readable, memory, skipping: 0, into: bounce)])
    }

    /// Common frames served back to back without fetching a chain, up to `budget` of them: a TX chain of one readable
    /// buffer and an RX chain of one writable buffer, both rings and both buffers in place, a frame the filter takes,
    /// copied in one guarded copy (as `frameInPlace` and `deliverInPlace` find and copy it).  Both chains are peeked,
    /// and taken only once the frame is in the RX buffer (`SplitRing.peekSingle`); the first frame that is not common
    /// leaves both rings as they were, and that frame to the general way, which serves it — or drops, refuses or
    /// waits — as vdpasim_net_work does.
    /// Returns how many TX chains it took.  The same work as the general way's for these frames, without its chain
    /// lists and calls, with the run's counters kept in locals until the last (a store and an overflow check per
    /// counter and frame were a tenth of a frame's instructions), and each buffer's place an offset into the span
    /// its mapping was last found in (`place`), not a lookup of its own.
    private static func serveInPlace(
        tx: inout SplitRing, rx: inout SplitRing, _ memory: some GuestMemory, filter: ReceiveFilter, header: Int, budget: Int,
        run: inout Run
    ) -> Int {
        // Frames looped and dropped; bytes sent and received; completions whose element store faulted.
        var (looped, dropped, sent, received, txLost, rxLost) = (0, 0, 0, 0, 0, 0)
        // Where the TX and the RX buffers were last found (`place`).
        var (readSpan, writeSpan): (BufferSpan?, BufferSpan?) = (nil, nil)
        while looped &+ dropped < budget {
            guard let t = tx.peekSingle(), !t.writable, let r = rx.peekSingle(), r.writable,
                let length = inPlaceLength(t.buffer, header: header),
                let p = place(t.buffer.iova, bytes: length, writable: false, memory, span: &readSpan),
                let inPlace = frame(at: p, length: length, header: header)
            else { break }
            guard filter.accepts(UInt64(littleEndian: inPlace.destination.0)) else {
                tx.takePeeked()
                (dropped, sent) = (dropped &+ 1, sent &+ inPlace.frame.count)
                if (try? tx.complete(t.head, length: 0, memory)) == nil { txLost &+= 1 }  // the filter's drop (D6)
                continue
            }
            // As much of the frame as the RX buffer holds, or nothing: the general way finds how far each side reaches.
            let written = min(inPlace.frame.count, Int(r.buffer.length))
            guard written > 0, let q = place(r.buffer.iova, bytes: written, writable: true, memory, span: &writeSpan),
                copy(inPlace.frame, to: q, written)
            else { break }
            tx.takePeeked()
            rx.takePeeked()
            (looped, sent, received) = (looped &+ 1, sent &+ inPlace.frame.count, received &+ written)
            // RX completes first, as in `delivered`.
            if (try? rx.complete(r.head, length: UInt32(written), memory)) == nil { rxLost &+= 1 }
            if (try? tx.complete(t.head, length: 0, memory)) == nil { txLost &+= 1 }
        }
        let taken = looped + dropped
        guard taken > 0 else { return 0 }
        memory.countWindowAccesses(2 * looped, indexStores: 0)  // each frame read and written: two, as pull and push
        run.txChains += taken
        run.txBytes += sent
        run.txCompleted += taken - txLost
        run.txCalls += taken
        run.rxDrops += dropped
        run.rxChains += looped
        run.rxBytes += received
        run.rxCompleted += looped - rxLost
        run.rxCalls += looped
        return taken
    }

    /// The filter's drop: TX completes with length 0 and the loop goes on (D6).
    @inline(__always)
    private static func drop(_ txHead: UInt16, tx: inout SplitRing, _ memory: some GuestMemory, run: inout Run) {
        run.rxDrops += 1
        if (try? tx.complete(txHead, length: 0, memory)) != nil { run.txCompleted += 1 }
        run.txCalls += 1
    }

    /// A frame `written` into the RX chain `rxHead`: both chains complete, RX first (vdpa_sim completes TX first;
    /// nothing a driver sees tells the two apart within a run): a daemon killed between the two then serves the TX
    /// chain again at restart and the frame arrives twice, which a driver takes as a NIC's duplicate, instead of
    /// never (docs/restart.md).
    @inline(__always)
    private static func delivered(
        rx rxHead: UInt16, _ written: Int, tx txHead: UInt16, rx: inout SplitRing, tx: inout SplitRing, _ memory: some GuestMemory,
        run: inout Run
    ) {
        run.rxBytes += written
        if (try? rx.complete(rxHead, length: UInt32(written), memory)) != nil { run.rxCompleted += 1 }
        if (try? tx.complete(txHead, length: 0, memory)) != nil { run.txCompleted += 1 }
        run.txCalls += 1
        run.rxCalls += 1
    }

    /// `run` between the rings' attach and detach, before the interrupts are gated.
    private static func loop(
        tx: inout SplitRing, rx: inout SplitRing, _ memory: some GuestMemory, mac: [UInt8], version1: Bool, budget: Int,
        mergeable: Bool, bounce: UnsafeMutableRawBufferPointer
    ) -> Run {
        var run = Run()
        let header = headerLength(version1: version1)
        let filter = ReceiveFilter(mac: mac)
        // One chain per direction for the whole run, refilled by each fetch (no buffer lists made per frame), and
        // one bounce buffer (vdpa_sim's page), not an array per frame.
        var txChain = RingChain(head: 0), rxChain = RingChain(head: 0)
        // The header is rewritten (MRG_RXBUF's num_buffers) only in the bounce page: no frame is served in place then.
        let fast = !(mergeable && version1)
        var left = budget
        while left > 0 {
            if fast {
                left -= serveInPlace(tx: &tx, rx: &rx, memory, filter: filter, header: header, budget: left, run: &run)
                if left == 0 { break }
            }
            left -= 1  // the general way's chain
            if (try? tx.hasWork(memory)) == true {
                let buffers: Bool
                do throws(RingError) {
                    buffers = try rx.hasWork(memory)
                } catch {
                    // An RX avail idx that cannot be read (vdpa_sim: an RX overrun per frame, each lost): the frames
                    // wait as for an empty RX ring, and the run counts an RX error, so a VMM sees why.
                    run.rxErrors += 1
                    return run
                }
                guard buffers else {
                    run.rxWaits += 1  // frames wait in the TX ring for RX buffers; the RX kick resumes the pair
                    return run
                }
            }
            do throws(RingError) {
                guard try tx.fetch(memory, into: &txChain) else { return run }
            } catch {
                run.txErrors += 1  // vringh refused the chain: the head is lost, the run ends
                return run
            }
            run.txChains += 1
            let txHead = txChain.head
            guard txChain.writable.isEmpty else {
                run.txErrors += 1  // a TX chain with a writable part (EPROTO, D10): lost, the run ends
                return run
            }
            // The frame where it is when its one buffer is in place (no header to rewrite: that is done in the
            // bounce page, never in the driver's TX buffer); else pulled into the bounce page, as vdpa_sim does.
            let inPlace = mergeable && version1 ? nil : Self.frameInPlace(&txChain.readable, memory, header: header)
            var frame: UnsafeRawBufferPointer
            let accepted: Bool
            if let inPlace {
                frame = inPlace.frame
                accepted = filter.accepts(UInt64(littleEndian: inPlace.destination.0))
            } else {
                frame = Self.pull(&txChain.readable, memory, into: bounce)
                accepted = frame.count >= header + 6 && filter.accepts(destination: frame[header..<header + 6])
            }
            run.txBytes += frame.count
            guard accepted else {
                drop(txHead, tx: &tx, memory, run: &run)
                continue
            }
            guard (try? rx.fetch(memory, into: &rxChain)) == true else {
                run.rxOverruns += 1  // an RX ring that refuses its chain: the frame is lost, TX completes, the run ends
                if (try? tx.complete(txHead, length: 0, memory)) != nil { run.txCompleted += 1 }
                run.txCalls += 1
                return run
            }
            run.rxChains += 1
            let rxHead = rxChain.head
            var written = 0
            if rxChain.readable.isEmpty {
                if inPlace != nil, let n = Self.deliverInPlace(frame, into: &rxChain.writable, memory) {
                    written = n
                } else {
                    if inPlace != nil {  // the RX side is not one buffer in place: through the bounce page after all
                        frame = Self.pull(&txChain.readable, memory, into: bounce)
                    }
                    // num_buffers, LE; the frame is in the bounce page and holds the header (it passed the filter).
                    if mergeable && version1 { (bounce[10], bounce[11]) = (1, 0) }
                    written = SplitRing.scatter(frame, into: &rxChain.writable, memory)
                }
            }
            guard written > 0 else {
                run.rxErrors += 1  // nothing written (D9): neither head is completed, the run ends
                return run
            }
            delivered(rx: rxHead, written, tx: txHead, rx: &rx, tx: &tx, memory, run: &run)
        }
        run.more = (try? tx.hasWork(memory)) ?? false
        return run
    }
}
