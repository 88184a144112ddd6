// DeviceRuleTests.swift — one test per rule R-n and edge case #n of
// docs/kernel-rules.md that applies to the model.
// Edge cases that do not apply at this layer are listed in README.md here.
import Testing
@testable import VDPACore
import _VDPATestSupport

@Suite("IOTLB rules")
struct IOTLBRuleTests {
    @Test("R2 / edge #4: a map of size 0 is EINVAL, not EFAULT")
    func r2() throws {
        var d = try device()
        expectError(.EINVAL) { try d.map(iova: 0, size: 0, address: 0, permission: .read) }
        do { try d.map(iova: 0, size: 0, address: 0, permission: .read) } catch { #expect(error.kernelErrno == nil) }
    }

    @Test("R2 (corrected) / edge #4: an unmap of size 0 removes the entry holding iova − 1 and iova; at iova 0, every entry")
    func r2InvalidateSizeZero() throws {
        var d = try device()
        try d.map(iova: 0x1000, size: 0x2000, address: 0, permission: .read)  // [0x1000, 0x2fff]
        try d.map(iova: 0x4000, size: 0x1000, address: 0, permission: .read)  // [0x4000, 0x4fff]
        try d.map(iova: 0x8000, size: 0x1000, address: 0, permission: .read)
        #expect(try d.unmap(iova: 0x1000, size: 0) == 0, "0xfff and 0x1000 are not in one entry")
        #expect(try d.unmap(iova: 0x5000, size: 0) == 0, "0x4fff and 0x5000 are not in one entry")
        #expect(try d.unmap(iova: 0x2000, size: 0) == 1, "[0x1000, 0x2fff] holds both 0x1fff and 0x2000")
        #expect(try d.unmap(iova: 0, size: 0) == 2, "iova 0: [0, 2^64 − 1], every entry")
        #expect(d.sessionTables[0]?.count == 0)
    }

    @Test("edge #14: perm 0 and 7 are stored as given; the permission bits decide what a DMA may do")
    func edge14OutsideTheThree() throws {
        var d = try device()
        try d.map(iova: 0x1000, size: 0x1000, address: 0x9000, permission: Permission(rawValue: 0))
        try d.map(iova: 0x2000, size: 0x1000, address: 0xA000, permission: Permission(rawValue: 7))
        #expect(d.sessionTables[0]!.translate(0x1000)?.permission.rawValue == 0)
        expectError(.EACCES) { _ = try d.translate(.asid(0), access: .read, iova: 0x1000, size: 1) }
        expectError(.EACCES) { _ = try d.translate(.asid(0), access: .write, iova: 0x1000, size: 1) }
        #expect(try d.translate(.asid(0), access: .write, iova: 0x2000, size: 1).first?.address == 0xA000)
        #expect(try d.translate(.asid(0), access: .read, iova: 0x2000, size: 1).first?.address == 0xA000)
    }

    @Test("R3: IOTLB errors keep their reason and say the kernel would report EFAULT")
    func r3() throws {
        var d = try device()
        try d.map(iova: 0x1000, size: 0x2000, address: 0, permission: .readWrite)
        do {
            try d.map(iova: 0x2000, size: 0x1000, address: 0, permission: .readWrite)
            Issue.record("overlap accepted")
        } catch {
            #expect(error.errno == .EEXIST && error.kernelErrno == .EFAULT)
            #expect(error.message == "EEXIST: [0x2000, 0x2fff] overlaps [0x1000, 0x2fff] in ASID 0 of vdpa0 (R11)")
        }
    }

    @Test("R5 / edge #5, #33: session calls need the owner")
    func r5() throws {
        let d = try device()
        #expect(throws: VDPAError.self) { try d.requireOwner(2) }
        try d.requireOwner(1)
        var closed = d
        closed.release()
        expectError(.EPERM) { try closed.requireOwner(1) }
    }

    @Test("R6 / edge #6, #16, #20: address spaces are created lazily by map and batch_begin only; asid ≥ nas fails")
    func r6() throws {
        var d = try device()
        #expect(d.sessionTables[1] == nil)
        expectError(.EINVAL, kernel: .EFAULT) { _ = try d.unmap(asid: 1, iova: 0, size: 1) }  // #16
        expectError(.EINVAL, kernel: .EFAULT) { try d.map(asid: 2, iova: 0, size: 1, address: 0, permission: .read) }  // #6
        #expect(d.sessionTables.allSatisfy { $0 == nil })
        expectError(.EINVAL, kernel: .EFAULT) { try d.batchBegin(asid: 7) }  // #20
        try d.batchBegin(asid: 1)
        #expect(d.sessionTables[1] != nil)
    }

    @Test("R7 / edge #22: the batch gate refuses another ASID and, unlike the kernel, creates nothing")
    func r7() throws {
        var d = try device()
        try d.batchBegin(asid: 0)
        expectError(.EINVAL, kernel: .EFAULT) { try d.batchBegin(asid: 1) }
        expectError(.EINVAL, kernel: .EFAULT) { try d.map(asid: 1, iova: 0, size: 1, address: 0, permission: .read) }
        #expect(d.sessionTables[1] == nil, "deliberate difference: no empty table left behind")
        #expect(d.batchASID == 0, "the batch on ASID 0 stays open")
    }

    @Test("R8: an address space that becomes empty stays (unmap after unmap succeeds)")
    func r8() throws {
        var d = try device()
        try d.map(iova: 0, size: 10, address: 0, permission: .read)
        #expect(try d.unmap(iova: 0, size: 10) == 1)
        #expect(try d.unmap(iova: 0, size: 10) == 0)
    }

    @Test("R9 / edge #13: ASIDs are isolated; the same IOVA maps in both")
    func r9() throws {
        var d = try device()
        try d.map(asid: 0, iova: 0x1000, size: 0x1000, address: 0xA000, permission: .read)
        try d.map(asid: 1, iova: 0x1000, size: 0x1000, address: 0xB000, permission: .write)
        #expect(d.sessionTables[0]?.translate(0x1800)?.address == 0xA000)
        #expect(d.sessionTables[1]?.translate(0x1800)?.address == 0xB000)
    }

    @Test("R11 / edge #8, #9, #10, #11, #12: range, wrap, overlap and adjacency checks")
    func r11() throws {
        var d = try device(range: IOVARange(first: 0x1000, last: .max))
        expectError(.EINVAL, kernel: .EFAULT) { try d.map(iova: 0, size: 0x1000, address: 0, permission: .read) }  // #8
        try d.map(iova: 1 << 40, size: UInt64.max - (1 << 40) + 1, address: 0, permission: .read)  // #9 ends at 2^64−1
        expectError(.EINVAL, kernel: .EFAULT) { try d.map(iova: 2, size: .max, address: 0, permission: .read) }  // #10
        try d.map(iova: 0x1000, size: 0x1000, address: 0, permission: .read)
        expectError(.EEXIST, kernel: .EFAULT) { try d.map(iova: 0x1fff, size: 1, address: 0, permission: .read) }  // #11
        expectError(.EEXIST, kernel: .EFAULT) { try d.map(iova: 0x1000, size: 0x1000, address: 0, permission: .read) }  // identical
        try d.map(iova: 0x2000, size: 0x1000, address: 0, permission: .read)  // #12 adjacent
        #expect(d.sessionTables[0]?.count == 3)
        var narrow = try device(range: IOVARange(first: 0, last: 0xFFFF))
        expectError(.EINVAL, kernel: .EFAULT) { try narrow.map(iova: 0xF000, size: 0x2000, address: 0, permission: .read) }
    }

    @Test("R13: a failed map changes nothing (no table, no commit, no counter)")
    func r13() throws {
        var d = try device()
        let before = d.stats
        expectError(.EINVAL) { try d.map(asid: 1, iova: 2, size: .max, address: 0, permission: .read) }
        #expect(d.sessionTables[1] == nil && d.stats == before)
        #expect(d.deviceMapping(asid: 1) == .passthrough)
    }

    @Test("R14: set_map parents commit outside a batch; a platform IOMMU sees every map at once, even in a batch")
    func r14() throws {
        var d = try device()
        try d.map(iova: 0, size: 0x1000, address: 0x5000, permission: .readWrite)
        #expect(d.deviceMapping(asid: 0) == .table(IntervalTree([entry(0, 0xFFF, 0x5000)])))
        #expect(d.stats.deviceCommits == 1)
        var p = try device(.platformNet)
        try p.batchBegin()
        try p.map(iova: 0, size: 0x1000, address: 0x5000, permission: .readWrite)
        #expect(p.deviceTable(asid: 0)?.count == 1)
        #expect(try p.translate(.asid(0), access: .read, iova: 0x10, size: 1) == [TranslatedSegment(iova: 0x10, size: 1, address: 0x5010)])
    }

    @Test("R15, R38 / edge #17, #18: unmap removes intersecting entries whole and re-syncs even when nothing matched")
    func r15() throws {
        var d = try device()
        try d.map(iova: 0x1000, size: 0x2000, address: 0, permission: .read)
        #expect(try d.unmap(iova: 0x2000, size: 0x10) == 1)  // #17
        #expect(d.sessionTables[0]?.isEmpty == true)
        var fresh = try device()
        try fresh.batchBegin()
        try fresh.batchEnd()
        #expect(fresh.deviceMapping(asid: 0) == .table(IntervalTree()), "R33: an empty commit leaves the ASID empty, not passthrough")
        var e = try device()
        try e.map(asid: 0, iova: 0, size: 1, address: 0, permission: .read)
        _ = try e.unmap(iova: 0x9000, size: 1)
        #expect(e.stats.deviceCommits == 2)  // #18 / R16
    }

    @Test("R16: unmap outside a batch commits the remaining table to a set_map parent")
    func r16() throws {
        var d = try device()
        try d.map(iova: 0, size: 0x1000, address: 0, permission: .read)
        try d.map(iova: 0x1000, size: 0x1000, address: 0, permission: .read)
        _ = try d.unmap(iova: 0, size: 1)
        #expect(d.deviceTable(asid: 0)?.entries() == [entry(0x1000, 0x1FFF, 0, .read)])
    }

    @Test("R17 / edge #19: an unmap whose end wraps removes only an entry spanning both ends")
    func r17() throws {
        var d = try device()
        try d.map(iova: 0x1000, size: 0x1000, address: 0, permission: .read)
        #expect(try d.unmap(iova: 0x3000, size: .max) == 0, "[0x3000, 0x2ffe] wraps; nothing spans both ends")
        #expect(d.sessionTables[0]?.count == 1)
        var w = try device()
        try w.map(iova: 0x100, size: 0x1000, address: 0, permission: .read)
        #expect(try w.unmap(iova: 0x200, size: UInt64.max) == 1, "[0x200, 0x1fe] wrapped: the entry spans both ends")
    }

    @Test("R18 / edge #21: batch_begin twice on one ASID is harmless")
    func r18() throws {
        var d = try device()
        try d.batchBegin(asid: 0)
        try d.batchBegin(asid: 0)
        #expect(d.batchASID == 0)
    }

    @Test("R19: inside a batch the table changes at once but the device keeps the last commit")
    func r19() throws {
        var d = try device()
        try d.map(iova: 0, size: 0x1000, address: 0, permission: .read)
        try d.batchBegin()
        try d.map(iova: 0x1000, size: 0x1000, address: 0, permission: .read)
        expectError(.EEXIST) { try d.map(iova: 0x1000, size: 1, address: 0, permission: .read) }
        #expect(d.deviceTable(asid: 0)?.count == 1)
        try d.batchEnd()
        #expect(d.deviceTable(asid: 0)?.count == 2)
    }

    @Test("R20 / edge #23, #24: batch_end needs the address space; without a batch it is a no-op")
    func r20() throws {
        var d = try device()
        try d.batchBegin(asid: 0)
        expectError(.EINVAL, kernel: .EFAULT) { try d.batchEnd(asid: 1) }  // #23
        #expect(d.batchASID == 0)
        try d.batchEnd(asid: 0)
        let commits = d.stats.deviceCommits
        try d.batchEnd(asid: 0)  // #24
        #expect(d.stats.deviceCommits == commits)
    }

    @Test("R21 / edge #27: a device reset leaves an open batch open")
    func r21() throws {
        var d = try device()
        try d.batchBegin()
        d.reset()
        #expect(d.batchASID == 0)
    }

    @Test("edge #7: asid ≠ 0 without IOTLB_ASID acked is EINVAL here (the kernel silently uses ASID 0)")
    func edge7() throws {
        var d = try device(acked: [.iotlbMessageV2, .iotlbBatch])
        expectError(.EINVAL) { try d.map(asid: 5, iova: 0, size: 1, address: 0, permission: .read) }
        expectError(.EINVAL) { try d.batchBegin(asid: 1) }
        #expect(d.sessionTables.allSatisfy { $0 == nil })
    }

    @Test("edge #14: permissions are stored as given (ro, wo, rw)")
    func edge14() throws {
        var d = try device()
        try d.map(iova: 0, size: 1, address: 0, permission: .write)
        #expect(d.sessionTables[0]?.translate(0)?.permission == .write)
    }
}
