// WorkerChurnTests.swift — the daemon's data-path worker while a VMM's
// control plane moves under it, as QEMU's does during a migration or a
// memory hot-plug: SUSPEND/RESUME, IOTLB updates elsewhere, a batched remap
// of the very region the frames are in, a second region shared and unshared.
// The frames a driver thread keeps posting must all come back, once, and a
// suspended device must not move.  Threads race here on purpose: the
// assertions hold for every interleaving (docs/kernel-rules.md D2; the run
// gate of docs/datapath.md), and ThreadSanitizer runs the same test
// (docs/testing.md).
#if canImport(Glibc)
    import Glibc
#endif
import Foundation
import Testing
import VDPACore
@testable import VDPADataPath
@testable import VDPARegistry
import _VDPATestSupport

@Suite("The data-path worker under a moving control plane")
struct WorkerChurnTests {
    /// What the driver can see of the pair, and what GET_VRING_BASE answers: equal before and after a pause while
    /// the device is suspended.
    struct Frozen: Equatable {
        var rxUsed: UInt16, txUsed: UInt16, rxBase: UInt16, txBase: UInt16
    }

    static func frozen(_ h: WorkerLoopbackHarness) throws -> Frozen {
        let base = { (q: UInt64) throws -> UInt16 in try h.registry.vring(VirtqueueIndex(q), device: "n0", by: h.vmm).base }
        return Frozen(rxUsed: h.arena.usedIndex(0), txUsed: h.arena.usedIndex(1), rxBase: try base(0), txBase: try base(1))
    }

    /// One round of the control plane's moves; `k` picks where the unrelated mapping goes.
    static func churn(_ h: WorkerLoopbackHarness, _ k: Int, spare: Memfd) throws -> Frozen? {
        // SUSPEND returns after the run in flight: from then on nothing the driver or GET_VRING_BASE sees moves, even
        // while the driver goes on kicking (its kicks are served at RESUME, D2).
        try h.registry.suspend(device: "n0", by: h.vmm)
        let before = try frozen(h)
        usleep(500)
        let after = try frozen(h)
        try h.registry.resume(device: "n0", by: h.vmm)
        // An IOTLB update that has nothing to do with the frames.
        let iova = 0x1000_0000 + UInt64(k % 16) * 0x1000
        try h.registry.map(MapRequest(iova: iova, size: 4096, address: h.arena.file.address, permission: .name("ro")), device: "n0", by: h.vmm)
        _ = try h.registry.unmap(UnmapRequest(iova: iova, size: 4096), device: "n0", by: h.vmm)
        // The frames' own region unmapped and mapped again in one batch, as QEMU's memory listener commits: the data
        // path sees the batch at its end, all at once, so no run meets the hole in between.
        let size = UInt64(LoopbackArena.bytes)
        try h.registry.batchBegin(asid: 0, device: "n0", by: h.vmm)
        _ = try h.registry.unmap(UnmapRequest(iova: HarnessFile.iova, size: size), device: "n0", by: h.vmm)
        let whole = MapRequest(iova: HarnessFile.iova, size: size, address: h.arena.file.address, permission: .name("rw"))
        try h.registry.map(whole, device: "n0", by: h.vmm)
        try h.registry.batchEnd(asid: 0, device: "n0", by: h.vmm)
        // Another region shared and unshared: the region table changes under a run's view of it.
        _ = try h.registry.shareMemory(spare.passed(), address: spare.address, size: UInt64(spare.size), offset: 0, device: "n0", by: h.vmm)
        _ = try h.registry.unshareMemory(address: spare.address, size: UInt64(spare.size), device: "n0", by: h.vmm)
        return before == after ? nil : before
    }

    @Test(
        "frames flow while the VMM suspends, resumes, maps elsewhere, remaps their region in a batch and shares another: every frame comes back once, and a suspended pair does not move"
    )
    func framesUnderChurn() throws {
        // Shared by the driver (this thread) and the control plane on purpose: the registry locks what it holds,
        // and the arena is the memory a VMM and the device share.
        nonisolated(unsafe) let h = try WorkerLoopbackHarness(frameBytes: 64)
        nonisolated(unsafe) let spare = Memfd(pages: 4)
        defer { spare.release() }
        let stop = Locked(false)
        let problems = Locked<[String]>([])
        let churned = Locked(0)
        let done = DispatchSemaphore(value: 0)
        let control = Thread {
            var k = 0
            while !stop.withLock({ $0 }) {
                do {
                    if let moved = try Self.churn(h, k, spare: spare) {
                        problems.withLock { $0.append("round \(k): the pair moved while suspended, from \(moved)") }
                    }
                } catch {
                    problems.withLock { $0.append("round \(k): \(error)") }
                }
                k += 1
                churned.withLock { $0 = k }
            }
            done.signal()
        }
        control.start()
        // Frames flow until the control plane has gone round 200 times (each round well under a millisecond but for
        // its pause and share_memory's look at /proc/self/maps; a round of frames takes tens of microseconds).
        var (posted, round) = (0, 0)
        while churned.withLock({ $0 }) < 200 && round < 1_000_000 {
            let frames = [64, 1, 33, 7][round % 4]
            let back = h.round(frames: frames)
            #expect(back == frames, "round \(round): \(back) of \(frames) frames came back")
            guard back == frames else { break }
            (posted, round) = (posted + frames, round + 1)
        }
        stop.withLock { $0 = true }
        done.wait()
        #expect(problems.withLock { $0 }.isEmpty, "\(problems.withLock { $0 }.prefix(5))")
        #expect(churned.withLock { $0 } >= 200 && round > 200, "the control plane moved while the frames flowed")
        // Once each: the used rings and the queues' counters say exactly what the driver posted.
        let expected = UInt16(truncatingIfNeeded: posted)
        #expect(h.arena.usedIndex(0) == expected && h.arena.usedIndex(1) == expected)
        let stats = try h.registry.slot(named: "n0").read { $0.queueStats }
        #expect(stats[0].receivedDesc == posted && stats[0].completedDesc == posted, "rx: \(stats[0])")
        #expect(stats[1].receivedDesc == posted && stats[1].completedDesc == posted, "tx: \(stats[1])")
        #expect(stats[0].errors == 0 && stats[0].drops == 0 && stats[1].errors == 0)
    }
}
