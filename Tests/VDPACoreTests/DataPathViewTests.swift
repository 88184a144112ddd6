// DataPathViewTests.swift — what a data-path run reads of a device
// (`DataPathView`) translates exactly as the device does, and stays as it
// was taken.
import Testing
@testable import VDPACore
import _VDPATestSupport

@Suite("Data path view")
struct DataPathViewTests {
    /// ASID 0: [0x1000, 0x1FFF] read-only at 0x10000, [0x2000, 0x2FFF] read-write at 0x50000; ASID 1 untouched
    /// (passthrough, R33).
    func mapped() throws -> VDPADevice {
        var d = try device()
        try d.map(iova: 0x1000, size: 0x1000, address: 0x10000, permission: .read)
        try d.map(iova: 0x2000, size: 0x1000, address: 0x50000, permission: .readWrite)
        return d
    }

    @Test("segments, a permission refused, a hole and an identity mapping: as translate gives them")
    func translatesAsTheDevice() throws {
        var d = try mapped()
        let view = d.dataPathView(ringASID: 1, bufferASID: 0)
        #expect(view.ringASID == 1 && view.bufferASID == 0)
        let across = try d.translate(.asid(0), access: .read, iova: 0x1800, size: 0x1000)
        #expect(across.count == 2 && view.translate(ring: false, access: .read, iova: 0x1800, size: 0x1000) == .success(across))
        #expect(
            view.translate(ring: true, access: .write, iova: 0x1800, size: 8)
                == .success([TranslatedSegment(iova: 0x1800, size: 8, address: 0x1800)]), "the rings' ASID 1 is passthrough")
        let readOnly = try #require(d.mappedEntry(asid: 0, containing: 0x1000))
        #expect(view.translate(ring: false, access: .write, iova: 0x1FF0, size: 0x20) == .failure(.permission(at: 0x1FF0, readOnly)))
        expectError(.EACCES) { _ = try d.translate(.asid(0), access: .write, iova: 0x1FF0, size: 0x20) }
        #expect(view.translate(ring: false, access: .read, iova: 0x2800, size: 0x1000) == .failure(.hole(at: 0x3000)))
        #expect(view.translate(ring: false, access: .read, iova: 0x800, size: 0x1000) == .failure(.hole(at: 0x800)))
        do {
            _ = try d.translate(.asid(0), access: .read, iova: 0x2800, size: 0x1000)
            Issue.record("a range past the last entry translated")
        } catch {
            #expect(error.errno == .EFAULT && error.message.contains("0x3000"), "the device names the same first miss")
        }
        #expect(view.mappedEntry(ring: false, containing: 0x2010) == d.mappedEntry(asid: 0, containing: 0x2010))
        #expect(view.mappedEntry(ring: false, containing: 0x3000) == nil)
        #expect(view.mappedEntry(ring: true, containing: 0x3000)?.last == .max, "identity: the whole space")
    }

    @Test("a view keeps the tables it was taken with: an unmap afterwards changes the device, not the run's view")
    func stableAfterUnmap() throws {
        var d = try mapped()
        let view = d.dataPathView(ringASID: 0, bufferASID: 0)
        _ = try d.unmap(iova: 0x2000, size: 0x1000)
        #expect(d.mappedEntry(asid: 0, containing: 0x2000) == nil)
        #expect(view.mappedEntry(ring: true, containing: 0x2000)?.address == 0x50000)
        #expect(
            view.translate(ring: false, access: .write, iova: 0x2000, size: 4)
                == .success([TranslatedSegment(iova: 0x2000, size: 4, address: 0x50000)]))
    }
}
