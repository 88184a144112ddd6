// MethodCoverageTests.swift — every method of docs/protocol.md §5 and every
// domain errno it can produce, once over the real socket.
import Foundation
import Testing
import VDPACore
import VDPAClient

@Suite("Every method over the socket", .serialized)
struct MethodCoverageTests {
    @Test("daemon and management methods: get_version, get_stats, list_mgmtdevs, list_devices, get_config")
    func daemonAndManagement() throws {
        let d = try Daemon()
        let c = try d.client()
        let version = try c.call("get_version")
        #expect(version["protocol"] == 1 && version["pid"] == .unsigned(UInt64(d.pid)))
        #expect(try eventually { try c.call("get_stats")["connections"] == 1 }, "only this connection is left")
        #expect(try c.call("get_stats")["devices"] == 1)
        let mgmt = try c.call("list_mgmtdevs")
        #expect(
            mgmt == [
                [
                    "name": "vdpasim_net", "class": "net", "nvqs": 3, "ngroups": 2, "nas": 2, "desc_group": false, "reset_map": true, "persist": true,
                    "map_op": "set_map"
                ],
                [
                    "name": "mlx5_net", "class": "net", "nvqs": 3, "ngroups": 3, "nas": 2, "desc_group": true, "reset_map": true, "persist": true,
                    "map_op": "set_map"
                ],
                [
                    "name": "vdpasim_blk", "class": "block", "nvqs": 1, "ngroups": 1, "nas": 1, "desc_group": false, "reset_map": true,
                    "persist": true, "map_op": "set_map"
                ],
                [
                    "name": "platform_net", "class": "net", "nvqs": 3, "ngroups": 1, "nas": 1, "desc_group": false, "reset_map": false,
                    "persist": true, "map_op": "none"
                ]
            ])
        try c.call("add_device", ["name": "n1", "mgmtdev": "vdpasim_net", "mac": "02:00:00:00:00:01", "mtu": 9000])
        // The decoded config space: status is the link-status field (LINK_UP), max_virtqueue_pairs 0 as MQ is not offered (R51).
        #expect(
            try c.call("get_config", ["device": "n1"]) == [
                "mac": "02:00:00:00:00:01", "status": 1, "link": "up", "max_vq_pairs": 0,
                "mtu": 9000, "speed": 0, "duplex": 0
            ])
        _ = expectRemoteError("EINVAL", code: -22) { try c.call("add_device", ["name": "n2", "mgmtdev": "vdpasim_net", "mtu": 20]) }
        try c.call("open", ["device": "n1"])
        let list = try c.call("list_devices")
        guard case .array(let items) = list else { Issue.record("list"); return }
        #expect(items.map { $0["name"] } == ["n1", "vdpa0"])
        #expect(items[0]["owner"]?["uid"] == 0 && items[1]["owner"] == .null)
        try c.call("del_device", ["name": "n1", "force": true])
        _ = expectRemoteError("ENODEV") { try c.call("del_device", ["name": "n1"]) }
    }

    @Test("session methods: features, status, vrings, groups, suspend/resume, batches, translate errors")
    func sessionMethods() throws {
        let d = try Daemon()
        let c = try d.client()
        try c.call("add_device", ["name": "m", "mgmtdev": "mlx5_net"])
        try c.call("open", ["device": "m"])
        let bf = try c.call("get_backend_features", ["device": "m"])
        #expect(bf["offered"]?["mask"] == 0x1FE && bf["acked"]?["mask"] == 0)
        _ = expectRemoteError("EOPNOTSUPP") { try c.call("set_backend_features", ["device": "m", "features": 1]) }
        _ = expectRemoteError(nil, code: -32602) { try c.call("set_backend_features", ["device": "m", "features": ["NOPE"]]) }
        try c.call("set_backend_features", ["device": "m", "features": ["IOTLB_ASID", "DESC_ASID", "IOTLB_BATCH"]])
        _ = expectRemoteError("EINVAL") { try c.call("set_features", ["device": "m", "features": ["VERSION_1", "RING_PACKED"]]) }
        try c.call("set_features", ["device": "m", "features": ["VERSION_1", "ACCESS_PLATFORM", "MAC"]])
        #expect(try c.call("get_features", ["device": "m"])["driver_features"]?["names"] == ["MAC", "VERSION_1", "ACCESS_PLATFORM"])
        #expect(try c.call("get_features", ["device": "m"])["mask"] == .unsigned(ManagementDevice.mlx5Net.offeredFeatures), "R53: the offer")
        try c.call("set_status", ["device": "m", "status": 11])
        #expect(try c.call("get_status", ["device": "m"]) == ["status": 11])
        _ = expectRemoteError("EBUSY") { try c.call("set_features", ["device": "m", "features": ["VERSION_1", "ACCESS_PLATFORM"]]) }
        _ = expectRemoteError("EINVAL") { try c.call("set_status", ["device": "m", "status": 1]) }
        #expect(try c.call("get_vring_group", ["device": "m", "vq": 2]) == ["vq": 2, "group": 1])
        #expect(try c.call("get_vring_desc_group", ["device": "m", "vq": 0]) == ["vq": 0, "group": 2])
        _ = expectRemoteError("ENOBUFS") { try c.call("get_vring_group", ["device": "m", "vq": 3]) }
        try c.call("set_group_asid", ["device": "m", "group": 2, "asid": 1])
        _ = expectRemoteError("EINVAL") { try c.call("set_group_asid", ["device": "m", "group": 2, "asid": 2]) }
        try c.call("set_vring", ["device": "m", "vq": 0, "num": 64, "desc": "0x20000", "driver": "0x21000", "device_area": "0x22000"])
        try c.call("set_vring", ["device": "m", "vq": 0, "ready": true])
        #expect(
            try c.call("get_vring", ["device": "m", "vq": 0]) == [
                "vq": 0, "num": 64, "desc": 0x20000, "driver": 0x21000, "device_area": 0x22000,
                "ready": true, "base": 0, "kick": false, "call": false,
                "in_use": ["num": 64, "desc": 0x20000, "driver": 0x21000, "device_area": 0x22000]
            ])
        _ = expectRemoteError("EINVAL") { try c.call("set_vring", ["device": "m", "vq": 0, "num": 3]) }
        // Rings through ASID 1 (the desc group's), which has an empty table: a miss.
        let miss = expectRemoteError("EFAULT", code: -14) { try c.call("translate", ["device": "m", "vq": 0, "area": "desc", "access": "read"]) }
        #expect(miss?.data?["miss_iova"] == 0x20000)
        try c.call("batch_begin", ["device": "m", "asid": 1])
        try c.call("map", ["device": "m", "asid": 1, "iova": "0x20000", "size": "0x3000", "addr": "0x900000", "perm": "ro"])
        _ = expectRemoteError("EINVAL") { try c.call("map", ["device": "m", "asid": 0, "iova": 0, "size": 1, "addr": 0, "perm": "ro"]) }
        try c.call("batch_end", ["device": "m", "asid": 1])
        #expect(
            try c.call("translate", ["device": "m", "vq": 0, "area": "desc", "access": "read"]) == [
                "segments": [["iova": 0x20000, "size": 1024, "addr": 0x900000]]
            ])
        _ = expectRemoteError("EACCES", code: -13) { try c.call("translate", ["device": "m", "vq": 0, "area": "device", "access": "write"]) }
        #expect(try c.call("unmap", ["device": "m", "asid": 1, "iova": "0x20800", "size": 1]) == ["removed": 1])
        try c.call("suspend", ["device": "m"])
        // R66: on 6.9 and later (m follows 6.12, the default) SUSPEND without DRIVER_OK is a no-op.
        #expect(try c.call("get_device", ["device": "m"])["suspended"] == false)
        #expect(try c.call("get_device", ["device": "m"])["kernel"] == "6.12")
        try c.call("resume", ["device": "m"])
        try c.call("reset", ["device": "m"])
        let afterReset = try c.call("get_vring", ["device": "m", "vq": 0])
        #expect(
            afterReset["num"] == 64 && afterReset["desc"] == 0x20000 && afterReset["ready"] == false,
            "R69: mlx5 keeps num and addresses across a reset; nothing is ready")
        try c.call("add_device", ["name": "p", "mgmtdev": "platform_net", "kernel": "6.8"])
        try c.call("open", ["device": "p"])
        _ = expectRemoteError("EOPNOTSUPP") { try c.call("suspend", ["device": "p"]) }  // 6.8 calls the (missing) op
        _ = expectRemoteError("ENOTTY") { try c.call("get_vring_size", ["device": "p", "vq": 0]) }
        _ = expectRemoteError("EOPNOTSUPP") { try c.call("get_vring_size", ["device": "m", "vq": 0]) }
        _ = expectRemoteError("EINVAL") { try c.call("add_device", ["name": "q", "mgmtdev": "platform_net", "kernel": "6.9"]) }
        _ = expectRemoteError("EOPNOTSUPP") { try c.call("get_vring_desc_group", ["device": "p", "vq": 0]) }
        _ = expectRemoteError("ENOBUFS") { try c.call("get_vring_desc_group", ["device": "p", "vq": 3]) }
    }

    @Test("limits: ENOSPC past max_iotlb_entries and max_devices; max_batch; max_connections")
    func limits() throws {
        let d = try Daemon(config: Daemon.defaultConfig + "\n[limits]\nmax_iotlb_entries = 2\nmax_devices = 2\nmax_batch = 3\nmax_connections = 3\n")
        let c = try d.client()
        try c.call("open", ["device": "vdpa0"])
        try c.call("map", ["device": "vdpa0", "iova": 0, "size": 1, "addr": 0, "perm": "ro"])
        try c.call("map", ["device": "vdpa0", "iova": 1, "size": 1, "addr": 0, "perm": "ro"])
        _ = expectRemoteError("ENOSPC", code: -28) { try c.call("map", ["device": "vdpa0", "iova": 2, "size": 1, "addr": 0, "perm": "ro"]) }
        try c.call("add_device", ["name": "second", "mgmtdev": "vdpasim_blk"])
        _ = expectRemoteError("ENOSPC") { try c.call("add_device", ["name": "third", "mgmtdev": "vdpasim_blk"]) }
        #expect(try eventually { try c.call("get_stats")["connections"] == 1 })
        try c.send(raw: Array("[1,2,3,4]\n".utf8))
        let big = try c.readMessage()
        #expect(big?["error"]?["code"] == .number("-32600") && big?["id"] == .null)
        let two = try d.client(), three = try d.client()
        _ = try two.call("ping"); _ = try three.call("ping")
        let fourth = try d.client()
        let refused = try fourth.readMessage()
        #expect(refused?["error"]?["message"]?.text.contains("max_connections") == true)
        #expect(try fourth.readMessage() == nil)
    }

    @Test("EIO: a change whose state file cannot be written is refused and nothing changes")
    func stateWriteFailure() throws {
        let d = try Daemon()
        let c = try d.client()
        try FileManager.default.removeItem(atPath: d.statePath)
        try "not a directory".write(toFile: d.statePath, atomically: true, encoding: .utf8)
        _ = expectRemoteError("EIO", code: -5) { try c.call("add_device", ["name": "lost", "mgmtdev": "vdpasim_net"]) }
        _ = expectRemoteError("ENODEV") { try c.call("get_device", ["device": "lost"]) }
    }
}
