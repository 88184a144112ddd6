// RoleTableTests.swift — every method × every role (docs/protocol.md §4): the
// owner, an admin who does not own the device, a user the device lists, and
// a stranger.  A role a method does not admit is EPERM; one it admits never
// is (it may fail later, on a value or a state).  The roles are decided by
// the registry's operations, so this table holds for any front end.
import Testing
import VDPAJSON
@testable import VDPARPC
import VDPARegistry
import _VDPATestSupport

@Suite("Roles: every method × every role")
struct RoleTableTests {
    enum Role: String, CaseIterable {
        case owner, admin, listedUser = "listed user", stranger
        var caller: Caller {
            switch self {
            case .owner: Caller(connection: 10, pid: 10, uid: 1000, gid: 1000, isAdmin: false)
            case .admin: Caller(connection: 11, pid: 11, uid: 0, gid: 0, isAdmin: true)
            case .listedUser: Caller(connection: 12, pid: 12, uid: 1002, gid: 1002, isAdmin: false)
            case .stranger: Caller(connection: 13, pid: 13, uid: 1001, gid: 1001, isAdmin: false)
            }
        }
    }

    /// Who each method admits (§4).  Every method served must be here.
    static let admitted: [String: Set<Role>] = {
        let everyone = Set(Role.allCases)
        var table: [String: Set<Role>] = [:]
        for m in [
            "ping", "get_version", "rpc_get_methods", "rpc.discover", "get_stats", "subscribe", "get_events", "metrics",
            "list_mgmtdevs", "list_devices", "get_device", "get_config"
        ] { table[m] = everyone }  // R26: get_device's nvqs, ngroups and nas (GET_VQS_COUNT, …) need no owner
        for m in ["add_device", "del_device", "set_link", "get_vstats", "daemon_upgrade"] { table[m] = [.admin] }
        table["open"] = [.owner, .admin, .listedUser]  // whoever may open it (the owner is listed too)
        for m in ["get_features", "get_status", "get_vring", "read_config", "dump_iotlb", "translate"] { table[m] = [.owner, .admin] }
        for m in [
            "close", "get_backend_features", "set_backend_features", "set_features", "set_status", "reset", "map", "unmap",
            "batch_begin", "batch_end", "reset_map", "set_group_asid", "get_vring_group", "get_vring_desc_group", "set_vring",
            "set_vring_kick", "set_vring_call", "set_config_call", "set_store_agent", "suspend", "resume", "write_config",
            "share_memory", "unshare_memory", "get_vring_size"
        ] { table[m] = [.owner] }
        return table
    }()

    /// A service whose vdpa0 lists uids 1000 and 1002 and is open by the owner.
    static func service() -> VDPAService {
        let s = VDPAService(version: "t", pid: 1)
        _ = call(s, #"{"jsonrpc":"2.0","id":1,"method":"add_device","params":{"name":"vdpa0","mgmtdev":"mlx5_net","users":[1000,1002]}}"#)
        _ = call(s, #"{"jsonrpc":"2.0","id":2,"method":"open","params":{"device":"vdpa0"}}"#, as: Role.owner.caller)
        return s
    }

    @Test("the table names every method served")
    func complete() {
        #expect(Set(Self.admitted.keys) == Set(VDPAService.methodNames))
    }

    @Test("a role a method does not admit is EPERM, one it admits never is")
    func table() throws {
        for spec in VDPAService.specs {
            for role in Role.allCases {
                let s = Self.service()
                let request: JSON = ["jsonrpc": "2.0", "id": 9, "method": .string(spec.name), "params": .object(DiscoveryTests.base(spec))]
                let reply = try JSON.parse(call(s, request.text, as: role.caller))
                let errno = reply["error"]?["data"]?["errno"]
                let admits = Self.admitted[spec.name]?.contains(role) ?? false
                if admits {
                    #expect(errno != "EPERM", "\(spec.name) as \(role.rawValue): \(reply.text)")
                } else {
                    #expect(errno == "EPERM", "\(spec.name) as \(role.rawValue): \(reply.text)")
                }
            }
        }
    }
}
