// RPCError.swift — what goes on the wire as a JSON-RPC error object.  Domain
// errors are mapped here, once: code = −errno, data.errno = its name, and
// data.kernel_errno where the kernel would have said something else (R3).
import VDPACore
import VDPAJSON

public struct RPCError: Error, Sendable {
    public var code: Int
    public var message: String
    public var data: JSON?

    public init(code: Int, message: String, data: JSON? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    public static func parse(_ detail: String) -> RPCError { RPCError(code: -32700, message: "parse error: \(detail)") }
    public static func invalidRequest(_ detail: String) -> RPCError {
        RPCError(code: -32600, message: "invalid request: \(detail)")
    }
    public static func methodNotFound(_ name: String) -> RPCError {
        RPCError(code: -32601, message: "method not found: \(name)", data: ["method": .string(name)])
    }
    public static func invalidParams(_ field: String, _ detail: String) -> RPCError {
        RPCError(code: -32602, message: "invalid params: \(field) \(detail)", data: ["field": .string(field)])
    }
    public static func internalError(_ detail: String) -> RPCError {
        RPCError(code: -32603, message: "internal error: \(detail)")
    }

    public init(_ error: VDPAError) {
        var data: [(String, JSON)] = [("errno", .string(error.errno.name))]
        if let kernel = error.kernelErrno { data.append(("kernel_errno", .string(kernel.name))) }
        for (key, value) in error.details {
            switch value {
            case .integer(let u): data.append((key, .unsigned(u)))
            case .string(let s): data.append((key, .string(s)))
            }
        }
        self.init(code: -Int(error.errno.rawValue), message: error.message, data: .object(data))
    }

    /// A domain error raised by the service itself (not by a device rule).
    static func domain(_ errno: KernelErrno, _ message: String) -> RPCError { RPCError(VDPAError(errno, message)) }

    var json: JSON {
        var members: [(String, JSON)] = [("code", JSON(code)), ("message", .string(message))]
        if let data { members.append(("data", data)) }
        return .object(members)
    }
}
