// Caller.swift — who is asking, and the one place that decides whether they
// may touch a device: every front end (the JSON-RPC methods, the fast
// map/unmap path, any later one) names a `DeviceAccess`, and `check` is the
// only code that compares a caller with a device's owner or attributes.
import VDPACore

/// Who is calling: from SO_PEERCRED, decided once per connection.
public struct Caller: Sendable {
    public var connection: UInt64
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    public var supplementaryGroups: [UInt32]
    public var isAdmin: Bool

    public init(
        connection: UInt64, pid: Int32, uid: UInt32, gid: UInt32, supplementaryGroups: [UInt32] = [],
        isAdmin: Bool
    ) {
        self.connection = connection
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.supplementaryGroups = supplementaryGroups
        self.isAdmin = isAdmin
    }

    /// The owner a session opened by this caller records.
    public var owner: Owner { Owner(connection: connection, pid: pid, uid: uid) }

    /// EPERM unless the caller is an admin (uid 0 or admin_group); `what` names the operation.
    public func requireAdmin(_ what: String) throws(VDPAError) {
        guard isAdmin else { throw VDPAError(.EPERM, "\(what) needs an admin (uid 0 or admin_group); uid \(uid) is not") }
    }
}

/// What an operation asks of its caller (docs/protocol.md §4, roles).
public enum DeviceAccess: Sendable {
    /// Anyone who can connect: reads that show no session state (get_device, get_config).
    case anyone
    /// The connection that opened the device.  `iotlb`: map, unmap and batch_*, the kernel's IOTLB write(),
    /// whose ownership error also carries kernel_errno EFAULT (R5).
    case owner(iotlb: Bool)
    /// The owner, or an admin: reads of session state (translate, dump_iotlb, get_status, get_vring, …).
    case ownerOrAdmin
    /// An admin; `operation` names it in the error.
    case admin(operation: String)
    /// Whoever may open the device: an admin, or a uid or group in its `users`/`groups`.
    case opener

    public static let owner = DeviceAccess.owner(iotlb: false)

    /// Throws EPERM when `caller` may not do this to `d`.  Runs holding the device, so nothing changes
    /// between the check and the operation.
    @inlinable
    public func check(_ d: VDPADevice, _ caller: Caller) throws(VDPAError) {
        switch self {
        case .anyone:
            return
        case .owner(let iotlb):
            try d.requireOwner(caller.connection, iotlb: iotlb)
        case .ownerOrAdmin:
            if !caller.isAdmin { try d.requireOwner(caller.connection) }
        case .admin(let operation):
            try caller.requireAdmin(operation)
        case .opener:
            let a = d.attributes
            guard
                caller.isAdmin || a.users.contains(caller.uid) || a.groups.contains(caller.gid)
                    || !Set(a.groups).isDisjoint(with: caller.supplementaryGroups)
            else {
                throw VDPAError(.EPERM, "uid \(caller.uid) may not open \(d.name): not an admin and not in its users or groups")
            }
        }
    }
}
