// LoopbackHarness.swift — the data path's per-frame work, alone: a
// vdpasim_net pair served in this process on a file this process maps twice
// (once as "the VMM", once as vdpad's shared region, checked and mapped by
// share_memory's own code), with a driver that posts frames straight into
// the rings.  `LoopbackHarness` serves the pair on the calling thread — no
// worker thread, no VMM, no system call per frame: what is left is the ring
// walk, the IOTLB entry cache, the copies and the index stores;
// `WorkerLoopbackHarness` leaves it to the daemon's own data-path worker on
// a registry's device, kicked and answered through eventfds: a run's
// snapshot, record and interrupts as well.  `vdpad-bench inproc frames64`
// and `worker64` run them, so scripts/perf-guard.sh can hold the
// instructions and allocations per frame of each to a budget.
import CVDPAShim
import SystemPackage
import VDPACore
import VDPARegistry
import VDPAVirtio

#if canImport(Glibc)
    import Glibc
#endif

/// A file of zeroes, unlinked, mapped shared here — what a VMM's `memory-backend-memfd,share=on` is — unmapped and
/// closed with the last reference to it, so that a harness whose set-up fails after making it does not keep it.
public final class HarnessFile {
    public let fd: Int32
    public let base: UnsafeMutableRawPointer
    public let bytes: Int

    public init(bytes: Int) throws(VDPAError) {
        let name = "/vdpad-harness-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0o600)
        shm_unlink(name)
        guard fd >= 0, ftruncate(fd, off_t(bytes)) == 0, let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED
        else {
            if fd >= 0 { close(fd) }
            throw VDPAError(.ENOSPC, "no arena for the harness")
        }
        (self.fd, base, self.bytes) = (fd, p, bytes)
    }

    deinit {
        munmap(base, bytes)
        close(fd)
    }

    /// Where a harness's device maps the file in its IOTLB; `address` is where the file is in this process (the
    /// owner's address the IOTLB maps to).
    static let iova: UInt64 = 0x4000_0000
    var address: UInt64 { UInt64(UInt(bitPattern: base)) }
    func iova(_ p: UnsafeMutableRawPointer) -> UInt64 { Self.iova + UInt64(p - base) }

    /// Writes descriptor `k` of the table at `table` (struct vring_desc: addr, len, flags, next), pointing at `buffer`.
    func setDescriptor(
        table: UnsafeMutableRawPointer, _ k: Int, _ buffer: UnsafeMutableRawPointer, _ length: UInt32, flags: UInt16, next: Int = 0
    ) {
        let d = table + 16 * k
        d.storeBytes(of: iova(buffer), as: UInt64.self)
        d.storeBytes(of: length, toByteOffset: 8, as: UInt32.self)
        d.storeBytes(of: flags, toByteOffset: 12, as: UInt16.self)
        d.storeBytes(of: UInt16(next), toByteOffset: 14, as: UInt16.self)
    }

    /// A device of `mgmtdev` as a VMM's set-up leaves it: opened by this process, `features` negotiated, the file
    /// mapped at `iova` and shared (checked and mapped by share_memory's own code), each of `rings` (queue k is the
    /// k-th) set to `num` entries, DRIVER_OK, and ready.
    func device(
        _ mgmtdev: ManagementDevice, features: UInt64, rings: [(desc: UInt64, driver: UInt64, device: UInt64)], num: UInt16
    ) throws -> VDPADevice {
        var device = try VDPADevice(name: DeviceName(rawValue: "harness")!, mgmtdev: mgmtdev)
        try device.open(by: Owner(connection: 1, pid: getpid(), uid: getuid()))
        try device.setBackendFeatures([.iotlbMessageV2, .iotlbBatch])
        try device.setFeatures(features)
        try device.setStatus(0xB)
        try device.map(iova: Self.iova, size: UInt64(bytes), address: address, permission: .readWrite)
        let mapping = try SharedFiles.map(dup(fd), address: address, size: UInt64(bytes), offset: 0, pid: getpid()).get()
        try device.shareMemory(SharedRegion(start: address, size: UInt64(bytes), mapping: mapping))
        for (q, v) in rings.enumerated() {
            try device.setVring(VirtqueueIndex(UInt64(q)), num: UInt64(num), desc: v.desc, driver: v.driver, device: v.device, ready: nil)
        }
        try device.setStatus(0xF)
        for q in rings.indices { try device.setVring(VirtqueueIndex(UInt64(q)), num: nil, desc: nil, driver: nil, device: nil, ready: true) }
        return device
    }
}

/// The driver's side: a shared-memory file mapped here, holding a pair's rings (rx at 0, tx at 16 KiB) and
/// their buffers (from 64 KiB: descriptor k of each queue is buffer k, rx writable and 2 KiB, tx a frame to the
/// device's MAC), and the avail indexes posted so far.
final class LoopbackArena {
    static let num: UInt16 = 256, bytes = 2 << 20
    static let mac: [UInt8] = [0x02, 0, 0, 0, 0, 0x42]
    /// The file, kept for its life; its address and descriptor, read at every post.
    let file: HarnessFile
    let base: UnsafeMutableRawPointer
    let fd: Int32
    var availRX: UInt16 = 0, availTX: UInt16 = 0

    func desc(_ q: Int) -> UnsafeMutableRawPointer { base + q * 16384 }
    func avail(_ q: Int) -> UnsafeMutableRawPointer { base + q * 16384 + 4096 }
    func used(_ q: Int) -> UnsafeMutableRawPointer { base + q * 16384 + 8192 }
    func buffer(_ q: Int, _ k: Int) -> UnsafeMutableRawPointer { base + 65536 + (q * Int(Self.num) + k) * 2048 }
    func iova(_ p: UnsafeMutableRawPointer) -> UInt64 { file.iova(p) }

    /// Frames of `frameBytes` (after the 12-byte header).
    init(frameBytes: Int) throws {
        precondition(frameBytes >= 14 && frameBytes + 12 <= 2048)
        file = try HarnessFile(bytes: Self.bytes)
        (fd, base) = (file.fd, file.base)
        for k in 0..<Int(Self.num) {
            let frame = buffer(1, k)
            Self.mac.withUnsafeBytes { frame.advanced(by: 12).copyMemory(from: $0.baseAddress!, byteCount: 6) }
            setDescriptor(0, k, buffer(0, k), 2048, flags: 2)
            setDescriptor(1, k, frame, UInt32(12 + frameBytes), flags: 0)
        }
    }

    /// The area of queue `q`'s ring, as set_vring gives it.
    func vring(_ q: Int) -> (desc: UInt64, driver: UInt64, device: UInt64) { (iova(desc(q)), iova(avail(q)), iova(used(q))) }

    /// Queue `q`'s ring as a device walks it from the start.
    func ring(_ q: Int) -> SplitRing {
        let v = vring(q)
        return SplitRing(num: Self.num, desc: v.desc, avail: v.driver, used: v.device, base: 0)
    }

    func setDescriptor(_ q: Int, _ k: Int, _ buffer: UnsafeMutableRawPointer, _ length: UInt32, flags: UInt16) {
        file.setDescriptor(table: desc(q), k, buffer, length, flags: flags)
    }

    func post(_ q: Int, _ head: UInt16, _ index: inout UInt16) {
        (avail(q) + 4 + 2 * Int(index % Self.num)).storeBytes(of: head, as: UInt16.self)
        index &+= 1
        (avail(q) + 2).storeBytes(of: index, as: UInt16.self)
    }

    /// Posts the next `frames` descriptors of each queue.
    func post(frames: Int) {
        for _ in 0..<frames {
            post(0, availRX % Self.num, &availRX)
            post(1, availTX % Self.num, &availTX)
        }
    }

    /// Queue `q`'s used idx as the driver reads it.
    func usedIndex(_ q: Int) -> UInt16 { (used(q) + 2).load(as: UInt16.self) }

    /// Queue `q`'s used element in `slot`: (id, len).
    func usedElement(_ q: Int, _ slot: Int) -> (UInt32, UInt32) { (used(q) + 4 + 8 * slot).load(as: (UInt32, UInt32).self) }
}

public final class LoopbackHarness {
    let arena: LoopbackArena
    var device: VDPADevice
    var rx: SplitRing, tx: SplitRing
    /// Kept across rounds, as a worker keeps its own.
    let bounce = NetLoopback.Bounce()
    let memory = OwnerMemory()

    /// A device with its pair ready and the arena shared; frames of `frameBytes` (after the 12-byte header).
    public init(frameBytes: Int) throws {
        arena = try LoopbackArena(frameBytes: frameBytes)
        device = try arena.file.device(
            .vdpasimNet, features: VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "MAC", class: .net), rings: [arena.vring(0), arena.vring(1)],
            num: LoopbackArena.num)
        (rx, tx) = (arena.ring(0), arena.ring(1))
    }

    /// Posts `frames` RX buffers and TX frames, serves the pair once as the worker would, and returns the frames
    /// that came back (all of them: every frame is to the device's MAC).
    public func round(frames: Int) -> Int {
        precondition(frames > 0 && frames <= 64)
        arena.post(frames: frames)
        return serve().rxCompleted
    }

    /// One run of the pair on the device as it is, as the worker makes it.
    func serve() -> NetLoopback.Run {
        memory.bind(pid: getpid(), device: device, ringASID: 0, bufferASID: 0)
        defer { memory.unbind() }
        return NetLoopback.run(tx: &tx, rx: &rx, memory, mac: LoopbackArena.mac, version1: true, budget: 64, bounce: bounce)
    }
}

/// The same pair on a registry's device with kick and call eventfds bound, served by the daemon's data-path worker
/// thread (`DataPathWorker`) as a VMM's kicks have it served: a round posts frames, kicks TX, and waits on RX's
/// call eventfd until they all came back.  The driver wants interrupts (no NO_INTERRUPT), so every run signals.
public final class WorkerLoopbackHarness {
    let arena: LoopbackArena
    let registry = DeviceRegistry(io: ProcessDeviceIO())
    let vmm = Caller(connection: 2, pid: getpid(), uid: getuid(), gid: getgid(), isAdmin: false)
    /// Queue q's kick and call eventfds, the driver's side (the device holds dups).
    let kicks: [Int32], calls: [Int32]

    /// A device of `mgmtdev` (a net parent) with its first pair looping frames of `frameBytes`.
    public init(frameBytes: Int, mgmtdev: String = "vdpasim_net") throws {
        arena = try LoopbackArena(frameBytes: frameBytes)
        let admin = Caller(connection: 1, pid: 1, uid: 0, gid: 0, isAdmin: true)
        let mac = LoopbackArena.mac.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
        let attributes = DeviceAttributes(mac: mac, users: [getuid()])
        _ = try registry.add(DeviceRecord(name: "n0", mgmtdev: mgmtdev, attributes: attributes), by: admin)
        _ = try registry.open("n0", by: vmm)
        try registry.setBackendFeatures([.iotlbMessageV2, .iotlbBatch], device: "n0", by: vmm)
        (kicks, calls) = ((0..<2).map { _ in vdpad_eventfd(0, O_CLOEXEC) }, (0..<2).map { _ in vdpad_eventfd(0, O_CLOEXEC) })
        guard (kicks + calls).allSatisfy({ $0 >= 0 }) else { throw VDPAError(.ENOSPC, "no eventfds for the harness") }
        try start()
        let size = UInt64(LoopbackArena.bytes)
        _ = try registry.shareMemory(dup(arena.fd), address: arena.file.address, size: size, offset: 0, device: "n0", by: vmm)
        // The kicks last: binding one starts the worker, which then finds the pair ready.
        for q in 0..<2 { try bind(kicks[q]) { (d: inout VDPADevice, fd) throws(VDPAError) in try d.setVringKick(VirtqueueIndex(UInt64(q)), fd) } }
    }

    /// A VMM's start of the device, as at set-up and again after a reset: the features, FEATURES_OK, each ring of the
    /// pair at its base in `bases`, the arena mapped at `HarnessFile.iova`, DRIVER_OK, both queues enabled, and their
    /// call eventfds bound (a reset drops them, R69).
    func start(bases: [UInt16] = [0, 0]) throws {
        try registry.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "MAC", class: .net), device: "n0", by: vmm)
        try registry.changeStatus("n0", by: vmm) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(0xB) }
        for q in 0..<2 {
            let v = arena.vring(q)
            let change = VringChange(num: UInt64(LoopbackArena.num), desc: v.desc, driver: v.driver, device: v.device, base: UInt64(bases[q]))
            try registry.setVring(VirtqueueIndex(UInt64(q)), change, device: "n0", by: vmm)
        }
        let size = UInt64(LoopbackArena.bytes)
        try registry.map(MapRequest(iova: HarnessFile.iova, size: size, address: arena.file.address, permission: .name("rw")), device: "n0", by: vmm)
        try registry.changeStatus("n0", by: vmm) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(0xF) }
        for q in 0..<2 { try registry.setVring(VirtqueueIndex(UInt64(q)), VringChange(ready: true), device: "n0", by: vmm) }
        for q in 0..<2 { try bind(calls[q]) { (d: inout VDPADevice, fd) throws(VDPAError) in try d.setVringCall(VirtqueueIndex(UInt64(q)), fd) } }
    }

    /// Binds a dup of `fd` as set_vring_call and set_vring_kick take an eventfd a VMM passed.
    func bind(_ fd: Int32, _ apply: (inout VDPADevice, EventFD?) throws(VDPAError) -> Void) throws {
        try registry.useDescriptor(dup(fd), unset: false, device: "n0", by: vmm, apply, precheck: { _ in })
    }

    deinit {
        registry.connectionClosed(vmm.connection)  // the session released; the registry's end stops the worker
        for fd in kicks + calls { close(fd) }
    }

    /// Posts `frames` RX buffers and TX frames, kicks TX, and waits until RX's used idx says they all came back
    /// (each wait a read of RX's call eventfd).  Returns the frames that came back: 0 when no call came for five
    /// seconds (a worker that stopped serving fails a test instead of hanging it).
    public func round(frames: Int) -> Int {
        precondition(frames > 0 && frames <= 64)
        let expected = arena.usedIndex(0) &+ UInt16(frames)
        arena.post(frames: frames)
        EventFDs.signal(kicks[1])
        var counter: UInt64 = 0
        while arena.usedIndex(0) != expected {
            var ready = pollfd(fd: calls[0], events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 5000) == 1, withUnsafeMutableBytes(of: &counter, { read(calls[0], $0.baseAddress, 8) }) == 8 else { return 0 }
        }
        return frames
    }
}
