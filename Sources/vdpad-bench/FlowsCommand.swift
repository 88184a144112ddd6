// FlowsCommand.swift — `vdpad-bench flows`: every built-in flow on each parent
// kind and guest size, run as real vdpad calls, priced by the cost model
// after its calibration on one published downtime pair.
import ArgumentParser
import VDPAClient
import VDPACostModel
import VDPAFlows
import VDPAJSON
#if canImport(Glibc)
    import Glibc
#endif

struct FlowsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flows",
        abstract: "Model what VMM flows (boot, reboot, live migration, CVQ isolation, SVQ switch) cost on real hardware.",
        discussion: """
            Each flow is a sequence of real vdpad calls on a real (in-process) mlx5_net
            device; the cost model (config/cost-model.toml, each value with its source)
            prices its downtime window. Two values are calibrated on the 39 GiB pair of
            QEMU 10.1's early-mapping series (4.72 s → 2.09 s) and the 128 GiB pair (14.72
            s → 5.83 s) is predicted; the error is printed first. Flows with IOTLB_PERSIST
            or DESC_ASID model what a VMM gains by acking them (upstream QEMU never did;
            Si-Wei Liu's series did); on a legacy parent they run as their plain
            counterparts.
              vdpad-bench flows               the table (4, 39, 128, 1024 GiB)
              vdpad-bench flows --json        the same for scripts
              vdpad-bench flows --page-size 2M --queue-pairs 4 --sizes 16,64
              vdpad-bench flows --calibrate   cache the calibration in the model file
            After the built-in flows, QEMU 10.0's real migration (recorded on both sides by
            tests/qemu/test_migration.py, kept in Tests/Fixtures) is priced the same way:
            its downtime window as recorded and with IOTLB_PERSIST, its switch to shadow
            virtqueues as recorded and with DESC_ASID (rows recorded_*; --recorded names
            other records).
            """)

    @Option(help: "The cost model (default: config/cost-model.toml beside the sources, or /etc/vdpad/cost-model.toml).")
    var model: String?

    @Option(help: "Guest sizes in GiB, comma-separated.")
    var sizes: String = "4,39,128,1024"

    @Option(name: .customLong("queue-pairs"), help: "Data queue pairs (1…32).")
    var queuePairs = 8

    @Option(name: .customLong("page-size"), help: "The host page size backing guest RAM: 4K, 2M or 1G.")
    var pageSize = "4K"

    @Flag(help: "JSON lines instead of the table.")
    var json = false

    @Option(help: "A recorded migration to price beside the built-in flows: SOURCE_RECORD,DESTINATION_RECORD (vdpad-run --record).")
    var recorded: String?

    /// The records Tests/Fixtures keeps, beside the sources.
    static let fixtures = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/") + "/Tests/Fixtures/qemu-10.0-migration-"

    @Flag(
        help:
            "Solve the two calibrated values and write them into the model file's [calibrated] section (what vdpad-cli replay prices with), then stop."
    )
    var calibrate = false

    func run() throws {
        guard (1...32).contains(queuePairs) else { throw ValidationError("--queue-pairs is 1…32") }
        let page: UInt64
        switch pageSize.uppercased() {
        case "4K": page = 4096
        case "2M": page = 2 << 20
        case "1G": page = 1 << 30
        default: throw ValidationError("--page-size is 4K, 2M or 1G")
        }
        let gibs = sizes.split(separator: ",").compactMap { Int($0) }
        guard !gibs.isEmpty, gibs.allSatisfy({ $0 >= 1 && $0 <= 16384 }) else { throw ValidationError("--sizes: GiB values in 1…16384") }
        let text = try readModel()
        let runner = FlowRunner()
        let study = try DowntimeStudy(modelTOML: text, runner: runner)
        if calibrate {
            guard let path = CostModel.file(at: model)?.path, let out = fopen(path, "w") else {
                throw ValidationError("cannot write the cost model \(model ?? CostModel.searchPath[0])")
            }
            fputs(CostModel.replacingCalibration(in: text, with: study.model.calibrationSection), out)
            fclose(out)
            print(study.calibrationReport())
            print("written to \(path)")
            return
        }
        if json {
            print(study.calibrationJSON())
        } else {
            print(study.calibrationReport())
            print()
        }
        var header = true
        for gib in gibs {
            for flow in Flow.allCases {
                for parent in ParentKind.allCases {
                    let r = study.row(flow, parent, FlowParameters(guestGiB: gib, queuePairs: queuePairs, pageSize: page))
                    if json {
                        print(r.json)
                    } else {
                        if header { print(DowntimeStudy.Row.header); header = false }
                        print(r.line)
                    }
                    if !r.failures.isEmpty {
                        throw ValidationError("flow \(flow.rawValue) on \(parent.rawValue): \(r.failures.joined(separator: "; "))")
                    }
                }
            }
        }
        try printRecorded(gibs: gibs, page: page, model: study.model)
    }

    /// The recorded migration's rows: its downtime window and its switch to shadow virtqueues, as recorded and with
    /// the feature that would shorten each, priced by the same calibrated model.
    func printRecorded(gibs: [Int], page: UInt64, model: CostModel) throws {
        let files =
            recorded.map { $0.split(separator: ",").map(String.init) } ?? [Self.fixtures + "source.jsonl", Self.fixtures + "destination.jsonl"]
        guard files.count == 2 else { throw ValidationError("--recorded takes SOURCE_RECORD,DESTINATION_RECORD") }
        guard let source = CostModel.text(at: files[0]), let destination = CostModel.text(at: files[1]) else {
            if recorded != nil { throw ValidationError("cannot read \(files.joined(separator: " or "))") }
            return  // an installed vdpad-bench without the sources' fixtures: the built-in flows only
        }
        let migration = try RecordedMigration(source: try RecordedCall.parse(source), destination: try RecordedCall.parse(destination))
        for gib in gibs {
            let g = Double(gib)
            var rows: [(String, Tally)] = [
                ("recorded_migration", migration.downtime(guestGiB: g, persist: false, pageSize: page)),
                ("recorded_migration_persist", migration.downtime(guestGiB: g, persist: true, pageSize: page))
            ]
            if let svq = migration.svqSwitch(guestGiB: g, descASID: false, pageSize: page),
                let desc = migration.svqSwitch(guestGiB: g, descASID: true, pageSize: page)
            {
                rows += [("recorded_svq_switch", svq), ("recorded_svq_switch_desc_asid", desc)]
            }
            for (name, tally) in rows {
                let seconds = model.seconds(tally)
                if json {
                    print(
                        JSON.object([
                            ("flow", .string(name)), ("parent", "6.7"), ("guest_gib", JSON(gib)), ("window_calls", JSON(tally.calls)),
                            ("iotlb_entries", JSON(double: tally.entries)), ("modelled_downtime_s", JSON(double: seconds)),
                            ("measured_window_s", JSON(double: migration.measuredSeconds))
                        ]).text)
                } else {
                    // The built-in rows' columns; vdpad's own time is not measured for a record (it ran elsewhere).
                    let cells = [
                        (name, 27), ("6.7", 8), ("\(gib)", 7), ("\(tally.calls)", 7), ("\(Int(tally.entries))", 15),
                        ("\(Int(tally.entriesCopied))", 16), (DowntimeStudy.f(seconds, 3), 12)
                    ]
                    print(cells.map { $0.0.padding(toLength: max($0.1, $0.0.count + 1), withPad: " ", startingAt: 0) }.joined() + "-")
                }
            }
        }
    }

    func readModel() throws -> String {
        guard let text = CostModel.text(at: model) else {
            let tried = model.map { [$0] } ?? CostModel.searchPath
            throw ValidationError("no cost model at \(tried.joined(separator: " or ")); name one with --model")
        }
        return text
    }
}
