// ParentDriver.swift — what a vdpa parent driver is to vdpad, as the kernel's
// vdpasim_dev_attr is to vdpa_sim: its counts, groups and address spaces, the
// features it offers, its config space and the rules of its writes, the
// verdicts it gives (R54, R57), what a reset does to it (R69), and which of
// its queues the data path serves.  One file per parent under Parents/
// answers them; nothing outside those files asks which parent a device is.
// docs/architecture.md, "Adding a parent kind", walks through a new one.

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

/// What the data path does with a virtqueue's kicks.
public enum ServedQueue: Equatable, Sendable {
    /// A net control queue, answered as vdpa_sim_net's CVQ (ControlQueue.run).
    case netControl
    /// A net queue pair: TX frames loop back into RX as vdpa_sim_net's do (NetLoopback.run); a kick on
    /// either queue runs the pair.
    case netPair(rx: Int, tx: Int)
    /// A block request queue over the device's RAM disk, as vdpa_sim_blk's (BlockRequests.run).
    case blockRequests
}

/// A parent driver.  `legacy` models the same parent before Linux 6.7: no `.reset_map`, no
/// `.compat_reset`, no `.get_vq_desc_group` (docs/protocol.md §5.2).
public protocol ParentDriver: Sendable {
    /// iproute2's mgmtdev name, e.g. "vdpasim_net".
    var name: String { get }
    var deviceClass: DeviceClass { get }
    var mapOperation: MapOperation { get }
    var groupCount: Int { get }
    var addressSpaceCount: Int { get }
    /// The most queue pairs `max_vqp` may ask for (1: the attribute is refused above 1).
    var maxQueuePairs: Int { get }
    func virtqueueCount(maxVQP: Int) -> Int
    /// Which vq is the control queue under the driver features negotiated so far (none before SET_FEATURES and
    /// after a reset), or nil for a parent without one.  A vq's group, queue type and service follow from it.
    func controlQueue(virtqueueCount: Int, driverFeatures: UInt64) -> Int?
    /// `.get_vq_group`.
    func group(ofVirtqueue vq: Int, isControlQueue: Bool) -> Int
    /// `.get_vq_desc_group`, or nil when the parent has no such op (R24).
    func descriptorGroup(ofVirtqueue vq: Int, isControlQueue: Bool, legacy: Bool) -> Int?
    var hasSuspendResume: Bool { get }
    var hasSetGroupASID: Bool { get }
    /// The mapping an ASID has at creation, after `reset_map`, and after a clean reset (R31, R33, R36).
    func defaultMapping(asid: Int) -> DeviceMapping
    /// Virtio device features offered (GET_FEATURES, R53); the same for a legacy parent.
    var offeredFeatures: UInt64 { get }
    /// Whether SET_FEATURES without ACCESS_PLATFORM is EINVAL (R54).
    var requiresAccessPlatform: Bool { get }
    /// Why the parent refuses driver features it offered (R54: EINVAL), or nil.
    func refusal(ofDriverFeatures features: UInt64) -> String?
    /// The status the parent keeps when asked for `requested` (R57: a verdict is read back, never returned).
    func statusVerdict(requested: UInt8, current: UInt8, driverFeatures: UInt64) -> UInt8
    /// Whether a reset keeps the ring addresses and base (mlx5: yes; vdpa_sim zeroes them, R69).
    var keepsRingStateAcrossReset: Bool { get }
    /// What SET_VRING_ADDR and SET_VRING_BASE do to a ring in use (suspended, or on 6.7 running), with no enable
    /// between: vdpa_sim (false) keeps the ring it built at the last enable — the addresses wait for the next one,
    /// a base moves last_avail alone (R60, R62); mlx5 (true) modifies its hardware queue at resume — the new
    /// addresses, and a base that sets both indexes.
    var modifiesRingInUse: Bool { get }
    /// Whether SET_VRING_BASE on a data queue whose hardware queue runs — DRIVER_OK set, the vq enabled with a size,
    /// the device not suspended — is EINVAL (R60 step 4: mlx5_vdpa_set_vq_state, "can't modify available index").
    /// Only 6.7 reaches it: 6.8's vhost-vdpa refuses first (step 3).  A control queue in software takes it.
    var refusesBaseWhileQueueRuns: Bool { get }
    /// Whether the parent has queue `vq` under the driver features negotiated so far.  Where it has not, its
    /// set_vq_address and set_vq_state fail (SET_VRING_ADDR, SET_VRING_BASE and GET_VRING_BASE are EINVAL, R59 step 7,
    /// R60 step 4, R61) and its set_vq_ready does nothing (SET_VRING_ENABLE returns 0, the vq stays not ready, R62).
    func hasQueue(_ vq: Int, virtqueueCount: Int, driverFeatures: UInt64) -> Bool

    // Config space (R47–R52).
    /// GET_CONFIG_SIZE: `sizeof(struct virtio_net_config)` / `sizeof(struct virtio_blk_config)` in the 6.8 uapi (R45).
    var configSize: Int { get }
    /// The bytes the device stores at creation: what reads start from (empty for a config rebuilt on every read).
    func initialConfig(_ attributes: DeviceAttributes) -> [UInt8]
    /// The config a read sees now, from the stored bytes and the link.
    func configRead(stored: [UInt8], linkUp: Bool) -> [UInt8]
    /// Whether SET_CONFIG's bytes are kept (R49: vdpa_sim_net keeps every byte; mlx5, vdpa_sim_blk drop them).
    var keepsConfigWrites: Bool { get }
    /// Whether the device has a link (`set_link`, get_device's `link`).
    var hasLink: Bool { get }
    /// The stored config after the control queue set the MAC (MAC_ADDR_SET writes it straight in, D11).
    func config(_ stored: [UInt8], settingMAC mac: [UInt8]) -> [UInt8]
    /// The attributes of `vdpa dev add` checked for this parent, with its defaults filled in (EINVAL names one).
    func validate(_ attributes: DeviceAttributes, name: DeviceName) throws(VDPAError) -> DeviceAttributes

    // Queues.
    /// What `vdpa dev vstats` calls the queue.
    func queueType(ofVirtqueue vq: Int, isControlQueue: Bool) -> QueueType
    /// Whether `vdpa dev vstats` answers for this parent (vdpa_dev_vendor_stats_fill: net only).
    var hasVendorStats: Bool { get }
    /// Whether vstats reads the hardware's counters (V4): a data queue's are its firmware queue object's — EAGAIN
    /// while that queue does not run, counted since the reset that made it — and the control queue's are cleared by
    /// a reset.  vdpa_sim's counters are kept for the device's life (V3).
    var countsQueuesPerSession: Bool { get }
    /// What the data path does with kicks on `vq`, given the negotiated features; nil: nothing yet.
    func servedQueue(_ vq: Int, isControlQueue: Bool, driverFeatures: UInt64) -> ServedQueue?
}

extension ParentDriver {
    public var mapOperation: MapOperation { .setMap }
    public var maxQueuePairs: Int { 1 }
    public func virtqueueCount(maxVQP: Int) -> Int { deviceClass == .net ? 2 * maxVQP + 1 : 1 }
    public func descriptorGroup(ofVirtqueue vq: Int, isControlQueue: Bool, legacy: Bool) -> Int? { nil }
    public var hasSuspendResume: Bool { true }
    public var hasSetGroupASID: Bool { true }
    public func defaultMapping(asid: Int) -> DeviceMapping { .passthrough }
    public var requiresAccessPlatform: Bool { true }
    public func refusal(ofDriverFeatures features: UInt64) -> String? { nil }
    public func statusVerdict(requested: UInt8, current: UInt8, driverFeatures: UInt64) -> UInt8 { requested }
    public var keepsRingStateAcrossReset: Bool { false }
    public var modifiesRingInUse: Bool { false }
    public var refusesBaseWhileQueueRuns: Bool { false }
    public func hasQueue(_ vq: Int, virtqueueCount: Int, driverFeatures: UInt64) -> Bool { true }
    public var countsQueuesPerSession: Bool { false }

    /// Whether the parent has descriptor groups at all (DESC_ASID's offer, R27).
    public func hasDescriptorGroups(legacy: Bool) -> Bool { descriptorGroup(ofVirtqueue: 0, isControlQueue: false, legacy: legacy) != nil }

    /// Whether the parent has `.reset_map` (6.7+ set_map parents).
    public func hasResetMap(legacy: Bool) -> Bool { mapOperation == .setMap && !legacy }

    /// GET_BACKEND_FEATURES (R27).
    public func offeredBackendFeatures(legacy: Bool) -> BackendFeatures {
        var offer: BackendFeatures = [.iotlbMessageV2, .iotlbBatch, .iotlbASID]
        if hasSuspendResume { offer.formUnion([.suspend, .resume, .enableAfterDriverOK]) }
        if hasDescriptorGroups(legacy: legacy) { offer.insert(.descASID) }
        // Persist-capable: a platform IOMMU, or a parent with .reset_map; neither bit exists before 6.7.
        if !legacy && (mapOperation == .platform || hasResetMap(legacy: legacy)) { offer.insert(.iotlbPersist) }
        return offer
    }
}

/// A parent of virtio-net devices: the net config (R51), rx/tx pairs and a control queue (last, unless the parent
/// moves it).
public protocol NetParent: ParentDriver {}

extension NetParent {
    public var deviceClass: DeviceClass { .net }
    public var configSize: Int { 24 }
    public var keepsConfigWrites: Bool { true }
    public var hasLink: Bool { true }
    public var hasVendorStats: Bool { true }

    /// `struct virtio_net_config` as the parent fills it at creation: mac @0, status @6,
    /// max_virtqueue_pairs @8 (with MQ offered), mtu @10; speed, duplex and the rss fields 0 (R51).
    public func initialConfig(_ attributes: DeviceAttributes) -> [UInt8] {
        let offersMQ = offeredFeatures & VirtioFeatures.mask("MQ", class: .net) != 0
        return ConfigLayout.net(
            mac: attributes.mac ?? "00:00:00:00:00:00", mtu: attributes.mtu ?? 1500,
            maxVirtqueuePairs: offersMQ ? attributes.maxVQP ?? 1 : 0)
    }

    /// The stored bytes with the status field regenerated from the link on every read (R51, edge #47).
    public func configRead(stored: [UInt8], linkUp: Bool) -> [UInt8] {
        var bytes = stored
        ConfigLayout.put16(&bytes, 6, linkUp ? ConfigLayout.linkUp : 0)
        return bytes
    }

    public func config(_ stored: [UInt8], settingMAC mac: [UInt8]) -> [UInt8] {
        guard mac.count == 6 else { return stored }
        var bytes = stored
        bytes.replaceSubrange(0..<6, with: mac)
        return bytes
    }

    public func validate(_ attributes: DeviceAttributes, name: DeviceName) throws(VDPAError) -> DeviceAttributes {
        var a = try validateCommon(attributes, name: name)
        if let mac = a.mac {
            guard DeviceAttributes.isValidMAC(mac) else { throw badAttribute("mac \"\(mac)\" is not six hex octets like 52:54:00:12:34:56", name) }
            a.mac = mac.lowercased()
        } else {
            a.mac = DeviceAttributes.defaultMAC(for: name)
        }
        if let mtu = a.mtu, !(68...65535).contains(mtu) { throw badAttribute("mtu \(mtu) is outside 68…65535", name) }
        if a.backing != nil { throw badAttribute("backing is an attribute of a block device", name) }
        a.mtu = a.mtu ?? 1500
        return a
    }

    /// The last vq, whatever the features (vdpa_sim_net's index 2: it has one pair).
    public func controlQueue(virtqueueCount: Int, driverFeatures: UInt64) -> Int? { virtqueueCount - 1 }

    public func queueType(ofVirtqueue vq: Int, isControlQueue: Bool) -> QueueType {
        isControlQueue ? .controlVQ : (vq % 2 == 0 ? .rx : .tx)
    }

    /// The control queue (once CTRL_VQ is negotiated), and each rx/tx pair.
    public func servedQueue(_ vq: Int, isControlQueue: Bool, driverFeatures: UInt64) -> ServedQueue? {
        if isControlQueue {
            return driverFeatures & VirtioFeatures.mask("CTRL_VQ", class: .net) != 0 ? .netControl : nil
        }
        return vq % 2 == 0 ? .netPair(rx: vq, tx: vq + 1) : .netPair(rx: vq - 1, tx: vq)
    }
}

/// A parent of virtio-blk devices: the block config, rebuilt on every read (R52), one request queue.
public protocol BlockParent: ParentDriver {}

extension BlockParent {
    public var deviceClass: DeviceClass { .block }
    public var configSize: Int { 96 }
    public var keepsConfigWrites: Bool { false }
    public var hasLink: Bool { false }
    public var hasVendorStats: Bool { false }
    public func initialConfig(_ attributes: DeviceAttributes) -> [UInt8] { [] }
    public func configRead(stored: [UInt8], linkUp: Bool) -> [UInt8] { ConfigLayout.block }
    public func config(_ stored: [UInt8], settingMAC mac: [UInt8]) -> [UInt8] { stored }

    public func validate(_ attributes: DeviceAttributes, name: DeviceName) throws(VDPAError) -> DeviceAttributes {
        if attributes.mac != nil { throw badAttribute("mac is not an attribute of a block device", name) }
        if attributes.mtu != nil { throw badAttribute("mtu is not an attribute of a block device", name) }
        if let backing = attributes.backing, !backing.hasPrefix("/") || backing.hasSuffix("/") || backing.utf8.contains(0) {
            throw badAttribute("backing \"\(backing)\" is not an absolute file path", name)
        }
        return try validateCommon(attributes, name: name)
    }

    public func controlQueue(virtqueueCount: Int, driverFeatures: UInt64) -> Int? { nil }
    public func queueType(ofVirtqueue vq: Int, isControlQueue: Bool) -> QueueType { .request }
    public func servedQueue(_ vq: Int, isControlQueue: Bool, driverFeatures: UInt64) -> ServedQueue? { .blockRequests }
}

extension ParentDriver {
    func badAttribute(_ what: String, _ name: DeviceName) -> VDPAError {
        VDPAError(.EINVAL, "\(what) for \(self.name) device \(name)")
    }

    /// The checks every parent makes: the queue pairs it has, an IOVA range that is one.
    func validateCommon(_ attributes: DeviceAttributes, name: DeviceName) throws(VDPAError) -> DeviceAttributes {
        var a = attributes
        if let maxVQP = a.maxVQP {
            if maxQueuePairs > 1 {
                guard (1...maxQueuePairs).contains(maxVQP) else { throw badAttribute("max_vqp \(maxVQP) is outside 1…\(maxQueuePairs)", name) }
            } else if maxVQP != 1 {
                throw badAttribute("max_vqp \(maxVQP): \(self.name) has one queue pair", name)
            }
        }
        a.maxVQP = a.maxVQP ?? 1
        guard a.iovaRange.first <= a.iovaRange.last else {
            throw badAttribute("iova_first \(hex(a.iovaRange.first)) is above iova_last \(hex(a.iovaRange.last))", name)
        }
        return a
    }
}
