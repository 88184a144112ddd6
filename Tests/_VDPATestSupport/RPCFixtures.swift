// RPCFixtures.swift — what the RPC tests share: an admin and a user caller,
// and one request text answered in-process.
import VDPARPC
import VDPARegistry

public let admin = Caller(connection: 1, pid: 1, uid: 0, gid: 0, isAdmin: true)
public let user = Caller(connection: 2, pid: 2, uid: 1000, gid: 1000, isAdmin: false)

/// The reply `s` gives `text` from `caller`, as text ("" when none is owed).
public func call(_ s: VDPAService, _ text: String, as caller: Caller = admin) -> String {
    s.handle(text: Array(text.utf8), caller: caller).bytes.map { String(decoding: $0, as: UTF8.self) } ?? ""
}
