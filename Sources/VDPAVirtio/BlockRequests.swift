// BlockRequests.swift — the request queue of vdpa_sim_blk over a RAM disk:
// IN, OUT, FLUSH, GET_ID, DISCARD and WRITE_ZEROES with the simulator's
// status bytes and used lengths (docs/datapath.md; docs/kernel-rules.md
// D14–D21).  Pure: the ring and its buffers go through `GuestMemory`, the
// disk is a value, so a run is tested on rings in the test's own memory.
// Where vdpa_sim reads past its buffer (a start sector beyond the capacity,
// D15, or a sub-sector tail past the end) vdpad answers IOERR instead.

/// A block device's storage: `capacity` sectors of 512 bytes.  The bytes are memory the disk is given — its own
/// zeroed allocation, or the daemon's shared mapping of the file that keeps the disk (a backing file, a stored
/// memfd), where a write is in the file the moment it is copied: whatever a driver saw completed outlives the
/// daemon with no system call per request.  A disk is a handle on its bytes (copies share them, as two handles
/// on one device would); one worker uses it at a time.
public struct RAMDisk: Sendable {
    public static let sectorSize = 512
    public let capacity: UInt64
    private let storage: Storage

    /// Owns the memory: gives it back (`release`) when the last handle goes.
    private final class Storage: @unchecked Sendable {
        let memory: UnsafeMutableRawBufferPointer
        let release: @Sendable (UnsafeMutableRawBufferPointer) -> Void
        init(_ memory: UnsafeMutableRawBufferPointer, release: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Void) {
            (self.memory, self.release) = (memory, release)
        }
        deinit { release(memory) }
    }

    /// Zeroes a range of the disk; false when it could not (a disk on a file mapping whose file was cut short under
    /// it: the daemon's zeroing catches that fault).  Plain memory by default.
    public var zero: @Sendable (UnsafeMutableRawBufferPointer) -> Bool = { range in
        range.initializeMemory(as: UInt8.self, repeating: 0)
        return true
    }

    /// Makes what was written durable (FLUSH); false when it could not (IOERR).  A disk on a file the daemon maps
    /// syncs the file; plain memory has nothing to do.  Called before the FLUSH completes: a driver that sees it
    /// done may rely on it.
    public var flush: @Sendable () -> Bool = { true }

    /// The disk's bytes, to read.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(mutableBytes) }
    var mutableBytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: storage.memory[0..<Int(capacity) * Self.sectorSize])
    }

    /// A disk in memory of its own.  0x40000 sectors (128 MiB) is vdpa_sim_blk's size (R52).  `contents` fills
    /// the start of the disk (more than the disk holds are ignored), the rest is zero.
    public init(capacity: UInt64 = 0x40000, contents: [UInt8] = []) {
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(capacity) * Self.sectorSize, alignment: 4096)
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
        contents.prefix(bytes.count).withUnsafeBytes { bytes.copyMemory(from: $0) }
        self.init(capacity: capacity, memory: bytes) { $0.deallocate() }
    }

    /// A disk over `memory` (at least `capacity` sectors, its contents the disk's), given back by `release` when
    /// the last handle goes: how the daemon puts a disk on its file mapping.
    public init(
        capacity: UInt64, memory: UnsafeMutableRawBufferPointer, release: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Void
    ) {
        precondition(memory.count >= Int(capacity) * Self.sectorSize, "a disk's memory holds its capacity")
        self.capacity = capacity
        storage = Storage(memory, release: release)
    }

    /// Whether [offset, offset+count) lies on the disk.
    func holds(_ offset: UInt64, _ count: Int) -> Bool {
        offset <= UInt64(bytes.count) && UInt64(count) <= UInt64(bytes.count) - offset
    }

    /// The disk's bytes in [offset, offset+count), to copy into or out of (the caller checked `holds`).
    func range(_ offset: Int, _ count: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: mutableBytes[offset..<offset + count])
    }
}

public enum BlockRequests {
    public enum RequestType: UInt32 { case read = 0, write = 1, flush = 4, getID = 8, discard = 11, writeZeroes = 13 }
    public static let ok: UInt8 = 0, ioError: UInt8 = 1, unsupported: UInt8 = 2
    /// GET_ID's answer: "vdpa_blk_sim" and NULs to 20 bytes.
    public static let deviceID: [UInt8] = Array("vdpa_blk_sim".utf8) + [UInt8](repeating: 0, count: 8)
    /// The most sectors one IN or OUT may move (size_max × seg_max compared with a sector count, as vdpa_sim does).
    static let maxSectors: UInt64 = 131_072

    /// What one run did, for the device to record.
    public struct Run: Equatable, Sendable {
        /// Chains fetched, served with status OK, and answered IOERR or UNSUPP or malformed.
        public var requests = 0, successes = 0, errors = 0
        /// Used entries whose idx store landed; data bytes moved.
        public var completed = 0, bytes = 0
        /// Interrupts owed (one per handled request; none for a malformed chain; none at all when the driver set
        /// NO_INTERRUPT, read at the run's end).
        public var calls = 0
        /// The run stopped at its budget with chains left.
        public var more = false
        /// A FLUSH was served (the disk's `flush` ran before it completed).
        public var flushed = false
        public init() {}
    }

    /// One run over `ring`, in ring order, as vdpasim_blk_work: a chain that cannot be fetched ends the run
    /// and is never completed; a malformed one (no readable or writable part, an empty last writable
    /// descriptor, a header under 16 bytes) is completed with length 0 and no status, and ends the run.
    public static func run(_ ring: inout SplitRing, _ memory: some GuestMemory, disk: RAMDisk, budget: Int) -> Run {
        ring.attach(memory)
        var run = loop(&ring, memory, disk: disk, budget: budget)
        run.completed -= ring.detach(memory)
        if run.calls > 0 && ring.interruptsSuppressed(memory) { run.calls = 0 }
        return run
    }

    /// `run` between the ring's attach and detach, before its interrupts are gated by the driver's NO_INTERRUPT.
    private static func loop(_ ring: inout SplitRing, _ memory: some GuestMemory, disk: RAMDisk, budget: Int) -> Run {
        var run = Run()
        var chain = RingChain(head: 0)  // refilled by each fetch: its buffer lists are made once per run
        for _ in 0..<budget {
            guard (try? ring.fetch(memory, into: &chain)) == true else { return run }
            run.requests += 1
            // The chain's parts are read where they are (its head copied out): a copy of the chain per request
            // would be a copy of its inline buffers and a retain of its spill.
            let head = chain.head
            let (writableTotal, readableTotal) = (chain.writable.totalLength, chain.readable.totalLength)
            // struct virtio_blk_outhdr, little-endian: type u32, reserved u32, sector u64 (on the stack, not an array).
            var header: (UInt64, UInt64) = (0, 0)
            let headerBytes = withUnsafeMutableBytes(of: &header) { SplitRing.gather(&chain.readable, memory, skipping: 0, into: $0) }
            guard !chain.readable.isEmpty, let last = chain.writable.last, last.length > 0, headerBytes == 16 else {
                run.errors += 1
                if (try? ring.complete(head, length: 0, memory)) != nil { run.completed += 1 }
                return run
            }
            let type = UInt32(truncatingIfNeeded: UInt64(littleEndian: header.0)), sector = UInt64(littleEndian: header.1)
            let toPull = readableTotal - 16, toPush = writableTotal - 1
            var pushed = 0
            var status = ioError
            switch RequestType(rawValue: type) {
            case .read? where inRange(sector, bytes: toPush, disk):
                let data = UnsafeRawBufferPointer(disk.range(Int(sector) * RAMDisk.sectorSize, toPush))
                pushed = SplitRing.scatter(data, into: &chain.writable, memory)
                status = pushed == toPush ? ok : ioError
            case .write? where inRange(sector, bytes: toPull, disk):
                // Straight onto the disk, as vdpa_sim pulls into its buffer: a buffer that cannot be read stops the
                // copy with what came before it written, and the request is IOERR.
                let pulled = SplitRing.gather(&chain.readable, memory, skipping: 16, into: disk.range(Int(sector) * RAMDisk.sectorSize, toPull))
                if pulled == toPull {
                    run.bytes += toPull
                    status = ok
                }
            case .flush? where sector == 0:
                run.flushed = true
                status = disk.flush() ? ok : ioError
            case .getID? where sector == 0:
                // Not clamped to the data part (D18): with fewer than 21 writable bytes the ID takes the status byte.
                pushed = SplitRing.scatter(deviceID[...], into: chain.writable, memory)
                if writableTotal < deviceID.count + 1 {
                    run.errors += 1
                    if (try? ring.complete(head, length: UInt32(pushed), memory)) != nil { run.completed += 1 }
                    return run
                }
                status = ok
            case .discard?, .writeZeroes?:
                status =
                    sector != 0
                    ? ioError
                    : discardOrZero(type == RequestType.writeZeroes.rawValue, &chain.readable, memory, toPull: toPull, disk: disk)
            default:
                status = ioError  // an unknown type, a range off the disk, a sector where none belongs (D17, D20)
            }
            run.bytes += pushed
            // The status goes in the last writable byte; used.len counts the data pushed and the status.  A last
            // buffer that runs past the top of the IOVA space takes no status, as its push faults in vringh.
            let (statusAt, past) = last.iova.addingReportingOverflow(UInt64(last.length) - 1)
            if !past { _ = withUnsafeBytes(of: status) { try? memory.copy(from: $0, to: statusAt, ring: false) } }
            if status == ok { run.successes += 1 } else { run.errors += 1 }
            if (try? ring.complete(head, length: UInt32(pushed + 1), memory)) != nil { run.completed += 1 }
            run.calls += 1
        }
        run.more = (try? ring.hasWork(memory)) ?? false
        return run
    }

    /// IN/OUT's range: at most `maxSectors` sectors, the whole byte range on the disk (sub-sector tails too).
    static func inRange(_ sector: UInt64, bytes: Int, _ disk: RAMDisk) -> Bool {
        guard bytes >= 0, UInt64(bytes / RAMDisk.sectorSize) <= maxSectors, sector <= disk.capacity else { return false }
        return disk.holds(sector * UInt64(RAMDisk.sectorSize), bytes)
    }

    /// DISCARD and WRITE_ZEROES: exactly one 16-byte segment {sector, num_sectors, flags}; DISCARD with any
    /// flag and WRITE_ZEROES with one other than UNMAP are UNSUPP; WRITE_ZEROES zeroes, DISCARD keeps the data.
    static func discardOrZero(
        _ zeroes: Bool, _ readable: inout RingBuffers, _ memory: some GuestMemory, toPull: Int, disk: RAMDisk
    ) -> UInt8 {
        guard toPull == 16 else { return ioError }
        var segment = [UInt8](repeating: 0, count: 16)
        guard segment.withUnsafeMutableBytes({ SplitRing.gather(&readable, memory, skipping: 16, into: $0) }) == 16 else { return ioError }
        let sector = SplitRing.le64(segment, 0), count = UInt64(SplitRing.le32(segment, 8)), flags = SplitRing.le32(segment, 12)
        if zeroes ? flags & ~1 != 0 : flags != 0 { return unsupported }
        guard sector <= disk.capacity, count <= disk.capacity - sector else { return ioError }
        if zeroes && !disk.zero(disk.range(Int(sector) * RAMDisk.sectorSize, Int(count) * RAMDisk.sectorSize)) { return ioError }
        return ok
    }
}
