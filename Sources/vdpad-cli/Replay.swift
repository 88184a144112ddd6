// Replay.swift — `vdpad-cli replay FILE`: a VMM's recorded calls (vdpad-run
// --record, one JSON line per call) played again against any device kind,
// with the places where the answers differ from the recording and what the
// flow cost the device (its own counters).
import CVDPAShim
import VDPAClient
import UnixSocket
import VDPACostModel
#if canImport(Glibc)
    import Glibc
#endif

struct ReplayOptions {
    var file: String
    /// Replay on this existing device…
    var device: String?
    /// …or on a temporary device of this kind (added, then deleted: needs an admin).
    var mgmtdev: String?
    var legacy = false
    /// Which device of a trace that recorded several.
    var traceDevice: String?
    /// The cost model (default: config/cost-model.toml beside the sources, or the installed copy).
    var model: String?
    /// A migration's destination record: FILE is then its source's, and the two are priced, not replayed.
    var destination: String?
    /// The guest sizes a recorded migration is priced for.
    var guestGiB: [Double] = [39, 128]

    static let usage =
        "replay FILE (--device NAME | --mgmtdev KIND [--legacy]) [--trace-device NAME] [--model COST_MODEL]\n"
        + "       replay SOURCE_FILE --destination FILE [--guest-gib N[,N…]] [--model COST_MODEL]"

    static func parse(_ words: [String]) throws(UsageError) -> ReplayOptions {
        var w = Words(items: words, usage: usage)
        var options = ReplayOptions(file: try w.next("FILE"))
        while !w.items.isEmpty {
            switch try w.next("an option") {
            case "--device": options.device = try w.next("the device")
            case "--mgmtdev": options.mgmtdev = try w.next("the mgmtdev")
            case "--legacy": options.legacy = true
            case "--trace-device": options.traceDevice = try w.next("the traced device")
            case "--model": options.model = try w.next("the cost model file")
            case "--destination": options.destination = try w.next("the destination's record")
            case "--guest-gib":
                let text = try w.next("the guest sizes in GiB")
                let sizes = text.split(separator: ",").compactMap { Double($0) }
                guard !sizes.isEmpty, sizes.count == text.split(separator: ",").count, sizes.allSatisfy({ $0 > 0 && $0 <= 16384 }) else {
                    throw UsageError("--guest-gib takes sizes in GiB, 0 < N ≤ 16384, separated by commas (got \"\(text)\")")
                }
                options.guestGiB = sizes
            case let other: throw UsageError("unknown option \"\(other)\"\nusage: vdpad-cli \(usage)")
            }
        }
        if options.destination != nil {
            guard options.device == nil && options.mgmtdev == nil else {
                throw UsageError("--destination prices a recorded migration; it replays on no device\nusage: vdpad-cli \(usage)")
            }
            return options
        }
        guard (options.device == nil) != (options.mgmtdev == nil) else {
            throw UsageError("name the target: --device NAME or --mgmtdev KIND\nusage: vdpad-cli \(usage)")
        }
        if options.legacy && options.mgmtdev == nil { throw UsageError("--legacy goes with --mgmtdev") }
        return options
    }
}

/// One recorded call.
struct TraceEntry {
    let line: Int
    let time: Double
    let device: String
    let method: String
    let params: [(String, JSON)]
    let result: JSON?
    let error: JSON?

    static func read(_ path: String) throws -> [TraceEntry] {
        guard let file = fopen(path, "r") else { throw UsageError("cannot read \(path): \(Errno.current)") }
        defer { fclose(file) }
        var entries: [TraceEntry] = []
        var line = 0
        var buffer: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(buffer) }
        while getline(&buffer, &capacity, file) > 0 {
            line += 1
            let text = String(cString: buffer!).trimmingSuffix("\n")
            if text.isEmpty { continue }
            let json: JSON
            do { json = try JSON.parse(text) } catch { throw UsageError("\(path):\(line): not JSON: \(error)") }
            guard case .string(let method)? = json["method"], case .string(let device)? = json["device"],
                case .object(let params)? = json["params"]
            else {
                throw UsageError("\(path):\(line): not a recorded call (needs device, method, params)")
            }
            let time = json["t"]?.doubleValue ?? 0
            entries.append(
                TraceEntry(
                    line: line, time: time, device: device, method: method, params: params,
                    result: json["result"], error: json["error"]))
        }
        return entries
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}

enum Replay {
    /// The counters `get_device` keeps that say what a flow cost.
    static let costCounters = [
        "map_calls", "unmap_calls", "device_commits", "entries_copied", "default_restores",
        "resets_clean", "resets_persist"
    ]

    /// Replays; returns the exit status (0 the same answers, 1 differences).
    static func run(_ options: ReplayOptions, client: VDPAClient, print write: (String) -> Void) throws -> Int32 {
        var entries = try TraceEntry.read(options.file)
        let devices = Array(Set(entries.map(\.device))).sorted()
        guard !devices.isEmpty else { throw UsageError("\(options.file) records no call") }
        let traced = options.traceDevice ?? devices[0]
        guard options.traceDevice != nil || devices.count == 1 else {
            throw UsageError("\(options.file) records \(devices.count) devices (\(devices.joined(separator: ", "))): choose one with --trace-device")
        }
        entries = entries.filter { $0.device == traced }
        guard !entries.isEmpty else { throw UsageError("\(options.file) records nothing for \(traced)") }

        var target = options.device ?? ""
        if let kind = options.mgmtdev {
            target = "replay-\(getpid())"
            var params: [(String, JSON)] = [("name", .string(target)), ("mgmtdev", .string(kind))]
            if options.legacy { params.append(("legacy", true)) }
            try client.call("add_device", .object(params))
        }
        defer { if options.mgmtdev != nil { _ = try? client.call("del_device", ["name": .string(target), "force": true]) } }

        var differences = 0
        var succeeded: [(method: String, params: JSON)] = []
        var clock = ContinuousClock.now
        var elapsed = Duration.zero
        for entry in entries {
            var params = entry.params.filter { $0.0 != "device" }
            params.insert(("device", .string(target)), at: 0)
            // Eventfds are not in a trace: a request that took one gets a fresh eventfd.
            let needsFD =
                ["set_vring_kick", "set_vring_call", "set_config_call"].contains(entry.method)
                && !params.contains { $0.0 == "unset" && $0.1 == true }
            let fd = needsFD ? newEventFD() : -1
            defer { if fd >= 0 { close(fd) } }
            var now: (result: JSON?, error: JSON?)
            clock = ContinuousClock.now
            do {
                now = (try client.call(entry.method, .object(params), passing: fd >= 0 ? [fd] : []), nil)
            } catch let e as RemoteError {
                now = (nil, e.data ?? ["message": .string(e.message)])
            }
            elapsed += ContinuousClock.now - clock
            if now.error == nil { succeeded.append((entry.method, .object(entry.params))) }
            if let difference = compare(entry, now) {
                differences += 1
                if differences <= 20 { write("line \(entry.line) \(entry.method) \(JSON.object(entry.params).text): \(difference)") }
            }
        }
        if differences > 20 { write("… \(differences - 20) more differences") }
        let stats = try client.call("get_device", ["device": .string(target)])["stats"] ?? .null
        let costs = costCounters.map { "\($0) \(stats[$0]?.text ?? "0")" }.joined(separator: ", ")
        let recordedMs = ((entries.last?.time ?? 0) - (entries.first?.time ?? 0)) * 1e3
        let kind = options.mgmtdev.map { " (\($0)\(options.legacy ? ", legacy" : ""))" } ?? ""
        let verdict = differences == 0 ? "every answer as recorded" : "\(differences) answers differ"
        write("replayed \(entries.count) calls of \(traced) from \(options.file) on \(target)\(kind): \(verdict)")
        write("cost: \(costs)")
        let nowMs = Double(elapsed.components.seconds) * 1e3 + Double(elapsed.components.attoseconds) / 1e15
        write("time: " + milliseconds(nowMs) + " ms in vdpad now, " + milliseconds(recordedMs) + " ms from first to last call as recorded")
        if let text = CostModel.text(at: options.model) {
            do {
                let model = try CostModel.load(toml: text)
                guard model.isCalibrated else {
                    throw CostModel.LoadError(description: "the cost model has no [calibrated] section; run vdpad-bench flows --calibrate")
                }
                let tally = Tally.of(succeeded)
                let cold = milliseconds(tally.coldPinnedGiB * model.pinColdPerGiB * 1e3)
                let unpin = milliseconds(tally.unpinnedGiB * model.unpinAndMRPerGiB * 1e3)
                write(
                    "modelled on an mlx5-like parent: " + milliseconds(model.seconds(tally) * 1e3) + " ms for the whole flow"
                        + " (\(tally.deviceStarts) device starts, \(tally.suspends) suspends, pinning \(cold) ms, unpinning and MRs \(unpin) ms;"
                        + " config/cost-model.toml, calibrated on the published 39 GiB pair)")
            } catch {
                write("no modelled cost: \(error)")
            }
        }
        return differences == 0 ? 0 : 1
    }

    static func milliseconds(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// Nil when the answer matches the recording: the same result (`matches`), or the same errno and kernel_errno.
    static func compare(_ entry: TraceEntry, _ now: (result: JSON?, error: JSON?)) -> String? {
        switch (entry.error, now.error) {
        case (nil, nil):
            let same = entry.result.map { recorded in now.result.map { matches(recorded, $0) } ?? false } ?? (now.result == nil)
            return same ? nil : "recorded \(entry.result?.text ?? "null"), now \(now.result?.text ?? "null")"
        case (let recorded?, let current?):
            let same = recorded["errno"] == current["errno"] && recorded["kernel_errno"] == current["kernel_errno"]
            return same ? nil : "recorded \(recorded.text), now \(current.text)"
        case (let recorded?, nil):
            return "recorded error \(recorded["errno"]?.text ?? recorded.text), now \(now.result?.text ?? "null")"
        case (nil, let current?):
            return "recorded \(entry.result?.text ?? "null"), now error \(current["errno"]?.text ?? current.text)"
        }
    }

    /// Whether `now` answers as `recorded` did: every member the recording has, the same, at every depth.  A member
    /// only `now` has is no difference: a newer vdpad may say more (get_vring's `in_use`) than the one that recorded.
    static func matches(_ recorded: JSON, _ now: JSON) -> Bool {
        switch (recorded, now) {
        case (.object(let members), .object):
            return members.allSatisfy { key, value in now[key].map { matches(value, $0) } ?? false }
        case (.array(let items), .array(let current)):
            return items.count == current.count && zip(items, current).allSatisfy { matches($0, $1) }
        default:
            return recorded == now
        }
    }

    /// eventfd(2), through the shim: <sys/eventfd.h> is not part of Swift's Glibc module.
    static func newEventFD() -> Int32 { vdpad_eventfd(0, O_CLOEXEC) }
}

/// `vdpad-cli replay SOURCE --destination DEST`: a migration QEMU really ran, recorded on both sides, measured
/// from its records and priced by the cost model on an mlx5-like parent for guests of other sizes.
enum MigrationPricing {
    static func run(_ options: ReplayOptions, print write: (String) -> Void) throws -> Int32 {
        func calls(_ path: String) throws -> [RecordedCall] {
            guard let text = CostModel.text(at: path) else { throw UsageError("cannot read \(path)") }
            do { return try RecordedCall.parse(text) } catch { throw UsageError("\(path): \(error)") }
        }
        let migration: RecordedMigration
        do {
            migration = try RecordedMigration(source: try calls(options.file), destination: try calls(options.destination!))
        } catch let error as CostModel.LoadError {
            throw UsageError("\(error)")
        }
        let window = migration.windowCalls
        write(
            "recorded migration: the device's window \(Replay.milliseconds(migration.measuredSeconds * 1e3)) ms "
                + "(the source's SUSPEND to the destination's last queue enabled), \(window.count) calls in it, "
                + "guest memory \(Replay.milliseconds(migration.recordedGuestGiB * 1024)) MiB as recorded")
        guard let text = CostModel.text(at: options.model) else {
            write("no modelled cost: no cost model at \((options.model.map { [$0] } ?? CostModel.searchPath).joined(separator: " or "))")
            return 1
        }
        let model: CostModel
        do {
            model = try CostModel.load(toml: text)
        } catch {
            write("no modelled cost: \(error)")
            return 1
        }
        guard model.isCalibrated else {
            write("no modelled cost: the cost model has no [calibrated] section; run vdpad-bench flows --calibrate")
            return 1
        }
        write("modelled on an mlx5-like parent (config/cost-model.toml, calibrated on the published 39 GiB pair):")
        for gib in options.guestGiB {
            let asRecorded = model.seconds(migration.downtime(guestGiB: gib, persist: false))
            let persist = model.seconds(migration.downtime(guestGiB: gib, persist: true))
            var line =
                "  \(Replay.milliseconds(gib)) GiB: downtime \(Replay.milliseconds(asRecorded * 1e3)) ms as recorded, "
                + "\(Replay.milliseconds(persist * 1e3)) ms with IOTLB_PERSIST"
            if let svq = migration.svqSwitch(guestGiB: gib, descASID: false), let desc = migration.svqSwitch(guestGiB: gib, descASID: true) {
                line +=
                    "; switch to shadow virtqueues \(Replay.milliseconds(model.seconds(svq) * 1e3)) ms as recorded, "
                    + "\(Replay.milliseconds(model.seconds(desc) * 1e3)) ms with DESC_ASID"
            }
            write(line)
        }
        return 0
    }
}
