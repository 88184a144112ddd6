// BlockRequestsTests.swift — vdpa_sim_blk's request queue over a RAM disk on
// rings in the test's own memory: one test per case of the reference that
// applies (docs/kernel-rules.md D14–D21), and data that round-trips.
import Testing
@testable import VDPAVirtio

@Suite("Block requests (vdpa_sim_blk)")
struct BlockRequestsTests {
    /// Posts one request as descriptors 3k, 3k+1, 3k+2: the 16-byte header, then a data buffer (readable for
    /// OUT/DISCARD/WRITE_ZEROES with `payload`, writable with `readInto` bytes), then the status byte.
    static func post(
        _ d: inout Driver, _ k: UInt16, type: UInt32, sector: UInt64, payload: [UInt8]? = nil, readInto: UInt32 = 0,
        status: Bool = true
    ) {
        let header = UInt64(0x4000 + 0x100 * Int(k)), data = UInt64(0x8000 + 0x1000 * Int(k)), statusAt = UInt64(0xF000 + Int(k))
        var h = [UInt8](repeating: 0, count: 16)
        for i in 0..<4 { h[i] = UInt8(truncatingIfNeeded: type >> (8 * UInt32(i))) }
        for i in 0..<8 { h[8 + i] = UInt8(truncatingIfNeeded: sector >> (8 * UInt64(i))) }
        d.m.bytes.replaceSubrange(Int(header)..<Int(header) + 16, with: h)
        var chain: [(UInt64, UInt32, Bool)] = [(header, 16, false)]
        if let payload {
            d.m.bytes.replaceSubrange(Int(data)..<Int(data) + payload.count, with: payload)
            chain.append((data, UInt32(payload.count), false))
        }
        if readInto > 0 { chain.append((data, readInto, true)) }
        if status { chain.append((statusAt, 1, true)) }
        for (i, (addr, len, writable)) in chain.enumerated() {
            let index = 3 * k + UInt16(i), last = i == chain.count - 1
            d.descriptor(index, addr: addr, len: len, flags: (last ? 0 : 1) | (writable ? 2 : 0), next: index + 1)
        }
        d.post(3 * k)
    }

    /// The used length of the n-th completion.
    static func usedLength(_ d: Driver, _ n: Int) -> UInt32 { d.m.u32(Int(d.used) + 8 + 8 * n) }
    static func status(_ d: Driver, _ k: Int) -> UInt8 { d.m.bytes[0xF000 + k] }

    @Test("a status buffer that runs past 2^64 takes no status and the request still completes, never the daemon's end")
    func statusPastTheTop() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring()
        Self.post(&d, 0, type: 4, sector: 0, status: false)
        d.descriptor(0, addr: 0x4000, len: 16, flags: 1, next: 1)
        d.descriptor(1, addr: UInt64.max - 7, len: 16, flags: 2)
        let run = BlockRequests.run(&ring, d.m, disk: RAMDisk(capacity: 64), budget: 8)
        #expect(run.requests == 1 && run.completed == 1 && Self.usedLength(d, 0) == 1, "FLUSH served, its status nowhere")
    }

    @Test("FLUSH runs the disk's flush before it completes (a driver that sees it done relies on it); a flush that fails is IOERR")
    func flushBeforeCompletion() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring(), disk = RAMDisk(capacity: 64)
        final class Seen: @unchecked Sendable {  // one thread: the test's
            let m: FlatMemory, used: Int
            var usedIdx: [UInt16] = []
            init(_ m: FlatMemory, _ used: Int) { (self.m, self.used) = (m, used) }
        }
        let seen = Seen(d.m, Int(d.used))
        disk.flush = {
            seen.usedIdx.append(seen.m.u16(seen.used + 2))
            return seen.usedIdx.count == 1
        }
        Self.post(&d, 0, type: 1, sector: 3, payload: [UInt8](repeating: 0x5A, count: 512))
        Self.post(&d, 1, type: 4, sector: 0)
        Self.post(&d, 2, type: 4, sector: 0)
        let run = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
        #expect(seen.usedIdx == [1, 2], "each flush ran before its FLUSH completed")
        #expect(run.flushed && Self.status(d, 1) == 0 && Self.status(d, 2) == 1 && run.successes == 2 && run.errors == 1)
    }

    @Test("NO_INTERRUPT in avail flags: requests are served and completed, and no interrupt is owed (§1)")
    func noInterrupt() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring(), disk = RAMDisk(capacity: 64)
        d.m.put16(1, Int(d.avail))
        Self.post(&d, 0, type: 1, sector: 2, payload: [UInt8](repeating: 7, count: 512))
        let run = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
        #expect(run.successes == 1 && run.completed == 1 && run.calls == 0 && Self.status(d, 0) == 0)
    }

    @Test("OUT then IN: the data round-trips; statuses OK; used.len 1 and data+1; one call each")
    func roundTrip() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring(), disk = RAMDisk(capacity: 64)
        let data = (0..<1024).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
        Self.post(&d, 0, type: 1, sector: 2, payload: data)
        Self.post(&d, 1, type: 0, sector: 2, readInto: 1024)
        let run = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
        #expect(run.requests == 2 && run.successes == 2 && run.completed == 2 && run.calls == 2 && run.bytes == 2048)
        #expect(Self.status(d, 0) == 0 && Self.status(d, 1) == 0)
        #expect(Self.usedLength(d, 0) == 1 && Self.usedLength(d, 1) == 1025)
        #expect(Array(d.m.bytes[0x9000..<0x9000 + 1024]) == data && Array(disk.bytes[1024..<2048]) == data)
    }

    @Test("D14, D15: a range past the end, or a start sector beyond it, is IOERR with used.len 1 (vdpad never reads past the disk)")
    func ranges() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring(), disk = RAMDisk(capacity: 64)
        Self.post(&d, 0, type: 0, sector: 63, readInto: 1024)  // 2 sectors needed, 1 left
        Self.post(&d, 1, type: 1, sector: 0x50000, payload: [1, 2])
        Self.post(&d, 2, type: 0, sector: 0, readInto: 100)  // D16: a partial sector is fine
        let run = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
        #expect(Self.status(d, 0) == 1 && Self.status(d, 1) == 1 && Self.status(d, 2) == 0)
        #expect(Self.usedLength(d, 0) == 1 && Self.usedLength(d, 1) == 1 && Self.usedLength(d, 2) == 101)
        #expect(run.errors == 2 && run.successes == 1)
    }

    @Test("D17: FLUSH or GET_ID with a sector is IOERR; FLUSH at 0 is OK; GET_ID gives vdpa_blk_sim in 21 bytes")
    func flushAndID() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring(), disk = RAMDisk(capacity: 64)
        Self.post(&d, 0, type: 4, sector: 5)
        Self.post(&d, 1, type: 8, sector: 1, readInto: 20)
        Self.post(&d, 2, type: 4, sector: 0)
        Self.post(&d, 3, type: 8, sector: 0, readInto: 20)
        _ = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
        #expect((0..<4).map { Self.status(d, $0) } == [1, 1, 0, 0])
        #expect(Self.usedLength(d, 3) == 21 && Array(d.m.bytes[0xB000..<0xB000 + 20]) == BlockRequests.deviceID)
    }

    @Test("D18: GET_ID with one writable byte: that byte is 'v', used.len 1, no call, the run ends")
    func shortID() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring(), disk = RAMDisk(capacity: 64)
        Self.post(&d, 0, type: 8, sector: 0)  // only the status byte is writable
        Self.post(&d, 1, type: 4, sector: 0)
        let run = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
        #expect(Self.status(d, 0) == UInt8(ascii: "v") && Self.usedLength(d, 0) == 1 && run.calls == 0 && run.requests == 1)
    }

    @Test("D19: DISCARD with a flag UNSUPP; WRITE_ZEROES with UNMAP zeroes, with another flag UNSUPP; DISCARD keeps the data")
    func discardAndZeroes() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring(), disk = RAMDisk(capacity: 64)
        func segment(_ sector: UInt64, _ count: UInt32, _ flags: UInt32) -> [UInt8] {
            (0..<8).map { UInt8(truncatingIfNeeded: sector >> (8 * UInt64($0))) }
                + (0..<4).map { UInt8(truncatingIfNeeded: count >> (8 * UInt32($0))) }
                + (0..<4).map { UInt8(truncatingIfNeeded: flags >> (8 * UInt32($0))) }
        }
        Self.post(&d, 0, type: 1, sector: 0, payload: [UInt8](repeating: 0xAB, count: 2048))
        Self.post(&d, 1, type: 11, sector: 0, payload: segment(0, 2, 1))
        Self.post(&d, 2, type: 11, sector: 0, payload: segment(0, 2, 0))
        Self.post(&d, 3, type: 13, sector: 0, payload: segment(1, 2, 2))
        Self.post(&d, 4, type: 13, sector: 0, payload: segment(1, 2, 1))
        _ = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
        #expect((0..<5).map { Self.status(d, $0) } == [0, 2, 0, 2, 0])
        #expect(disk.bytes[0..<512].allSatisfy { $0 == 0xAB }, "DISCARD keeps the data")
        #expect(disk.bytes[512..<1536].allSatisfy { $0 == 0 } && disk.bytes[1536..<2048].allSatisfy { $0 == 0xAB })
    }

    @Test("D25: an OUT whose second buffer cannot be read is IOERR with its first buffer on the disk (vdpa_sim pulls onto its disk)")
    func partialWrite() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring()
        let disk = RAMDisk(capacity: 64)
        var header = [UInt8](repeating: 0, count: 16)
        header[0] = 1  // OUT
        header[8] = 2  // sector 2
        d.m.bytes.replaceSubrange(0x4000..<0x4010, with: header)
        d.m.bytes.replaceSubrange(0x8000..<0x8400, with: [UInt8](repeating: 0x77, count: 1024))
        d.m.hole = 0x8200..<0x8400
        d.descriptor(0, addr: 0x4000, len: 16, flags: 1, next: 1)
        d.descriptor(1, addr: 0x8000, len: 512, flags: 1, next: 2)
        d.descriptor(2, addr: 0x8200, len: 512, flags: 1, next: 3)
        d.descriptor(3, addr: 0xF000, len: 1, flags: 2)
        d.post(0)
        let run = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
        #expect(Self.status(d, 0) == 1 && run.errors == 1 && Self.usedLength(d, 0) == 1)
        #expect(disk.bytes[1024..<1536].allSatisfy { $0 == 0x77 } && disk.bytes[1536..<2048].allSatisfy { $0 == 0 })
    }

    @Test("WRITE_ZEROES that cannot zero the disk (a file cut short under it) is IOERR")
    func zeroesFault() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring()
        var disk = RAMDisk(capacity: 64, contents: [UInt8](repeating: 0xAB, count: 2048))
        disk.zero = { _ in false }
        let segment: [UInt8] = [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]  // sector 1, 2 sectors, no flags
        Self.post(&d, 0, type: 13, sector: 0, payload: segment)
        _ = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
        #expect(Self.status(d, 0) == 1 && disk.bytes[512..<1536].allSatisfy { $0 == 0xAB })
    }

    @Test("D20: an unknown type, or DISCARD with two segments, is IOERR")
    func unknown() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring(), disk = RAMDisk(capacity: 64)
        Self.post(&d, 0, type: 10, sector: 0)
        Self.post(&d, 1, type: 11, sector: 0, payload: [UInt8](repeating: 0, count: 32))
        _ = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
        #expect(Self.status(d, 0) == 1 && Self.status(d, 1) == 1)
    }

    @Test("D21: a chain with nothing writable: used.len 0, no status, no call, the run ends")
    func nothingWritable() {
        var d = Driver(m: FlatMemory(), num: 32), ring = d.ring(), disk = RAMDisk(capacity: 64)
        Self.post(&d, 0, type: 4, sector: 0, status: false)
        Self.post(&d, 1, type: 4, sector: 0)
        let run = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
        #expect(run.requests == 1 && run.completed == 1 && run.calls == 0 && Self.usedLength(d, 0) == 0)
    }

    @Test("a disk's contents fill its start; a disk over given memory writes into it and gives it back once; FLUSH is reported")
    func memoryAndFlush() {
        let disk0 = RAMDisk(capacity: 4, contents: [1, 2, 3] + [UInt8](repeating: 9, count: 5000))
        #expect(disk0.bytes.count == 2048 && Array(disk0.bytes[0..<3]) == [1, 2, 3] && disk0.bytes[2047] == 9, "more than the disk: cut")
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 512 + 100, alignment: 8)
        memory.initializeMemory(as: UInt8.self, repeating: 0xEE)
        final class Count: @unchecked Sendable { var n = 0 }  // one thread: the test's
        let released = Count()
        do {
            let disk = RAMDisk(capacity: 64, memory: memory) { _ in released.n += 1 }
            var d = Driver(m: FlatMemory(), num: 32), ring = d.ring()
            Self.post(&d, 0, type: 1, sector: 3, payload: [UInt8](repeating: 0x5A, count: 1024))
            Self.post(&d, 1, type: 4, sector: 0)
            Self.post(&d, 2, type: 0, sector: 63, readInto: 512)
            let run = BlockRequests.run(&ring, d.m, disk: disk, budget: 8)
            #expect(run.flushed && run.successes == 3)
            #expect(memory[1536..<2560].allSatisfy { $0 == 0x5A } && memory[1535] == 0xEE && memory[2560] == 0xEE)
            #expect(d.m.bytes[0xA000..<0xA000 + 512].allSatisfy { $0 == 0xEE }, "the last sector is the given memory's")
            #expect(disk.bytes.count == 64 * 512, "the disk is its capacity, not all it was given")
        }
        #expect(released.n == 1)
        memory.deallocate()
    }
}
