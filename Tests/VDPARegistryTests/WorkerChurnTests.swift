// WorkerChurnTests.swift — the daemon's data-path worker while a VMM's
// control plane moves under it, as QEMU's does during a migration or a
// memory hot-plug: SUSPEND/RESUME, IOTLB updates elsewhere, a batched remap
// of the very region the frames are in, a second region shared and unshared.
// The frames a driver thread keeps posting must all come back, once, and a
// suspended device must not move.  Threads race here on purpose: the
// assertions hold for every interleaving (docs/kernel-rules.md D2; the run
// gate of docs/datapath.md), and ThreadSanitizer runs the same test
// (docs/testing.md).  Then, one move at a time: a ring's life from one
// enable to the next (R60, R62) as vdpa_sim and mlx5 keep it, what a kick
// runs (docs/datapath.md, "Kicks" and "A ring's life"), what DRIVER_OK
// gates (D3) and a control queue moved to ASID 1 while running (D27).
#if canImport(Glibc)
    import Glibc
#endif
import CVDPAShim
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

    /// Waits up to five seconds for `condition` on the device (the worker's record lands after its run).
    static func eventually(_ h: WorkerLoopbackHarness, _ condition: (VDPADevice) -> Bool) throws -> Bool {
        let slot = try h.registry.slot(named: "n0")
        for _ in 0..<5000 {
            if slot.read(condition) { return true }
            usleep(1000)
        }
        return false
    }

    /// The device stopped and started again as QEMU does it (vhost_vdpa's stop: SUSPEND, GET_VRING_BASE, guest RAM
    /// unmapped, reset; its start: features, rings with the bases read, RAM mapped, DRIVER_OK, enable, the call
    /// eventfds bound again — a reset dropped them, R69 — and a kick for what was posted meanwhile).
    static func stopAndStart(_ h: WorkerLoopbackHarness) throws {
        try h.start(bases: try h.stop())
        EventFDs.signal(h.kicks[1])
    }

    @Test(
        "R62 across a stop and start: a ring enabled again starts with last_used := last_avail, so a head lost before the stop (D9) is not completed into its slot afterwards"
    )
    func lostHeadAcrossStopAndStart() throws {
        let h = try WorkerLoopbackHarness(frameBytes: 64)
        #expect(h.round(frames: 3) == 3)
        // D9: an RX chain of one zero-length buffer is an RX error; neither it nor the TX frame is completed.
        h.arena.setDescriptor(0, 3, h.arena.buffer(0, 3), 0, flags: 2)
        h.arena.post(frames: 1)
        EventFDs.signal(h.kicks[1])
        #expect(try Self.eventually(h) { $0.queueStats[0].errors == 1 }, "the RX error was counted")
        #expect(h.arena.usedIndex(0) == 3 && h.arena.usedIndex(1) == 3, "neither head 3 completed")
        // The driver posts the next frame while the VMM stops the device; the VMM's start kicks.
        h.arena.post(frames: 1)
        try Self.stopAndStart(h)
        // vdpa_sim rebuilt both rings at the enable with last_used = last_avail = 4: the frame's used entries go into
        // slot 4 and the used idx jumps from 3 to 5; slot 3 is never written.
        #expect(
            try Self.eventually(h) { _ in h.arena.usedIndex(0) == 5 && h.arena.usedIndex(1) == 5 },
            "used idx rx \(h.arena.usedIndex(0)), tx \(h.arena.usedIndex(1))")
        #expect(h.arena.usedElement(0, 4) == (4, 76) && h.arena.usedElement(1, 4).0 == 4, "head 4 in slot 4")
        #expect(h.arena.usedElement(0, 3) == (0, 0) && h.arena.usedElement(1, 3) == (0, 0), "slot 3 never written")
    }

    /// A second RX ring at 1.5 MiB into the arena: one buffer (descriptor 0) posted in avail slot `slot`, the idx
    /// past it; `change` points the RX queue at it.
    static func secondReceiveRing(_ h: WorkerLoopbackHarness, postedAt slot: Int) -> (ring: UnsafeMutableRawPointer, change: VringChange) {
        let second = h.arena.base + 0x18_0000
        h.arena.file.setDescriptor(table: second, 0, h.arena.buffer(0, 200), 2048, flags: 2)
        (second + 4096 + 4 + 2 * slot).storeBytes(of: UInt16(0), as: UInt16.self)
        (second + 4096 + 2).storeBytes(of: UInt16(slot + 1), as: UInt16.self)
        let desc = h.arena.iova(second)
        return (second, VringChange(desc: desc, driver: desc + 4096, device: desc + 8192))
    }

    /// Runs `change` while the device is suspended (6.8 refuses ring addresses and bases while it runs, R59/R60).
    static func whileSuspended(_ h: WorkerLoopbackHarness, _ change: () throws -> Void) throws {
        try h.registry.suspend(device: "n0", by: h.vmm)
        try change()
        try h.registry.resume(device: "n0", by: h.vmm)
    }

    @Test("R60 on a ring in use: SET_VRING_BASE moves last_avail alone; the next completion goes where last_used points")
    func baseOnARingInUse() throws {
        let h = try WorkerLoopbackHarness(frameBytes: 64)
        #expect(h.round(frames: 3) == 3)
        // Three more frames posted (avail slots 3, 4, 5), then the base moved past two of them on both queues.
        h.arena.post(frames: 3)
        try Self.whileSuspended(h) {
            for q in 0..<2 { try h.registry.setVring(VirtqueueIndex(UInt64(q)), VringChange(base: 5), device: "n0", by: h.vmm) }
        }
        EventFDs.signal(h.kicks[1])
        // vdpa_sim serves slot 5 only (head 5) and completes it into used slot 3: the used idx moves 3 → 4.
        #expect(try Self.eventually(h) { d in d.vrings[0].base == 6 && d.vrings[1].base == 6 })
        #expect(try Self.eventually(h) { _ in h.arena.usedIndex(0) == 4 && h.arena.usedIndex(1) == 4 })
        #expect(h.arena.usedElement(0, 3) == (5, 76) && h.arena.usedElement(1, 3).0 == 5, "head 5 in used slot 3")
    }

    @Test("R62: a ring's new addresses wait for the next enable; until then the ring built at the last one is walked")
    func addressesWaitForTheNextEnable() throws {
        let h = try WorkerLoopbackHarness(frameBytes: 64)
        #expect(h.round(frames: 2) == 2)
        // A second RX ring, one buffer posted in it where the RX queue's last_avail will be once the five frames
        // below are in (7: an enable keeps last_avail, R62).
        let (second, moved) = Self.secondReceiveRing(h, postedAt: 7)
        try Self.whileSuspended(h) { try h.registry.setVring(0, moved, device: "n0", by: h.vmm) }
        // Without a disable and enable vdpa_sim goes on with the ring it built: the frames come back there.
        #expect(h.round(frames: 5) == 5)
        #expect((second + 8192 + 2).load(as: UInt16.self) == 0, "the second ring untouched")
        // Disabled and enabled again: the ring is built where the addresses say, and the next frame lands in it.
        try Self.whileSuspended(h) {
            try h.registry.setVring(0, VringChange(ready: false), device: "n0", by: h.vmm)
            try h.registry.setVring(0, VringChange(ready: true), device: "n0", by: h.vmm)
        }
        h.arena.post(1, h.arena.availTX % LoopbackArena.num, &h.arena.availTX)
        EventFDs.signal(h.kicks[1])
        #expect(try Self.eventually(h) { _ in (second + 8192 + 2).load(as: UInt16.self) == 8 }, "the frame came back in the second ring")
        #expect((second + 8192 + 4 + 8 * 7).load(as: (UInt32, UInt32).self) == (0, 76), "head 0 in used slot 7 (last_used := 7)")
        #expect(h.arena.usedIndex(0) == 7 && h.arena.usedIndex(1) == 8, "the first RX ring no more")
    }

    @Test(
        "§1, departed from: a kick runs its own queue (its pair), not every queue as vdpa_sim's one work item does: a frame waits for its TX or RX kick"
    )
    func aKickRunsItsOwnQueue() throws {
        let h = try WorkerLoopbackHarness(frameBytes: 64)
        #expect(h.round(frames: 1) == 1)
        let cvqKick = vdpad_eventfd(0, O_CLOEXEC)
        defer { close(cvqKick) }
        try h.bind(cvqKick) { (d: inout VDPADevice, fd) throws(VDPAError) in try d.setVringKick(2, fd) }
        try h.registry.setVring(2, VringChange(ready: true), device: "n0", by: h.vmm)
        // A frame posted, the control queue kicked: vdpa_sim would send it; vdpad waits for the pair's own kick.
        h.arena.post(frames: 1)
        EventFDs.signal(cvqKick)
        usleep(100_000)
        #expect(h.arena.usedIndex(0) == 1 && h.arena.usedIndex(1) == 1, "the frame waits")
        EventFDs.signal(h.kicks[0])  // an RX kick runs the pair, as the kernel's does
        #expect(try Self.eventually(h) { _ in h.arena.usedIndex(0) == 2 && h.arena.usedIndex(1) == 2 }, "the frame went out")
    }

    @Test("mlx5 modifies a ring in use at resume: a base sets both indexes, new addresses take effect with no enable")
    func mlx5ModifiesARingInUse() throws {
        let h = try WorkerLoopbackHarness(frameBytes: 64, mgmtdev: "mlx5_net")
        #expect(h.round(frames: 3) == 3)
        h.arena.post(frames: 3)
        try Self.whileSuspended(h) {
            for q in 0..<2 { try h.registry.setVring(VirtqueueIndex(UInt64(q)), VringChange(base: 5), device: "n0", by: h.vmm) }
        }
        EventFDs.signal(h.kicks[1])
        // mlx5_vdpa_set_vq_state set used = avail = 5: head 5 is completed into used slot 5, the used idx 3 → 6.
        #expect(try Self.eventually(h) { _ in h.arena.usedIndex(0) == 6 && h.arena.usedIndex(1) == 6 })
        #expect(h.arena.usedElement(0, 5) == (5, 76) && h.arena.usedElement(0, 3) == (0, 0), "head 5 in used slot 5")
        // The RX ring moved while suspended: at resume the queue is there, with no disable and enable.
        var (second, moved) = Self.secondReceiveRing(h, postedAt: 6)
        moved.base = 6
        try Self.whileSuspended(h) { try h.registry.setVring(0, moved, device: "n0", by: h.vmm) }
        h.arena.post(1, h.arena.availTX % LoopbackArena.num, &h.arena.availTX)
        EventFDs.signal(h.kicks[1])
        #expect(try Self.eventually(h) { _ in (second + 8192 + 2).load(as: UInt16.self) == 7 }, "the frame came back in the second ring")
        #expect(h.arena.usedIndex(0) == 6, "the first RX ring no more")
    }

    @Test("R62: vdpa_sim builds a ring from what is set at the enable — enabled before its addresses, it walks IOVA 0 until the next enable")
    func ringSetAfterItsEnable() throws {
        let h = try WorkerLoopbackHarness(frameBytes: 64)
        #expect(h.round(frames: 2) == 2)
        try h.restart(WorkerLoopbackHarness.Start(enableFirst: true))
        h.arena.post(frames: 1)
        EventFDs.signal(h.kicks[1])
        // The TX ring at IOVA 0 is in no mapping: each run loses nothing and counts a TX error; no frame moves.
        #expect(try Self.eventually(h) { d in d.queueStats[1].errors > 0 }, "a TX error for the ring at IOVA 0")
        #expect(h.arena.usedIndex(0) == 2 && h.arena.usedIndex(1) == 2)
        // Disabled and enabled again: the rings are built where the addresses now say, and the frame comes back.
        for ready in [false, true] {
            for q in 0..<2 { try h.registry.setVring(VirtqueueIndex(UInt64(q)), VringChange(ready: ready), device: "n0", by: h.vmm) }
        }
        EventFDs.signal(h.kicks[1])
        #expect(try Self.eventually(h) { _ in h.arena.usedIndex(0) == 3 && h.arena.usedIndex(1) == 3 }, "the frame came back")
    }

    @Test("mlx5 creates its queues at DRIVER_OK from what is set then: enabled before its (new) addresses, the ring works at once")
    func mlx5RingSetAfterItsEnable() throws {
        let h = try WorkerLoopbackHarness(frameBytes: 64, mgmtdev: "mlx5_net")
        #expect(h.round(frames: 2) == 2)
        // mlx5 keeps the addresses across the reset (R69): the RX ring moves to a second one after the enable.
        let (second, moved) = Self.secondReceiveRing(h, postedAt: 2)
        try h.restart(WorkerLoopbackHarness.Start(rx: moved, enableFirst: true))
        h.arena.post(frames: 1)
        EventFDs.signal(h.kicks[1])
        #expect(try Self.eventually(h) { _ in (second + 8192 + 2).load(as: UInt16.self) == 3 }, "the frame came back in the second ring")
        #expect(h.arena.usedIndex(0) == 2 && h.arena.usedIndex(1) == 3)
        #expect(try h.registry.slot(named: "n0").read { $0.queueStats[1].errors } == 0)
    }

    @Test("D3: buffers posted and kicked before DRIVER_OK wait; DRIVER_OK serves nothing by itself; the next kick does")
    func kickBeforeDriverOK() throws {
        let h = try WorkerLoopbackHarness(frameBytes: 64)
        #expect(h.round(frames: 2) == 2)
        try h.restart(WorkerLoopbackHarness.Start(driverOK: false))
        h.arena.post(frames: 1)
        EventFDs.signal(h.kicks[1])
        usleep(100_000)
        #expect(h.arena.usedIndex(0) == 2 && h.arena.usedIndex(1) == 2, "nothing served before DRIVER_OK")
        try h.registry.changeStatus("n0", by: h.vmm) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(0xF) }
        usleep(100_000)
        #expect(h.arena.usedIndex(0) == 2 && h.arena.usedIndex(1) == 2, "DRIVER_OK is no kick")
        EventFDs.signal(h.kicks[1])
        #expect(try Self.eventually(h) { _ in h.arena.usedIndex(0) == 3 && h.arena.usedIndex(1) == 3 }, "the next kick serves it")
    }

    @Test("D27: SET_GROUP_ASID(1, 1) while running: the CVQ's rings are looked up in ASID 1 from its next run; the pair stays in ASID 0")
    func controlQueueMovesToASID1() throws {
        let h = try WorkerLoopbackHarness(frameBytes: 64)
        // The control ring (4 entries) at 32 KiB in the arena, its commands and acks at 1.75 MiB.
        let (cvq, commands) = (h.arena.base + 0x8000, h.arena.base + 0x1C_0000)
        let ring = VringChange(num: 4, desc: h.arena.iova(cvq), driver: h.arena.iova(cvq + 4096), device: h.arena.iova(cvq + 8192))
        let features = VirtioFeatures.mask("CTRL_VQ", "CTRL_MAC_ADDR", class: .net)
        try h.restart(WorkerLoopbackHarness.Start(features: features, control: ring))
        let kick = vdpad_eventfd(0, O_CLOEXEC)
        defer { close(kick) }
        try h.bind(kick) { (d: inout VDPADevice, fd) throws(VDPAError) in try d.setVringKick(2, fd) }
        /// Command k: MAC_ADDR_SET `mac` (8 readable bytes) and its ack byte, descriptors 2k and 2k+1, avail entry k.
        func send(_ mac: [UInt8], _ k: Int) {
            let command = commands + 16 * k
            for (j, byte) in ([1, 1] + mac).enumerated() { command.storeBytes(of: byte, toByteOffset: j, as: UInt8.self) }
            h.arena.file.setDescriptor(table: cvq, 2 * k, command, 8, flags: 1, next: 2 * k + 1)
            h.arena.file.setDescriptor(table: cvq, 2 * k + 1, commands + 0x100 + k, 1, flags: 2)
            (cvq + 4096 + 4 + 2 * k).storeBytes(of: UInt16(2 * k), as: UInt16.self)
            (cvq + 4096 + 2).storeBytes(of: UInt16(k + 1), as: UInt16.self)
            EventFDs.signal(kick)
        }
        let (first, second): ([UInt8], [UInt8]) = ([0x02, 0, 0, 0, 0, 0x51], [0x02, 0, 0, 0, 0, 0x52])
        let usedIndex = { (cvq + 8192 + 2).load(as: UInt16.self) }
        send(first, 0)
        #expect(try Self.eventually(h) { d in Array(d.configMAC) == first } && usedIndex() == 1, "served through ASID 0")
        // ASID 1 made a table that maps the arena elsewhere, then the CVQ's group bound to it with DRIVER_OK set.
        let arena = (size: UInt64(LoopbackArena.bytes), address: h.arena.file.address)
        let elsewhere = MapRequest(asid: 1, iova: 0x8000_0000, size: arena.size, address: arena.address, permission: .name("rw"))
        try h.registry.map(elsewhere, device: "n0", by: h.vmm)
        try h.registry.setGroupASID(group: 1, asid: 1, device: "n0", by: h.vmm)
        send(second, 1)
        usleep(100_000)
        #expect(try h.registry.slot(named: "n0").read { Array($0.configMAC) } == first && usedIndex() == 1, "its rings are not in ASID 1")
        // The pair's group is still in ASID 0: mapped in ASID 1 or not, the frames flow.
        #expect(h.round(frames: 2) == 2)
        let same = MapRequest(asid: 1, iova: HarnessFile.iova, size: arena.size, address: arena.address, permission: .name("rw"))
        try h.registry.map(same, device: "n0", by: h.vmm)
        EventFDs.signal(kick)
        #expect(try Self.eventually(h) { d in Array(d.configMAC) == second } && usedIndex() == 2, "served through ASID 1")
    }
}
