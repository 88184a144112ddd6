// Dispatcher.swift — JSON-RPC 2.0 request handling over the method table:
// single requests, notifications, batches (order kept, notifications not
// answered, `[]` invalid), ids of any valid type echoed back.
import Logging
import VDPACore
import VDPAJSON
import VDPARegistry

extension VDPAService {
    /// The answer to one JSON text.
    public struct Reply {
        /// The reply text (no newline), or nil when nothing is owed.
        public var bytes: [UInt8]?
        /// The input was not JSON: the connection is closed after the reply (docs/protocol.md §1).
        public var closeConnection: Bool
    }

    /// Handles one complete JSON text, appending the reply and a newline to `output` (nothing when no
    /// reply is owed).  Returns true when the connection must close after the reply: the input was not JSON.
    /// The text goes through a request stream, as a connection's bytes do: the fast path has one entry.
    public func handle(text: UnsafeBufferPointer<UInt8>, caller: Caller, into output: inout [UInt8]) -> Bool {
        var stream = RequestStream(service: self, caller: caller, maxTextBytes: text.count + 1)
        stream.append(text)
        if stream.answer(into: &output) != nil { return true }
        guard stream.hasPartialText else { return false }
        // A text that ends before its JSON does: on a connection it would wait for more; here it is all there is.
        return handleGeneral(text: UnsafeBufferPointer(rebasing: text[0..<text.count]), caller: caller, into: &output)
    }

    /// `handle` without the fast parser: the JSON tree, for a text the fast parser has declined.
    func handleGeneral(text: UnsafeBufferPointer<UInt8>, caller: Caller, into output: inout [UInt8]) -> Bool {
        let message: JSON
        do throws(JSONParseError) {
            message = try JSON.parse(text)
        } catch {
            response(id: .null, error: .parse(error.description)).encode(into: &output)
            output.append(0x0A)
            return true
        }
        if let reply = handle(message: message, caller: caller) {
            reply.encode(into: &output)
            output.append(0x0A)
        }
        return false
    }

    /// Handles one complete JSON text (a copying convenience for tests and tools).
    public func handle(text: [UInt8], caller: Caller) -> Reply {
        var output: [UInt8] = []
        let close = text.withUnsafeBufferPointer { handle(text: $0, caller: caller, into: &output) }
        return Reply(bytes: output.isEmpty ? nil : Array(output.dropLast()), closeConnection: close)
    }

    public func handle(message: JSON, caller: Caller) -> JSON? {
        guard case .array(let batch) = message else { return handle(request: message, caller: caller) }
        if batch.isEmpty { return response(id: .null, error: .invalidRequest("empty batch")) }
        if batch.count > limits.maxBatch {
            return response(id: .null, error: .invalidRequest("batch of \(batch.count) entries is over max_batch \(limits.maxBatch)"))
        }
        let replies = batch.compactMap { handle(request: $0, caller: caller) }
        return replies.isEmpty ? nil : .array(replies)
    }

    func handle(request: JSON, caller: Caller) -> JSON? {
        requestCount.add(1, ordering: .relaxed)
        guard case .object = request else { return response(id: .null, error: .invalidRequest("a request must be an object")) }
        let id = request["id"]
        if let id {
            switch id {
            case .string, .unsigned, .number, .null: break
            default: return response(id: .null, error: .invalidRequest("id must be a string, number or null"))
            }
        }
        guard request["jsonrpc"] == .string("2.0") else {
            return response(id: id ?? .null, error: .invalidRequest("jsonrpc must be \"2.0\""))
        }
        guard case .string(let method)? = request["method"] else {
            return response(id: id ?? .null, error: .invalidRequest("method must be a string"))
        }
        let result: Result<JSON, RPCError>
        do {
            guard let handler = Self.methods[method] else { throw RPCError.methodNotFound(method) }
            let params = try Params(request["params"])
            result = .success(try handler(self, params, caller))
        } catch let error as RPCError {
            result = .failure(Self.firstInvalidParam(error, method: method, params: request["params"]))
        } catch let error as VDPAError {
            result = .failure(RPCError(error))  // the one place a registry or device error meets the wire
        } catch {
            result = .failure(.internalError("\(error)"))
        }
        if case .failure(let error) = result { log(error, method: method, params: request["params"], caller: caller) }
        guard let id else { return nil }  // a notification gets no reply, not even an error
        switch result {
        case .success(let value):
            return .object([("jsonrpc", "2.0"), ("id", id), ("result", value)])
        case .failure(let error):
            return response(id: id, error: error)
        }
    }

    /// Domain and params errors are the client's business (debug); an internal error is ours (error).
    func log(_ error: RPCError, method: String, params: JSON?, caller: Caller) {
        var metadata: Logger.Metadata = ["method": "\(method)", "code": "\(error.code)", "pid": "\(caller.pid)"]
        if case .string(let device)? = params?["device"] { metadata["device"] = "\(device)" }
        if let asid = params?["asid"] { metadata["asid"] = "\(asid.text)" }
        if error.code == -32603 {
            logger.error("internal error: \(error.message)", metadata: metadata)
        } else {
            logger.debug("\(error.message)", metadata: metadata)
        }
    }

    func response(id: JSON, error: RPCError) -> JSON {
        errorCount.add(1, ordering: .relaxed)
        return .object([("jsonrpc", "2.0"), ("id", id), ("error", error.json)])
    }

    /// The one line a connection past `max_connections` gets before it is closed (docs/protocol.md §1).
    public func connectionLimitError(maxConnections: Int) -> [UInt8] {
        let error = RPCError(code: -32000, message: "too many connections (max_connections \(maxConnections))", data: ["errno": "EBUSY"])
        return response(id: .null, error: error).encoded() + [0x0A]
    }

    /// The line a connection gets, before it is closed, when it passed more descriptors than requests took.
    public func descriptorLimitError() -> [UInt8] {
        let error = RPCError.invalidRequest(
            "more than \(DeviceRegistry.maxPassedDescriptors) descriptors passed (SCM_RIGHTS) and not taken by a request")
        return response(id: .null, error: error).encoded() + [0x0A]
    }

    /// A reply for a framing failure the connection reports before closing.
    public func framingError(tooLarge: Bool, maxBytes: Int, syntaxError: Framer.SyntaxError? = nil) -> [UInt8] {
        let error: RPCError =
            tooLarge
            ? .invalidRequest("request too large (max_request_bytes \(maxBytes))")
            : .parse(syntaxError.map { "\($0.reason) at byte \($0.offset)" } ?? "the input is not JSON")
        return response(id: .null, error: error).encoded()
    }
}
