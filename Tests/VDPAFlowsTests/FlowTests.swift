// FlowTests.swift — the built-in flows run cleanly on real devices, do what
// their QEMU counterparts do, and the cost model predicts the published pair
// it was not calibrated on.
import Foundation
import Testing
import VDPACostModel
@testable import VDPAFlows

@Suite("Flows and the cost model")
struct FlowTests {
    static var modelTOML: String {
        get throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            return try String(contentsOf: root.appendingPathComponent("config/cost-model.toml"), encoding: .utf8)
        }
    }

    @Test("every flow runs on both parent kinds with every call answered successfully")
    func flowsRunClean() {
        let runner = FlowRunner()
        for flow in Flow.allCases {
            for parent in ParentKind.allCases {
                let r = runner.run(flow, on: parent, FlowParameters(guestGiB: 4, queuePairs: 2))
                #expect(r.failures.isEmpty, "\(flow) on \(parent): \(r.failures)")
                #expect(r.totalCalls > 10)
            }
        }
    }

    @Test("IOTLB_PERSIST removes the RAM unmap and re-map from a reboot and a migration; DESC_ASID moves only rings")
    func persistAndDescASID() {
        let runner = FlowRunner()
        let p = FlowParameters(guestGiB: 39, queuePairs: 8)
        let reboot = runner.run(.reboot, on: .linux67, p).window, kept = runner.run(.rebootPersist, on: .linux67, p).window
        #expect(reboot.unpinnedGiB >= 39 && reboot.residentPinnedGiB >= 39)
        #expect(kept.unpinnedGiB == 0 && kept.residentPinnedGiB == 0 && kept.calls < reboot.calls)
        // On a legacy parent the VMM cannot ack IOTLB_PERSIST: the flow is the plain reboot.
        #expect(runner.run(.rebootPersist, on: .legacy, p).window == reboot)
        #expect(runner.run(.migrationPersist, on: .legacy, p).window == runner.run(.migrationEarlyMap, on: .legacy, p).window)
        let migration = runner.run(.migrationPersist, on: .linux67, p).window
        #expect(migration.coldPinnedGiB == 0 && migration.residentPinnedGiB == 0 && migration.unpinnedGiB == 0)
        let svq = runner.run(.svqSwitch, on: .linux67, p).window, desc = runner.run(.svqSwitchDescASID, on: .linux67, p).window
        #expect(svq.residentPinnedGiB >= 39 && desc.residentPinnedGiB == 0 && desc.unpinnedGiB == 0)
        #expect(runner.run(.svqSwitchDescASID, on: .legacy, p).window == svq)
    }

    @Test("the host page size sets the kernel's entry count: 262,144 per GiB at 4 KiB, 512 at 2 MiB, 1 at 1 GiB")
    func entriesByPageSize() {
        let runner = FlowRunner()
        for (page, perGiB) in [(UInt64(4096), 262_144.0), (2 << 20, 512.0), (1 << 30, 1.0)] {
            let w = runner.run(.destinationStart, on: .linux67, FlowParameters(guestGiB: 64, queuePairs: 1, pageSize: page)).window
            #expect(abs(w.entries - 64 * perGiB) <= perGiB, "page \(page): \(w.entries)")
        }
    }

    @Test("calibrated on the 39 GiB pair, the model predicts the 128 GiB pair within 5 %, and pin_cold agrees with Palmer's 0.06 s/GiB")
    func calibrationPredicts() throws {
        let study = try DowntimeStudy(modelTOML: try Self.modelTOML, runner: FlowRunner())
        #expect(abs(study.errors.legacy) < 0.05 && abs(study.errors.earlyMap) < 0.05, "\(study.calibrationReport())")
        #expect(abs(study.model.pinColdPerGiB - 0.06) < 0.015, "\(study.model.pinColdPerGiB)")
        // Calibrated exactly on its own pair.
        let at = FlowParameters(guestGiB: 39, queuePairs: 8)
        #expect(abs(study.row(.migrationLegacy, .linux67, at).modelled - 4.72) < 1e-6)
        #expect(abs(study.row(.migrationEarlyMap, .linux67, at).modelled - 2.09) < 1e-6)
    }

    @Test("the model file's [calibrated] section is what the flows solve now (vdpad-bench flows --calibrate rewrites it)")
    func cachedCalibrationIsCurrent() throws {
        let cached = try CostModel.load(toml: try Self.modelTOML)
        #expect(cached.isCalibrated, "config/cost-model.toml has no [calibrated] section")
        let solved = try DowntimeStudy(modelTOML: try Self.modelTOML, runner: FlowRunner()).model
        #expect(
            abs(cached.pinColdPerGiB - solved.pinColdPerGiB) <= 1e-12 * abs(solved.pinColdPerGiB),
            "\(cached.pinColdPerGiB) vs \(solved.pinColdPerGiB)")
        #expect(abs(cached.unpinAndMRPerGiB - solved.unpinAndMRPerGiB) <= 1e-12 * abs(solved.unpinAndMRPerGiB))
        // Writing the section again changes nothing: the file is its own fixed point.
        let text = try Self.modelTOML
        #expect(CostModel.replacingCalibration(in: text, with: solved.calibrationSection) == text)
        // A model without the section is not calibrated, and replay says so rather than pricing with NaN.
        let bare = CostModel.replacingCalibration(in: text, with: "")
        #expect(try !CostModel.load(toml: bare).isCalibrated)
    }

    @Test("a bad model file is refused with the key named")
    func badModel() {
        #expect(throws: CostModel.LoadError.self) { try CostModel.load(toml: "[fixed]\nsuspend_s = 0.037\n") }
        #expect(throws: CostModel.LoadError.self) { try CostModel.load(toml: "[fixed]\nsuspend_s = \"x\"\n") }
    }
}
