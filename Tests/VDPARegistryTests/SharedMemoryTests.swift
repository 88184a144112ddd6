// SharedMemoryTests.swift — the shared-memory region table (overlaps, holes,
// remaps), the check that a passed file backs the owner's addresses (a lying
// fd, a private mapping, a wrong offset, a hole), and share_memory through
// the registry on this process's own memfd mappings (docs/datapath.md,
// "Shared guest memory").
#if canImport(Glibc)
    import Glibc
#endif
import CVDPAShim
import Testing
import VDPACore
@testable import VDPADataPath
@testable import VDPARegistry
import VDPAVirtio
import _VDPATestSupport

/// A mapping that is only a number: the table never touches the memory.
final class FakeMapping: SharedMapping, @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    init(_ address: UInt) { base = UnsafeMutableRawPointer(bitPattern: address)! }
}

/// A shared-memory file of `pages` pages (shm_open, unlinked at once: a memfd in all but name; Swift's Glibc
/// has no memfd_create), mapped in this process; unmapped and closed by `release`.
struct Memfd {
    let fd: Int32
    let base: UnsafeMutableRawPointer
    let size: Int
    static let page = Int(sysconf(Int32(_SC_PAGESIZE)))

    init(pages: Int, flags: Int32 = MAP_SHARED) {
        size = pages * Self.page
        let name = "/vdpad-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0o600)
        shm_unlink(name)
        precondition(fd >= 0 && ftruncate(fd, off_t(size)) == 0)
        base = mmap(nil, size, PROT_READ | PROT_WRITE, flags, fd, 0)!
    }
    var address: UInt64 { UInt64(UInt(bitPattern: base)) }
    /// A descriptor to pass (the call under test closes it).
    func passed() -> Int32 { dup(fd) }
    func release() {
        munmap(base, size)
        close(fd)
    }
}

/// A vdpasim_net device this process owns, with two pages of its own memfd mapped read-write at IOVA 1 GiB and
/// shared with the device: the data path must go through the IOTLB, not take the IOVA for an address.
struct SharedDevice {
    let registry = DeviceRegistry(io: ProcessDeviceIO())
    let vmm = Caller(connection: 2, pid: getpid(), uid: getuid(), gid: getgid(), isAdmin: false)
    let ram = Memfd(pages: 2)

    init() throws {
        let admin = Caller(connection: 1, pid: 1, uid: 0, gid: 0, isAdmin: true)
        let attributes = DeviceAttributes(users: [getuid()])
        _ = try registry.add(DeviceRecord(name: "n0", mgmtdev: "vdpasim_net", attributes: attributes), by: admin)
        _ = try registry.open("n0", by: vmm)
        let mapping = MapRequest(iova: 0x4000_0000, size: UInt64(ram.size), address: ram.address, permission: .name("rw"))
        try registry.map(mapping, device: "n0", by: vmm)
        _ = try registry.shareMemory(ram.passed(), address: ram.address, size: UInt64(ram.size), offset: 0, device: "n0", by: vmm)
    }

    /// The data path's view of the device as it is now (a run's snapshot).
    func memory() throws -> OwnerMemory {
        OwnerMemory(pid: getpid(), device: try registry.withDevice("n0", .owner, by: vmm) { $0 }, ringASID: 0, bufferASID: 0)
    }

    /// Where a 4-entry ring's areas are in the shared pages (offsets from their start, IOVA 1 GiB + offset).
    static let (desc, avail, used) = (0x400, 0x800, 0xC00)

    /// The 4-entry ring at those areas, as the driver has set it.
    func ring() -> SplitRing {
        SplitRing(
            num: 4, desc: 0x4000_0000 + UInt64(Self.desc), avail: 0x4000_0000 + UInt64(Self.avail), used: 0x4000_0000 + UInt64(Self.used), base: 0)
    }

    /// Descriptor `k` of that ring: a readable buffer of `length` bytes at `iova`.
    func describe(_ k: Int, iova: UInt64, length: UInt32) {
        (ram.base + Self.desc + 16 * k).storeBytes(of: iova, as: UInt64.self)
        (ram.base + Self.desc + 16 * k + 8).storeBytes(of: length, as: UInt32.self)
    }

    /// Posts `heads` in the avail ring from its first entry on, and publishes them.
    func post(_ heads: [UInt16]) {
        for (k, head) in heads.enumerated() { (ram.base + Self.avail + 4 + 2 * k).storeBytes(of: head, as: UInt16.self) }
        (ram.base + Self.avail + 2).storeBytes(of: UInt16(heads.count), as: UInt16.self)
    }

    /// The ring's used idx as the driver reads it.
    var usedIdx: UInt16 { ram.base.load(fromByteOffset: Self.used + 2, as: UInt16.self) }
}

@Suite("Shared memory")
struct SharedMemoryTests {
    static func region(_ start: UInt64, _ size: UInt64) -> SharedRegion {
        SharedRegion(start: start, size: size, mapping: FakeMapping(0x7000_0000))
    }

    @Test("the table: an address resolves in one region at its offset; a hole, a crossing, the end and count 0 do not")
    func resolve() throws {
        var t = SharedRegions()
        try t.insert(Self.region(0x10000, 0x4000))
        try t.insert(Self.region(0x14000, 0x1000))  // adjacent, not overlapping
        try t.insert(Self.region(0x1000, 0x1000))
        #expect(t.regions.map(\.start) == [0x1000, 0x10000, 0x14000] && t.bytes == 0x6000)
        #expect(t.resolve(0x10010, count: 16) == UnsafeMutableRawPointer(bitPattern: 0x7000_0010))
        #expect(t.resolve(0x13FF0, count: 16) != nil)
        #expect(t.resolve(0x13FF8, count: 16) == nil, "crosses into the next region: the caller falls back")
        #expect(t.resolve(0x2000, count: 1) == nil, "a hole")
        #expect(t.resolve(0x15000, count: 1) == nil, "past the last")
        #expect(t.resolve(0x1000, count: 0) == nil)
        #expect(t.resolve(0x0FFF, count: 2) == nil, "starts in a hole")
    }

    @Test("an overlap is EEXIST, an empty or wrapping range EINVAL; the table is unchanged by a refusal")
    func overlaps() throws {
        var t = SharedRegions()
        try t.insert(Self.region(0x10000, 0x4000))
        for (start, size) in [(0x10000, 0x1000), (0xF000, 0x2000), (0x13FFF, 0x10), (0x8000, 0x10000)] as [(UInt64, UInt64)] {
            expectError(.EEXIST) { try t.insert(Self.region(start, size)) }
        }
        expectError(.EINVAL) { try t.insert(Self.region(0x20000, 0)) }
        expectError(.EINVAL) { try t.insert(Self.region(UInt64.max - 0xFFF, 0x1000)) }
        #expect(t.count == 1)
    }

    @Test("a remap: unsharing any part drops the whole region, then the same range can be shared again")
    func remap() throws {
        var t = SharedRegions()
        try t.insert(Self.region(0x10000, 0x4000))
        try t.insert(Self.region(0x20000, 0x1000))
        #expect(t.remove(overlapping: 0x12000, size: 0x1000).count == 1)
        #expect(t.resolve(0x10000, count: 1) == nil && t.count == 1)
        try t.insert(Self.region(0x10000, 0x4000))
        #expect(t.remove(overlapping: 0, size: .max).count == 2, "a range to the top of the address space")
        #expect(t.isEmpty)
    }

    @Test("a region keeps its file: an unshare and the session's end close it; the session image names it for a restart")
    func filesGoWithRegions() throws {
        var d = try VDPADevice(name: DeviceName(rawValue: "vdpa0")!, mgmtdev: .vdpasimNet)
        try d.open(by: Owner(connection: 1, pid: 1, uid: 0))
        try d.shareMemory(SharedRegion(start: 0x10000, size: 0x4000, mapping: FakeMapping(0x7000_0000), file: EventFD(40), offset: 0x1000))
        try d.shareMemory(SharedRegion(start: 0x20000, size: 0x1000, mapping: FakeMapping(0x7100_0000), file: EventFD(41)))
        #expect(
            d.sessionImage.sharedFiles == [
                SharedFile(start: 0x10000, size: 0x4000, offset: 0x1000, file: EventFD(40)),
                SharedFile(start: 0x20000, size: 0x1000, offset: 0, file: EventFD(41))
            ])
        _ = d.takeEventFDEffects()
        #expect(d.unshareMemory(start: 0x11000, size: 1) == 1)
        #expect(d.takeEventFDEffects().close == [EventFD(40)])
        d.release()
        #expect(d.takeEventFDEffects().close.contains(EventFD(41)))
        #expect(d.sessionImage.sharedFiles.isEmpty)
    }

    @Test("/proc/PID/maps lines parse; hex fields, a decimal inode, a path with spaces, malformed lines skipped")
    func procMaps() {
        let text = """
            7f0e27416000-7f0e27516000 rw-s 00001000 00:01 1307                       /memfd:pc.ram (deleted)
            garbage line
            7f0e27516000-7f0e27517000 r--p 00000000 fd:02 99 /usr/lib/a b.so
            """
        let lines = ProcMaps.parse(text[...])
        #expect(lines.count == 2)
        #expect(
            lines[0]
                == ProcMaps.Line(start: 0x7f0e_2741_6000, end: 0x7f0e_2751_6000, shared: true, offset: 0x1000, major: 0, minor: 1, inode: 1307))
        #expect(lines[1].shared == false && lines[1].major == 0xFD && lines[1].minor == 2)
    }

    @Test("the check: the right file at the right offset passes; another file, a private mapping, an offset or a hole does not")
    func mismatch() {
        let lines = [
            ProcMaps.Line(start: 0x1000, end: 0x3000, shared: true, offset: 0, major: 0, minor: 1, inode: 7),
            ProcMaps.Line(start: 0x3000, end: 0x4000, shared: true, offset: 0x2000, major: 0, minor: 1, inode: 7),
            ProcMaps.Line(start: 0x5000, end: 0x6000, shared: false, offset: 0, major: 0, minor: 1, inode: 7)
        ]
        func check(_ a: UInt64, _ s: UInt64, _ o: UInt64, inode: UInt64 = 7) -> String? {
            ProcMaps.mismatch(lines, address: a, size: s, offset: o, major: 0, minor: 1, inode: inode)
        }
        #expect(check(0x1000, 0x3000, 0) == nil, "two lines of one file, contiguous in it")
        #expect(check(0x2000, 0x2000, 0x1000) == nil)
        #expect(check(0x1000, 0x1000, 0, inode: 8)?.contains("another file") == true)
        #expect(check(0x1000, 0x1000, 0x1000)?.contains("offset") == true)
        #expect(check(0x3000, 0x2000, 0x2000)?.contains("nothing mapped at 0x4000") == true)
        #expect(check(0x5000, 0x1000, 0)?.contains("private") == true)
    }

    @Test("share_memory on this process's memfd: the bytes are the same both ways; a lying fd, a private mapping are refused and counted")
    func shareThroughRegistry() throws {
        let r = DeviceRegistry(io: ProcessDeviceIO())
        let admin = Caller(connection: 1, pid: 1, uid: 0, gid: 0, isAdmin: true)
        let vmm = Caller(connection: 2, pid: getpid(), uid: getuid(), gid: getgid(), isAdmin: false)
        _ = try r.add(DeviceRecord(name: "n0", mgmtdev: "vdpasim_net", attributes: DeviceAttributes(users: [getuid()])), by: admin)
        let ram = Memfd(pages: 4), other = Memfd(pages: 4), privateMap = Memfd(pages: 1, flags: MAP_PRIVATE)
        defer { [ram, other, privateMap].forEach { $0.release() } }
        expectError(.EPERM) { _ = try r.shareMemory(ram.passed(), address: ram.address, size: UInt64(ram.size), offset: 0, device: "n0", by: vmm) }
        _ = try r.open("n0", by: vmm)
        expectError(.EBADF) { _ = try r.shareMemory(nil, address: ram.address, size: UInt64(ram.size), offset: 0, device: "n0", by: vmm) }
        // A lying fd: another memfd, claimed to back ram's addresses.
        expectError(.EINVAL) { _ = try r.shareMemory(other.passed(), address: ram.address, size: UInt64(ram.size), offset: 0, device: "n0", by: vmm) }
        expectError(.EINVAL) {
            _ = try r.shareMemory(ram.passed(), address: ram.address, size: UInt64(ram.size), offset: UInt64(Memfd.page), device: "n0", by: vmm)
        }
        expectError(.EINVAL) {
            _ = try r.shareMemory(privateMap.passed(), address: privateMap.address, size: UInt64(privateMap.size), offset: 0, device: "n0", by: vmm)
        }
        #expect(try r.shareMemory(ram.passed(), address: ram.address, size: UInt64(ram.size), offset: 0, device: "n0", by: vmm) == 1)
        expectError(.EEXIST) { _ = try r.shareMemory(ram.passed(), address: ram.address, size: UInt64(ram.size), offset: 0, device: "n0", by: vmm) }
        let regions = try r.withDevice("n0", .owner, by: vmm) { $0.sharedMemory }
        let theirs = try #require(regions.resolve(ram.address + 0x10, count: 4))
        ram.base.storeBytes(of: 0xDEAD_BEEF as UInt32, toByteOffset: 0x10, as: UInt32.self)
        #expect(theirs.load(as: UInt32.self) == 0xDEAD_BEEF, "a store by the VMM is seen by vdpad")
        theirs.storeBytes(of: 0x1234_5678 as UInt32, as: UInt32.self)
        #expect(ram.base.load(fromByteOffset: 0x10, as: UInt32.self) == 0x1234_5678, "and the other way")
        let stats = try r.withDevice("n0", .owner, by: vmm) { $0.stats }
        #expect(stats.sharesRefused == 5)
        #expect(try r.unshareMemory(address: ram.address + 0x1000, size: 1, device: "n0", by: vmm) == 1)
        #expect(try r.withDevice("n0", .owner, by: vmm) { ($0.sharedMemory.count, $0.stats.unshares) } == (0, 1))
        _ = try r.shareMemory(ram.passed(), address: ram.address, size: UInt64(ram.size), offset: 0, device: "n0", by: vmm)
        r.connectionClosed(vmm.connection)
        #expect(try r.withDevice("n0", .anyone, by: admin) { $0.sharedMemory.isEmpty }, "the session's end drops its regions")
    }

    @Test(
        "the data path reads and writes a shared region by IOVA; D26: a file truncated under it is a fault, not stale data nor a crash; unshared, it falls back"
    )
    func ownerMemory() throws {
        let shared = try SharedDevice()
        defer { shared.ram.release() }
        let (r, vmm, ram) = (shared.registry, shared.vmm, shared.ram)
        let memory = try shared.memory()
        ram.base.storeBytes(of: UInt64.max, toByteOffset: 0x300, as: UInt64.self)
        #expect(vdpad_guarded_zero(ram.base + 0x300, 8) == 0 && ram.base.load(fromByteOffset: 0x300, as: UInt64.self) == 0)
        try memory.write([1, 2, 3, 4], at: 0x4000_0100, ring: false)
        #expect(ram.base.load(fromByteOffset: 0x100, as: UInt32.self) == 0x0403_0201)
        try memory.writeIndex(0xBEEF, at: 0x4000_0200)
        #expect(try memory.readIndex(at: 0x4000_0200) == 0xBEEF && memory.counts.atomicIndexStores == 1)
        #expect(memory.counts.processVMAccesses == 0 && memory.counts.sharedAccesses == 2)
        // The VMM shrinks its file under vdpad's mapping: the access is a fault (SIGBUS caught), counted as the run's error.
        // A copy that meets the cut in its middle faults there; the page before it still reads.
        #expect(ftruncate(ram.fd, off_t(ram.size / 2)) == 0)
        #expect(throws: RingError.fault(0x4000_0F00)) { _ = try memory.read(0x4000_0F00, count: 512, ring: false) }
        #expect(try memory.read(0x4000_0100, count: 4, ring: false) == [1, 2, 3, 4])
        #expect(ftruncate(ram.fd, 0) == 0)
        #expect(throws: RingError.fault(0x4000_0100)) { _ = try memory.read(0x4000_0100, count: 4, ring: false) }
        #expect(throws: RingError.fault(0x4000_0200)) { try memory.writeIndex(1, at: 0x4000_0200) }
        #expect(throws: RingError.fault(0x4000_0200)) { _ = try memory.readIndex(at: 0x4000_0200) }
        // A RAM disk's zeroing on such a file is guarded the same way (WRITE_ZEROES over lost pages is IOERR).
        #expect(vdpad_guarded_zero(ram.base, 16) == -1)
        // Unshared: the same IOVA goes through process_vm_readv (which faults too on the truncated file: EFAULT, no signal).
        _ = try r.unshareMemory(address: ram.address, size: 1, device: "n0", by: vmm)
        let fallback = try shared.memory()
        #expect(throws: RingError.fault(0x4000_0100)) { _ = try fallback.read(0x4000_0100, count: 4, ring: false) }
        #expect(fallback.counts.processVMAccesses == 1 && fallback.counts.sharedAccesses == 0)
    }

    @Test("the guarded copy: every length from 0 to 300, each way, copies exactly those bytes; a copy that meets the cut faults")
    func guardedCopySizes() throws {
        // The routine is `rep movsb` but where the destination is 1–63 bytes past the source modulo 4 KiB (a slow
        // case of AMD's), where it is 16-byte moves: both ways, at every length, and a fault met by each.
        let page = Memfd.page
        let area = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * page, alignment: page)
        defer { area.deallocate() }
        for k in 0..<page { area[k] = UInt8(truncatingIfNeeded: k &* 7 &+ 1) }
        let ways = [(to: 3, from: 5), (to: 12, from: 0), (to: 1, from: 0), (to: 63, from: 0)]  // rep movsb, then moves
        for (to, from) in ways {
            for n in 0...300 {
                let dst = UnsafeMutableRawBufferPointer(rebasing: area[page...])
                dst.initializeMemory(as: UInt8.self, repeating: 0xAA)
                #expect(vdpad_guarded_copy(dst.baseAddress! + to, area.baseAddress! + from, n) == 0)
                let copied = Array(dst[to..<to + n]) == Array(area[from..<from + n])
                let untouched = dst[..<to].allSatisfy { $0 == 0xAA } && dst[(to + n)...].allSatisfy { $0 == 0xAA }
                #expect(copied && untouched, "length \(n), destination +\(to), source +\(from)")
            }
        }
        // Three pages, then the cut: a copy that runs past it faults, read or written, whatever its length, placed for
        // `rep movsb` (0) or for the moves (12 bytes past).
        let ram = Memfd(pages: 4)
        defer { ram.release() }
        #expect(ftruncate(ram.fd, off_t(3 * page)) == 0)
        let far = UnsafeMutableRawBufferPointer.allocate(byteCount: 5 * page, alignment: page)
        defer { far.deallocate() }
        let cut = ram.base + 3 * page
        /// The address in `far` (page-aligned) that is `offset` modulo a page: a copy's other end, placed against its end
        /// at the cut.
        func placed(_ offset: Int) -> UnsafeMutableRawPointer { far.baseAddress! + ((offset % page) + page) % page }
        for n in [2, 6, 12, 24, 48, 76, 128, 200, 1000, 3000, 9000] {
            for past in [0, 12] {
                #expect(vdpad_guarded_copy(placed(past - n / 2), cut - n / 2, n) == -1, "read of \(n), \(past) past")
                #expect(vdpad_guarded_copy(cut - n / 2, placed(-n / 2 - past), n) == -1, "write of \(n), \(past) past")
                #expect(vdpad_guarded_copy(placed(past - n), cut - n, n) == 0, "\(n) before the cut, \(past) past")
            }
        }
    }

    @Test("a guarded copy of any size lands whole wherever its ends are, a destination just past its source mod 4 KiB too")
    func guardedCopyPlacements() {
        // Large sizes at placements either side of the window that takes the moves (1–63 bytes past), across their
        // loop's 64-byte steps.
        let page = 4096
        let src = UnsafeMutableRawBufferPointer.allocate(byteCount: 70 * 1024, alignment: page)
        let dst = UnsafeMutableRawBufferPointer.allocate(byteCount: 80 * 1024, alignment: page)
        defer {
            src.deallocate()
            dst.deallocate()
        }
        for k in 0..<src.count { src[k] = UInt8(truncatingIfNeeded: k &* 131 &+ k >> 8) }
        for n in [129, 511, 2047, 2048, 2049, 4095, 4096, 5000, 65536] {
            for (to, from) in [(0, 0), (12, 0), (63, 0), (64, 0), (0, 12), (page + 5, 0), (40, 17)] {
                dst.initializeMemory(as: UInt8.self, repeating: 0xAA)
                #expect(vdpad_guarded_copy(dst.baseAddress! + to, src.baseAddress! + from, n) == 0)
                let copied = memcmp(dst.baseAddress! + to, src.baseAddress! + from, n) == 0
                let untouched = dst[..<to].allSatisfy { $0 == 0xAA } && dst[(to + n)..<(to + n + 64)].allSatisfy { $0 == 0xAA }
                #expect(copied && untouched, "length \(n), destination +\(to), source +\(from)")
            }
        }
    }

    @Test("one memory bound run after run: each run sees its own device's mapping, counts from zero, and unbound holds no region")
    func reboundRunAfterRun() throws {
        let first = try SharedDevice(), second = try SharedDevice()
        defer {
            first.ram.release()
            second.ram.release()
        }
        // The same IOVA in two devices on two files: a memory reads the one it is bound to, never an entry the run
        // before it cached.
        first.ram.base.storeBytes(of: 0x1111_1111, toByteOffset: 0x100, as: UInt32.self)
        second.ram.base.storeBytes(of: 0x2222_2222, toByteOffset: 0x100, as: UInt32.self)
        let memory = OwnerMemory()
        for (shared, expected) in [(first, UInt32(0x1111_1111)), (second, 0x2222_2222), (first, 0x1111_1111)] {
            let device = try shared.registry.withDevice("n0", .owner, by: shared.vmm) { $0 }
            memory.bind(pid: getpid(), device: device, ringASID: 0, bufferASID: 0)
            #expect(memory.counts == MemoryAccessCounts())
            let bytes = try memory.read(0x4000_0100, count: 4, ring: false)
            #expect(bytes.withUnsafeBytes { $0.load(as: UInt32.self) } == expected)
            #expect(memory.counts.sharedAccesses == 1)
            #expect(memory.unbind().sharedAccesses == 1, "unbinding hands the run's counts over")
            #expect(memory.counts == MemoryAccessCounts())
        }
        // A region the VMM unshares while a run holds the device's copy stays mapped until the run ends, not after.
        weak let mapping = try first.registry.withDevice("n0", .owner, by: first.vmm) { $0.sharedMemory.regions.first?.mapping }
        #expect(mapping != nil)
        memory.bind(pid: getpid(), device: try first.registry.withDevice("n0", .owner, by: first.vmm) { $0 }, ringASID: 0, bufferASID: 0)
        #expect(try first.registry.unshareMemory(address: first.ram.address, size: 1, device: "n0", by: first.vmm) == 1)
        #expect(mapping != nil)
        memory.unbind()
        #expect(mapping == nil)
    }

    @Test("a run reaches rings in a shared region in place: counted as shared accesses, a shrunk file a fault there too")
    func ringsInPlace() throws {
        let shared = try SharedDevice()
        defer { shared.ram.release() }
        let (ram, memory) = (shared.ram, try shared.memory())
        // A 4-entry ring: descriptor 2 is a readable buffer of 8 bytes at 0x1000, posted once.
        shared.describe(2, iova: 0x4000_1000, length: 8)
        shared.post([2])
        var ring = shared.ring()
        ring.attach(memory)
        #expect(ring.isInPlace)
        let chain = try #require(try ring.fetch(memory))
        #expect(chain.head == 2 && chain.readable.map(\.iova) == [0x4000_1000] && chain.readable.map(\.length) == [8])
        try ring.complete(chain.head, length: 0, memory)
        ring.detach(memory)
        #expect(!ring.isInPlace)
        #expect(shared.usedIdx == 1)
        #expect(ram.base.load(fromByteOffset: SharedDevice.used + 4, as: UInt32.self) == 2)
        // The avail idx, the head, the descriptor and the element in place, then the used idx: no copy, no lookup each.
        #expect(memory.counts.sharedAccesses == 4 && memory.counts.atomicIndexStores == 1 && memory.counts.processVMAccesses == 0)
        // The VMM shrinks its file: the ring's next access in place is a fault, not a crash.
        #expect(ftruncate(ram.fd, 0) == 0)
        ring.attach(memory)
        #expect(throws: RingError.fault(0x4000_0000 + UInt64(SharedDevice.avail) + 2)) { _ = try ring.fetch(memory) }
        ring.detach(memory)
    }

    @Test("in place, completions are published by one used idx store at the run's end; a store that faults loses them (D24)")
    func usedPublishedPerRun() throws {
        let shared = try SharedDevice()
        defer { shared.ram.release() }
        let (ram, memory) = (shared.ram, try shared.memory())
        // A 4-entry ring with descriptors 0…3 readable 8-byte buffers, all four posted.
        for k in 0..<4 { shared.describe(k, iova: 0x4000_1000 + 8 * UInt64(k), length: 8) }
        shared.post([0, 1, 2, 3])
        var ring = shared.ring()
        ring.attach(memory)
        for _ in 0..<3 {
            let chain = try #require(try ring.fetch(memory))
            try ring.complete(chain.head, length: 1, memory)
        }
        #expect(shared.usedIdx == 0 && ring.lastUsed == 0, "the elements are written, the driver is not shown them yet")
        #expect(ram.base.load(fromByteOffset: SharedDevice.used + 4 + 16, as: UInt32.self) == 2)
        #expect(ring.detach(memory) == 0)
        #expect(shared.usedIdx == 3 && ring.lastUsed == 3)
        #expect(memory.counts.atomicIndexStores == 3, "each completion's idx reached the driver atomically")
        // The last chain, completed in a run whose publication faults (the file cut under the ring): lost, and
        // last_used stays, so the next completion rewrites the same slot.
        ring.attach(memory)
        let last = try #require(try ring.fetch(memory))
        try ring.complete(last.head, length: 1, memory)
        #expect(ftruncate(ram.fd, 0) == 0)
        #expect(ring.detach(memory) == 1 && ring.lastUsed == 3)
    }

    @Test("the perf guard's harness loops every frame it posts, round after round (its rings in place)")
    func harnessLoops() throws {
        let harness = try LoopbackHarness(frameBytes: 64)
        for frames in [64, 1, 33, 64, 64, 7] { #expect(harness.round(frames: frames) == frames) }
    }

    @Test("the perf guard's block harness: every read a round posts is served OK from the sector its header asks for")
    func blockHarnessServes() throws {
        let harness = try BlockHarness()
        for requests in [64, 1, 33, 64, 7] {
            #expect(harness.round(requests: requests) == requests)
            for s in 0..<requests {
                let slot = harness.served(s)
                #expect(slot.status == BlockRequests.ok && slot.read == slot.asked, "slot \(s)")
            }
        }
        #expect(harness.lastCounts.processVMAccesses == 0 && harness.lastCounts.sharedAccesses > 0, "all of it in place")
    }

    @Test("the worker harness: the daemon's worker loops every frame a round posts, kicked and answered by eventfds")
    func workerHarnessLoops() throws {
        let harness = try WorkerLoopbackHarness(frameBytes: 64)
        for frames in [64, 1, 33, 64, 64, 7] { #expect(harness.round(frames: frames) == frames) }
    }

    @Test(
        "in place, a file cut under an RX buffer or a frame is a fault there, not the daemon's end: an RX error ends the run (D9), a frame is dropped"
    )
    func loopbackFileCut() throws {
        let harness = try LoopbackHarness(frameBytes: 64)
        #expect(harness.round(frames: 2) == 2)
        // Frames where the harness keeps RX buffers and RX buffers where it keeps frames, so that a cut at the end of
        // the arena takes the RX buffers only.
        for k in 0..<Int(LoopbackArena.num) {
            let frame = harness.arena.buffer(0, k)
            memset(frame, 0, 12)
            LoopbackArena.mac.withUnsafeBytes { (frame + 12).copyMemory(from: $0.baseAddress!, byteCount: 6) }
            harness.arena.setDescriptor(1, k, frame, 76, flags: 0)
            harness.arena.setDescriptor(0, k, harness.arena.buffer(1, k), 2048, flags: 2)
        }
        #expect(ftruncate(harness.arena.fd, off_t(65536 + Int(LoopbackArena.num) * 2048)) == 0)
        harness.arena.post(frames: 1)
        let cutRX = harness.serve()
        #expect(cutRX.rxErrors == 1 && cutRX.rxCompleted == 0 && cutRX.txCompleted == 0, "the frame read, its RX buffer not written")
        // Now the frames too: the next one's destination cannot be read, so it is dropped and its TX completes.
        #expect(ftruncate(harness.arena.fd, 65536) == 0)
        harness.arena.post(frames: 1)
        let cutTX = harness.serve()
        #expect(cutTX.rxDrops == 1 && cutTX.txCompleted == 1 && cutTX.rxChains == 0)
    }

    @Test("the ring fuzzer's memory harness: rings through ASID 1, buffers through ASID 0; in place when shared, else process_vm")
    func memoryHarness() throws {
        let harness = try MemoryHarness(bytes: 8192)
        // Each page's bytes its own: the file's byte k is k mod 256 plus its page.
        func byte(_ k: Int) -> UInt8 { UInt8(truncatingIfNeeded: k + k / 4096) }
        for k in 0..<8192 { harness.file.base.storeBytes(of: byte(k), toByteOffset: k, as: UInt8.self) }
        let entries = [
            MemoryHarness.Entry(ring: true, iova: 0x10000, size: 4096, offset: 0, permission: .readWrite),
            MemoryHarness.Entry(ring: false, iova: 0x10000, size: 4096, offset: 4096, permission: .read)
        ]
        for shared in [true, false] {
            let memory = try harness.memory(entries, shared: shared)
            // One IOVA, two tables: the rings' reaches the file's first page, the buffers' its second.
            #expect(try memory.read(0x10010, count: 2, ring: true) == [byte(0x10), byte(0x11)])
            #expect(try memory.read(0x10010, count: 2, ring: false) == [byte(4096 + 0x10), byte(4096 + 0x11)])
            #expect((memory.ringWindow(0x10000, bytes: 16, writable: true) != nil) == shared, "in place only where shared")
            #expect(memory.bufferWindow(0x10000, bytes: 16, writable: true) == nil, "a read-only entry gives no place to write")
            #expect(throws: RingError.permission(0x10000)) { try memory.write([1], at: 0x10000, ring: false) }
            #expect(throws: RingError.fault(0x11000)) { try memory.read(0x11000, count: 1, ring: true) }
            try memory.write([0xEE], at: 0x10001, ring: true)
            #expect(harness.file.base.load(fromByteOffset: 1, as: UInt8.self) == 0xEE)
            harness.file.base.storeBytes(of: byte(1), toByteOffset: 1, as: UInt8.self)
        }
    }

    @Test(
        "D24: a used ring mapped write-only: the element is written, the idx store fails (vringh asks it for RO); read-only fails at the element",
        arguments: [Permission.write, .read, .readWrite], [true, false])
    func usedRingPermission(_ permission: Permission, shared: Bool) throws {
        let run = try Self.commandWithUsedRing(
            [MemoryHarness.Entry(ring: true, iova: 0x10800, size: 0x800, offset: 0x800, permission: permission)], shared: shared)
        #expect(run.counters.successes == 1 && run.calls == 1, "the command is answered whatever its completion does")
        switch permission {
        case .readWrite:
            #expect(run.completed == 1 && run.lastUsed == 1 && run.element == 0 && run.idx == 1)
        case .write:
            #expect(run.completed == 0 && run.lastUsed == 0 && run.element == 0 && run.idx == 0, "the element written, the idx not (D24)")
        default:
            #expect(run.completed == 0 && run.lastUsed == 0 && run.element == 0xFFFF && run.idx == 0, "not even the element")
        }
    }

    @Test(
        "the used idx alone in a read-only entry, its elements read-write: no idx store (vdpa_sim's would land; vdpad writes only where writing is allowed)",
        arguments: [true, false])
    func usedIndexReadOnly(shared: Bool) throws {
        let run = try Self.commandWithUsedRing(
            [
                MemoryHarness.Entry(ring: true, iova: 0x10800, size: 4, offset: 0x800, permission: .read),
                MemoryHarness.Entry(ring: true, iova: 0x10804, size: 0x7FC, offset: 0x804, permission: .readWrite)
            ], shared: shared)
        #expect(run.completed == 0 && run.lastUsed == 0 && run.element == 0 && run.idx == 0)
    }

    @Test(
        "a 16-bit ring field split across two IOTLB entries is a fault, as vringh's accessors refuse it (ENOBUFS): the avail idx, the used idx",
        arguments: [true, false])
    func splitRingField(shared: Bool) throws {
        func entry(_ iova: UInt64, _ size: UInt64) -> MemoryHarness.Entry {
            MemoryHarness.Entry(ring: true, iova: iova, size: size, offset: Int(iova - 0x10000), permission: .readWrite)
        }
        // The avail idx (0x10402) across an entry's end at 0x10402: nothing is fetched, nothing answered.
        let availSplit = try Self.commandWithUsedRing(
            [entry(0x10800, 0x800)], shared: shared, descAndAvail: [entry(0x10000, 0x403), entry(0x10403, 0x3FD)])
        #expect(availSplit.counters.requests == 0 && availSplit.completed == 0 && availSplit.element == 0xFFFF)
        // The used idx (0x10802) across one: the command is answered, its element written, its idx never stored.
        let usedSplit = try Self.commandWithUsedRing([entry(0x10800, 3), entry(0x10803, 0x7FD)], shared: shared)
        #expect(usedSplit.counters.successes == 1 && usedSplit.completed == 0 && usedSplit.lastUsed == 0)
        #expect(usedSplit.element == 0 && usedSplit.idx == 0)
    }

    /// Descriptor `k` of the table at `table` (struct vring_desc: addr, len, flags, next, little-endian).
    static func storeDescriptor(_ table: UnsafeMutableRawPointer, _ k: Int, _ iova: UInt64, _ length: UInt32, _ flags: UInt16, next: UInt16) {
        table.storeBytes(of: iova.littleEndian, toByteOffset: 16 * k, as: UInt64.self)
        table.storeBytes(of: length.littleEndian, toByteOffset: 16 * k + 8, as: UInt32.self)
        table.storeBytes(of: flags.littleEndian, toByteOffset: 16 * k + 12, as: UInt16.self)
        table.storeBytes(of: next.littleEndian, toByteOffset: 16 * k + 14, as: UInt16.self)
    }

    /// One MAC_ADDR_SET served on a 4-entry control ring whose desc and avail are where `descAndAvail` maps them (one
    /// read-write entry by default) and whose used ring is where `used` maps it; the buffers' table holds the command
    /// and its ack byte.
    /// Returns the run's counters, calls and completions, last_used, the used element's id (0xFFFF before) and the
    /// used idx, on the shared file or through process_vm.
    static func commandWithUsedRing(
        _ used: [MemoryHarness.Entry], shared: Bool,
        descAndAvail: [MemoryHarness.Entry] = [MemoryHarness.Entry(ring: true, iova: 0x10000, size: 0x800, offset: 0, permission: .readWrite)]
    ) throws -> (counters: ControlQueue.Counters, calls: Int, completed: Int, lastUsed: UInt16, element: UInt16, idx: UInt16) {
        let harness = try MemoryHarness(bytes: 8192)
        let base = harness.file.base
        let buffers = MemoryHarness.Entry(ring: false, iova: 0x20000, size: 4096, offset: 4096, permission: .readWrite)
        func descriptor(_ k: Int, _ iova: UInt64, _ length: UInt32, _ flags: UInt16, next: UInt16 = 0) {
            Self.storeDescriptor(base, k, iova, length, flags, next: next)
        }
        // MAC_ADDR_SET with six bytes (readable), then the ack (writable); posted as avail entry 0.
        for (k, b) in [1, 1, 2, 0, 0, 0, 0, 0x42].enumerated() { base.storeBytes(of: UInt8(b), toByteOffset: 4096 + k, as: UInt8.self) }
        descriptor(0, 0x20000, 8, 1, next: 1)
        descriptor(1, 0x20100, 1, 2)
        base.storeBytes(of: UInt16(1), toByteOffset: 0x400 + 2, as: UInt16.self)
        base.storeBytes(of: UInt16(0xFFFF), toByteOffset: 0x800 + 4, as: UInt16.self)
        let memory = try harness.memory(descAndAvail + used + [buffers], shared: shared)
        var ring = SplitRing(num: 4, desc: 0x10000, avail: 0x10400, used: 0x10800, base: 0)
        let run = ControlQueue.run(&ring, memory, mac: [0, 0, 0, 0, 0, 0], budget: 8)
        return (
            run.counters, run.calls, run.completed, ring.lastUsed, base.load(fromByteOffset: 0x800 + 4, as: UInt16.self),
            base.load(fromByteOffset: 0x800 + 2, as: UInt16.self)
        )
    }

    @Test(
        "the top of the IOVA space mapped: a request whose data runs past 2^64 is IOERR, an indirect table that does is refused; nothing traps",
        arguments: [true, false])
    func topOfTheSpace(shared: Bool) throws {
        // Rings at the file's start (IOVA 0x10000); the top page is the file's second page in the rings' table and
        // its third in the buffers'.
        let harness = try MemoryHarness(bytes: 12288)
        let base = harness.file.base
        let top = UInt64.max - 4095
        let entries = [
            MemoryHarness.Entry(ring: true, iova: 0x10000, size: 4096, offset: 0, permission: .readWrite),
            MemoryHarness.Entry(ring: true, iova: top, size: 4096, offset: 4096, permission: .readWrite),
            MemoryHarness.Entry(ring: false, iova: top, size: 4096, offset: 8192, permission: .readWrite)
        ]
        func descriptor(_ k: Int, _ iova: UInt64, _ length: UInt32, _ flags: UInt16, next: UInt16 = 0, at table: Int = 0) {
            Self.storeDescriptor(base + table, k, iova, length, flags, next: next)
        }
        // Request 0: OUT of one sector from a buffer whose header is the space's last 16 bytes; its status at the
        // top page's start.  Request 1: an indirect table at 2^64 − 16 of two entries, the first readable with NEXT.
        let header = (UInt32(1), UInt32(0), UInt64(2))  // OUT, sector 2
        withUnsafeBytes(of: header) { (base + 12288 - 16).copyMemory(from: $0.baseAddress!, byteCount: 16) }
        descriptor(0, UInt64.max - 15, 16 + 512, 1, next: 1)
        descriptor(1, top, 1, 2)
        descriptor(2, UInt64.max - 15, 32, 4)
        descriptor(0, top + 16, 16, 1, next: 1, at: 8192 - 16)
        for (k, head) in [0, 2].enumerated() { base.storeBytes(of: UInt16(head), toByteOffset: 0x400 + 4 + 2 * k, as: UInt16.self) }
        base.storeBytes(of: UInt16(2), toByteOffset: 0x400 + 2, as: UInt16.self)
        let memory = try harness.memory(entries, shared: shared)
        var ring = SplitRing(num: 4, desc: 0x10000, avail: 0x10400, used: 0x10800, base: 0)
        let run = BlockRequests.run(&ring, memory, disk: RAMDisk(capacity: 64), budget: 8)
        #expect(run.requests == 1 && run.errors == 1 && run.completed == 1, "the OUT answered, the indirect chain refused")
        #expect(base.load(fromByteOffset: 8192, as: UInt8.self) == BlockRequests.ioError)
        #expect(ring.lastAvail == 2 && ring.lastUsed == 1, "the refused chain's head is consumed, never completed")
    }
}
