// RecordedMigrationTests.swift — QEMU 10.0's real migration, recorded on both
// sides (Tests/Fixtures, tests/qemu/test_migration.py), measured and priced:
// the window from the source's SUSPEND to the destination's last queue
// enabled, guest memory scaled to other sizes, and the IOTLB_PERSIST and
// DESC_ASID variants, against the published figures the model is calibrated on.
import Testing
import VDPACostModel

@Suite("A recorded migration, priced")
struct RecordedMigrationTests {
    static let fixtures = "/" + #filePath.split(separator: "/").dropLast(2).joined(separator: "/") + "/Fixtures/qemu-10.0-migration-"

    static func migration() throws -> RecordedMigration {
        let source = try #require(CostModel.text(at: fixtures + "source.jsonl"))
        let destination = try #require(CostModel.text(at: fixtures + "destination.jsonl"))
        return try RecordedMigration(source: try RecordedCall.parse(source), destination: try RecordedCall.parse(destination))
    }

    static func model() throws -> CostModel { try CostModel.load(toml: try #require(CostModel.text(at: nil))) }

    @Test("the window runs from the source's SUSPEND to the destination's last enable; guest memory is the batched maps")
    func window() throws {
        let m = try Self.migration()
        #expect(m.measuredSeconds > 0 && m.measuredSeconds < 1)
        #expect(abs(m.recordedGuestGiB - 0.25) < 0.01, "256 MiB of RAM and ROMs: \(m.recordedGuestGiB)")
        let methods = m.windowCalls.map(\.method)
        #expect(methods.first == "suspend" && methods.last == "set_vring")
        #expect(methods.contains("unmap") && methods.contains("map"), "the source unmaps, the destination maps, inside the window")
    }

    @Test("priced at 39 and 128 GiB: as recorded it is the published map-at-start downtime; IOTLB_PERSIST and DESC_ASID take the memory out")
    func priced() throws {
        let (m, model) = (try Self.migration(), try Self.model())
        let c = model.calibration
        let at39 = model.seconds(m.downtime(guestGiB: Double(c.guestGiB), persist: false))
        let at128 = model.seconds(m.downtime(guestGiB: Double(c.predictGuestGiB), persist: false))
        #expect(abs(at39 - c.legacy) / c.legacy < 0.02, "39 GiB: \(at39) s against the published \(c.legacy) s")
        #expect(abs(at128 - c.predictLegacy) / c.predictLegacy < 0.02, "128 GiB: \(at128) s against the published \(c.predictLegacy) s")
        let persist = model.seconds(m.downtime(guestGiB: 128, persist: true))
        #expect(persist < 0.5 && persist == model.seconds(m.downtime(guestGiB: 39, persist: true)), "no memory in the window: \(persist) s")
        let svq = try #require(m.svqSwitch(guestGiB: 39, descASID: false)), desc = try #require(m.svqSwitch(guestGiB: 39, descASID: true))
        #expect(svq.residentPinnedGiB > 38 && svq.coldPinnedGiB < 1, "the source re-maps memory it had mapped: resident pages")
        #expect(model.seconds(desc) < 0.5 && model.seconds(svq) > 1)
    }

    @Test("a record that is not a migration's side is refused, saying why")
    func refusals() throws {
        let source = try #require(CostModel.text(at: Self.fixtures + "source.jsonl"))
        let destination = try #require(CostModel.text(at: Self.fixtures + "destination.jsonl"))
        #expect(throws: CostModel.LoadError.self) {
            _ = try RecordedMigration(source: try RecordedCall.parse(destination), destination: try RecordedCall.parse(destination))
        }
        #expect(throws: CostModel.LoadError.self) {
            _ = try RecordedMigration(source: try RecordedCall.parse(source), destination: try RecordedCall.parse(source))
        }
        #expect(throws: CostModel.LoadError.self) { _ = try RecordedCall.parse(#"{"method":"map","params":{}}"#) }
    }
}
