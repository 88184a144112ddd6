// DataPathWorker.swift — the data path of one device: a worker thread that
// serves each queue as its parent says (the net control queue, net rx/tx
// pairs, a block request queue) the way vdpa_sim does (docs/datapath.md;
// docs/kernel-rules.md D1–D27).  A vq's kick eventfd wakes the worker —
// never a connection's reader thread — and the worker walks the ring in the
// owner's memory through the IOTLB of the ASID the vq's group (and, where
// the parent has one, its descriptor group) is bound to (OwnerMemory: in
// the regions the owner shared, else with process_vm_readv/writev), never
// holding the device's lock across those copies.
import CVDPAShim
import SystemPackage
import UnixSocket
import VDPACore
import VDPARegistry
import VDPAVirtio
#if canImport(Glibc)
    import Glibc
#endif

/// One device's data-path thread: poll(2) on the kick eventfds and a wake-up eventfd (a device has a
/// handful of vqs, so poll's linear scan is nothing; epoll is not in Swift's Glibc module).
final class DataPathWorker: DeviceWorker, @unchecked Sendable {
    private weak var slot: DeviceSlot?
    private let wake: Int32
    // Only the worker thread touches the `var`s below (the class is shared with the slot for `notify` and `stop`,
    // which touch `state` and `wake` only): `@exclusivity(unchecked)` spares them the run-time exclusivity check a
    // class's stored property pays at each access, several per run.

    /// The kick eventfds watched (the worker's dups) and their vqs.
    @exclusivity(unchecked) private var watched: [(fd: Int32, vq: Int)] = []
    /// What poll(2) watches: the wake-up eventfd first, then `watched`'s in its order (made again at each rescan).
    @exclusivity(unchecked) private var polled: [pollfd] = []
    /// The vqs `watched` names, as a set.
    @exclusivity(unchecked) private var watchedQueues = QueueSet()
    /// Each vq's ring as its last run left it, by vq (a handful: an array, looked up with no hashing per run).
    @exclusivity(unchecked) private var rings: [CachedRing?] = []
    @exclusivity(unchecked) private var pendingWhileSuspended = false
    @exclusivity(unchecked) private var requeued = QueueSet()
    /// After a daemon restart: vqs whose first run starts at the used index the ring holds (what the used index
    /// says is done is done; a chain fetched and not completed is served again), not at the journaled base.
    @exclusivity(unchecked) private var resync = QueueSet()
    /// The owner's memory as each run sees it, bound at the run's snapshot and unbound at its end: one for the
    /// worker's life, so that a run allocates nothing to reach the memory.
    private let memory: OwnerMemory
    /// The device's MAC as the last net run read it from the config space (an array made only when it changes).
    @exclusivity(unchecked) private var mac: [UInt8] = []
    /// The net loopback's bounce page, the worker's for its life (vdpa_sim's is its device's).
    private let bounce = NetLoopback.Bounce()
    private let state = Locked(State())

    struct State { var stopping = false; var rescan = false; var replay = false }

    /// A vq's ring as the last run left it, kept while the vq is not enabled again (`VDPADevice.enabledRings`) —
    /// and, on a parent that modifies a ring in use (mlx5), while its size, addresses and base stay as they were.
    private struct CachedRing {
        struct Key: Equatable { var num: UInt32, desc: UInt64, driver: UInt64, device: UInt64 }
        var generation: UInt32
        var key: Key
        var ring: SplitRing
    }
    /// `ParentDriver.modifiesRingInUse`, read once by the worker thread (`init` runs under the device's lock).
    @exclusivity(unchecked) private var modifiesRingInUse = false

    /// Feature bits a run tests, looked up by name once, not per run.
    private static let netVersion1 = VirtioFeatures.mask("VERSION_1", class: .net)
    private static let netMergeable = VirtioFeatures.mask("MRG_RXBUF", class: .net)
    private static let netMQ = VirtioFeatures.mask("MQ", class: .net)

    /// Chains served per run before the worker yields and queues itself again (vdpa_sim re-queues too):
    /// a VMM that keeps its queue full cannot hold the worker.
    static let chainsPerRun = 64

    init?(slot: DeviceSlot) {
        let fd = vdpad_eventfd(0, O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        (self.slot, wake) = (slot, fd)
        // The store agent's socket is dup'ed at a run's first index store that needs it (a run on shared memory never
        // does), so a replace or a release meanwhile cannot close it under the run.
        memory = OwnerMemory { [weak slot] in slot?.read { d in d.storeAgent.map { fcntl($0.descriptor, F_DUPFD_CLOEXEC, 512) } } ?? -1 }
        guard DetachedThread.start({ [self] in loop() }) else {
            close(fd)
            return nil
        }
    }

    /// The kick bindings changed, or the device resumed: look again.
    func notify(rescan: Bool, resumed: Bool) {
        state.withLock { s in
            s.rescan = s.rescan || rescan
            s.replay = s.replay || resumed
        }
        EventFDs.signal(wake)
    }

    func stop() {
        state.withLock { $0.stopping = true }
        EventFDs.signal(wake)
    }

    private func loop() {
        modifiesRingInUse = slot?.read { $0.mgmtdev.driver.modifiesRingInUse } ?? false
        rescan()
        if slot?.takeRingResync() == true {
            // A kick the dead process drained and did not serve is in no eventfd any more: every ring once.
            resync = watchedQueues
            requeued = resync
            EventFDs.signal(wake)
        }
        while true {
            // A queue that stopped at its budget is served again after a look at the others (a poll that does not
            // wait), not through the wake-up eventfd; with every watched queue due anyway there is nothing to look
            // at (the flags below are read each round, and a kick left in its eventfd is drained at the next poll).
            for k in polled.indices { polled[k].revents = 0 }
            if requeued.isEmpty || !watchedQueues.isSubset(of: requeued) {
                _ = retryingOnEINTR { poll(&polled, nfds_t(polled.count), requeued.isEmpty ? -1 : 0) }
            }
            if polled[0].revents != 0 { drain(wake) }
            let flags = state.withLock { s -> State in
                let current = s
                (s.rescan, s.replay) = (false, false)
                return current
            }
            if flags.stopping { break }
            var kicked = requeued
            requeued = QueueSet()
            for (k, watch) in watched.enumerated() where polled[k + 1].revents != 0 {
                drain(watch.fd)
                kicked.insert(watch.vq)
            }
            if flags.rescan { rescan() }
            if flags.replay && pendingWhileSuspended {
                pendingWhileSuspended = false
                kicked.formUnion(watchedQueues)  // RESUME kicks every vq once (edge D2)
            }
            // A net pair's run serves both its queues: a kick on each is one run, not two.
            var served = QueueSet()
            for vq in kicked where !served.contains(vq) {
                let run = serve(vq)
                served.formUnion(run.queues)
                if run.more { requeued.formUnion(run.queues) }  // stopped at its budget: again after the others had a turn
            }
        }
        for watch in watched { close(watch.fd) }
        close(wake)
        try? backing?.close()
    }

    private func drain(_ fd: Int32) {
        var counter: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &counter) { Glibc.read(fd, $0.baseAddress, 8) }
    }

    /// Watches the kick eventfds the device holds now (a dup of each, so a close on the device's side while
    /// the worker waits cannot hand the number to another file).
    private func rescan() {
        for watch in watched { close(watch.fd) }
        watched = []
        defer {
            polled = ([wake] + watched.map(\.fd)).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            watchedQueues = QueueSet(watched.map(\.vq))
        }
        guard let slot else { return }
        // Numbers from 512 up: out of the way of the low ones a process hands out and reuses first.
        let kicks = slot.read { d in
            d.vrings.enumerated().compactMap { vq, ring in ring.kick.map { (vq, fcntl($0.descriptor, F_DUPFD_CLOEXEC, 512)) } }
        }
        for (vq, fd) in kicks where fd >= 0 {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            watched.append((fd, vq))
        }
    }

    /// What a run did: whether chains remain (it stopped at its budget), and the vqs it served — its own, or both
    /// of a net pair.
    private struct RunOutcome {
        var more = false
        var queues: QueueSet
    }

    /// One run on `vq`'s queue, as its parent serves it, from snapshot to record with the slot's run gate held (a
    /// SUSPEND, a reset or a ring change waits for it).
    private func serve(_ vq: Int) -> RunOutcome {
        guard let slot else { return RunOutcome(queues: [vq]) }
        return slot.quiesced { serveHoldingGate(vq, slot) }
    }

    private func serveHoldingGate(_ vq: Int, _ slot: DeviceSlot) -> RunOutcome {
        guard let run = snapshot(vq, slot) else { return RunOutcome(queues: [vq]) }
        defer { memory.unbind() }
        switch run.queue {
        case .netControl: return RunOutcome(more: serveControl(vq, run, slot), queues: [vq])
        case .netPair(let rx, let tx): return RunOutcome(more: servePair(rx: rx, tx: tx, run, slot), queues: [rx, tx])
        case .blockRequests: return RunOutcome(more: serveBlock(vq, run, slot), queues: [vq])
        }
    }

    /// What a run reads of the device, taken under its lock: plain values and the memory's view (`DataPathView`),
    /// never a copy of the whole device — a retain and a release per field, which a guest that kicks per frame
    /// would pay per frame.
    private struct RunSnapshot {
        var queue: ServedQueue
        /// The ring settings of the run's vq and, for a pair, of its other queue (`first` is the pair's TX).
        var first: RingSetting
        var other: RingSetting
        var driverFeatures: UInt64
        /// The device's MAC (net), as `macAddress` keeps it.
        var mac: [UInt8]
        /// max_vqp, for the control queue's MQ_VQ_PAIRS_SET.
        var maxVQP: Int?
        /// What the RAM disk is made from, read only at the first block run (`makeDisk`).
        var disk: DiskSetting?
    }

    /// A vring's fields a run uses: plain values it keeps past the lock (not the eventfds, which the slot signals).
    private struct RingSetting {
        var vq: Int
        var num: UInt32?, desc: UInt64?, driver: UInt64?, device: UInt64?
        var base: UInt16
        var ready: Bool
        var generation: UInt32

        /// The size and areas are those the device walks (`VDPADevice.ringInUse`: vdpa_sim's from the vq's last
        /// 0→1 enable, mlx5's as set now).  `d` is borrowed: an initializer owns its arguments, and an owned device is
        /// a copy of all of it per run.
        init(_ vq: Int, _ d: borrowing VDPADevice) {
            let v = d.vrings[vq], walked = d.ringInUse(vq) ?? EnabledRing()
            (self.vq, base, ready, generation) = (vq, v.base, v.ready, d.enabledRings[vq].generation)
            (num, desc, driver, device) = (walked.num, walked.desc, walked.driver, walked.device)
        }

        /// The size and the three areas, when all are set.
        var key: CachedRing.Key? {
            guard let num, let desc, let driver, let device else { return nil }
            return CachedRing.Key(num: num, desc: desc, driver: driver, device: device)
        }
    }

    /// The RAM disk's capacity (virtio_blk_config.capacity, in sectors), `backing` file and device name.
    private struct DiskSetting {
        var capacity: UInt64
        var backing: String?
        var device: String
    }

    /// Under the device's lock, once per kick: which queue `vq` is, the gates for every vq its run touches
    /// (a net pair needs both, and only the active pairs run), and what the run reads of the device, its memory
    /// view bound to `memory` (nil: nothing to do now, `memory` unbound).
    private func snapshot(_ vq: Int, _ slot: DeviceSlot) -> RunSnapshot? {
        slot.read { d in
            guard let queue = d.servedQueue(vq) else { return nil }  // a queue the parent does not serve
            // The vq whose groups say where the rings and buffers are (a pair's TX), and the other of a pair.
            var (first, other) = (vq, vq)
            if case .netPair(let rx, let tx) = queue {
                guard rx / 2 < d.activeQueuePairs else { return nil }
                (first, other) = (tx, rx)
            }
            guard d.mayServe(first), d.mayServe(other) else {
                // A kick while suspended with DRIVER_OK is remembered for RESUME; one on a vq not ready is dropped (D1).
                if d.suspended && d.status & VirtioStatus.driverOK != 0 { pendingWhileSuspended = true }
                return nil
            }
            guard let owner = d.owner, let rings = try? d.asid(forVirtqueue: VirtqueueIndex(UInt64(first)), area: .desc),
                let buffers = try? d.asid(forVirtqueue: VirtqueueIndex(UInt64(first)), area: .buffer)
            else { return nil }
            memory.bind(pid: owner.pid, view: d.dataPathView(ringASID: rings, bufferASID: buffers))
            let disk =
                queue == .blockRequests && self.disk == nil
                ? DiskSetting(capacity: d.configBytes.le(0, 8), backing: d.attributes.backing, device: d.name.rawValue) : nil
            return RunSnapshot(
                queue: queue, first: RingSetting(first, d), other: RingSetting(other, d),
                driverFeatures: d.driverFeatures, mac: d.deviceID == .net ? macAddress(d) : [], maxVQP: d.attributes.maxVQP, disk: disk)
        }
    }

    /// A ring as the parent holds it.  vdpa_sim's vringh: the one built at the vq's last enable, with its num and
    /// addresses, for as long as that enable holds (a SET_VRING_NUM or ADDR meanwhile waits for the next one; a
    /// SET_VRING_BASE moves last_avail alone, R60).  mlx5's queue: the same, but new addresses or a base apply to it
    /// at once, a base to both indexes.  At the first run after an enable, built with last_used := last_avail (R62)
    /// — so a chain lost before a stop is not completed into its slot after a start — from the size and addresses
    /// `v` carries: vdpa_sim's as they were at the enable (none set then: no ring till the next), mlx5's as now.
    private func ring(_ v: RingSetting) -> CachedRing? {
        if v.vq < rings.count, var cached = rings[v.vq], cached.generation == v.generation {
            if !modifiesRingInUse {
                if cached.ring.lastAvail != v.base { cached.ring.rebase(lastAvail: v.base) }
                return cached
            }
            if cached.key == v.key && cached.ring.lastAvail == v.base { return cached }
        }
        // A size SET_VRING_NUM refused never gets here (R58); a ring is not made of one all the same.
        guard let key = v.key, key.num > 0, key.num <= 32768, key.num & (key.num - 1) == 0 else { return nil }
        var base = v.base
        if resync.remove(v.vq), v.ready, let used = try? memory.readIndex(at: key.device &+ 2) { base = used }
        let ring = SplitRing(num: UInt16(truncatingIfNeeded: key.num), desc: key.desc, avail: key.driver, used: key.device, base: base)
        return CachedRing(generation: v.generation, key: key, ring: ring)
    }

    /// Keeps `ring` as `vq`'s for the next run.
    private func keep(_ ring: CachedRing, _ vq: Int) {
        if vq >= rings.count { rings += repeatElement(nil, count: vq + 1 - rings.count) }
        rings[vq] = ring
    }

    /// The device's MAC, the first six bytes of its config space: the array kept in `mac`, made again only when they
    /// changed (a MAC_ADDR_SET, a set_config).
    private func macAddress(_ d: VDPADevice) -> [UInt8] {
        let bytes = d.configMAC
        if mac[...] != bytes { mac = Array(bytes) }
        return mac
    }

    private func serveControl(_ vq: Int, _ snapshot: RunSnapshot, _ slot: DeviceSlot) -> Bool {
        guard var cached = ring(snapshot.first) else { return false }
        // MQ_VQ_PAIRS_SET is answered where the parent offers MQ and the driver took it (mlx5_net), up to max_vqp.
        let mq = snapshot.driverFeatures & Self.netMQ != 0 ? snapshot.maxVQP : nil
        let run = ControlQueue.run(&cached.ring, memory, mac: snapshot.mac, budget: Self.chainsPerRun, maxQueuePairs: mq)
        keep(cached, vq)
        let (lastAvail, counts) = (cached.ring.lastAvail, memory.unbind())  // before the record: see servePair
        var record = QueueRunRecord(
            requests: run.counters.requests, successes: run.counters.successes, errors: run.counters.errors,
            completed: run.completed, bytes: run.bytes, calls: run.calls, newMAC: run.newMAC)
        record.newQueuePairs = run.newQueuePairs
        slot.sync { d in
            d.recordControlQueue(vq: vq, run: record, lastAvail: lastAvail)
            d.recordMemory(counts, completed: run.completed)
        }
        return run.more
    }

    /// A net pair: TX frames into RX buffers (vdpa_sim_net runs only with both queues ready).
    private func servePair(rx: Int, tx: Int, _ snapshot: RunSnapshot, _ slot: DeviceSlot) -> Bool {
        guard var txCached = ring(snapshot.first), var rxCached = ring(snapshot.other) else { return false }
        let version1 = snapshot.driverFeatures & Self.netVersion1 != 0
        let mergeable = snapshot.driverFeatures & Self.netMergeable != 0
        let run = NetLoopback.run(
            tx: &txCached.ring, rx: &rxCached.ring, memory, mac: snapshot.mac, version1: version1,
            budget: Self.chainsPerRun, mergeable: mergeable, bounce: bounce)
        keep(txCached, tx)
        keep(rxCached, rx)
        let txRecord = QueueRunRecord(
            requests: run.txChains, successes: run.txCompleted, errors: run.txErrors, completed: run.txCompleted, bytes: run.txBytes,
            calls: run.txCalls)
        let rxRecord = QueueRunRecord(
            requests: run.rxChains, successes: run.rxCompleted, errors: run.rxErrors, completed: run.rxCompleted, bytes: run.rxBytes,
            calls: run.rxCalls, drops: run.rxDrops + run.rxOverruns)
        // The view goes before the record (a region the VMM unshared meanwhile is unmapped the moment the run ends).
        let (txAvail, rxAvail, counts) = (txCached.ring.lastAvail, rxCached.ring.lastAvail, memory.unbind())
        slot.syncUnjournaled { d in
            d.recordQueueRun(vq: tx, run: txRecord, lastAvail: txAvail)
            d.recordQueueRun(vq: rx, run: rxRecord, lastAvail: rxAvail)
            d.recordMemory(counts, completed: run.txCompleted + run.rxCompleted)
        }
        return run.more
    }

    /// The device's RAM disk: made at the first request, kept across reset and close as vdpa_sim_blk's is, gone
    /// with the device (the worker lives as long as its slot).
    @exclusivity(unchecked) private var disk: RAMDisk?
    /// The file the disk is mapped from, open while the worker lives: a FLUSH syncs it (`RAMDisk.flush`).
    @exclusivity(unchecked) private var backing: FileDescriptor?

    private func serveBlock(_ vq: Int, _ snapshot: RunSnapshot, _ slot: DeviceSlot) -> Bool {
        guard var cached = ring(snapshot.first) else { return false }
        if disk == nil, let setting = snapshot.disk { disk = makeDisk(setting, slot) }
        let run = BlockRequests.run(&cached.ring, memory, disk: disk!, budget: Self.chainsPerRun)
        keep(cached, vq)
        let record = QueueRunRecord(
            requests: run.requests, successes: run.successes, errors: run.errors, completed: run.completed, bytes: run.bytes,
            calls: run.calls)
        let (lastAvail, counts) = (cached.ring.lastAvail, memory.unbind())  // before the record: see servePair
        slot.syncUnjournaled { d in
            d.recordQueueRun(vq: vq, run: record, lastAvail: lastAvail)
            d.recordMemory(counts, completed: run.completed)
        }
        return run.more
    }

    /// The disk on the file that keeps it — the device's `backing` file, or without one a memfd of the journal's
    /// that outlives a daemon restart — mapped shared and sized to the disk, so a write is in the file the moment
    /// it is copied (a crash loses nothing a driver saw completed; a FLUSH makes a backing file durable).  In the
    /// worker's own memory when there is no such file or it cannot be opened, sized or mapped: a disk that lives
    /// as long as the daemon.
    private func makeDisk(_ setting: DiskSetting, _ slot: DeviceSlot) -> RAMDisk {
        let capacity = setting.capacity
        let bytes = Int(capacity) * RAMDisk.sectorSize
        let file: FileDescriptor? =
            if let path = setting.backing {
                try? FileDescriptor.open(FilePath(path), .readWrite, options: [.create, .closeOnExec], permissions: [.ownerReadWrite])
            } else {
                slot.journal?.diskFile(device: setting.device, bytes: bytes).map { FileDescriptor(rawValue: $0) }
            }
        guard let file else { return RAMDisk(capacity: capacity) }
        guard ftruncate(file.rawValue, off_t(bytes)) == 0,
            let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, file.rawValue, 0), base != MAP_FAILED
        else {
            try? file.close()
            return RAMDisk(capacity: capacity)
        }
        backing = file
        var disk = RAMDisk(capacity: capacity, memory: UnsafeMutableRawBufferPointer(start: base, count: bytes)) {
            munmap($0.baseAddress, $0.count)
        }
        // The file may be cut short under the mapping (a backing file someone truncates): WRITE_ZEROES over the lost
        // pages is IOERR, as the copies that meet them are (they are guarded the same way), never a dead daemon.
        disk.zero = { range in vdpad_guarded_zero(range.baseAddress, range.count) == 0 }
        // A FLUSH syncs the file before it completes (the file stays open as long as the worker and its disk).
        disk.flush = { [fd = file.rawValue] in fsync(fd) == 0 }
        return disk
    }
}
