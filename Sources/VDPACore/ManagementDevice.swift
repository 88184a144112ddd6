// ManagementDevice.swift — the parent drivers vdpad can instantiate
// (iproute2's "mgmtdev"), with the shape and capabilities docs/protocol.md §5.2
// gives each.  A `legacy` device models a parent from before Linux 6.7: no
// `.reset_map`, no `.compat_reset`, no `.get_vq_desc_group`.

public enum DeviceClass: String, Sendable, CaseIterable {
    case net
    case block
}

/// How the parent receives the IOTLB (R14).
public enum MapOperation: String, Sendable {
    /// `.set_map`: the whole ASID table is copied into the device at each commit.
    case setMap = "set_map"
    /// No op: the parent sits behind a platform IOMMU, every map/unmap reaches it at once.
    case platform = "none"
}

public enum ManagementDevice: String, CaseIterable, Sendable {
    case vdpasimNet = "vdpasim_net"
    case mlx5Net = "mlx5_net"
    case vdpasimBlock = "vdpasim_blk"
    case platformNet = "platform_net"

    public var name: String { rawValue }

    public var deviceClass: DeviceClass { self == .vdpasimBlock ? .block : .net }

    public var mapOperation: MapOperation { self == .platformNet ? .platform : .setMap }

    public var groupCount: Int {
        switch self {
        case .vdpasimNet: 2
        case .mlx5Net: 3
        case .vdpasimBlock, .platformNet: 1
        }
    }

    public var addressSpaceCount: Int {
        switch self {
        case .vdpasimNet, .mlx5Net: 2
        case .vdpasimBlock, .platformNet: 1
        }
    }

    /// Virtqueues for `maxVQP` queue pairs (only mlx5_net has more than one).
    public func virtqueueCount(maxVQP: Int) -> Int {
        switch self {
        case .vdpasimNet, .platformNet: 3
        case .mlx5Net: 2 * maxVQP + 1
        case .vdpasimBlock: 1
        }
    }

    /// The group of `vq` (`.get_vq_group`); the control vq is the last one.
    public func group(ofVirtqueue vq: Int, virtqueueCount: Int) -> Int {
        switch self {
        case .vdpasimNet, .mlx5Net: vq == virtqueueCount - 1 ? 1 : 0
        case .vdpasimBlock, .platformNet: 0
        }
    }

    /// The descriptor-table group of `vq` (`.get_vq_desc_group`), or nil when the parent has no such op.
    public func descriptorGroup(ofVirtqueue vq: Int, virtqueueCount: Int, legacy: Bool) -> Int? {
        guard self == .mlx5Net, !legacy else { return nil }
        return vq == virtqueueCount - 1 ? 1 : 2
    }

    public func hasDescriptorGroups(legacy: Bool) -> Bool { self == .mlx5Net && !legacy }

    /// Whether the parent has `.reset_map` (6.7+ set_map parents).
    public func hasResetMap(legacy: Bool) -> Bool { mapOperation == .setMap && !legacy }

    public var hasSuspendResume: Bool { self != .platformNet }

    public var hasSetGroupASID: Bool { self != .platformNet }

    /// The mapping an ASID has at creation, after `reset_map`, and after a clean reset (R31, R33, R36).
    public func defaultMapping(asid: Int) -> DeviceMapping {
        switch self {
        case .vdpasimNet, .vdpasimBlock: .passthrough
        case .mlx5Net: asid == 0 ? .dmaMR : .table(IntervalTree())
        case .platformNet: .platform
        }
    }

    /// GET_BACKEND_FEATURES (R27).
    public func offeredBackendFeatures(legacy: Bool) -> BackendFeatures {
        var offer: BackendFeatures = [.iotlbMessageV2, .iotlbBatch, .iotlbASID]
        if hasSuspendResume { offer.formUnion([.suspend, .resume, .enableAfterDriverOK]) }
        if hasDescriptorGroups(legacy: legacy) { offer.insert(.descASID) }
        // Persist-capable: a platform IOMMU, or a parent with .reset_map; neither bit exists before 6.7.
        if !legacy && (mapOperation == .platform || hasResetMap(legacy: legacy)) { offer.insert(.iotlbPersist) }
        return offer
    }

    /// Virtio device features the parent offers (VHOST_GET_FEATURES, R53); a legacy parent offers the same.
    /// vdpasim_net: 0x3_0883_0028, as vdpa_sim_net.
    public var offeredFeatures: UInt64 {
        let c = deviceClass
        switch self {
        case .vdpasimNet:
            return VirtioFeatures.mask(
                "VERSION_1", "ANY_LAYOUT", "ACCESS_PLATFORM", "MAC", "MTU", "CTRL_VQ",
                "CTRL_MAC_ADDR", "STATUS", class: c)
        case .mlx5Net:
            return VirtioFeatures.mask(
                "VERSION_1", "ACCESS_PLATFORM", "CSUM", "GUEST_CSUM", "HOST_TSO4",
                "HOST_TSO6", "MRG_RXBUF", "MAC", "MTU", "STATUS", "CTRL_VQ", "MQ",
                "CTRL_MAC_ADDR", class: c)
        case .vdpasimBlock:
            // 0x3_0800_7646 (R53).
            return VirtioFeatures.mask(
                "VERSION_1", "ACCESS_PLATFORM", "ANY_LAYOUT", "SIZE_MAX", "SEG_MAX", "BLK_SIZE",
                "FLUSH", "TOPOLOGY", "MQ", "DISCARD", "WRITE_ZEROES", class: c)
        case .platformNet:
            return VirtioFeatures.mask(
                "VERSION_1", "ACCESS_PLATFORM", "MAC", "MTU", "STATUS", "CTRL_VQ",
                class: c)
        }
    }

    /// vdpa_sim and mlx5 refuse a driver that does not accept ACCESS_PLATFORM (R54).
    public var requiresAccessPlatform: Bool { self != .platformNet }
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
