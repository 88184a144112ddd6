// LoopbackHarness.swift — the data path's per-frame work, alone: a
// vdpasim_net pair served in this process on a file this process maps twice
// (once as "the VMM", once as vdpad's shared region, checked and mapped by
// share_memory's own code), with a driver that posts frames straight into
// the rings.  No worker thread, no VMM, no system call per frame: what is
// left is the ring walk, the IOTLB entry cache, the copies and the index
// stores, which `vdpad-bench inproc frames64` runs so scripts/perf-guard.sh
// can hold its instructions and allocations per frame to a budget.
import SystemPackage
import VDPACore
import VDPAVirtio

#if canImport(Glibc)
    import Glibc
#endif

public final class LoopbackHarness {
    static let num: UInt16 = 256, iova: UInt64 = 0x4000_0000
    static let mac: [UInt8] = [0x02, 0, 0, 0, 0, 0x42]
    let frameBytes: Int
    let arenaBytes = 2 << 20
    let arena: UnsafeMutableRawPointer
    let fd: Int32
    var device: VDPADevice
    var rx: SplitRing, tx: SplitRing
    var availRX: UInt16 = 0, availTX: UInt16 = 0
    /// Kept across rounds, as a worker keeps its own.
    let bounce = NetLoopback.Bounce()
    let memory = OwnerMemory()

    /// Where the driver's structures are in the arena: rx rings at 0, tx rings at 16 KiB, buffers from 64 KiB.
    func desc(_ q: Int) -> UnsafeMutableRawPointer { arena + q * 16384 }
    func avail(_ q: Int) -> UnsafeMutableRawPointer { arena + q * 16384 + 4096 }
    func used(_ q: Int) -> UnsafeMutableRawPointer { arena + q * 16384 + 8192 }
    func buffer(_ q: Int, _ k: Int) -> UnsafeMutableRawPointer { arena + 65536 + (q * Int(Self.num) + k) * 2048 }
    func iova(_ p: UnsafeMutableRawPointer) -> UInt64 { Self.iova + UInt64(p - arena) }

    /// A device with its pair ready and the arena shared; frames of `frameBytes` (after the 12-byte header).
    public init(frameBytes: Int) throws {
        precondition(frameBytes >= 14 && frameBytes + 12 <= 2048)
        self.frameBytes = frameBytes
        let name = "/vdpad-harness-\(getpid())"
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0o600)
        shm_unlink(name)
        guard fd >= 0, ftruncate(fd, off_t(arenaBytes)) == 0,
            let p = mmap(nil, arenaBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED
        else { throw VDPAError(.ENOSPC, "no arena for the harness") }
        arena = p
        memset(arena, 0, arenaBytes)
        device = try VDPADevice(name: DeviceName(rawValue: "harness")!, mgmtdev: .vdpasimNet)
        try device.open(by: Owner(connection: 1, pid: getpid(), uid: getuid()))
        try device.setBackendFeatures([.iotlbMessageV2, .iotlbBatch])
        try device.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "MAC", class: .net))
        try device.setStatus(0xB)
        try device.map(iova: Self.iova, size: UInt64(arenaBytes), address: UInt64(UInt(bitPattern: arena)), permission: .readWrite)
        let mapping = try SharedFiles.map(dup(fd), address: UInt64(UInt(bitPattern: arena)), size: UInt64(arenaBytes), offset: 0, pid: getpid()).get()
        try device.shareMemory(SharedRegion(start: UInt64(UInt(bitPattern: arena)), size: UInt64(arenaBytes), mapping: mapping))
        rx = SplitRing(num: Self.num, desc: Self.iova, avail: Self.iova + 4096, used: Self.iova + 8192, base: 0)
        tx = SplitRing(num: Self.num, desc: Self.iova + 16384, avail: Self.iova + 16384 + 4096, used: Self.iova + 16384 + 8192, base: 0)
        for q in 0..<2 {
            try device.setVring(
                VirtqueueIndex(UInt64(q)), num: UInt64(Self.num), desc: iova(desc(q)), driver: iova(avail(q)), device: iova(used(q)),
                ready: nil)
        }
        try device.setStatus(0xF)
        for q in 0..<2 { try device.setVring(VirtqueueIndex(UInt64(q)), num: nil, desc: nil, driver: nil, device: nil, ready: true) }
        for k in 0..<Int(Self.num) {
            // Descriptor k of each queue is buffer k: rx writable and 2 KiB, tx a frame to the device's MAC.
            let frame = buffer(1, k)
            memset(frame, 0, 12)
            Self.mac.withUnsafeBytes { frame.advanced(by: 12).copyMemory(from: $0.baseAddress!, byteCount: 6) }
            setDescriptor(0, k, buffer(0, k), 2048, flags: 2)
            setDescriptor(1, k, frame, UInt32(12 + frameBytes), flags: 0)
        }
    }

    deinit {
        munmap(arena, arenaBytes)
        close(fd)
    }

    func setDescriptor(_ q: Int, _ k: Int, _ buffer: UnsafeMutableRawPointer, _ length: UInt32, flags: UInt16) {
        let d = desc(q) + 16 * k
        d.storeBytes(of: iova(buffer), as: UInt64.self)
        d.storeBytes(of: length, toByteOffset: 8, as: UInt32.self)
        d.storeBytes(of: flags, toByteOffset: 12, as: UInt16.self)
        d.storeBytes(of: 0, toByteOffset: 14, as: UInt16.self)
    }

    func post(_ q: Int, _ head: UInt16, _ index: inout UInt16) {
        (avail(q) + 4 + 2 * Int(index % Self.num)).storeBytes(of: head, as: UInt16.self)
        index &+= 1
        (avail(q) + 2).storeBytes(of: index, as: UInt16.self)
    }

    /// Posts `frames` RX buffers and TX frames, serves the pair once as the worker would, and returns the frames
    /// that came back (all of them: every frame is to the device's MAC).
    public func round(frames: Int) -> Int {
        precondition(frames > 0 && frames <= 64)
        post(frames: frames)
        return serve().rxCompleted
    }

    /// Posts the next `frames` descriptors of each queue.
    func post(frames: Int) {
        for _ in 0..<frames {
            post(0, availRX % Self.num, &availRX)
            post(1, availTX % Self.num, &availTX)
        }
    }

    /// One run of the pair on the device as it is, as the worker makes it.
    func serve() -> NetLoopback.Run {
        memory.bind(pid: getpid(), device: device, ringASID: 0, bufferASID: 0)
        defer { memory.unbind() }
        return NetLoopback.run(tx: &tx, rx: &rx, memory, mac: Self.mac, version1: true, budget: 64, bounce: bounce)
    }
}
