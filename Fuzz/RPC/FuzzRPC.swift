// FuzzRPC.swift — a libFuzzer target over the whole input path of the
// daemon minus the socket: the request stream (the input cut into chunks as
// a socket would deliver it: fast parser and framer), JSON parsing, JSON-RPC
// dispatch and every method into an in-process core.  Built and run by
// scripts/fuzz.sh; any crash is a bug to turn into a test.
//
// Two oracles, so that a wrong answer or a hang is caught, not only a crash:
// * differential: each input goes, in the same chunks, to two services, one
//   with the fast path and one without; their replies must be identical byte
//   for byte (event times and uptime aside), and so must the way they end,
//   the log lines they write and the events they notify;
// * no waiting in vain: once the input is over, a stream may still hold a
//   partial text only if that text can still become valid JSON, which the
//   tree parser (a different implementation from the framer's) decides: it
//   fails past the last byte for a prefix, at an earlier byte for garbage.
import Logging
import VDPAJSON
import VDPARPC
import VDPARegistry

/// What one service logged and notified, in order; compared between the two services after every chunk.
final class Trail: NotificationSink, @unchecked Sendable {
    // The fuzzer runs one input at a time on one thread, and the services call back on it.
    var lines: [String] = []
    func send(_ notification: JSON) { lines.append(String(decoding: normalized(notification.encoded()), as: UTF8.self)) }
}

/// Writes every log line (level, message, metadata in key order) to a trail.
struct TrailLogHandler: LogHandler {
    let trail: Trail
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        trail.lines.append("\(event.level) \(event.message) \(fields.joined(separator: " "))")
    }
}

let trails = (fast: Trail(), general: Trail())

func makeService(fast: Bool) -> VDPAService {
    let trail = fast ? trails.fast : trails.general
    let service = VDPAService(
        limits: ServiceLimits(), version: "fuzz", pid: 1,
        logger: Logger(label: "fuzz", factory: { _ in TrailLogHandler(trail: trail) }),
        persist: { _ in }, useFastPath: fast)
    for text in [
        #"{"jsonrpc":"2.0","id":1,"method":"add_device","params":{"name":"vdpa0","mgmtdev":"vdpasim_net"}}"#,
        #"{"jsonrpc":"2.0","id":2,"method":"add_device","params":{"name":"m0","mgmtdev":"mlx5_net","max_vqp":2}}"#,
        #"{"jsonrpc":"2.0","id":3,"method":"add_device","params":{"name":"p0","mgmtdev":"platform_net"}}"#
    ] { _ = service.handle(text: Array(text.utf8), caller: admin) }
    return service
}

let admin = Caller(connection: 1, pid: 1, uid: 0, gid: 0, isAdmin: true)
let stranger = Caller(connection: 2, pid: 2, uid: 1000, gid: 1000, isAdmin: false)
let services = (fast: makeService(fast: true), general: makeService(fast: false))

/// Replies with the clock's fields zeroed: the two services answer a moment apart.
func normalized(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var i = 0
    let keys = [Array(#""time":"#.utf8), Array(#""uptime_s":"#.utf8)]
    outer: while i < bytes.count {
        for key in keys where bytes[i...].starts(with: key) {
            out += key
            out.append(UInt8(ascii: "0"))
            i += key.count
            while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 { i += 1 }
            continue outer
        }
        out.append(bytes[i])
        i += 1
    }
    return out
}

func fail(_ what: String, _ input: [UInt8]) -> Never {
    fatalError("\(what); input: \(String(decoding: input, as: UTF8.self).debugDescription)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // The first byte picks the chunk size and the caller, so both code paths get explored.
    let chunk = 1 + Int(bytes.first ?? 0) % 97
    let caller = (bytes.first ?? 0) & 0x80 == 0 ? admin : stranger
    var fast = RequestStream(service: services.fast, caller: caller, maxTextBytes: 4096)
    var general = RequestStream(service: services.general, caller: caller, maxTextBytes: 4096)
    var fastOutput: [UInt8] = [], generalOutput: [UInt8] = []
    var offset = 0
    var ended = false
    while offset < bytes.count && !ended {
        let end = min(offset + chunk, bytes.count)
        fast.append(bytes[offset..<end])
        general.append(bytes[offset..<end])
        offset = end
        let fastStop = fast.answer(into: &fastOutput)
        let generalStop = general.answer(into: &generalOutput)
        guard normalized(fastOutput) == normalized(generalOutput) else {
            fail(
                "the fast path answered\n\(String(decoding: fastOutput, as: UTF8.self))\nthe general path\n"
                    + String(decoding: generalOutput, as: UTF8.self), bytes)
        }
        guard fastStop == generalStop else {
            fail("the paths ended differently: \(String(describing: fastStop)) vs \(String(describing: generalStop))", bytes)
        }
        guard trails.fast.lines == trails.general.lines else {
            fail("the paths logged or notified differently:\n\(trails.fast.lines.suffix(3))\n\(trails.general.lines.suffix(3))", bytes)
        }
        trails.fast.lines.removeAll(keepingCapacity: true)
        trails.general.lines.removeAll(keepingCapacity: true)
        // Every reply must itself be valid JSON, one per line.
        for line in fastOutput.split(separator: 0x0A) where (try? JSON.parse(line)) == nil {
            fail("invalid reply: \(String(decoding: line, as: UTF8.self))", bytes)
        }
        fastOutput.removeAll(keepingCapacity: true)
        generalOutput.removeAll(keepingCapacity: true)
        ended = fastStop != nil
    }
    if !ended {
        for (name, stream) in [("fast", fast), ("general", general)] {
            guard let partial = stream.partialText else { continue }
            do {
                _ = try JSON.parse(partial)
            } catch {
                if error.offset < partial.count {
                    fail("the \(name) stream waits for more of a text that cannot become JSON (\(error))", bytes)
                }
            }
        }
    }
    // Sessions end as a disconnect would end them, so state does not grow without bound.
    // Each connection's notifications go to its service's trail (a subscribe in the input turns them on).
    for (service, trail) in [(services.fast, trails.fast), (services.general, trails.general)] {
        service.connectionClosed(caller.connection)
        service.connectionOpened(caller.connection, sink: trail)
    }
    trails.fast.lines.removeAll(keepingCapacity: true)
    trails.general.lines.removeAll(keepingCapacity: true)
    return 0
}
