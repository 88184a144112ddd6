// MLX5Net.swift — mlx5_vdpa as a ConnectX-6 Dx presents it: up to 32 queue
// pairs and a control queue, three groups (data 0, CVQ 1, the data queues'
// descriptor tables 2: DESC_ASID), ASID 0 pre-mapped by a 1:1 DMA MR.  Its
// hardware keeps ring state across a reset (R61, R69), ignores config writes
// (R49) and judges FEATURES_OK (R57).

public struct MLX5Net: NetParent {
    public init() {}
    public var name: String { "mlx5_net" }
    public var groupCount: Int { 3 }
    public var addressSpaceCount: Int { 2 }
    public var maxQueuePairs: Int { 32 }
    /// ctrl_vq_idx: the vq after the last pair with MQ negotiated, vq 2 without — so also before SET_FEATURES and
    /// after a reset, when group 1 is vq 2's even on a device with more pairs.  A VMM whose guest takes no MQ (QEMU's
    /// virtio-net without mq=on) drives its control queue at index 2.
    public func controlQueue(virtqueueCount: Int, driverFeatures: UInt64) -> Int? {
        driverFeatures & VirtioFeatures.mask("MQ", class: .net) != 0 ? virtqueueCount - 1 : 2
    }

    public func group(ofVirtqueue vq: Int, isControlQueue: Bool) -> Int { isControlQueue ? 1 : 0 }

    /// The CVQ's own group for its rings; every data queue's descriptor table in group 2 (6.7+).
    public func descriptorGroup(ofVirtqueue vq: Int, isControlQueue: Bool, legacy: Bool) -> Int? {
        legacy ? nil : (isControlQueue ? 1 : 2)
    }

    /// ASID 0: the 1:1 DMA MR made at device creation; ASID 1: an empty table.
    public func defaultMapping(asid: Int) -> DeviceMapping { asid == 0 ? .dmaMR : .table(IntervalTree()) }

    public var offeredFeatures: UInt64 {
        VirtioFeatures.mask(
            "VERSION_1", "ACCESS_PLATFORM", "CSUM", "GUEST_CSUM", "HOST_TSO4", "HOST_TSO6", "MRG_RXBUF", "MAC", "MTU", "STATUS",
            "CTRL_VQ", "MQ", "CTRL_MAC_ADDR", class: .net)
    }

    public func refusal(ofDriverFeatures features: UInt64) -> String? {
        let mq = VirtioFeatures.mask("MQ", class: .net), cvq = VirtioFeatures.mask("CTRL_VQ", class: .net)
        return features & mq != 0 && features & cvq == 0 ? "mlx5_net refuses MQ without CTRL_VQ (R54)" : nil
    }

    /// The hardware leaves FEATURES_OK clear when the driver lacks VERSION_1 or ACCESS_PLATFORM.
    public func statusVerdict(requested: UInt8, current: UInt8, driverFeatures: UInt64) -> UInt8 {
        let needed = VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", class: .net)
        let settingFeaturesOK = requested & VirtioStatus.featuresOK != 0 && current & VirtioStatus.featuresOK == 0
        return settingFeaturesOK && driverFeatures & needed != needed ? requested & ~VirtioStatus.featuresOK : requested
    }

    public var keepsRingStateAcrossReset: Bool { true }
    /// mlx5_vdpa_set_vq_state sets avail and used alike, and a suspended queue's new addresses and indexes are
    /// applied at resume (6.8).
    public var modifiesRingInUse: Bool { true }
    /// Its firmware's queue object takes no new index while in the RDY state; the CVQ is a vringh in the driver.
    public var refusesBaseWhileQueueRuns: Bool { true }

    /// mlx5's is_index_valid: without MQ only the first pair, and the CVQ once CTRL_VQ is negotiated; with MQ every
    /// vq.  So before SET_FEATURES the CVQ is no queue at all: a VMM sets the features first.
    public func hasQueue(_ vq: Int, virtqueueCount: Int, driverFeatures: UInt64) -> Bool {
        if driverFeatures & VirtioFeatures.mask("MQ", class: .net) != 0 { return vq < virtqueueCount }
        return vq < (driverFeatures & VirtioFeatures.mask("CTRL_VQ", class: .net) != 0 ? 3 : 2)
    }

    /// Its vstats: the firmware's per-queue counter sets, made with the hardware queues (counter_set_query: EAGAIN
    /// unless RDY), and the CVQ's driver counters, zeroed by mlx5_vdpa_compat_reset.
    public var countsQueuesPerSession: Bool { true }

    public var keepsConfigWrites: Bool { false }
}
