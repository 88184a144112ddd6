// ManagementDevice.swift — a parent driver as a device and the registry hold
// it (iproute2's "mgmtdev"): a value that compares by name and forwards every
// question to its driver (Parents/).  The built-in parents are listed once,
// in `builtIn`; a registry can be given others (a test's toy parent).

public struct ManagementDevice: Hashable, Sendable, CustomStringConvertible {
    /// The driver behind one reference: a protocol existential held inline would make every struct that holds
    /// a ManagementDevice (VDPADevice) address-only, and the optimizer then copies the whole device around
    /// calls on it (perf-guard measured 1,750 → 3,950 instructions per map).  A class reference keeps it loadable.
    private final class Box: Sendable {
        let driver: any ParentDriver
        init(_ driver: any ParentDriver) { self.driver = driver }
    }

    private let box: Box

    /// The parent driver that answers for this kind of device.
    public var driver: any ParentDriver { box.driver }

    public init(_ driver: any ParentDriver) { box = Box(driver) }

    public static let vdpasimNet = ManagementDevice(VDPASimNet())
    public static let mlx5Net = ManagementDevice(MLX5Net())
    public static let vdpasimBlock = ManagementDevice(VDPASimBlock())
    public static let platformNet = ManagementDevice(PlatformNet())

    /// The parents vdpad offers (list_mgmtdevs), in the order it lists them.
    public static let builtIn: [ManagementDevice] = [.vdpasimNet, .mlx5Net, .vdpasimBlock, .platformNet]
    public static var allCases: [ManagementDevice] { builtIn }

    /// The built-in parent named `name`, or nil.
    public init?(rawValue name: String) {
        guard let found = Self.builtIn.first(where: { $0.name == name }) else { return nil }
        self = found
    }

    public var name: String { driver.name }
    public var rawValue: String { driver.name }
    public var description: String { driver.name }

    public static func == (a: ManagementDevice, b: ManagementDevice) -> Bool { a.name == b.name }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    public var deviceClass: DeviceClass { driver.deviceClass }
    public var mapOperation: MapOperation { driver.mapOperation }
    public var groupCount: Int { driver.groupCount }
    public var addressSpaceCount: Int { driver.addressSpaceCount }
    public func virtqueueCount(maxVQP: Int) -> Int { driver.virtqueueCount(maxVQP: maxVQP) }
    public func hasDescriptorGroups(legacy: Bool) -> Bool { driver.hasDescriptorGroups(legacy: legacy) }
    public func hasResetMap(legacy: Bool) -> Bool { driver.hasResetMap(legacy: legacy) }
    public var hasSuspendResume: Bool { driver.hasSuspendResume }
    public var hasSetGroupASID: Bool { driver.hasSetGroupASID }
    public func defaultMapping(asid: Int) -> DeviceMapping { driver.defaultMapping(asid: asid) }
    public func offeredBackendFeatures(legacy: Bool) -> BackendFeatures { driver.offeredBackendFeatures(legacy: legacy) }
    public var offeredFeatures: UInt64 { driver.offeredFeatures }
    public var requiresAccessPlatform: Bool { driver.requiresAccessPlatform }
}

/// What the device translates an ASID's DMA with.
public enum DeviceMapping: Equatable, Sendable {
    /// vdpa_sim's identity passthrough over the whole 64-bit space (R33).
    case passthrough
    /// mlx5's 1:1 physical DMA memory region on ASID 0.
    case dmaMR
    /// The table last committed by `.set_map` (may be empty).
    case table(IntervalTree)
    /// A platform IOMMU: the session table itself, updated at every map/unmap.
    case platform

    public var name: String {
        switch self {
        case .passthrough: "passthrough"
        case .dmaMR: "dma_mr"
        case .table: "table"
        case .platform: "platform"
        }
    }

    var isIdentity: Bool { self == .passthrough || self == .dmaMR }
}
