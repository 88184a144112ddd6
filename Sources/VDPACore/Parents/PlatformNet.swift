// PlatformNet.swift — a net parent behind a platform IOMMU: no map op (every
// map and unmap reaches the IOMMU at once, R14), one group and one address
// space, no SUSPEND, no SET_GROUP_ASID, ACCESS_PLATFORM offered but not
// required.

public struct PlatformNet: NetParent {
    public init() {}
    public var name: String { "platform_net" }
    public var mapOperation: MapOperation { .platform }
    public var groupCount: Int { 1 }
    public var addressSpaceCount: Int { 1 }
    public func group(ofVirtqueue vq: Int, isControlQueue: Bool) -> Int { 0 }
    public var hasSuspendResume: Bool { false }
    public var hasSetGroupASID: Bool { false }
    public func defaultMapping(asid: Int) -> DeviceMapping { .platform }
    public var offeredFeatures: UInt64 {
        VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "MAC", "MTU", "STATUS", "CTRL_VQ", class: .net)
    }
    public var requiresAccessPlatform: Bool { false }
}
