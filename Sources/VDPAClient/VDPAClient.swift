// VDPAClient.swift — a small blocking JSON-RPC client over the Unix socket,
// shared by vdpad-cli, the end-to-end tests and vdpad-bench so none of them
// writes socket code of its own.
// The client's requests and answers are JSON values: that type, and only it, comes with the client.
@_exported import VDPAJSON
import UnixSocket
#if canImport(Glibc)
    import Glibc
#endif

/// A local failure (never something the daemon said).
public struct ClientError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// An error object the daemon returned.
public struct RemoteError: Error, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var data: JSON?
    public var errno: String? { if case .string(let s)? = data?["errno"] { s } else { nil } }
    public var description: String { message }
}

public final class VDPAClient {
    public let path: String
    public let fd: Int32
    private var buffer: [UInt8] = []
    /// Bytes of `buffer` already returned as lines.
    private var consumed = 0
    /// Reused for every recv (allocating 64 KiB per call showed in profiles).
    private var chunk = [UInt8](repeating: 0, count: 65536)
    private var nextID: UInt64 = 0
    /// Notifications received while waiting for a reply.
    public private(set) var notifications: [JSON] = []

    /// Connects; `timeout` (seconds) bounds every later read and write.
    public init(path: String, timeout: Double? = nil) throws {
        self.path = path
        guard let addr = UnixSocketAddress(path: path) else { throw ClientError("socket path too long: \(path)") }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClientError("socket: \(Errno.current)") }
        let r = addr.withSockaddr { connect(fd, $0, $1) }
        guard r == 0 else {
            let e = Errno.current
            close(fd)
            throw ClientError("no vdpad answers on \(path): \(e) (is the daemon running? set -s or VDPAD_SOCKET)")
        }
        if let timeout {
            var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    deinit { close(fd) }

    /// Sends raw bytes as they are.
    public func send(raw bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = retryingOnEINTR { bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) } }
            guard n > 0 else { throw ClientError("write to \(path): \(Errno.current)") }
            offset += n
        }
    }

    public func send(_ message: JSON) throws { try send(raw: message.encoded() + [0x0A]) }

    /// Sends `message` with `descriptors` attached (SCM_RIGHTS) in one sendmsg, the way a request that takes
    /// an eventfd (set_vring_kick, set_vring_call, set_config_call) must travel (docs/protocol.md §5.5).
    public func send(_ message: JSON, passing descriptors: [Int32]) throws {
        let bytes = message.encoded() + [0x0A]
        let n = PassedDescriptors.send(fd, bytes, descriptors: descriptors)
        guard n >= 0 else { throw ClientError("sendmsg to \(path): \(Errno.current)") }
        if n < bytes.count { try send(raw: Array(bytes[n...])) }  // the descriptors went with the first bytes
    }

    /// The next line the daemon sends, parsed; nil at end of stream.
    public func readMessage() throws -> JSON? {
        while true {
            if let nl = buffer[consumed...].firstIndex(of: 0x0A) {
                let line = Array(buffer[consumed..<nl])
                consumed = nl + 1
                if consumed == buffer.count {
                    buffer.removeAll(keepingCapacity: true)
                    consumed = 0
                }
                do { return try JSON.parse(line) } catch { throw ClientError("daemon sent invalid JSON: \(error)") }
            }
            if consumed > 0 {
                buffer.removeFirst(consumed)
                consumed = 0
            }
            let n = retryingOnEINTR { chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) } }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw ClientError("timed out waiting for \(path)") }
            guard n >= 0 else { throw ClientError("read from \(path): \(Errno.current)") }
            if n == 0 { return nil }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// Builds a request object with the next id.
    public func request(_ method: String, _ params: JSON? = nil) -> JSON {
        nextID += 1
        var members: [(String, JSON)] = [("jsonrpc", "2.0"), ("id", .unsigned(nextID)), ("method", .string(method))]
        if let params { members.append(("params", params)) }
        return .object(members)
    }

    /// Calls a method and returns its result.  - Throws: `RemoteError` for an error reply.
    @discardableResult
    public func call(_ method: String, _ params: JSON? = nil, passing descriptors: [Int32] = []) throws -> JSON {
        let req = request(method, params)
        if descriptors.isEmpty { try send(req) } else { try send(req, passing: descriptors) }
        while true {
            guard let reply = try readMessage() else { throw ClientError("vdpad closed the connection") }
            if reply["method"] != nil && reply["id"] == nil {
                notifications.append(reply)
                continue
            }
            guard reply["id"] == req["id"] else { throw ClientError("reply out of order: \(reply.text)") }
            if let error = reply["error"] {
                let code: Int =
                    if case .unsigned(let u)? = error["code"] { Int(u) } else if case .number(let s)? = error["code"] { Int(s) ?? 0 } else { 0 }
                let message: String = if case .string(let s)? = error["message"] { s } else { "error" }
                throw RemoteError(code: code, message: message, data: error["data"])
            }
            return reply["result"] ?? .null
        }
    }
}
