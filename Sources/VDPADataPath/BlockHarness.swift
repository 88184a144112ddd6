// BlockHarness.swift — the block path's per-request work, alone, as
// LoopbackHarness has the net path's: a vdpasim_blk request queue served on
// the calling thread over a file this process maps twice (once as "the VMM",
// once as vdpad's shared region), with a driver that posts 512-byte reads of
// drawn sectors straight into the ring.  No worker thread, no VMM, no system
// call per request: what is left is the chain's walk (three descriptors),
// the IOTLB entry cache, the header's read, the copy and the completion.
// `vdpad-bench inproc blk512` runs it, so scripts/perf-guard.sh holds the
// block path to a budget too (a sector, not 4 KiB: callgrind counts a copy's
// rep movsb by its bytes, which would drown the rest).
import VDPACore
import VDPAVirtio

#if canImport(Glibc)
    import Glibc
#endif

public final class BlockHarness {
    static let num: UInt16 = 256, bytes = 1 << 20
    /// Requests in flight at most (a round's), each with its header, data and status at fixed places.
    static let slots = 64, dataBytes = 512
    /// The arena's file, kept for the harness's life, and its address.
    let file: HarnessFile
    let base: UnsafeMutableRawPointer
    var device: VDPADevice
    var ring: SplitRing
    /// 8 MiB: enough sectors to draw from, little to fill under valgrind.  Each sector starts with its own number,
    /// so a read shows which sector it was served from.
    let disk: RAMDisk = {
        let capacity: UInt64 = 0x4000
        let contents = [UInt8](unsafeUninitializedCapacity: Int(capacity) * RAMDisk.sectorSize) { buffer, count in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            for sector in 0..<Int(capacity) {
                raw.storeBytes(of: UInt64(sector).littleEndian, toByteOffset: sector * RAMDisk.sectorSize, as: UInt64.self)
            }
            count = buffer.count
        }
        return RAMDisk(capacity: capacity, contents: contents)
    }()
    let memory = OwnerMemory()
    var availIndex: UInt16 = 0
    /// How the last round reached the memory.
    var lastCounts = MemoryAccessCounts()
    /// The next sector is drawn from this (xorshift64): a run's reads land all over the disk.
    var draw: UInt64 = 0x9E37_79B9_7F4A_7C15

    // The arena: the ring's table at 0, avail at 4 KiB, used at 8 KiB; headers from 16 KiB, statuses from 32 KiB,
    // data from 64 KiB.
    func header(_ s: Int) -> UnsafeMutableRawPointer { base + 16384 + 16 * s }
    func status(_ s: Int) -> UnsafeMutableRawPointer { base + 32768 + s }
    func data(_ s: Int) -> UnsafeMutableRawPointer { base + 65536 + Self.dataBytes * s }

    public init() throws {
        file = try HarnessFile(bytes: Self.bytes)
        base = file.base
        let (desc, avail, used) = (HarnessFile.iova, HarnessFile.iova + 4096, HarnessFile.iova + 8192)
        device = try file.device(
            .vdpasimBlock, features: VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", class: .block), rings: [(desc, avail, used)],
            num: Self.num)
        ring = SplitRing(num: Self.num, desc: desc, avail: avail, used: used, base: 0)
        // Slot s is the chain 3s → 3s+1 → 3s+2: its header (readable), its data (writable), its status (writable).
        for s in 0..<Self.slots {
            file.setDescriptor(table: base, 3 * s, header(s), 16, flags: 1, next: 3 * s + 1)
            file.setDescriptor(table: base, 3 * s + 1, data(s), UInt32(Self.dataBytes), flags: 1 | 2, next: 3 * s + 2)
            file.setDescriptor(table: base, 3 * s + 2, status(s), 1, flags: 2)
        }
    }

    /// Posts `requests` reads of a sector each (VIRTIO_BLK_T_IN at a drawn sector), serves the queue once as the
    /// worker would, and returns the requests that completed OK (all of them).
    public func round(requests: Int) -> Int {
        precondition(requests > 0 && requests <= Self.slots)
        for s in 0..<requests {
            draw ^= draw << 13
            draw ^= draw >> 7
            draw ^= draw << 17
            let h = header(s)
            h.storeBytes(of: BlockRequests.RequestType.read.rawValue, as: UInt32.self)  // type; then ioprio 0
            h.storeBytes(of: 0, toByteOffset: 4, as: UInt32.self)
            h.storeBytes(of: draw % disk.capacity, toByteOffset: 8, as: UInt64.self)
            status(s).storeBytes(of: 0xFF, as: UInt8.self)  // not a status the device writes: a test sees it wrote
            (base + 4096 + 4 + 2 * Int(availIndex % Self.num)).storeBytes(of: UInt16(3 * s), as: UInt16.self)
            availIndex &+= 1
        }
        (base + 4096 + 2).storeBytes(of: availIndex, as: UInt16.self)
        memory.bind(pid: getpid(), device: device, ringASID: 0, bufferASID: 0)
        defer { lastCounts = memory.unbind() }
        return BlockRequests.run(&ring, memory, disk: disk, budget: Self.slots).successes
    }

    /// Slot `s` as the last round left it: the sector its header asked for, its status byte, and the sector number
    /// its data starts with (the one it was read from).
    func served(_ s: Int) -> (asked: UInt64, status: UInt8, read: UInt64) {
        (header(s).load(fromByteOffset: 8, as: UInt64.self), status(s).load(as: UInt8.self), data(s).loadUnaligned(as: UInt64.self))
    }
}
