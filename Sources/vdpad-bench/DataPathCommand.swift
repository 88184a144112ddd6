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
            (scripts/bench-datapath.sh does both):
              vdpad-bench datapath              the table
              vdpad-bench datapath --json       a JSON object per workload and memory
              vdpad-bench datapath --seconds 5 --workloads net64,blk-randread4k
            """)

    static let allWorkloads = ["net64", "net1500", "blk-randread4k", "blk-randwrite4k", "blk-seqread64k"]

    @Option(help: "Seconds each run lasts.")
    var seconds = 2.0

    @Option(help: "Comma-separated workloads (\(DataPathCommand.allWorkloads.joined(separator: ","))).")
    var workloads = DataPathCommand.allWorkloads.joined(separator: ",")

    @Flag(help: "One JSON object per line: workload, memory, ops_per_s, bytes_per_s, reference_ops_per_s, ratio.")
    var json = false

    @Option(help: "The vdpad binary (default: next to vdpad-bench).")
    var daemon: String?

    @Option(help: "The directory holding vdpad-run, libvdpad-vhost.so and vdpad-dpdriver (default: next to vdpad-bench).")
    var tools: String?

    var selected: [String] { workloads.split(separator: ",").map(String.init) }

    func validate() throws {
        guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
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
        let results = try RPCBenchmark.withDaemon(daemon ?? dir + "/vdpad", pin: false, config: "") { socket, _ -> [DataPathResult] in
            let client = try VDPAClient(path: socket, timeout: 30)
            try client.call("add_device", ["name": "n0", "mgmtdev": "vdpasim_net", "mac": "02:00:00:00:00:42"])
            try client.call("add_device", ["name": "b0", "mgmtdev": "vdpasim_blk"])
            var results: [DataPathResult] = []
            for workload in selected {
                let device = workload.hasPrefix("net") ? "n0" : "b0"
                let reference = try DataPathRun.driver([driver, workload, "reference", "\(seconds)"])
                for memory in ["shared", "process_vm"] {
                    let r = try DataPathRun.driver([
                        run, "-s", socket, "--device", "/dev/vhost-vdpa-0=\(device)", "--", driver, workload,
                        memory == "shared" ? "shared" : "private", "\(seconds)"
                    ])
                    results.append(DataPathResult(workload: workload, memory: memory, run: r, reference: reference))
                }
            }
            return results
        }
        if json {
            for r in results { print(r.json.text) }
            return
        }
        print("workload         memory         ops/s        bytes/s   reference ops/s   ×reference   shared/process_vm")
        for r in results {
            let other = results.first { $0.workload == r.workload && $0.memory != r.memory }
            let speedup = r.memory == "shared" && other != nil ? format(r.run.opsPerSecond / max(other!.run.opsPerSecond, 1)) + "×" : ""
            print(
                r.workload.padding(toLength: 17, withPad: " ", startingAt: 0) + r.memory.padding(toLength: 11, withPad: " ", startingAt: 0)
                    + humane(r.run.opsPerSecond).leftPad(9, with: " ") + (humane(r.run.bytesPerSecond) + "B").leftPad(15, with: " ")
                    + humane(r.reference.opsPerSecond).leftPad(18, with: " ")
                    + String(Double(Int((r.ratio * 1000).rounded())) / 1000).leftPad(13, with: " ")
                    + speedup.leftPad(20, with: " "))
        }
    }

    func humane(_ v: Double) -> String {
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

struct DataPathResult {
    var workload: String
    var memory: String
    var run: DataPathRun
    var reference: DataPathRun

    var ratio: Double { run.opsPerSecond / max(reference.opsPerSecond, 1) }

    var json: JSON {
        [
            "workload": .string(workload), "memory": .string(memory), "ops_per_s": .number(String(Int(run.opsPerSecond))),
            "bytes_per_s": .number(String(Int(run.bytesPerSecond))), "reference_ops_per_s": .number(String(Int(reference.opsPerSecond))),
            "ratio": .number(String(Double(Int((ratio * 10000).rounded())) / 10000))
        ]
    }
}
