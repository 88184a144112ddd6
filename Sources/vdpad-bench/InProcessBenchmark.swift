// InProcessBenchmark.swift — `vdpad-bench inproc`: the daemon's inbound path
// (RequestStream: fast parser, framer, service, device, reply bytes) driven
// in process with the benchmark's own requests, no socket.  Its cost per
// request is what the RPC path adds to a raw round trip; under callgrind or
// DHAT it is a deterministic count (instructions, allocations) that
// scripts/perf-guard.sh holds to a budget.
import VDPAClient
import VDPARPC
import VDPARegistry
#if canImport(Glibc)
    import Glibc
#endif

enum InProcessBenchmark {
    enum Shape: String, CaseIterable {
        /// Single map/unmap requests (the `seq`/`pipe` mix), arriving 64 per read.
        case single
        /// Batches of 256 maps, then a batch of 256 unmaps of the same pages.
        case batch256
    }

    /// Runs `requests` requests of `shape`; returns nanoseconds per request, or throws on a bad reply.
    static func run(shape: Shape, requests: Int) throws -> Double {
        let service = VDPAService(version: "bench", pid: getpid())
        let admin = Caller(connection: 1, pid: getpid(), uid: 0, gid: 0, isAdmin: true)
        for text in [
            #"{"jsonrpc":"2.0","id":1,"method":"add_device","params":{"name":"bench0","mgmtdev":"vdpasim_net"}}"#,
            #"{"jsonrpc":"2.0","id":2,"method":"open","params":{"device":"bench0"}}"#
        ] {
            guard service.handle(text: Array(text.utf8), caller: admin).bytes.map({ String(decoding: $0, as: UTF8.self).contains("result") }) == true
            else {
                throw ClientError("setup failed: \(text)")
            }
        }
        let chunks = try input(shape: shape)
        var stream = RequestStream(service: service, caller: admin, maxTextBytes: 1 << 24)
        var output: [UInt8] = []
        output.reserveCapacity(1 << 16)
        var done = 0
        var k = 0
        let start = nowNanos()
        while done < requests {
            let (bytes, count) = chunks[k % chunks.count]
            k += 1
            stream.append(bytes)
            guard stream.answer(into: &output) == nil else { throw ClientError("the stream closed") }
            // Every request answered with a result: as many "result" members as requests in the chunk.
            let results = output.withUnsafeBufferPointer { $0.occurrences(of: #""result":"#) }
            guard results == count else {
                throw ClientError("\(count - results) of \(count) requests failed: \(String(decoding: output.prefix(300), as: UTF8.self))")
            }
            output.removeAll(keepingCapacity: true)
            done += count
        }
        return Double(nowNanos() - start) / Double(done)
    }

    /// The chunks a socket would deliver, each with its number of requests.
    static func input(shape: Shape) throws -> [([UInt8], Int)] {
        switch shape {
        case .single:
            let mix = MapUnmapMix(device: "bench0")
            return stride(from: 0, to: mix.requests.count, by: 64).map { s in
                (mix.requests[s..<min(s + 64, mix.requests.count)].flatMap { $0 }, min(64, mix.requests.count - s))
            }
        case .batch256:
            return (0..<8).flatMap { b -> [([UInt8], Int)] in
                let pages = (0..<256).map { UInt64(b * 256 + $0) * 4096 + 0x1000_0000_0000 }
                let maps = pages.enumerated().map { k, iova in
                    BenchRequest.map(id: UInt64(k), device: "bench0", iova: iova, size: 4096, addr: iova + 0x7F00_0000_0000)
                }
                let unmaps = pages.enumerated().map { k, iova in BenchRequest.unmap(id: UInt64(k), device: "bench0", iova: iova, size: 4096) }
                return [(BenchRequest.batch(maps), 256), (BenchRequest.batch(unmaps), 256)]
            }
        }
    }
}
