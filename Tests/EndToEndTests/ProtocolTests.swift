// ProtocolTests.swift — docs/protocol.md end to end on the real binary: framing,
// JSON-RPC rules, a VMM session, errors, roles, events, pipelining.
import Foundation
import Testing
import VDPAClient
import VDPARPC

@Suite("Protocol end to end", .serialized)
struct ProtocolTests {
    @Test("JSON-RPC 2.0 spec examples: batch with notifications and invalid entries, empty batch, parse error closes")
    func specExamples() throws {
        let d = try Daemon()
        let c = try d.client()
        try c.send(
            raw: Array(
                #"[{"jsonrpc":"2.0","method":"ping","id":"1"},{"jsonrpc":"2.0","method":"ping"},{"foo":"boo"},{"jsonrpc":"2.0","method":"foo.get","id":"5"},1]"#
                    .utf8) + [10])
        let batch = try #require(try c.readMessage())
        guard case .array(let replies) = batch else { Issue.record("not an array: \(batch.text)"); return }
        #expect(replies.count == 4)
        #expect(replies[0]["result"] == "pong" && replies[0]["id"] == "1")
        #expect(replies[1]["error"]?["code"] == .number("-32600"))
        #expect(replies[2]["error"]?["code"] == .number("-32601") && replies[2]["id"] == "5")
        #expect(replies[3]["error"]?["code"] == .number("-32600"))
        try c.send(raw: Array("[]\n".utf8))
        #expect(try c.readMessage()?["error"]?["code"] == .number("-32600"))
        try c.send(raw: Array(#"[{"jsonrpc":"2.0","method":"ping"}]"#.utf8) + Array("\n".utf8))  // all notifications: no reply
        try c.send(raw: Array(#"{"jsonrpc":"2.0","method":"ping","id":null}"#.utf8))
        #expect(try c.readMessage() == .object([("jsonrpc", "2.0"), ("id", .null), ("result", "pong")]))
        try c.send(raw: Array("{\"jsonrpc\": \"2.0\", \"method\": \"foobar, \"params\": \"bar\", \"baz]\n".utf8))
        let parse = try c.readMessage()
        #expect(parse?["error"]?["code"] == .number("-32700") && parse?["id"] == .null)
        #expect(try c.readMessage() == nil, "the connection is closed after a parse error")
    }

    @Test("framing: several texts per line, one pretty-printed over many lines, too large closes")
    func framing() throws {
        let d = try Daemon(config: Daemon.defaultConfig)
        let c = try d.client()
        try c.send(
            raw: Array(
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 3,\n  \"method\": \"ping\"\n}\n"
                    .utf8))
        for id in 1...3 as ClosedRange<UInt64> { #expect(try c.readMessage()?["id"] == .unsigned(id)) }
        // vdpad answers and closes as soon as the text passes the limit, so the rest of the write may
        // fail (EPIPE); the error reply is still there to read.
        _ = try? c.send(
            raw: Array("{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\",\"params\":{\"pad\":\"".utf8) + [UInt8](repeating: 97, count: 1_100_000)
                + Array("\"}}\n".utf8))
        let error = try c.readMessage()
        #expect(error?["error"]?["code"] == .number("-32600"))
        #expect(error?["error"]?["message"]?.text.contains("too large") == true)
    }

    @Test("10,000 pipelined requests are answered in order")
    func pipelining() throws {
        let d = try Daemon()
        let c = try d.client()
        var bytes: [UInt8] = []
        for i in 0..<10_000 { bytes += JSON.object([("jsonrpc", "2.0"), ("id", .unsigned(UInt64(i))), ("method", "ping")]).encoded() + [10] }
        try c.send(raw: bytes)
        for i in 0..<10_000 {
            let reply = try #require(try c.readMessage())
            guard reply["id"] == .unsigned(UInt64(i)) else { Issue.record("reply \(i) out of order: \(reply.text)"); return }
        }
    }

    @Test("a VMM session: open, negotiate, map, reset with and without IOTLB_PERSIST, translate, close")
    func vmmSession() throws {
        let d = try Daemon()
        let vmm = try d.client()
        let opened = try vmm.call("open", ["device": "vdpa0"])
        #expect(opened["nas"] == 2 && opened["backend_features"]?["mask"] == 0x17E)
        try vmm.call("set_backend_features", ["device": "vdpa0", "features": ["IOTLB_MSG_V2", "IOTLB_BATCH", "IOTLB_ASID"]])
        try vmm.call("map", ["device": "vdpa0", "iova": "0x100000", "size": 0x10000, "addr": 18_446_744_073_709_486_080, "perm": "rw"])
        let e = expectRemoteError("EEXIST", code: -17) {
            try vmm.call("map", ["device": "vdpa0", "iova": 0x10FFFF, "size": 1, "addr": 0, "perm": 1])
        }
        #expect(e?.data?["kernel_errno"] == "EFAULT")
        #expect(e?.message == "EEXIST: [0x10ffff, 0x10ffff] overlaps [0x100000, 0x10ffff] in ASID 0 of vdpa0 (R11)")
        let t = try vmm.call("translate", ["device": "vdpa0", "asid": 0, "access": "write", "iova": 0x100010, "size": 16])
        #expect(t == ["segments": [["iova": 0x100010, "size": 16, "addr": 18_446_744_073_709_486_096]]])
        try vmm.call("reset", ["device": "vdpa0"])  // R30: clean map, session table kept
        let info = try vmm.call("get_device", ["device": "vdpa0"])
        #expect(
            info["asids"] == [
                ["asid": 0, "session_entries": 1, "device_mapping": "passthrough", "device_entries": 0],
                ["asid": 1, "session_entries": .null, "device_mapping": "passthrough", "device_entries": 0]
            ])
        try vmm.call("set_backend_features", ["device": "vdpa0", "features": 0x10E])
        try vmm.call("map", ["device": "vdpa0", "asid": 1, "iova": 0, "size": 4096, "addr": 0x5000, "perm": "ro"])
        try vmm.call("reset", ["device": "vdpa0"])  // R31: IOTLB_PERSIST keeps the device table
        let kept = try vmm.call("dump_iotlb", ["device": "vdpa0", "asid": 1, "layer": "device"])
        #expect(kept["entries"] == [["iova": 0, "size": 4096, "addr": 0x5000, "perm": "ro"]])
        let r = try vmm.call("reset_map", ["device": "vdpa0", "asid": 1])
        #expect(r == ["removed": 1, "device_mapping": "passthrough"])
        _ = expectRemoteError("EINVAL") { try vmm.call("unmap", ["device": "vdpa0", "asid": 1, "iova": 0, "size": 1]) }
        try vmm.call("close", ["device": "vdpa0"])
        let closed = try vmm.call("get_device", ["device": "vdpa0"])
        #expect(closed["owner"] == .null)
    }

    @Test("ownership: EPERM for a non-owner, EBUSY for a second open, release on disconnect")
    func ownership() throws {
        let d = try Daemon()
        var vmm: VDPAClient? = try d.client()
        try vmm!.call("open", ["device": "vdpa0"])
        try vmm!.call("map", ["device": "vdpa0", "iova": 0, "size": 4096, "addr": 0, "perm": "rw"])
        let other = try d.client()
        _ = expectRemoteError("EBUSY", code: -16) { try other.call("open", ["device": "vdpa0"]) }
        _ = expectRemoteError("EPERM", code: -1) { try other.call("map", ["device": "vdpa0", "iova": 0x9000, "size": 1, "addr": 0, "perm": "rw"]) }
        _ = expectRemoteError("EBUSY") { try other.call("del_device", ["name": "vdpa0"]) }
        vmm = nil  // disconnect: §6 release
        for _ in 0..<200 {
            if (try? other.call("get_device", ["device": "vdpa0"]))?["owner"] == .null { break }
            usleep(10_000)
        }
        try other.call("open", ["device": "vdpa0"])
        let dump = try other.call("dump_iotlb", ["device": "vdpa0", "asid": 0])
        #expect(dump["exists"] == false && dump["entries"] == [])
    }

    @Test("errors: ENODEV, -32601, -32602 with data.field, range before capability, EOPNOTSUPP")
    func errors() throws {
        let d = try Daemon()
        let c = try d.client()
        _ = expectRemoteError("ENODEV", code: -19) { try c.call("get_device", ["device": "nope"]) }
        _ = expectRemoteError(nil, code: -32601) { try c.call("no_such_method") }
        let bad = expectRemoteError(nil, code: -32602) { try c.call("get_device", ["device": 7]) }
        #expect(bad?.data?["field"] == "device")
        try c.call("add_device", ["name": "plat", "mgmtdev": "platform_net"])
        try c.call("open", ["device": "plat"])
        let neg = expectRemoteError(nil, code: -32602) {
            try c.call("map", ["device": "plat", "iova": .number("-1"), "size": 1, "addr": 0, "perm": "ro"])
        }
        #expect(neg?.data?["field"] == "iova")
        _ = expectRemoteError(nil, code: -32602) { try c.call("map", ["device": "plat", "iova": "0xZZ", "size": 1, "addr": 0, "perm": "ro"]) }
        _ = expectRemoteError("EINVAL") { try c.call("map", ["device": "plat", "iova": 0, "size": 1, "addr": 0, "perm": "rx"]) }
        _ = expectRemoteError("EINVAL") { try c.call("reset_map", ["device": "plat", "asid": 1]) }
        _ = expectRemoteError("EOPNOTSUPP", code: -95) { try c.call("reset_map", ["device": "plat", "asid": 0]) }
        _ = expectRemoteError("ENOBUFS", code: -105) { try c.call("set_group_asid", ["device": "plat", "group": "0xffffffffffffffff", "asid": 0]) }
        _ = expectRemoteError("EEXIST") { try c.call("add_device", ["name": "plat", "mgmtdev": "platform_net"]) }
        _ = expectRemoteError("ENODEV") { try c.call("add_device", ["name": "x", "mgmtdev": "nope"]) }
        _ = expectRemoteError("EINVAL") { try c.call("add_device", ["name": "bad name", "mgmtdev": "vdpasim_net"]) }
        _ = expectRemoteError(nil, code: -32602) { try c.call("translate", ["device": "plat", "asid": 0, "vq": 0, "access": "read"]) }
        _ = expectRemoteError("EINVAL") { try c.call("dump_iotlb", ["device": "plat", "asid": 0, "limit": 0]) }
        let methods = try c.call("rpc_get_methods")
        guard case .array(let names) = methods else { Issue.record("methods"); return }
        #expect(names == VDPAService.methodNames.map { .string($0) } && names.contains("get_vring_desc_group") && names.contains("rpc.discover"))
    }

    @Test("events: subscribers see device_added; del_device force sends session_closed to the owner")
    func events() throws {
        let d = try Daemon()
        let admin = try d.client()
        let watcher = try d.client()
        let seq = try watcher.call("subscribe", ["events": ["device_added", "device_removed"]])
        try admin.call("add_device", ["name": "m1", "mgmtdev": "mlx5_net", "max_vqp": 2])
        let added = try #require(try watcher.readMessage())
        #expect(added["method"] == "event" && added["params"]?["type"] == "device_added" && added["params"]?["device"] == "m1")
        let owner = try d.client()
        let shape = try owner.call("open", ["device": "m1"])
        #expect(shape["nvqs"] == 5 && shape["ngroups"] == 3)
        // Nothing negotiated yet: mlx5's CVQ is vq 2 (no MQ), its rings in group 1.
        #expect(try owner.call("get_vring_desc_group", ["device": "m1", "vq": 2]) == ["vq": 2, "group": 1])
        try admin.call("del_device", ["name": "m1", "force": true])
        let closed = try #require(try owner.readMessage())
        #expect(closed["params"]?["type"] == "session_closed")
        let log = try admin.call("get_events", ["since": seq["seq"] ?? 0])
        guard case .array(let items)? = log["events"] else { Issue.record("events"); return }
        #expect(items.compactMap { $0["type"] } == ["device_added", "owner_changed", "session_closed", "device_removed"])
    }
}
