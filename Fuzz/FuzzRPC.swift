// FuzzRPC.swift — a libFuzzer target over the whole input path of the
// daemon minus the socket: the request stream (the input cut into chunks as
// a socket would deliver it: fast parser and framer), JSON parsing, JSON-RPC
// dispatch and every method into an in-process core, as an admin that owns the devices it opens.
// Built and run by scripts/fuzz.sh; any crash is a bug to turn into a test.
import VDPARPC

let service = VDPAService(version: "fuzz", pid: 1)
let admin = Caller(connection: 1, pid: 1, uid: 0, gid: 0, isAdmin: true)
let stranger = Caller(connection: 2, pid: 2, uid: 1000, gid: 1000, isAdmin: false)
let setup: Void = {
    for text in [
        #"{"jsonrpc":"2.0","id":1,"method":"add_device","params":{"name":"vdpa0","mgmtdev":"vdpasim_net"}}"#,
        #"{"jsonrpc":"2.0","id":2,"method":"add_device","params":{"name":"m0","mgmtdev":"mlx5_net","max_vqp":2}}"#,
        #"{"jsonrpc":"2.0","id":3,"method":"add_device","params":{"name":"p0","mgmtdev":"platform_net"}}"#,
    ] { _ = service.handle(text: Array(text.utf8), caller: admin) }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = setup
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // The first byte picks the chunk size and the caller, so both code paths get explored.
    let chunk = 1 + Int(bytes.first ?? 0) % 97
    let caller = (bytes.first ?? 0) & 0x80 == 0 ? admin : stranger
    // The daemon's own inbound path: fast parser (batches across reads), framer, general path.
    var stream = RequestStream(service: service, caller: caller, maxTextBytes: 4096)
    var output: [UInt8] = []
    var offset = 0
    while offset < bytes.count {
        let end = min(offset + chunk, bytes.count)
        stream.append(bytes[offset..<end])
        offset = end
        let stop = stream.answer(into: &output)
        // Every reply must itself be valid JSON, one per line.
        for line in output.split(separator: 0x0A) where (try? JSON.parse(line)) == nil {
            fatalError("invalid reply: \(String(decoding: line, as: UTF8.self))")
        }
        output.removeAll(keepingCapacity: true)
        if stop != nil { break }
    }
    // Sessions end as a disconnect would end them, so state does not grow without bound.
    service.connectionClosed(caller.connection)
    service.connectionOpened(caller.connection, sink: NullSink.shared)
    return 0
}

final class NullSink: NotificationSink {
    static let shared = NullSink()
    func send(_ notification: JSON) {}
}
