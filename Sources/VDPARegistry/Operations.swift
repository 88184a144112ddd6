// Operations.swift — the typed requests of the IOTLB and group methods, and
// the operations that run them.  The on-device forms (`map(_:on:by:)`, …)
// check the caller and apply the rule in one place; the JSON-RPC methods and
// the fast map/unmap path, which runs several of them in one acquisition of
// the device, both call exactly these.
import VDPACore

/// A value as sent that is well-typed but not yet checked against its rule: the check runs after the device
/// and its owner, as every method checks values after ownership (docs/protocol.md §3).
public enum PermissionArgument: Sendable {
    /// Already a permission (a front end that only accepts the three).
    case permission(Permission)
    case name(String)
    case number(UInt64)

    @inlinable
    public func validated() throws(VDPAError) -> Permission {
        switch self {
        case .permission(let p): return p
        case .name(let s):
            guard let p = Permission(name: s) else { throw VDPAError(.EINVAL, "perm \"\(s)\" is not ro, wo or rw") }
            return p
        case .number(let u):
            // The kernel stores an IOTLB update's u8 perm as given (edge #14): 0 and 4…255 are mapped too, and
            // an access is allowed by the bits it finds (RO 1, WO 2).  Only what no u8 holds is refused.
            guard u <= 0xFF else { throw VDPAError(.EINVAL, "perm \(u) does not fit the IOTLB message's 8-bit field") }
            return Permission(rawValue: UInt8(u))
        }
    }
}

/// A string that must name one of `E`'s values (`access`, `area`, `layer`), checked with the values: EINVAL otherwise.
public struct EnumArgument<E: RawRepresentable & Sendable>: Sendable where E.RawValue == String {
    public let field: String
    public let text: String

    public init(field: String, text: String) {
        self.field = field
        self.text = text
    }

    public init(field: String, _ value: E) { self.init(field: field, text: value.rawValue) }

    public var value: E? { E(rawValue: text) }

    public func validated(_ allowed: [E]) throws(VDPAError) -> E {
        guard let v = value else {
            throw VDPAError(.EINVAL, "\(field) \"\(text)\" is not one of \(allowed.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
        }
        return v
    }
}

extension EnumArgument where E: CaseIterable, E.AllCases == [E] {
    public func validated() throws(VDPAError) -> E { try validated(E.allCases) }
}

public struct MapRequest: Sendable {
    public var asid: ASID
    public var iova: UInt64
    public var size: UInt64
    public var address: UInt64
    public var permission: PermissionArgument

    @inlinable
    public init(asid: ASID = 0, iova: UInt64, size: UInt64, address: UInt64, permission: PermissionArgument) {
        (self.asid, self.iova, self.size, self.address, self.permission) = (asid, iova, size, address, permission)
    }
}

public struct UnmapRequest: Sendable {
    public var asid: ASID
    public var iova: UInt64
    public var size: UInt64

    @inlinable
    public init(asid: ASID = 0, iova: UInt64, size: UInt64) {
        (self.asid, self.iova, self.size) = (asid, iova, size)
    }
}

public struct TranslateRequest: Sendable {
    public enum Target: Sendable {
        case asid(ASID)
        case virtqueue(VirtqueueIndex, EnumArgument<VirtqueueArea>)
    }
    public var target: Target
    public var access: EnumArgument<Access>
    public var iova: UInt64?
    public var size: UInt64?

    public init(target: Target, access: EnumArgument<Access>, iova: UInt64?, size: UInt64?) {
        (self.target, self.access, self.iova, self.size) = (target, access, iova, size)
    }
}

public struct DumpRequest: Sendable {
    public var asid: ASID
    public var layer: EnumArgument<IOTLBLayer>
    public var first: UInt64
    public var last: UInt64
    public var limit: UInt64

    public init(asid: ASID, layer: EnumArgument<IOTLBLayer>, first: UInt64 = 0, last: UInt64 = .max, limit: UInt64 = 1000) {
        (self.asid, self.layer, self.first, self.last, self.limit) = (asid, layer, first, last, limit)
    }
}

extension DeviceRegistry {
    // MARK: On a device already held (a front end running several in one acquisition)

    /// map (VHOST_IOTLB_UPDATE): the owner's.
    @inlinable
    public static func map(_ r: MapRequest, on d: inout VDPADevice, by caller: Caller) throws(VDPAError) {
        try DeviceAccess.owner(iotlb: true).check(d, caller)
        try d.map(asid: r.asid, iova: r.iova, size: r.size, address: r.address, permission: try r.permission.validated())
    }

    /// unmap (VHOST_IOTLB_INVALIDATE): the owner's; returns how many entries went.
    @inlinable
    public static func unmap(_ r: UnmapRequest, on d: inout VDPADevice, by caller: Caller) throws(VDPAError) -> Int {
        try DeviceAccess.owner(iotlb: true).check(d, caller)
        return try d.unmap(asid: r.asid, iova: r.iova, size: r.size)
    }

    // MARK: By device name

    public func map(_ r: MapRequest, device: String, by caller: Caller) throws(VDPAError) {
        try slot(named: device).sync { (d: inout VDPADevice) throws(VDPAError) in try Self.map(r, on: &d, by: caller) }
    }

    public func unmap(_ r: UnmapRequest, device: String, by caller: Caller) throws(VDPAError) -> Int {
        try slot(named: device).sync { (d: inout VDPADevice) throws(VDPAError) in try Self.unmap(r, on: &d, by: caller) }
    }

    public func batchBegin(asid: ASID, device: String, by caller: Caller) throws(VDPAError) {
        try withDevice(device, .owner(iotlb: true), by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.batchBegin(asid: asid) }
    }

    public func batchEnd(asid: ASID, device: String, by caller: Caller) throws(VDPAError) {
        try withDevice(device, .owner(iotlb: true), by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.batchEnd(asid: asid) }
    }

    public func resetMap(asid: ASID, device: String, by caller: Caller) throws(VDPAError) -> (removed: Int, mapping: DeviceMapping) {
        try withDevice(device, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.resetMap(asid: asid) }
    }

    public func translate(_ r: TranslateRequest, device: String, by caller: Caller) throws(VDPAError) -> [TranslatedSegment] {
        try withDevice(device, .ownerOrAdmin, by: caller) { (d: inout VDPADevice) throws(VDPAError) in
            let access = try r.access.validated()
            let target: TranslationTarget =
                switch r.target {
                case .asid(let asid): .asid(asid)
                case .virtqueue(let vq, let area): .virtqueue(vq, try area.validated())
                }
            return try d.translate(target, access: access, iova: r.iova, size: r.size)
        }
    }

    public func dumpIOTLB(_ r: DumpRequest, device: String, by caller: Caller) throws(VDPAError) -> IOTLBDump {
        try withDevice(device, .ownerOrAdmin, by: caller) { (d: inout VDPADevice) throws(VDPAError) in
            try d.dumpIOTLB(asid: r.asid, layer: try r.layer.validated(), first: r.first, last: r.last, limit: r.limit)
        }
    }

    public func setGroupASID(group: GroupIndex, asid: ASID, device: String, by caller: Caller) throws(VDPAError) {
        try withDevice(device, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in
            try d.setGroupASID(group: group, asid: asid)
        }
    }

    public func vringGroup(_ vq: VirtqueueIndex, device: String, by caller: Caller) throws(VDPAError) -> GroupIndex {
        try withDevice(device, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.vringGroup(vq) }
    }

    /// GET_VRING_SIZE (R46): the owner's; what it answers depends on the device's kernel version.
    public func vringSize(_ vq: VirtqueueIndex, device: String, by caller: Caller) throws(VDPAError) -> Int {
        try withDevice(device, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.vringSize(vq) }
    }

    public func vringDescriptorGroup(_ vq: VirtqueueIndex, device: String, by caller: Caller) throws(VDPAError) -> GroupIndex {
        try withDevice(device, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in
            try d.vringDescriptorGroup(vq)
        }
    }
}
