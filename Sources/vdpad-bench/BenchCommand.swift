// BenchCommand.swift — the benchmark's command tree.
import ArgumentParser
import UnixSocket
import VDPAClient
import VDPADataPath
#if canImport(Glibc)
    import Glibc
#endif

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vdpad-bench",
        abstract: "Benchmarks for vdpad: the IOTLB structure, the RPC path and the data path.",
        discussion: """
            Build with -c release: debug figures mean nothing.
              vdpad-bench iotlb 1000000
                  the anchors' workload (shared/anchors/workload.md)
              vdpad-bench 100000 --verify
                  the same, as the anchors' run.sh calls a peer
              vdpad-bench rpc --anchors ../shared/anchors
                  the RPC path beside the raw socket
              vdpad-bench inproc single
                  the inbound path in process (scripts/perf-guard.sh)
              vdpad-bench json
                  Foundation's JSON decoders beside vdpad's parser
              vdpad-bench load
                  1,000 connections, 50 clients of 1,000 map/unmap, a stalled client
              vdpad-bench flows
                  VMM flows priced by the cost model (migration downtime)
              vdpad-bench datapath
                  frames and block requests per second, shared memory vs process_vm
                  vs the limit
              vdpad-bench restart
                  what keeping sessions across restarts costs
              vdpad-bench copy
                  the data path's guarded copy beside memcpy, by size and placement
            """,
        subcommands: [
            IOTLBCommand.self, RPCCommand.self, InProcessCommand.self, JSONCommand.self, LoadCommand.self, FlowsCommand.self,
            DataPathCommand.self, RestartCommand.self, CopyCommand.self
        ]
    )
}

struct IOTLBCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iotlb",
        abstract: "Run the anchors' IOTLB workload on the Swift interval tree and print the anchors' line format.")

    @Argument(help: "Number of ranges N (10 … 2^26).")
    var n: Int

    @Flag(name: .customLong("verify"), help: "Check every answer against the generator and report the first mismatch.")
    var verify = false

    func validate() throws {
        guard (10...(1 << 26)).contains(n) else { throw ValidationError("N must be in 10…67108864") }
        guard (IOTLBWorkload.space / UInt64(n)) & ~(IOTLBWorkload.maxSize - 1) >= IOTLBWorkload.maxSize else {
            throw ValidationError("N is too large for a 48-bit space of 2 MiB slots")
        }
    }

    func run() throws {
        if !IOTLBBenchmark.run(n: n, verify: verify) { throw ExitCode(1) }
    }
}

struct RPCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rpc",
        abstract: "Measure the real vdpad over its socket, beside the anchors' raw Unix-socket round trip.",
        discussion: """
            Scenarios: seq (one map/unmap in flight), pipe (64 in flight), conc (8 clients,
            own devices), batch256 and batch4096 (JSON-RPC batches of maps), and daemon RSS
            at --rss-mappings entries. With --anchors the raw uds_server/uds_client run in
            the same invocation and each line gets a ratio. --pin puts the daemon, the raw
            server and the clients on CPU 0 (a cross-CPU wake-up dominates a round trip on
            this machine).
            """)

    @Option(help: "The vdpad binary (default: next to vdpad-bench).")
    var daemon: String?

    @Option(help: "Requests per scenario.")
    var requests = 100_000

    @Option(name: .customLong("rss-mappings"), help: "Mappings for the RSS measurement (0 skips it).")
    var rssMappings = 1_000_000

    @Option(help: "The anchors folder (holding uds/), to run the raw baseline too.")
    var anchors: String?

    @Flag(help: "Pin everything to CPU 0.")
    var pin = false

    @Option(help: "Runs of every scenario (vdpad, then the raw socket, each run); figures are medians.")
    var runs = 1

    @Option(help: "Comma-separated scenarios to run (seq,pipe,conc,batch256,batch4096), e.g. to profile one.")
    var scenarios = RPCBenchmark.allScenarios.joined(separator: ",")

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        let unknown = selected.filter { !RPCBenchmark.allScenarios.contains($0) }
        guard unknown.isEmpty else {
            throw ValidationError(
                "unknown scenario \(unknown.joined(separator: ", ")); choose from \(RPCBenchmark.allScenarios.joined(separator: ","))")
        }
    }

    var selected: [String] { scenarios.split(separator: ",").map { String($0) } }

    func run() throws {
        let me = CommandLine.arguments[0]
        let dir = me.contains("/") ? String(me[..<me.lastIndex(of: "/")!]) : "."
        let binary = daemon ?? dir + "/vdpad"
        if pin && getenv("VDPAD_BENCH_PINNED") == nil {
            // Re-run under taskset so this client process is on CPU 0 too.
            setenv("VDPAD_BENCH_PINNED", "1", 1)
            let argv = ["taskset", "-c", "0"] + CommandLine.arguments
            let c = argv.map { strdup($0) } + [nil]
            execvp("taskset", c)
            throw ValidationError("cannot run taskset: \(Errno.current)")
        }
        let place = pin ? "cpu0" : "free"
        // Each run measures vdpad, then the raw socket, so both see the same stretch of a noisy host;
        // each figure is the median over the runs (as the anchors' uds/run.sh reports).
        var vdpad: [[RPCResult]] = [], raw: [[RPCResult]] = []
        var rss = ""
        for run in 0..<runs {
            let (results, rssLine) = try RPCBenchmark.runVDPAD(
                daemon: binary, pin: pin, requests: requests,
                rssMappings: run == 0 ? rssMappings : 0, scenarios: selected)
            vdpad.append(results)
            if run == 0 { rss = rssLine }
            if let anchors {
                raw.append(try RPCBenchmark.runRaw(anchors: anchors, pin: pin, requests: requests).filter { selected.contains($0.mode) })
            }
        }
        let rawByMode = Dictionary(
            uniqueKeysWithValues: (raw.first ?? []).map { r in
                (r.mode, RPCFigures.median(raw.map { $0.first { $0.mode == r.mode }! }))
            })
        for r in raw.first ?? [] { print(rawByMode[r.mode]!.line(impl: "uds", place: place, r, runs: runs)) }
        for r in vdpad[0] {
            let figures = RPCFigures.median(vdpad.map { $0.first { $0.mode == r.mode }! })
            var line = figures.line(impl: "vdpad", place: place, r, runs: runs)
            if let base = rawByMode[r.mode] {
                line += " ratio_p50=\(format(figures.p50 / max(base.p50, 0.001))) ratio_rps=\(format(figures.rps / max(base.rps, 1)))"
            }
            print(line)
        }
        if rssMappings > 0 { print(rss) }
    }
}

/// One scenario's figures, the median of several runs.
struct RPCFigures {
    var rps: Double
    var p50: Double
    var p99: Double

    static func median(_ results: [RPCResult]) -> RPCFigures {
        func median(_ values: [Double]) -> Double {
            let v = values.sorted()
            return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
        }
        return RPCFigures(
            rps: median(results.map(\.rps)), p50: median(results.map { $0.percentile(0.5) }),
            p99: median(results.map { $0.percentile(0.99) }))
    }

    func line(impl: String, place: String, _ shape: RPCResult, runs: Int) -> String {
        "\(impl) place=\(place) mode=\(shape.mode) clients=\(shape.clients) depth=\(shape.depth) reqs=\(shape.requests) runs=\(runs) "
            + "rps=\(Int(rps)) p50_us=\(format(p50)) p99_us=\(format(p99))"
    }
}

struct InProcessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inproc",
        abstract: "Drive the daemon's inbound path (request stream, service, device) or its data path in process.",
        discussion: """
            single: the map/unmap mix of `rpc`'s seq and pipe scenarios, 64 requests per
            read; batch256: batches of 256 maps, each followed by a batch of 256 unmaps of
            its pages; frames64: 64-byte frames looped by a vdpasim_net pair on shared
            memory, 64 per run (a request is a frame: the ring walk, the IOTLB entry cache,
            the copies and the index stores); worker64: the same frames served by the
            daemon's data-path worker thread on a registry's device, 64 per kick of an
            eventfd, each round waiting on the RX call eventfd (a run's snapshot, record
            and interrupt as well); blk512: 512-byte reads of drawn sectors served by a
            vdpasim_blk RAM disk on shared memory, 64 per run (a request's three-descriptor
            walk, its header, one sector's copy and its status). Prints ns per request.  scripts/perf-guard.sh
            runs it under callgrind and DHAT for counts of instructions and allocations per
            request, which do not depend on the machine's load.
            """)

    @Argument(help: "single, batch256, frames64, worker64 or blk512.")
    var shape: String

    @Option(help: "Requests to answer.")
    var requests = 1_000_000

    /// The shapes served by the data path's harnesses (the others are the RPC path's `InProcessBenchmark.Shape`).
    static let dataPathShapes = ["frames64", "worker64", "blk512"]

    func validate() throws {
        guard InProcessBenchmark.Shape(rawValue: shape) != nil || Self.dataPathShapes.contains(shape) else {
            throw ValidationError("unknown shape \(shape); choose single, batch256, frames64, worker64 or blk512")
        }
        guard requests > 0 else { throw ValidationError("--requests must be positive") }
    }

    func run() throws {
        if Self.dataPathShapes.contains(shape) {
            let round: (Int) -> Int
            if shape == "frames64" {
                let harness = try LoopbackHarness(frameBytes: 64)
                round = { harness.round(frames: $0) }
            } else if shape == "blk512" {
                let harness = try BlockHarness()
                round = { harness.round(requests: $0) }
            } else {
                let harness = try WorkerLoopbackHarness(frameBytes: 64)
                round = { harness.round(frames: $0) }
            }
            // A local: the option's getter looks its property wrapper's metadata up each time, per round.
            let (total, start) = (requests, nowNanos())
            var looped = 0
            while looped < total {
                let n = round(min(64, total - looped))
                guard n > 0 else { throw ClientError(shape == "blk512" ? "the disk served no request" : "the pair looped no frame") }
                looped += n
            }
            print("vdpad inproc shape=\(shape) reqs=\(requests) ns_per_req=\(format(Double(nowNanos() - start) / Double(looped)))")
            return
        }
        let ns = try InProcessBenchmark.run(shape: InProcessBenchmark.Shape(rawValue: shape)!, requests: requests)
        print("vdpad inproc shape=\(shape) reqs=\(requests) ns_per_req=\(format(ns))")
    }
}

struct JSONCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "json",
        abstract: "Decode the RPC benchmark's map/unmap requests with Foundation and with vdpad's parser.",
        discussion: """
            Prints ns per request for JSONDecoder (into a Codable struct),
            JSONSerialization and vdpad's JSON tree, and whether each keeps 64-bit integers
            exact (ids and IOVAs up to 2^64-1). The daemon's fast path for plain map/unmap
            is measured by `inproc`.
            """)

    @Option(help: "Requests to decode with each.")
    var requests = 200_000

    func run() throws {
        for o in try JSONComparison.run(requests: requests) {
            print("json impl=\(o.name) reqs=\(requests) ns_per_req=\(format(o.nanosPerRequest)) exact_u64=\(o.exact ? 1 : 0)")
        }
    }
}

struct LoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Load scenarios against the real vdpad: held connections, many clients, a stalled client.",
        discussion: "Prints one line per scenario ending in ok=1 or ok=0; exits 1 if any is not ok.")

    @Option(help: "The vdpad binary (default: next to vdpad-bench).")
    var daemon: String?

    @Option(help: "Connections to hold at once.")
    var connections = 1000

    @Option(help: "Concurrent clients, each on its own device.")
    var clients = 50

    @Option(help: "map+unmap pairs per client.")
    var each = 1000

    func run() throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let me = CommandLine.arguments[0]
        let dir = me.contains("/") ? String(me[..<me.lastIndex(of: "/")!]) : "."
        let config = "[limits]\nmax_connections = \(connections + clients + 64)\nmax_devices = \(clients + 64)\nmax_output_bytes = 1048576\n"
        let ok = try RPCBenchmark.withDaemon(daemon ?? dir + "/vdpad", pin: false, config: config) { path, _ in
            let held = try LoadBenchmark.heldConnections(path: path, count: connections)
            print(held)
            let admin = try VDPAClient(path: path, timeout: 60)
            let (many, manyOK) = try LoadBenchmark.clients(path: path, admin: admin, clients: clients, each: each)
            print(many)
            let (stall, stallOK) = try LoadBenchmark.stalledNeighbour(path: path, admin: admin, requests: 8000)
            print(stall)
            return held.hasSuffix("ok=1") && manyOK && stallOK
        }
        if !ok { throw ExitCode(1) }
    }
}
