// DataPathCommand.swift — `vdpad-bench datapath`: what a device's data path
// moves, through vdpad with shared guest memory, through the process_vm
// fallback, and against the limit.  The VMM side is vdpad-dpdriver (C,
// preload/dpdriver.c) under the preload library, exactly as a VMM runs; the
// reference is the same driver with a device thread in its own process that
// walks the same rings in the same memory and makes the same copies, with no
// daemon and no IOTLB.
import ArgumentParser
import VDPAClient
import VDPAJSON
#if canImport(Glibc)
    import Glibc
#endif

struct DataPathCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "datapath",
        abstract: "Frames and block requests per second through a vdpad device, beside the in-process limit.",
        discussion: """
            Workloads: net64 and net1500 (loopback frames of 64 and 1500 bytes on a
            vdpasim_net device), blk-randread4k, blk-randwrite4k and blk-seqread64k (a
            vdpasim_blk RAM disk, 64 requests in flight). Each runs three ways: memory
            shared (the guest arena is a memfd the preload library shares with vdpad),
            process_vm (the same arena in private memory: vdpad copies with
            process_vm_readv/writev), and the reference (the driver's own device thread:
            the limit).  Build with -c release, and make preload/
            (scripts/bench-datapath.sh does both).

            The three runs of a workload are made --rounds times, interleaved
            (reference, shared, process_vm, then again), and each figure is the median of
            its rounds: a ratio is the median of each round's own ratio, between runs
            made seconds apart, so a moment when the machine is slower (or faster) moves
            one round, not the result.  The table shows the rounds' spread beside it.
              vdpad-bench datapath              the table
              vdpad-bench datapath --json       a JSON object per workload and memory
              vdpad-bench datapath --seconds 5 --rounds 5 --workloads net64,blk-randread4k
              vdpad-bench datapath --goals      and whether issue 21's goals are met
            """)

    static let allWorkloads = ["net64", "net1500", "blk-randread4k", "blk-randwrite4k", "blk-seqread64k"]

    @Option(help: "Seconds each run lasts.")
    var seconds = 2.0

    @Option(help: "Comma-separated workloads (\(DataPathCommand.allWorkloads.joined(separator: ","))).")
    var workloads = DataPathCommand.allWorkloads.joined(separator: ",")

    @Option(help: "Interleaved rounds of each workload's three runs; every figure is the median of its rounds.")
    var rounds = 3

    @Flag(
        help: """
            One JSON object per line: workload, memory, rounds, ops_per_s, bytes_per_s, reference_ops_per_s, ratio \
            (medians), ratio_min, ratio_max, the rounds' own ops_per_s_rounds, reference_ops_per_s_rounds and \
            ratio_rounds, and for shared memory over_process_vm (the median of each round's shared ops/s divided \
            by its process_vm ops/s) with its min and max.
            """)
    var json = false

    @Flag(
        help: """
            After the figures, whether they meet issue 21's goals (shared memory at ≥ 0.5× the reference in every \
            workload, ≥ 1 M frames/s for net64, ≥ 10× the process_vm fallback in every workload), judged on the \
            medians of the workloads run; the exit status is 1 when one is not met.
            """)
    var goals = false

    @Option(help: "The vdpad binary (default: next to vdpad-bench).")
    var daemon: String?

    @Option(help: "The directory holding vdpad-run, libvdpad-vhost.so and vdpad-dpdriver (default: next to vdpad-bench).")
    var tools: String?

    var selected: [String] { workloads.split(separator: ",").map(String.init) }

    func validate() throws {
        guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
        guard (1...100).contains(rounds) else { throw ValidationError("--rounds must be in 1…100") }
        let unknown = selected.filter { !Self.allWorkloads.contains($0) }
        guard unknown.isEmpty else {
            throw ValidationError("unknown workload \(unknown.joined(separator: ", ")); choose from \(Self.allWorkloads.joined(separator: ","))")
        }
    }

    func run() throws {
        let me = CommandLine.arguments[0]
        let dir = me.contains("/") ? String(me[..<me.lastIndex(of: "/")!]) : "."
        let toolDir = tools ?? dir
        let (run, driver) = (toolDir + "/vdpad-run", toolDir + "/vdpad-dpdriver")
        for path in [run, driver, toolDir + "/libvdpad-vhost.so"] where access(path, X_OK) != 0 && access(path, R_OK) != 0 {
            throw ValidationError("\(path) is missing: make -C preload OUT=\(toolDir) (scripts/bench-datapath.sh builds everything)")
        }
        let results = try RPCBenchmark.withDaemon(daemon ?? dir + "/vdpad", pin: false, config: "") { socket, _ -> [DataPathRounds] in
            let client = try VDPAClient(path: socket, timeout: 30)
            try client.call("add_device", ["name": "n0", "mgmtdev": "vdpasim_net", "mac": "02:00:00:00:00:42"])
            try client.call("add_device", ["name": "b0", "mgmtdev": "vdpasim_blk"])
            return try selected.map { workload in
                let device = workload.hasPrefix("net") ? "n0" : "b0"
                var rounds = DataPathRounds(workload: workload)
                for round in 1...self.rounds {
                    if !json { progress("\(workload): round \(round) of \(self.rounds)") }
                    rounds.reference.append(try DataPathRun.driver([driver, workload, "reference", "\(seconds)"]))
                    for memory in DataPathRounds.memories {
                        rounds.runs[memory, default: []].append(
                            try DataPathRun.driver([
                                run, "-s", socket, "--device", "/dev/vhost-vdpa-0=\(device)", "--", driver, workload,
                                memory == "shared" ? "shared" : "private", "\(seconds)"
                            ]))
                    }
                }
                return rounds
            }
        }
        if !json { progress(nil) }
        let rows = results.flatMap { r in DataPathRounds.memories.map { r.summary(of: $0) } }
        let verdicts = goals ? DataPathGoal.all.map { $0.judge(rows) } : []
        defer { if verdicts.contains(where: { $0.met == false }) { Glibc.exit(1) } }
        if json {
            for row in rows { print(row.json.text) }
            for verdict in verdicts { print(verdict.json.text) }
            return
        }
        defer { for verdict in verdicts { print(verdict.line) } }
        print("workload         memory         ops/s        bytes/s   reference ops/s   ×reference (min–max)   shared/process_vm (min–max)")
        for row in rows {
            let speedup = row.overProcessVM.map { format($0.median) + "× (" + format($0.min) + "–" + format($0.max) + ")" } ?? ""
            print(
                row.workload.padding(toLength: 17, withPad: " ", startingAt: 0) + row.memory.padding(toLength: 11, withPad: " ", startingAt: 0)
                    + Self.humane(row.ops.median).leftPad(9, with: " ") + (Self.humane(row.bytes.median) + "B").leftPad(15, with: " ")
                    + Self.humane(row.reference.median).leftPad(18, with: " ")
                    + (thousandths(row.ratio.median) + " (" + thousandths(row.ratio.min) + "–" + thousandths(row.ratio.max) + ")")
                    .leftPad(23, with: " ")
                    + speedup.leftPad(30, with: " "))
        }
        if rounds > 1 { print("(medians of \(rounds) interleaved rounds of \(format(seconds)) s; the spread is the rounds' own)") }
    }

    /// A line on stderr that the next one replaces (nil clears it): where a run of minutes is.
    func progress(_ line: String?) {
        guard isatty(STDERR_FILENO) == 1 else { return }
        let text = Array(("\r\u{1B}[K" + (line ?? "")).utf8)
        _ = text.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    func thousandths(_ v: Double) -> String { String(Double(Int((v * 1000).rounded())) / 1000) }

    static func humane(_ v: Double) -> String {
        v >= 1e9 ? format(v / 1e9) + " G" : v >= 1e6 ? format(v / 1e6) + " M" : v >= 1e3 ? format(v / 1e3) + " k" : format(v)
    }
}

/// What one run of vdpad-dpdriver printed.
struct DataPathRun {
    var opsPerSecond: Double
    var bytesPerSecond: Double

    /// Runs `argv` (the driver, directly or under vdpad-run) and reads its JSON line.
    static func driver(_ argv: [String]) throws -> DataPathRun {
        let out = "/tmp/vdpad-bench-dp-\(getpid()).json"
        defer { unlink(out) }
        let child = try Spawned(argv, stdoutTo: out, stderrTo: nil)
        let status = child.wait()
        guard status == 0, let text = readText(out), let line = text.split(separator: "\n").last, let j = try? JSON.parse(String(line)),
            let ops = j["ops_per_s"]?.doubleValue, let bytes = j["bytes_per_s"]?.doubleValue
        else {
            throw ClientError("\(argv.joined(separator: " ")) failed (status \(status))")
        }
        return DataPathRun(opsPerSecond: ops, bytesPerSecond: bytes)
    }

    static func readText(_ path: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while case let n = fread(&chunk, 1, chunk.count, f), n > 0 { bytes += chunk[..<n] }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A workload's rounds: each round a reference run, then a run through vdpad for each memory.
struct DataPathRounds {
    static let memories = ["shared", "process_vm"]

    var workload: String
    var reference: [DataPathRun] = []
    var runs: [String: [DataPathRun]] = [:]

    /// One memory's line: medians over the rounds, each ratio taken within its round first.
    func summary(of memory: String) -> DataPathSummary {
        let mine = runs[memory] ?? []
        let other = memory == "shared" ? runs["process_vm"] : nil
        return DataPathSummary(
            workload: workload, memory: memory, rounds: mine.count,
            ops: Spread(mine.map(\.opsPerSecond)), bytes: Spread(mine.map(\.bytesPerSecond)),
            reference: Spread(reference.map(\.opsPerSecond)),
            ratio: Spread(zip(mine, reference).map { $0.opsPerSecond / max($1.opsPerSecond, 1) }),
            overProcessVM: other.map { o in Spread(zip(mine, o).map { $0.opsPerSecond / max($1.opsPerSecond, 1) }) })
    }
}

/// The median of a set of measurements and its extremes.
struct Spread: Equatable {
    var median: Double, min: Double, max: Double
    /// The measurements, in the order of their rounds.
    var values: [Double]

    /// Of at least one value; an even count's median is the mean of the middle two.
    init(_ values: [Double]) {
        self.values = values
        let sorted = values.sorted()
        precondition(!sorted.isEmpty, "a spread of no measurement")
        let middle = sorted.count / 2
        median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
        (min, max) = (sorted.first!, sorted.last!)
    }
}

/// What the table's line and the JSON object of one workload and memory say.
struct DataPathSummary {
    var workload: String
    var memory: String
    var rounds: Int
    var ops: Spread, bytes: Spread, reference: Spread, ratio: Spread
    /// Shared memory's speed over the fallback's, round by round (nil on the fallback's own line).
    var overProcessVM: Spread?

    var json: JSON {
        var object: [(String, JSON)] = [
            ("workload", .string(workload)), ("memory", .string(memory)), ("rounds", .unsigned(UInt64(rounds))),
            ("ops_per_s", .number(String(Int(ops.median)))), ("bytes_per_s", .number(String(Int(bytes.median)))),
            ("reference_ops_per_s", .number(String(Int(reference.median)))), ("ratio", .rounded(ratio.median)),
            ("ratio_min", .rounded(ratio.min)), ("ratio_max", .rounded(ratio.max)),
            ("ops_per_s_rounds", .array(ops.values.map { .number(String(Int($0))) })),
            ("reference_ops_per_s_rounds", .array(reference.values.map { .number(String(Int($0))) })),
            ("ratio_rounds", .array(ratio.values.map(JSON.rounded)))
        ]
        if let o = overProcessVM {
            object += [("over_process_vm", .rounded(o.median)), ("over_process_vm_min", .rounded(o.min)), ("over_process_vm_max", .rounded(o.max))]
        }
        return .object(object)
    }
}

/// One of issue 21's goals for the shared-memory path, on this class of machine (two cores), judged on the medians.
struct DataPathGoal: Sendable {
    var name: String
    /// What is measured on a shared-memory line (nil: the line does not count), and the least it may be.
    var measure: @Sendable (DataPathSummary) -> Double?
    var least: Double
    /// How a measure reads in the verdict's line ("0.93×", "9.61 M frames/s").
    var shown: @Sendable (Double) -> String

    static let all = [
        DataPathGoal(
            name: "shared memory at ≥ 0.5× the reference in every workload", measure: { $0.ratio.median }, least: 0.5,
            shown: { format($0) + "×" }),
        DataPathGoal(
            name: "≥ 1 M frames/s for 64 B loopback", measure: { $0.workload == "net64" ? $0.ops.median : nil }, least: 1e6,
            shown: { DataPathCommand.humane($0) + " frames/s" }),
        DataPathGoal(
            name: "≥ 10× the process_vm fallback in every workload", measure: { $0.overProcessVM?.median }, least: 10,
            shown: { format($0) + "×" })
    ]

    struct Verdict {
        var goal: DataPathGoal
        /// The lowest measure among the lines the goal looks at, and its workload; nil when none was run.
        var worst: (value: Double, workload: String)?

        /// Nil when not measured: the workloads run do not include one the goal applies to.
        var met: Bool? { worst.map { $0.value >= goal.least } }

        var line: String {
            guard let worst else { return "goal: \(goal.name): not measured (no workload it applies to was run)" }
            return "goal: \(goal.name): \(met == true ? "met" : "NOT met"), lowest \(goal.shown(worst.value)) in \(worst.workload)"
        }

        var json: JSON {
            var object: [(String, JSON)] = [("goal", .string(goal.name)), ("met", met.map(JSON.bool) ?? .null)]
            if let worst {
                object += [("lowest", .rounded(worst.value)), ("workload", .string(worst.workload))]
            }
            return .object(object)
        }
    }

    /// Met when every shared-memory line it applies to reaches `least`; not judged when no line applies.
    func judge(_ rows: [DataPathSummary]) -> Verdict {
        let measured = rows.filter { $0.memory == "shared" }.compactMap { row in measure(row).map { (value: $0, workload: row.workload) } }
        return Verdict(goal: self, worst: measured.min { $0.value < $1.value })
    }
}

extension JSON {
    /// A measure to four decimals: what a ratio needs, and no float noise in a line a script compares.
    fileprivate static func rounded(_ v: Double) -> JSON { .number(String(Double(Int((v * 10000).rounded())) / 10000)) }
}
