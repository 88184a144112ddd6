// RestartCommand.swift — `vdpad-bench restart`: what keeping sessions across
// a restart costs (docs/restart.md).  The same map/unmap scenarios as `rpc`,
// against a daemon with the journal (keep_sessions = true) and one without, in
// one run, alternated; then a daemon filled with a number of mappings is
// upgraded in place and timed until the same connection is answered again.
import ArgumentParser
import VDPAClient
import VDPAJSON
#if canImport(Glibc)
    import Glibc
#endif

struct RestartCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart",
        abstract: "What keeping sessions across restarts costs: map latency and throughput, restart time, journal bytes.",
        discussion: """
            Each run starts vdpad twice (keep_sessions = false, then true) and measures seq
            (one map/unmap in flight: latency) and pipe (64 in flight: throughput) on each;
            lines carry the journal's ratio to no journal.  Then one daemon is filled with
            --mappings entries (JSON-RPC batches, one ASID) and upgraded in place
            (daemon_upgrade): the time from the request to the first answer the new process
            gives on the same connection, and the journal's bytes per mapping.  Build with -c release:
              vdpad-bench restart
              vdpad-bench restart --runs 5 --requests 200000 --mappings 1000000
            """)

    @Option(help: "The vdpad binary (default: next to vdpad-bench).")
    var daemon: String?

    @Option(help: "Requests per scenario.")
    var requests = 100_000

    @Option(help: "Runs of both daemons; figures are medians.")
    var runs = 3

    @Option(help: "Mappings in the daemon that is upgraded (0 skips the restart).")
    var mappings = 1_000_000

    func validate() throws {
        guard requests > 0, runs > 0, mappings >= 0 else { throw ValidationError("--requests and --runs must be > 0, --mappings ≥ 0") }
    }

    func run() throws {
        let me = CommandLine.arguments[0]
        let dir = me.contains("/") ? String(me[..<me.lastIndex(of: "/")!]) : "."
        let binary = daemon ?? dir + "/vdpad"
        var seq: [Bool: [RPCResult]] = [:]
        var pipe: [Bool: [RPCResult]] = [:]
        for _ in 0..<runs {
            for journal in [false, true] {
                try RPCBenchmark.withDaemon(binary, pin: false, config: "keep_sessions = \(journal)\n") { socket, _ in
                    let admin = try VDPAClient(path: socket, timeout: 30)
                    try admin.call("add_device", ["name": "r0", "mgmtdev": "vdpasim_net"])
                    try admin.call("add_device", ["name": "r1", "mgmtdev": "vdpasim_net"])
                    seq[journal, default: []].append(try RPCBenchmark.pipelined(path: socket, device: "r0", requests: requests, depth: 1))
                    pipe[journal, default: []].append(try RPCBenchmark.pipelined(path: socket, device: "r1", requests: requests, depth: 64))
                }
            }
        }
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
        for (name, results) in [("map_seq", seq), ("map_pipe", pipe)] {
            let off = results[false]!, on = results[true]!
            let (rpsOff, rpsOn) = (median(off.map(\.rps)), median(on.map(\.rps)))
            // One request in flight: a round trip is 1/rps (seq's latency); 64 in flight: the throughput.
            print(
                "restart metric=\(name) runs=\(runs) requests=\(requests) rps_off=\(Int(rpsOff)) rps_on=\(Int(rpsOn)) "
                    + "round_trip_us_off=\(format(1e6 / rpsOff)) round_trip_us_on=\(format(1e6 / rpsOn)) ratio=\(format(rpsOff / rpsOn))")
        }
        guard mappings > 0 else { return }
        let config = "keep_sessions = true\n[limits]\nmax_iotlb_entries = \(max(mappings, 1 << 21) + 16)\nmax_batch = 4096\n"
        try RPCBenchmark.withDaemon(binary, pin: false, config: config) { socket, _ in
            let c = try VDPAClient(path: socket, timeout: 300)
            try c.call("add_device", ["name": "big", "mgmtdev": "vdpasim_net"])
            try c.call("open", ["device": "big"])
            let before = try journalBytes(c)
            try RPCBenchmark.fill(c, device: "big", mappings: mappings)
            // Bytes per mapping as journaled, before any compaction rewrote the history as a snapshot.
            let grown = try journalBytes(c) - before
            let admin = try VDPAClient(path: socket, timeout: 300)
            let answeredBefore = try requestsAnswered(c)
            let started = monotonicSeconds()
            try admin.call("daemon_upgrade")
            // The first answer from the new process, on the same connection: the old one may still answer a call
            // or two between its answer to daemon_upgrade and the exec; the new one counts requests from 0.
            while try requestsAnswered(c) > answeredBefore {}
            let serving = monotonicSeconds() - started
            let device = try c.call("get_device", ["device": "big"])
            var entries = 0.0
            if case .array(let asids)? = device["asids"], let first = asids.first { entries = first["session_entries"]?.doubleValue ?? 0 }
            guard entries == Double(mappings) else { throw ClientError("after the upgrade the device holds \(entries) of \(mappings) mappings") }
            let after = try journalBytes(c)
            print(
                "restart metric=upgrade mappings=\(mappings) serving_ms=\(format(serving * 1000)) "
                    + "journal_bytes_per_mapping=\(format(Double(grown) / Double(mappings))) journal_bytes_after=\(after)")
        }
    }

    private func requestsAnswered(_ c: VDPAClient) throws -> Int {
        Int(try c.call("get_stats")["requests"]?.doubleValue ?? 0)
    }

    private func journalBytes(_ c: VDPAClient) throws -> Int {
        Int(try c.call("get_stats")["journal"]?["bytes"]?.doubleValue ?? 0)
    }

    private func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
