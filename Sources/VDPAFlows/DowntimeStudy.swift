// DowntimeStudy.swift — the cost model calibrated on one published pair,
// checked against the other, and applied to every flow.
import VDPACore
import VDPACostModel
import VDPAJSON

public struct DowntimeStudy {
    public let model: CostModel
    public let runner: FlowRunner
    /// Predicted vs published at the second size: (legacy, early map).
    public let predicted: (legacy: Double, earlyMap: Double)

    public init(modelTOML: String, runner: FlowRunner) throws {
        self.runner = runner
        let raw = try CostModel.load(toml: modelTOML)
        let c = raw.calibration
        let at = FlowParameters(guestGiB: c.guestGiB, queuePairs: c.queuePairs)
        let legacy = runner.run(.migrationLegacy, on: .linux67, at), early = runner.run(.migrationEarlyMap, on: .linux67, at)
        model = try raw.calibrated(legacy: legacy.window, earlyMap: early.window)
        let next = FlowParameters(guestGiB: c.predictGuestGiB, queuePairs: c.queuePairs)
        predicted = (
            model.seconds(runner.run(.migrationLegacy, on: .linux67, next).window),
            model.seconds(runner.run(.migrationEarlyMap, on: .linux67, next).window)
        )
    }

    public var errors: (legacy: Double, earlyMap: Double) {
        let c = model.calibration
        return ((predicted.legacy - c.predictLegacy) / c.predictLegacy, (predicted.earlyMap - c.predictEarlyMap) / c.predictEarlyMap)
    }

    public static func f(_ v: Double, _ digits: Int = 2) -> String {
        var s = String(Int((abs(v) * pow10(digits)).rounded()))
        while s.count <= digits { s = "0" + s }
        let cut = s.index(s.endIndex, offsetBy: -digits)
        return (v < 0 ? "-" : "") + s[..<cut] + (digits > 0 ? "." + s[cut...] : "")
    }

    static func pow10(_ n: Int) -> Double { (0..<n).reduce(1.0) { r, _ in r * 10 } }

    public func calibrationReport() -> String {
        let c = model.calibration
        return """
            cost model calibrated on \(c.guestGiB) GiB, \(c.queuePairs) queue pairs (published \(Self.f(c.legacy)) s → \(Self.f(c.earlyMap)) s):
              pin_cold \(Self.f(model.pinColdPerGiB, 4)) s/GiB (Palmer's independent figure ≈ 0.06), unpin_and_mr \(Self.f(model.unpinAndMRPerGiB, 4)) s/GiB
            predicted \(c.predictGuestGiB) GiB: map at start \(Self.f(predicted.legacy)) s (published \(Self.f(c.predictLegacy)), error \(Self.f(errors.legacy * 100, 1)) %), \
            early map \(Self.f(predicted.earlyMap)) s (published \(Self.f(c.predictEarlyMap)), error \(Self.f(errors.earlyMap * 100, 1)) %)
            """
    }

    public func calibrationJSON() -> String {
        let c = model.calibration
        let doc: JSON = .object([
            (
                "calibration",
                .object([
                    ("guest_gib", JSON(c.guestGiB)), ("queue_pairs", JSON(c.queuePairs)),
                    ("pin_cold_s_per_gib", JSON(double: model.pinColdPerGiB)), ("unpin_and_mr_s_per_gib", JSON(double: model.unpinAndMRPerGiB))
                ])
            ),
            (
                "prediction",
                .object([
                    ("guest_gib", JSON(c.predictGuestGiB)),
                    ("legacy_s", JSON(double: predicted.legacy)), ("published_legacy_s", JSON(double: c.predictLegacy)),
                    ("early_map_s", JSON(double: predicted.earlyMap)), ("published_early_map_s", JSON(double: c.predictEarlyMap)),
                    ("error_legacy", JSON(double: errors.legacy)), ("error_early_map", JSON(double: errors.earlyMap))
                ])
            )
        ])
        return doc.text
    }

    public struct Row {
        public let result: FlowResult
        public let modelled: Double
        public var failures: [String] { result.failures }

        public static let header = "FLOW                       PARENT  GIB    CALLS  IOTLB_ENTRIES  ENTRIES_COPIED  MODELLED_S  VDPAD_MS  VDPAD/MODEL"

        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

        public var line: String {
            let r = result
            let share = modelled > 0 ? r.vdpadSeconds / modelled * 100 : 0
            return pad(r.flow.rawValue, 27) + pad(r.parent.rawValue, 8) + pad("\(r.parameters.guestGiB)", 7) + pad("\(r.totalCalls)", 7)
                + pad(String(Int(r.window.entries)), 15) + pad(String(Int(r.window.entriesCopied)), 16)
                + pad(DowntimeStudy.f(modelled, 3), 12) + pad(DowntimeStudy.f(r.vdpadSeconds * 1000, 2), 10) + DowntimeStudy.f(share, 3) + " %"
        }

        public var json: String {
            let r = result
            let v: JSON = .object([
                ("flow", .string(r.flow.rawValue)), ("parent", .string(r.parent.rawValue)), ("guest_gib", JSON(r.parameters.guestGiB)),
                ("queue_pairs", JSON(r.parameters.queuePairs)), ("page_size", JSON(Int(r.parameters.pageSize))),
                ("calls", JSON(r.totalCalls)), ("window_calls", JSON(r.window.calls)),
                ("iotlb_entries", JSON(double: r.window.entries)), ("entries_copied", JSON(double: r.window.entriesCopied)),
                ("modelled_downtime_s", JSON(double: modelled)), ("vdpad_s", JSON(double: r.vdpadSeconds))
            ])
            return v.text
        }
    }

    public func row(_ flow: Flow, _ parent: ParentKind, _ p: FlowParameters) -> Row {
        let r = runner.run(flow, on: parent, p)
        return Row(result: r, modelled: model.seconds(r.window))
    }
}

extension JSON {
    /// A double as the study writes it (the project's JSON keeps non-integers as their text; NaN and the
    /// infinities, which JSON has no word for, as null).
    public init(double d: Double) { self = d.isFinite ? .number("\(d)") : .null }
}
