// FastPath.swift — `map` and `unmap`, the calls a VMM makes by the
// hundred thousand during boot and migration, decoded straight from bytes
// into a struct and answered with bytes, without building a JSON tree.
//
// Profiles of the batch path showed the tree (parse, allocate, destroy,
// encode) costing about half of each map.  The scanner accepts only the
// plain shape (known keys, unsigned integers, strings without escapes);
// anything else returns nil and takes the general path, which stays the
// reference: tests compare the two byte for byte.
import VDPACore
#if canImport(Glibc)
import Glibc
#endif

/// A `map` or `unmap` request in its plain form; the id and device stay in the text (ranges, no copies).
struct FastRequest {
    enum Method { case map, unmap }

    var method: Method
    /// The id exactly as sent (an unsigned integer or a string without escapes).
    var id: Range<Int> = 0..<0
    /// The device name, without its quotes.
    var device: Range<Int> = 0..<0
    var asid: UInt64 = 0
    var iova: UInt64?
    var size: UInt64?
    var addr: UInt64?
    var perm: Permission?
}

struct FastScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var i: Int

    mutating func skipWhitespace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    mutating func expect(_ c: UInt8) -> Bool {
        skipWhitespace()
        guard i < bytes.count, bytes[i] == c else { return false }
        i += 1
        return true
    }

    /// A string without escapes or control characters; returns its byte range.
    mutating func plainString() -> Range<Int>? {
        guard expect(UInt8(ascii: "\"")) else { return nil }
        let start = i
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                i += 1
                return start..<(i - 1)
            }
            if b == UInt8(ascii: "\\") || b < 0x20 || b >= 0x80 { return nil }
            i += 1
        }
        return nil
    }

    /// An unsigned integer that fits in 64 bits (no sign, fraction or exponent).
    mutating func unsigned() -> UInt64? {
        skipWhitespace()
        let start = i
        var value: UInt64 = 0
        while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 {
            let (t, o1) = value.multipliedReportingOverflow(by: 10)
            let (v, o2) = t.addingReportingOverflow(UInt64(bytes[i] - 48))
            if o1 || o2 { return nil }
            value = v
            i += 1
        }
        guard i > start, !(bytes[start] == 48 && i - start > 1) else { return nil }  // JSON forbids leading zeros
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            return nil
        }
        return value
    }

    func equals(_ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let p = literal.utf8Start
        for k in 0..<range.count where bytes[range.lowerBound + k] != p[k] { return false }
        return true
    }

    func equals(_ a: Range<Int>, _ b: Range<Int>) -> Bool {
        a.count == b.count && (a.isEmpty || memcmp(bytes.baseAddress! + a.lowerBound, bytes.baseAddress! + b.lowerBound, a.count) == 0)
    }

    /// `{ ... }` of a plain map/unmap request, or nil.
    mutating func request() -> FastRequest? {
        guard expect(UInt8(ascii: "{")) else { return nil }
        var version = false
        var method: FastRequest.Method?
        var id: Range<Int>?
        var params: FastRequest?
        repeat {
            guard let key = plainString(), expect(UInt8(ascii: ":")) else { return nil }
            if equals(key, "jsonrpc") {
                guard let v = plainString(), equals(v, "2.0") else { return nil }
                version = true
            } else if equals(key, "method") {
                guard let m = plainString() else { return nil }
                if equals(m, "map") { method = .map } else if equals(m, "unmap") { method = .unmap } else { return nil }
            } else if equals(key, "id") {
                skipWhitespace()
                let start = i
                if i < bytes.count, bytes[i] == UInt8(ascii: "\"") {
                    guard plainString() != nil else { return nil }
                } else {
                    guard unsigned() != nil else { return nil }
                }
                id = start..<i
            } else if equals(key, "params") {
                guard let p = paramsObject() else { return nil }
                params = p
            } else {
                return nil
            }
            skipWhitespace()
        } while expect(UInt8(ascii: ","))
        guard expect(UInt8(ascii: "}")), version, let method, let id, var request = params else { return nil }
        request.method = method
        request.id = id
        return request
    }

    mutating func paramsObject() -> FastRequest? {
        guard expect(UInt8(ascii: "{")) else { return nil }
        var r = FastRequest(method: .map)
        var device = false
        repeat {
            guard let key = plainString(), expect(UInt8(ascii: ":")) else { return nil }
            if equals(key, "device") {
                guard let d = plainString() else { return nil }
                r.device = d
                device = true
            } else if equals(key, "perm") {
                guard let p = plainString() else { return nil }
                if equals(p, "ro") { r.perm = .read } else if equals(p, "wo") { r.perm = .write } else if equals(p, "rw") {
                    r.perm = .readWrite
                } else { return nil }
            } else {
                guard let v = unsigned() else { return nil }
                if equals(key, "iova") { r.iova = v } else if equals(key, "size") { r.size = v } else if equals(key, "addr") {
                    r.addr = v
                } else if equals(key, "asid") { r.asid = v } else { return nil }
            }
            skipWhitespace()
        } while expect(UInt8(ascii: ","))
        guard expect(UInt8(ascii: "}")), device else { return nil }
        return r
    }
}

/// Parses one text that is a plain map/unmap request or a batch made only of them, possibly over
/// several reads: a batch is parsed element by element as its bytes arrive, and nothing runs before
/// its closing bracket (a batch that turns out not to be plain goes to the general path whole).
/// Offsets are relative to the text's first byte, so the buffer may move between calls.
struct FastTextParser {
    enum Outcome: Equatable {
        /// The text is complete and plain; it is this many bytes long.
        case complete(length: Int)
        /// Plain so far; the text continues past the bytes received.
        case needMore
        /// Not for the fast path: the general path answers it.
        case notFast
    }

    private(set) var single: FastRequest?
    private(set) var batch: [FastRequest] = []
    private(set) var isBatch = false
    private var started = false
    /// Whether parsing has begun (the text's first byte was seen).
    var isStarted: Bool { started }
    private var expectingElement = true
    /// Where parsing resumes: a request's start, or the place after one.
    private var resume = 0

    /// `text` starts at the text's first byte and runs to the end of the bytes received.
    mutating func parse(_ text: UnsafeBufferPointer<UInt8>, maxBatch: Int) -> Outcome {
        var s = FastScanner(bytes: text, i: resume)
        if !started {
            s.skipWhitespace()
            guard s.i < text.count else { return .needMore }
            started = true
            if text[s.i] == UInt8(ascii: "[") {
                isBatch = true
                s.i += 1
            }
            resume = s.i
        }
        if !isBatch {
            guard let request = s.request() else { return s.i >= text.count ? .needMore : .notFast }
            guard request.isComplete else { return .notFast }
            single = request
            return .complete(length: s.i)
        }
        while true {
            if expectingElement {
                var element = s
                guard let request = element.request() else { return element.i >= text.count ? .needMore : .notFast }
                guard request.isComplete, batch.count < maxBatch else { return .notFast }
                batch.append(request)
                s = element
                expectingElement = false
                resume = s.i
            }
            s.skipWhitespace()
            guard s.i < text.count else { return .needMore }
            switch text[s.i] {
            case UInt8(ascii: ","):
                s.i += 1
                expectingElement = true
                resume = s.i
            case UInt8(ascii: "]"):
                return .complete(length: s.i + 1)
            default:
                return .notFast
            }
        }
    }
}

extension VDPAService {
    /// Answers a complete text if it is a plain map/unmap request or a batch made only of them,
    /// appending the reply and a newline to `output`; false (and nothing written) sends the text down
    /// the general path.
    func handleFast(_ text: UnsafeBufferPointer<UInt8>, caller: Caller, into output: inout [UInt8]) -> Bool {
        var parser = FastTextParser()
        guard case .complete(let length) = parser.parse(text, maxBatch: limits.maxBatch) else { return false }
        var rest = FastScanner(bytes: text, i: length)
        rest.skipWhitespace()
        guard rest.i == text.count else { return false }
        answer(parser, in: text, caller: caller, into: &output)
        return true
    }

    /// Runs what `parser` parsed from `text` (complete) and appends the reply and a newline.
    func answer(_ parser: FastTextParser, in text: UnsafeBufferPointer<UInt8>, caller: Caller, into output: inout [UInt8]) {
        if let single = parser.single {
            answer(CollectionOfOne(single), in: text, caller: caller, into: &output)
            output.append(0x0A)
            return
        }
        let requests = parser.batch
        let scanner = FastScanner(bytes: text, i: 0)
        output.append(UInt8(ascii: "["))
        // Consecutive requests for one device run in one hop onto its queue.
        var k = 0
        while k < requests.count {
            var j = k + 1
            while j < requests.count && scanner.equals(requests[j].device, requests[k].device) { j += 1 }
            if k > 0 { output.append(UInt8(ascii: ",")) }
            answer(requests[k..<j], in: text, caller: caller, into: &output)
            k = j
        }
        output.append(contentsOf: "]\n".utf8)
    }

    /// Runs requests that all name one device, in order, appending their replies separated by commas.
    private func answer<Run: Collection<FastRequest>>(_ run: Run, in text: UnsafeBufferPointer<UInt8>, caller: Caller,
                                                      into out: inout [UInt8]) {
        requestCount.add(run.count, ordering: .relaxed)
        let device = String(decoding: UnsafeBufferPointer(rebasing: text[run.first!.device]), as: UTF8.self)
        let slot: DeviceSlot
        do throws(RPCError) {
            slot = try self.slot(device)
        } catch {
            for (k, r) in run.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                reply(r, .failure(error), device: device, text: text, caller: caller, into: &out)
            }
            return
        }
        slot.modify { d in
            for (k, r) in run.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                let outcome: Result<Int?, VDPAError>
                do throws(VDPAError) {
                    try d.requireOwner(caller.connection)
                    switch r.method {
                    case .map:
                        try d.map(asid: r.asid, iova: r.iova!, size: r.size!, address: r.addr!, permission: r.perm!)
                        outcome = .success(nil)
                    case .unmap:
                        outcome = .success(try d.unmap(asid: r.asid, iova: r.iova!, size: r.size!))
                    }
                } catch {
                    outcome = .failure(error)
                }
                reply(r, outcome.mapError(RPCError.init), device: device, text: text, caller: caller, into: &out)
            }
        }
    }

    /// The reply bytes, the same as the general path would encode.
    private func reply(_ r: FastRequest, _ outcome: Result<Int?, RPCError>, device: String, text: UnsafeBufferPointer<UInt8>,
                       caller: Caller, into out: inout [UInt8]) {
        switch outcome {
        case .success(let removed):
            out.append(contentsOf: #"{"jsonrpc":"2.0","id":"#.utf8)
            out.append(contentsOf: UnsafeBufferPointer(rebasing: text[r.id]))
            if let removed {
                out.append(contentsOf: #","result":{"removed":"#.utf8)
                JSON.appendDecimal(UInt64(removed), to: &out)
                out.append(contentsOf: "}}".utf8)
            } else {
                out.append(contentsOf: #","result":{}}"#.utf8)
            }
        case .failure(let error):
            // The id was scanned as an integer or a plain string, so it parses.
            let id = (try? JSON.parse(UnsafeBufferPointer(rebasing: text[r.id]))) ?? .null
            log(error, method: r.method == .map ? "map" : "unmap", params: ["device": .string(device), "asid": .unsigned(r.asid)], caller: caller)
            response(id: id, error: error).encode(into: &out)
        }
    }
}

extension FastRequest {
    /// Every field the method needs is present (a missing one is -32602 on the general path).
    var isComplete: Bool {
        iova != nil && size != nil && (method == .unmap || (addr != nil && perm != nil))
    }
}
