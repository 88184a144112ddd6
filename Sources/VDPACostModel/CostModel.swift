// CostModel.swift — what the kernel and an mlx5-like parent would spend on
// a flow's calls (config/cost-model.toml, every value with its source), and
// the calibration of its two unknowns on one published downtime pair.  A
// module of its own: pricing a recorded flow (vdpad-cli replay) needs the
// model and the calibration cached in its file, not the registry or the RPC
// layer that running the calibration flows takes (VDPAFlows).
import TOMLKit
import VDPAJSON

/// What a window of a flow did, in the units the model prices.
public struct Tally: Equatable, Sendable {
    public var calls = 0
    public var coldPinnedGiB = 0.0
    public var residentPinnedGiB = 0.0
    public var unpinnedGiB = 0.0
    public var suspends = 0
    public var deviceStarts = 0
    public var cvqCommands = 0
    /// IOTLB entries the kernel makes (one per physically contiguous run of the host's pages).
    public var entries = 0.0
    /// Entries copied into device mappings (set_map commits), at the same granularity.
    public var entriesCopied = 0.0

    public init() {}

    public static func + (a: Tally, b: Tally) -> Tally {
        var t = a
        t.calls += b.calls
        t.coldPinnedGiB += b.coldPinnedGiB
        t.residentPinnedGiB += b.residentPinnedGiB
        t.unpinnedGiB += b.unpinnedGiB
        t.suspends += b.suspends
        t.deviceStarts += b.deviceStarts
        t.cvqCommands += b.cvqCommands
        t.entries += b.entries
        t.entriesCopied += b.entriesCopied
        return t
    }
}

public struct CostModel: Sendable {
    public var suspend = 0.037
    public var vqCreateResume = 0.370
    public var cvqCommand = 0.0002
    public var perCall = 0.000005
    public var pinResidentPerGiB = 0.00013
    public var pinColdPerGiB = 0.0
    public var unpinAndMRPerGiB = 0.0
    public var perEntry = 0.0
    public var calibration = Calibration()
    /// Whether pin_cold and unpin_and_mr hold solved values (from the file's [calibrated] section or from
    /// `calibrated(legacy:earlyMap:)`), not the NaN a "calibrated" marker leaves.
    public var isCalibrated: Bool { pinColdPerGiB.isFinite && unpinAndMRPerGiB.isFinite }

    public struct Calibration: Sendable {
        public var guestGiB = 39, queuePairs = 8
        public var legacy = 4.72, earlyMap = 2.09
        public var predictGuestGiB = 128
        public var predictLegacy = 14.72, predictEarlyMap = 5.83
    }

    public init() {}

    /// The modelled seconds of a tally.
    public func seconds(_ t: Tally) -> Double {
        Double(t.calls) * perCall + t.coldPinnedGiB * pinColdPerGiB + t.residentPinnedGiB * pinResidentPerGiB
            + t.unpinnedGiB * unpinAndMRPerGiB + Double(t.suspends) * suspend + Double(t.deviceStarts) * vqCreateResume
            + Double(t.cvqCommands) * cvqCommand + t.entries * perEntry
    }

    public struct LoadError: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// Reads config/cost-model.toml.  Values marked "calibrated" take the [calibrated] section's cached
    /// solution when the file has one (`vdpad-bench flows --calibrate` writes it; a test holds it current),
    /// else they are left for `calibrated(…)`.
    public static func load(toml text: String) throws -> CostModel {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch { throw LoadError(description: "cost model: \(error)") }
        var m = CostModel()
        func number(_ section: String, _ key: String) throws -> Double? {
            guard let value = table[section]?.table?[key] else { throw LoadError(description: "cost model: [\(section)] \(key) is missing") }
            if let d = value.double { return d }
            if let i = value.int { return Double(i) }
            if value.string == "calibrated" { return nil }
            throw LoadError(description: "cost model: [\(section)] \(key) must be a number or \"calibrated\"")
        }
        func required(_ section: String, _ key: String) throws -> Double {
            guard let v = try number(section, key) else { throw LoadError(description: "cost model: [\(section)] \(key) cannot be calibrated") }
            return v
        }
        m.suspend = try required("fixed", "suspend_s")
        m.vqCreateResume = try required("fixed", "vq_create_resume_s")
        m.cvqCommand = try required("fixed", "cvq_command_s")
        m.perCall = try required("fixed", "per_call_s")
        m.pinResidentPerGiB = try required("memory", "pin_resident_s_per_gib")
        m.pinColdPerGiB = try number("memory", "pin_cold_s_per_gib") ?? .nan
        m.unpinAndMRPerGiB = try number("memory", "unpin_and_mr_s_per_gib") ?? .nan
        m.perEntry = try required("memory", "per_entry_s")
        if table["calibrated"] != nil {
            if m.pinColdPerGiB.isNaN { m.pinColdPerGiB = try required("calibrated", "pin_cold_s_per_gib") }
            if m.unpinAndMRPerGiB.isNaN { m.unpinAndMRPerGiB = try required("calibrated", "unpin_and_mr_s_per_gib") }
        }
        m.calibration = Calibration(
            guestGiB: Int(try required("calibration", "guest_gib")), queuePairs: Int(try required("calibration", "queue_pairs")),
            legacy: try required("calibration", "legacy_s"), earlyMap: try required("calibration", "early_map_s"),
            predictGuestGiB: Int(try required("calibration", "predict_guest_gib")),
            predictLegacy: try required("calibration", "predict_legacy_s"), predictEarlyMap: try required("calibration", "predict_early_map_s"))
        return m
    }

    /// Solves pin_cold and unpin_and_mr from two tallies with known downtimes (the published pair):
    /// each downtime is known costs + cold·a + unpinned·b, two equations in a and b.
    public func calibrated(legacy: Tally, earlyMap: Tally) throws -> CostModel {
        var known = self
        known.pinColdPerGiB = 0
        known.unpinAndMRPerGiB = 0
        let (r1, r2) = (calibration.legacy - known.seconds(legacy), calibration.earlyMap - known.seconds(earlyMap))
        let (a1, b1, a2, b2) = (legacy.coldPinnedGiB, legacy.unpinnedGiB, earlyMap.coldPinnedGiB, earlyMap.unpinnedGiB)
        let det = a1 * b2 - a2 * b1
        guard abs(det) > 1e-12 else { throw LoadError(description: "cost model: the calibration flows do not separate the two unknowns") }
        var m = self
        m.pinColdPerGiB = (r1 * b2 - r2 * b1) / det
        m.unpinAndMRPerGiB = (a1 * r2 - a2 * r1) / det
        return m
    }
}

extension Tally {
    /// One past a range's last byte, held at 2^64 − 1 (an anonymised record's addresses sit near the top).
    public static func end(_ addr: UInt64, _ size: UInt64) -> UInt64 { size > UInt64.max - addr ? .max : addr + size }

    /// What a recorded VMM flow (vdpad-cli replay) did, in the model's units: a map of host memory this VMM
    /// had not mapped before pins cold pages, a map of memory it had mapped pins resident ones, an unmap
    /// unpins; DRIVER_OK set is a device start, SUSPEND a suspend, every call a call.  Only calls that
    /// succeeded count.
    /// `alreadyMapped`: host ranges [start, end) the VMM had mapped before these calls (resident pages).
    public static func of(
        _ calls: [(method: String, params: JSON)], pageSize: UInt64 = 4096, alreadyMapped: [(UInt64, UInt64)] = []
    ) -> Tally {
        var t = Tally()
        var seen = alreadyMapped  // host ranges mapped so far: [addr, addr+size), the end saturated at 2^64 − 1
        var status: UInt64 = 0
        let gib = Double(1 << 30)
        func u64(_ v: JSON?) -> UInt64 {
            switch v {
            case .unsigned(let u)?: u
            case .string(let s)? where s.lowercased().hasPrefix("0x"): UInt64(s.dropFirst(2), radix: 16) ?? 0
            default: 0
            }
        }
        for (method, params) in calls {
            t.calls += 1
            switch method {
            case "map":
                let (addr, size) = (u64(params["addr"]), u64(params["size"]))
                let end = Self.end(addr, size)
                let resident = seen.contains { $0.0 <= addr && end <= $0.1 }
                if resident {
                    t.residentPinnedGiB += Double(size) / gib
                } else {
                    t.coldPinnedGiB += Double(size) / gib
                    seen.append((addr, end))
                }
                t.entries += Double(size) / Double(pageSize)
            case "unmap":
                t.unpinnedGiB += Double(u64(params["size"])) / gib
            case "set_status":
                let new = u64(params["status"])
                if new & 4 != 0 && status & 4 == 0 { t.deviceStarts += 1 }
                status = new
            case "reset":
                status = 0
            case "suspend":
                t.suspends += 1
            default:
                break
            }
        }
        return t
    }
}
