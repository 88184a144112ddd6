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

/// A `map` or `unmap` request in its plain form.
struct FastRequest {
    enum Method { case map, unmap }

    var method: Method
    /// The id exactly as sent (an unsigned integer or a string without escapes).
    var idBytes: ArraySlice<UInt8>
    var device: String
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
        request.idBytes = ArraySlice(bytes[id])
        return request
    }

    mutating func paramsObject() -> FastRequest? {
        guard expect(UInt8(ascii: "{")) else { return nil }
        var r = FastRequest(method: .map, idBytes: [], device: "")
        var device = false
        repeat {
            guard let key = plainString(), expect(UInt8(ascii: ":")) else { return nil }
            if equals(key, "device") {
                guard let d = plainString() else { return nil }
                r.device = String(decoding: UnsafeBufferPointer(rebasing: bytes[d]), as: UTF8.self)
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

extension VDPAService {
    /// Answers a plain map/unmap request or a batch made only of them; nil sends the text down the general path.
    func handleFast(_ text: [UInt8], caller: Caller) -> [UInt8]? {
        text.withUnsafeBufferPointer { buffer -> [UInt8]? in
            var scanner = FastScanner(bytes: buffer, i: 0)
            scanner.skipWhitespace()
            guard scanner.i < buffer.count else { return nil }
            if buffer[scanner.i] != UInt8(ascii: "[") {
                guard let request = scanner.request() else { return nil }
                scanner.skipWhitespace()
                guard scanner.i == buffer.count, request.isComplete else { return nil }
                var out: [UInt8] = []
                answer(request, caller: caller, into: &out)
                return out
            }
            scanner.i += 1
            var requests: [FastRequest] = []
            repeat {
                guard let request = scanner.request(), request.isComplete else { return nil }
                requests.append(request)
            } while scanner.expect(UInt8(ascii: ","))
            guard scanner.expect(UInt8(ascii: "]")), requests.count <= limits.maxBatch else { return nil }
            scanner.skipWhitespace()
            guard scanner.i == buffer.count else { return nil }
            var out: [UInt8] = [UInt8(ascii: "[")]
            out.reserveCapacity(requests.count * 40)
            for (k, request) in requests.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                answer(request, caller: caller, into: &out)
            }
            out.append(UInt8(ascii: "]"))
            return out
        }
    }

    private func answer(_ r: FastRequest, caller: Caller, into out: inout [UInt8]) {
        requestCount.add(1, ordering: .relaxed)
        let result: Result<Int?, RPCError>
        do throws(RPCError) {
            let slot = OwnedSlot(slot: try slot(r.device), connection: caller.connection)
            result = .success(try slot.sync { (d: inout VDPADevice) throws(VDPAError) -> Int? in
                switch r.method {
                case .map:
                    try d.map(asid: r.asid, iova: r.iova!, size: r.size!, address: r.addr!, permission: r.perm!)
                    return nil
                case .unmap:
                    return try d.unmap(asid: r.asid, iova: r.iova!, size: r.size!)
                }
            })
        } catch {
            result = .failure(error)
        }
        switch result {
        case .success(let removed):
            out.append(contentsOf: #"{"jsonrpc":"2.0","id":"#.utf8)
            out.append(contentsOf: r.idBytes)
            if let removed {
                out.append(contentsOf: #","result":{"removed":"#.utf8)
                JSON.appendDecimal(UInt64(removed), to: &out)
                out.append(contentsOf: "}}".utf8)
            } else {
                out.append(contentsOf: #","result":{}}"#.utf8)
            }
        case .failure(let error):
            // The id was scanned as an integer or a plain string, so it parses.
            let id = (try? JSON.parse(Array(r.idBytes))) ?? .null
            let params: JSON = ["device": .string(r.device), "asid": .unsigned(r.asid)]
            log(error, method: r.method == .map ? "map" : "unmap", params: params, caller: caller)
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
