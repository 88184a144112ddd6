// WireClient.swift — the benchmark's side of the socket, kept as lean as
// the anchors' uds_client so that a vdpad/raw ratio measures vdpad and not
// the client: requests are prepared bytes, a top-up of the pipeline is one
// write, replies are split at newlines and checked with a byte comparison
// (id and "result" in place) instead of being parsed into a JSON tree.
import UnixSocket
import VDPAClient
import VDPACore
#if canImport(Glibc)
    import Glibc
#endif

/// The anchors' request mix (uds_client.c: the same generator, seed and
/// sizes), as alternating `map` and `unmap` of one range on `device`, so every
/// request changes the IOTLB and the table never fills.
struct MapUnmapMix {
    /// 2 × 1,024 requests, each ending in a newline.
    let requests: [[UInt8]]
    /// The start every successful reply must have: `{"jsonrpc":"2.0","id":N,"result":`.
    let replyPrefixes: [[UInt8]]

    init(device: String, templates: Int = 1024) {
        var random = SplitMix64(state: 0x7664706164)
        var requests: [[UInt8]] = []
        var prefixes: [[UInt8]] = []
        for _ in 0..<templates {
            let id = 100_000 + random.next() % 900_000
            let iova = (random.next() & 0x0000_FFFF_FFFF_F000) | 0x1000_0000_0000
            let size: UInt64 = 4096 << (random.next() % 10)
            let addr = (random.next() & 0x0000_0FFF_FFFF_F000) | 0x7F00_0000_0000
            requests.append(Array(BenchRequest.map(id: id, device: device, iova: iova, size: size, addr: addr).utf8) + [10])
            requests.append(Array(BenchRequest.unmap(id: id + 1, device: device, iova: iova, size: size).utf8) + [10])
            prefixes.append(Array(#"{"jsonrpc":"2.0","id":\#(id),"result":"#.utf8))
            prefixes.append(Array(#"{"jsonrpc":"2.0","id":\#(id + 1),"result":"#.utf8))
        }
        self.requests = requests
        replyPrefixes = prefixes
    }
}

/// The benchmark's request texts: compact, in the anchors' member order, without a newline.
enum BenchRequest {
    static func map(id: UInt64, device: String, iova: UInt64, size: UInt64, addr: UInt64) -> String {
        #"{"jsonrpc":"2.0","id":\#(id),"method":"map","params":{"device":"\#(device)","asid":0,"iova":\#(iova),"size":\#(size),"addr":\#(addr),"perm":"rw"}}"#
    }

    static func unmap(id: UInt64, device: String, iova: UInt64, size: UInt64) -> String {
        #"{"jsonrpc":"2.0","id":\#(id),"method":"unmap","params":{"device":"\#(device)","asid":0,"iova":\#(iova),"size":\#(size)}}"#
    }

    /// One JSON-RPC batch of `texts`, as one line.
    static func batch(_ texts: [String]) -> [UInt8] { Array(("[" + texts.joined(separator: ",") + "]\n").utf8) }
}

/// Texts back to back in one allocation, for a hot loop that must not retain an array per text (the
/// anchors' client copies its templates with memcpy; the ratio should measure vdpad, not the client).
struct FlatTexts {
    private let bytes: UnsafeMutablePointer<UInt8>
    private let starts: UnsafeMutablePointer<Int>
    let count: Int
    /// The longest text's length.
    let maxLength: Int

    init(_ texts: [[UInt8]]) {
        count = texts.count
        maxLength = texts.map(\.count).max() ?? 0
        starts = .allocate(capacity: texts.count + 1)
        bytes = .allocate(capacity: max(1, texts.reduce(0) { $0 + $1.count }))
        var offset = 0
        for (k, text) in texts.enumerated() {
            starts[k] = offset
            text.withUnsafeBufferPointer { (bytes + offset).update(from: $0.baseAddress!, count: $0.count) }
            offset += text.count
        }
        starts[texts.count] = offset
    }

    /// Frees the storage; the value must not be used afterwards.
    func deallocate() {
        bytes.deallocate()
        starts.deallocate()
    }

    @inline(__always)
    subscript(k: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: bytes + starts[k], count: starts[k + 1] - starts[k])
    }
}

/// Raw reads and writes on a connected socket (the VDPAClient that opened it keeps it alive).
struct WireConnection {
    let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    /// Bytes at the front of `buffer` that are the start of a line not yet complete.
    private var pending = 0

    init(fd: Int32) { self.fd = fd }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = retryingOnEINTR { Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ClientError("write: \(Errno.current)") }
            offset += n
        }
    }

    /// One blocking read; calls `line` for every line it completes and returns how many.
    mutating func readLines(_ line: (UnsafeBufferPointer<UInt8>) throws -> Void) throws -> Int {
        if pending == buffer.count { buffer += [UInt8](repeating: 0, count: buffer.count) }  // a line longer than the buffer
        let n = retryingOnEINTR { buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + pending, $0.count - pending, 0) } }
        guard n > 0 else { throw ClientError(n == 0 ? "vdpad closed the connection" : "read: \(Errno.current)") }
        let end = pending + n
        var count = 0
        var start = 0
        try buffer.withUnsafeBufferPointer { p in
            var i = pending
            while i < end, let nl = memchr(p.baseAddress! + i, 10, end - i) {  // as the anchors' client finds lines
                i = UnsafePointer<UInt8>(nl.assumingMemoryBound(to: UInt8.self)) - p.baseAddress!
                try line(UnsafeBufferPointer(rebasing: p[start..<i]))
                count += 1
                i += 1
                start = i
            }
        }
        pending = end - start
        if start > 0 && pending > 0 {
            buffer.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: $0.baseAddress! + start, byteCount: pending) }
        }
        return count
    }
}

extension String {
    /// The text that `fgets` left in `buffer`, up to its NUL.
    init(cBuffer buffer: [CChar]) { self = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } }
}

extension UnsafeBufferPointer<UInt8> {
    /// How many times `needle` occurs (non-overlapping).
    func occurrences(of needle: StaticString) -> Int {
        let m = needle.utf8CodeUnitCount
        guard count >= m else { return 0 }
        var found = 0
        var i = 0
        while i <= count - m {
            if self[i] == needle.utf8Start[0] && memcmp(baseAddress! + i, needle.utf8Start, m) == 0 {
                found += 1
                i += m
            } else {
                i += 1
            }
        }
        return found
    }
}
