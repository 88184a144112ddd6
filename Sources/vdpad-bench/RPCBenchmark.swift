// RPCBenchmark.swift — `vdpad-bench rpc`: the real vdpad binary measured
// over its socket (sequential latency, 64-deep pipelining, JSON-RPC batches
// of maps, 8 concurrent clients on their own devices, RSS per mapping), and
// the anchors' raw Unix-socket round trip (uds_server/uds_client) in the same
// invocation, so each figure comes with its vdpad/raw ratio.
import Dispatch
import Synchronization
import UnixSocket
import VDPAClient
#if canImport(Glibc)
    import Glibc
#endif

struct RPCResult {
    var mode: String
    var clients: Int
    var depth: Int
    /// Requests whose latency is recorded.
    var requests: Int
    /// Requests answered inside the timed window (warm-up included, as uds_client counts them).
    var completed: Int
    var seconds: Double
    var latenciesMicros: [Double]

    var rps: Double { Double(completed) / seconds }

    func percentile(_ p: Double) -> Double {
        guard !latenciesMicros.isEmpty else { return 0 }
        let sorted = latenciesMicros.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
}

func format(_ x: Double) -> String {
    let hundredths = Int((x * 100).rounded())
    return "\(hundredths / 100).\(String(hundredths % 100).leftPad(2))"
}

func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A spawned child, reaped by us.
struct Spawned {
    let pid: pid_t

    /// `output` and `path` (nil: this process's own) take the child's stdout and stderr.
    init(_ argv: [String], stdoutTo output: String? = nil, stderrTo path: String? = "/dev/null") throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let output { posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
        if let path { posix_spawn_file_actions_addopen(&actions, 2, path, O_WRONLY | O_CREAT | O_APPEND, 0o644) }
        let args = argv.map { strdup($0) } + [nil]
        defer { args.forEach { free($0) } }
        var child: pid_t = 0
        let r = posix_spawnp(&child, argv[0], &actions, nil, args, environ)
        guard r == 0 else { throw ClientError("cannot start \(argv[0]): \(Errno(rawValue: r))") }
        pid = child
    }

    /// Waits for the child to end; its exit status (128 + the signal when a signal ended it).
    func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }

    func stop() {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    /// Resident set size in bytes, from /proc.
    var rssBytes: Int {
        guard let f = fopen("/proc/\(pid)/statm", "r") else { return 0 }
        defer { fclose(f) }
        var buffer = [CChar](repeating: 0, count: 128)
        guard fgets(&buffer, 128, f) != nil else { return 0 }
        let fields = String(cBuffer: buffer).split(separator: " ")
        return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * sysconf(Int32(_SC_PAGESIZE))
    }
}

func waitForSocket(_ path: String) throws {
    for _ in 0..<400 {
        if let c = try? VDPAClient(path: path, timeout: 5), (try? c.call("ping")) == "pong" { return }
        usleep(25_000)
    }
    throw ClientError("nothing answers on \(path)")
}

enum RPCBenchmark {
    /// Requests sent before measuring on each connection, answered but not recorded (uds_client's WARMUP).
    static let warmup = 5000

    /// `depth` requests in flight on one connection, the anchors' seq and pipe modes: a top-up is one write,
    /// latency runs from handing a request to write() until its reply's newline has been read.
    static func pipelined(path: String, device: String, requests: Int, depth: Int, salt: Int = 0) throws -> RPCResult {
        let c = try VDPAClient(path: path, timeout: 30)
        try c.call("open", ["device": .string(device)])
        let mix = MapUnmapMix(device: device)
        let requestTexts = FlatTexts(mix.requests), prefixes = FlatTexts(mix.replyPrefixes)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: depth * requestTexts.maxLength, alignment: 8)
        defer {
            requestTexts.deallocate()
            prefixes.deallocate()
            out.deallocate()
        }
        let templates = requestTexts.count
        var wire = WireConnection(fd: c.fd)
        let total = warmup + requests
        var sentAt = [UInt64](repeating: 0, count: total)
        var latencies: [Double] = []
        latencies.reserveCapacity(requests)
        var sent = 0, done = 0
        let start = nowNanos()
        while done < total {
            var length = 0
            let t = nowNanos()
            while sent < total && sent - done < depth {
                let text = requestTexts[(sent + salt) % templates]
                (out.baseAddress! + length).copyMemory(from: text.baseAddress!, byteCount: text.count)
                length += text.count
                sentAt[sent] = t
                sent += 1
            }
            if length > 0 { try wire.write(UnsafeRawBufferPointer(rebasing: out[..<length])) }
            let first = done
            _ = try wire.readLines { line in
                // Replies come in request order: the k-th line must carry the k-th id and a result.
                let prefix = prefixes[(done + salt) % templates]
                guard line.count >= prefix.count, memcmp(line.baseAddress!, prefix.baseAddress!, prefix.count) == 0 else {
                    throw ClientError("bad reply to request \(done): \(String(decoding: line, as: UTF8.self))")
                }
                done += 1
            }
            let t1 = nowNanos()
            for k in max(first, warmup)..<max(done, warmup) { latencies.append(Double(t1 - sentAt[k]) / 1000) }
        }
        let seconds = Double(nowNanos() - start) / 1e9
        try c.call("close", ["device": .string(device)])
        return RPCResult(
            mode: depth == 1 ? "seq" : "pipe", clients: 1, depth: depth, requests: requests, completed: total,
            seconds: seconds, latenciesMicros: latencies)
    }

    /// `clients` connections in parallel, each on its own device, one request in flight each.
    static func concurrent(path: String, devices: [String], requests: Int) throws -> RPCResult {
        let per = requests / devices.count
        let results = Mutex<[RPCResult]>([])
        let start = nowNanos()
        DispatchQueue.concurrentPerform(iterations: devices.count) { i in
            // As uds_client's conc threads: each starts at another place in the mix (an even one: map before unmap).
            if let r = try? pipelined(path: path, device: devices[i], requests: per, depth: 1, salt: i * 262) {
                results.withLock { $0.append(r) }
            }
        }
        let seconds = Double(nowNanos() - start) / 1e9
        let all = results.withLock { $0 }
        guard all.count == devices.count else { throw ClientError("a concurrent client failed") }
        return RPCResult(
            mode: "conc", clients: devices.count, depth: 1, requests: per * devices.count,
            completed: all.reduce(0) { $0 + $1.completed }, seconds: seconds, latenciesMicros: all.flatMap(\.latenciesMicros))
    }

    /// JSON-RPC batches of `size` maps of distinct pages (one batch in flight); reports maps per second.
    static func batches(path: String, device: String, size: Int, total: Int) throws -> RPCResult {
        let c = try VDPAClient(path: path, timeout: 60)
        try c.call("open", ["device": .string(device)])
        let count = total / size
        let payloads: [[UInt8]] = (0..<count).map { b in
            BenchRequest.batch(
                (0..<size).map { k in
                    let iova = UInt64(b * size + k) * 4096 + 0x1000_0000_0000
                    return BenchRequest.map(id: UInt64(k), device: device, iova: iova, size: 4096, addr: iova + 0x7F00_0000_0000)
                })
        }
        var wire = WireConnection(fd: c.fd)
        var latencies: [Double] = []
        let start = nowNanos()
        for p in payloads {
            let t = nowNanos()
            try p.withUnsafeBytes { try wire.write($0) }
            var lines = 0
            while lines == 0 {
                lines = try wire.readLines { line in
                    guard line.first == UInt8(ascii: "["), line.occurrences(of: #""result":"#) == size else {
                        throw ClientError("a batch failed: \(String(decoding: line.prefix(300), as: UTF8.self))")
                    }
                }
            }
            latencies.append(Double(nowNanos() - t) / 1000)
        }
        let seconds = Double(nowNanos() - start) / 1e9
        try c.call("close", ["device": .string(device)])
        return RPCResult(
            mode: "batch\(size)", clients: 1, depth: size, requests: count * size, completed: count * size,
            seconds: seconds, latenciesMicros: latencies)
    }

    /// Starts vdpad in a scratch directory with `config`; `body` gets the socket path and the process.
    static func withDaemon<T>(_ daemon: String, pin: Bool, config: String, _ body: (String, Spawned) throws -> T) throws -> T {
        let dir = "/tmp/vdpad-bench-\(getpid())"
        mkdir(dir, 0o700)
        defer { _ = system("rm -rf '\(dir)'") }
        let socketPath = dir + "/vdpad.sock"
        try config.withCString { c in
            let f = fopen(dir + "/vdpad.toml", "w")
            defer { fclose(f) }
            guard fputs(c, f) >= 0 else { throw ClientError("cannot write config") }
        }
        let argv =
            (pin ? ["taskset", "-c", "0"] : []) + [
                daemon, "--config", dir + "/vdpad.toml", "--socket", socketPath, "--state-dir", dir + "/state", "--log-level", "warning"
            ]
        let server = try Spawned(argv, stderrTo: dir + "/vdpad.log")
        defer { server.stop() }
        try waitForSocket(socketPath)
        return try body(socketPath, server)
    }

    /// Runs every scenario against a fresh daemon; returns the results and the RSS line.
    static let allScenarios = ["seq", "pipe", "conc", "batch256", "batch4096"]

    static func runVDPAD(daemon: String, pin: Bool, requests: Int, rssMappings: Int, scenarios: [String]) throws -> ([RPCResult], String) {
        let config = "[limits]\nmax_iotlb_entries = \(max(rssMappings, 1 << 21) + 16)\nmax_batch = 4096\n"
        return try withDaemon(daemon, pin: pin, config: config) { socketPath, server in
            try run(scenarios, socketPath, server, requests, rssMappings)
        }
    }

    static func run(_ scenarios: [String], _ socketPath: String, _ server: Spawned, _ requests: Int, _ rssMappings: Int) throws -> (
        [RPCResult], String
    ) {
        let admin = try VDPAClient(path: socketPath, timeout: 30)
        let devices = (0..<8).map { "bench\($0)" }
        for d in devices + ["rss"] { try admin.call("add_device", ["name": .string(d), "mgmtdev": "vdpasim_net"]) }
        var results: [RPCResult] = []
        for scenario in scenarios {
            switch scenario {
            case "seq": results.append(try pipelined(path: socketPath, device: devices[0], requests: requests, depth: 1))
            case "pipe": results.append(try pipelined(path: socketPath, device: devices[0], requests: requests, depth: 64))
            case "conc": results.append(try concurrent(path: socketPath, devices: devices, requests: requests))
            case "batch256": results.append(try batches(path: socketPath, device: devices[1], size: 256, total: max(requests, 256) / 256 * 256))
            case "batch4096": results.append(try batches(path: socketPath, device: devices[2], size: 4096, total: max(requests, 4096) / 4096 * 4096))
            default: throw ClientError("unknown scenario \(scenario)")
            }
        }
        // RSS: one ASID filled with `rssMappings` entries through batches, measured before and after.
        let before = server.rssBytes
        let c = try VDPAClient(path: socketPath, timeout: 120)
        try c.call("open", ["device": "rss"])
        try c.call("batch_begin", ["device": "rss"])
        try fill(c, device: "rss", mappings: rssMappings)
        try c.call("batch_end", ["device": "rss"])
        let after = server.rssBytes
        let perMapping = Double(after - before) / Double(max(rssMappings, 1))
        let rss =
            "vdpad metric=rss mappings=\(rssMappings) rss_before_mib=\(after > 0 ? format(Double(before) / 1048576) : "?") "
            + "rss_after_mib=\(format(Double(after) / 1048576)) bytes_per_mapping=\(format(perMapping))"
        return (results, rss)
    }

    /// Maps `mappings` 4 KiB pages of `device` (every other 8 KiB, IOVA = address) in JSON-RPC batches of 4,096.
    static func fill(_ c: VDPAClient, device: String, mappings: Int) throws {
        var k = 0
        while k < mappings {
            let n = min(4096, mappings - k)
            let items = (0..<n).map { j -> JSON in
                let iova = UInt64(k + j) * 8192
                return .object([
                    ("jsonrpc", "2.0"), ("id", .unsigned(UInt64(j))), ("method", "map"),
                    ("params", ["device": .string(device), "iova": .unsigned(iova), "size": 4096, "addr": .unsigned(iova), "perm": "rw"])
                ])
            }
            try c.send(raw: JSON.array(items).encoded() + [10])
            _ = try c.readMessage()
            k += n
        }
    }

    /// Builds and runs the anchors' raw Unix-socket round trip with the same request counts.
    static func runRaw(anchors: String, pin: Bool, requests: Int) throws -> [RPCResult] {
        let dir = "/tmp/vdpad-bench-uds-\(getpid())"
        mkdir(dir, 0o700)
        defer { _ = system("rm -rf '\(dir)'") }
        for tool in ["uds_server", "uds_client"] {
            guard system("gcc -O2 -pthread -o '\(dir)/\(tool)' '\(anchors)/uds/\(tool).c'") == 0 else {
                throw ClientError("cannot build \(anchors)/uds/\(tool).c with gcc")
            }
        }
        let pinPrefix = pin ? "taskset -c 0 " : ""
        let socketPath = dir + "/raw.sock"
        let server = try Spawned((pin ? ["taskset", "-c", "0"] : []) + [dir + "/uds_server", socketPath, "threads"])
        defer { server.stop() }
        for _ in 0..<100 where access(socketPath, F_OK) != 0 { usleep(20_000) }
        var results: [RPCResult] = []
        for (mode, arg) in [("seq", 1), ("pipe", 64), ("conc", 8)] {
            guard let p = popen("\(pinPrefix)'\(dir)/uds_client' '\(socketPath)' \(mode) \(requests) \(arg)", "r") else { continue }
            var buffer = [CChar](repeating: 0, count: 4096)
            var line = ""
            while fgets(&buffer, 4096, p) != nil { line += String(cBuffer: buffer) }
            pclose(p)
            var fields: [String: String] = [:]
            for kv in line.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                let parts = kv.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            let rps = Double(fields["rps"] ?? "") ?? 0
            let p50 = Double(fields["p50_us"] ?? "") ?? 0, p99 = Double(fields["p99_us"] ?? "") ?? 0
            // Keep the raw percentiles: two synthetic points reproduce p50 and p99 exactly.
            let lat = [Double](repeating: p50, count: 98) + [p99, p99]
            results.append(
                RPCResult(
                    mode: mode, clients: mode == "conc" ? arg : 1, depth: mode == "pipe" ? arg : 1,
                    requests: requests, completed: requests, seconds: rps > 0 ? Double(requests) / rps : 0,
                    latenciesMicros: lat))
        }
        return results
    }
}

/// `vdpad-bench load`: issue 5's load scenarios at full scale against the real daemon.
enum LoadBenchmark {
    /// Holds `count` connections open at once and checks that every one still answers.
    static func heldConnections(path: String, count: Int) throws -> String {
        var held: [VDPAClient] = []
        let start = nowNanos()
        for _ in 0..<count { held.append(try VDPAClient(path: path, timeout: 30)) }
        var answered = 0
        for c in held where (try? c.call("ping")) == "pong" { answered += 1 }
        let ms = Double(nowNanos() - start) / 1e6
        return "vdpad load=connections held=\(count) answered=\(answered) ms=\(format(ms)) ok=\(answered == count ? 1 : 0)"
    }

    /// `clients` clients, each on its own device, `each` map+unmap pairs; every reply is checked.
    static func clients(path: String, admin: VDPAClient, clients: Int, each: Int) throws -> (String, Bool) {
        for i in 0..<clients { try admin.call("add_device", ["name": .string("load\(i)"), "mgmtdev": "vdpasim_net"]) }
        let failures = Mutex<[String]>([])
        let latencies = Mutex<[Double]>([])
        let start = nowNanos()
        DispatchQueue.concurrentPerform(iterations: clients) { i in
            do {
                let c = try VDPAClient(path: path, timeout: 60)
                let dev = JSON.string("load\(i)")
                try c.call("open", ["device": dev])
                var mine: [Double] = []
                for k in 0..<each {
                    let iova = JSON.unsigned(UInt64(k) * 4096)
                    let t = nowNanos()
                    try c.call("map", ["device": dev, "iova": iova, "size": 4096, "addr": iova, "perm": "rw"])
                    guard try c.call("unmap", ["device": dev, "iova": iova, "size": 4096]) == ["removed": 1] else {
                        throw ClientError("load\(i): unmap \(k) removed nothing")
                    }
                    mine.append(Double(nowNanos() - t) / 2000)
                }
                latencies.withLock { $0 += mine }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        let seconds = Double(nowNanos() - start) / 1e9
        let all = RPCResult(
            mode: "load", clients: clients, depth: 1, requests: clients * each * 2, completed: clients * each * 2, seconds: seconds,
            latenciesMicros: latencies.withLock { $0 })
        let bad = failures.withLock { $0 }
        for i in 0..<clients { try admin.call("del_device", ["name": .string("load\(i)"), "force": true]) }
        return (
            "vdpad load=clients clients=\(clients) each=\(each) reqs=\(all.requests) rps=\(Int(all.rps)) "
                + "p50_us=\(format(all.percentile(0.5))) p99_us=\(format(all.percentile(0.99))) failures=\(bad.count) ok=\(bad.isEmpty ? 1 : 0)",
            bad.isEmpty
        )
    }

    /// p99 of 8 clients' map/unmap, first alone, then beside a client that sends and never reads.
    static func stalledNeighbour(path: String, admin: VDPAClient, requests: Int) throws -> (String, Bool) {
        let devices = (0..<8).map { "quiet\($0)" }
        for d in devices { try admin.call("add_device", ["name": .string(d), "mgmtdev": "vdpasim_net"]) }
        defer { for d in devices { _ = try? admin.call("del_device", ["name": .string(d), "force": true]) } }
        let calm = try RPCBenchmark.concurrent(path: path, devices: devices, requests: requests)
        // The stalled client floods list_mgmtdevs replies it never reads, until vdpad cuts it off.
        let stalled = try VDPAClient(path: path, timeout: 1)
        let flood = Array(repeating: Array(#"{"jsonrpc":"2.0","id":1,"method":"list_mgmtdevs"}"#.utf8) + [10], count: 4096).flatMap { $0 }
        let stallDone = DispatchSemaphore(value: 0)
        let fd = stalled.fd
        DispatchQueue.global().async {
            // Raw sends on the descriptor: the client object stays on this thread.
            sending: for _ in 0..<64 {
                var offset = 0
                while offset < flood.count {
                    let n = flood.withUnsafeBytes { send(fd, $0.baseAddress! + offset, flood.count - offset, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { break sending }
                    offset += n
                }
            }
            stallDone.signal()
        }
        let busy = try RPCBenchmark.concurrent(path: path, devices: devices, requests: requests)
        stallDone.wait()
        withExtendedLifetime(stalled) {}
        let ratio = busy.percentile(0.99) / max(calm.percentile(0.99), 0.001)
        return (
            "vdpad load=stalled_neighbour p99_alone_us=\(format(calm.percentile(0.99))) "
                + "p99_beside_stalled_us=\(format(busy.percentile(0.99))) ratio=\(format(ratio)) ok=\(ratio <= 2 ? 1 : 0)", ratio <= 2
        )
    }
}
