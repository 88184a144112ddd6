// QueueStats.swift — per-virtqueue counters, as the kernel's
// `vdpa dev vstats show DEV qidx N` reports a queue (received_desc,
// completed_desc), plus the bytes, drops and errors an operator asks for.
// Like vdpa_sim's counters they are never cleared: they survive reset and
// close and end only with the device (docs/datapath.md, "Counters").

/// What one virtqueue is for, as `vdpa dev vstats` names it.
public enum QueueType: String, Sendable, CaseIterable {
    case rx, tx
    case controlVQ = "control_vq"
    /// A virtio-blk request queue (the kernel has no vstats for block devices; metrics still name it).
    case request
}

/// The counters of one virtqueue.
public struct QueueStats: Equatable, Sendable {
    /// Descriptor chains the device fetched from the avail ring.
    public var receivedDesc = 0
    /// Chains it returned through the used ring.
    public var completedDesc = 0
    /// Buffer bytes the device read or wrote for those chains.
    public var bytes = 0
    /// Chains or frames dropped on purpose (a receive filter, no room).
    public var drops = 0
    /// The queue pairs a control command set (MQ_VQ_PAIRS_SET), if any.
    public var newQueuePairs: Int?
    /// Chains the device could not serve (a malformed request, an unreadable buffer).
    public var errors = 0

    public init() {}

    /// The counts made since `earlier` (a snapshot of the same queue's counters).
    func since(_ earlier: QueueStats) -> QueueStats {
        var s = self
        s.receivedDesc -= earlier.receivedDesc
        s.completedDesc -= earlier.completedDesc
        s.bytes -= earlier.bytes
        s.drops -= earlier.drops
        s.errors -= earlier.errors
        return s
    }
}

/// What one run of a queue did, as the device records it (the data path fills it from the virtio layer's run).
public struct QueueRunRecord: Equatable, Sendable {
    /// Chains fetched, and of them answered OK or counted as errors.
    public var requests = 0, successes = 0, errors = 0
    /// Used entries whose idx store landed.
    public var completed = 0
    /// Buffer bytes read and written.
    public var bytes = 0
    /// Call eventfd signals owed (the CVQ signals once per answered command).
    public var calls = 0
    /// The MAC a control command set, if any.
    public var newMAC: [UInt8]?
    /// Chains or frames dropped on purpose (a receive filter, no room).
    public var drops = 0
    /// The queue pairs a control command set (MQ_VQ_PAIRS_SET), if any.
    public var newQueuePairs: Int?

    public init(
        requests: Int = 0, successes: Int = 0, errors: Int = 0, completed: Int = 0, bytes: Int = 0, calls: Int = 0, newMAC: [UInt8]? = nil,
        drops: Int = 0
    ) {
        (self.requests, self.successes, self.errors, self.completed, self.bytes, self.calls, self.newMAC, self.drops) =
            (requests, successes, errors, completed, bytes, calls, newMAC, drops)
    }
}

/// How a run reached the VMM's memory: ring-index stores made as one atomic store (in a shared region, or by the
/// VMM's store agent), and accesses made in a shared region against those made through process_vm_readv/writev.
public struct MemoryAccessCounts: Equatable, Sendable {
    public var atomicIndexStores = 0
    public var sharedAccesses = 0
    public var processVMAccesses = 0

    public init(atomicIndexStores: Int = 0, sharedAccesses: Int = 0, processVMAccesses: Int = 0) {
        (self.atomicIndexStores, self.sharedAccesses, self.processVMAccesses) = (atomicIndexStores, sharedAccesses, processVMAccesses)
    }
}

extension VDPADevice {
    /// The queue type of `vq`: a net device's pairs alternate rx, tx, and its control queue is where the negotiated
    /// features put it (``controlQueue``).  Between sessions — a reset cleared the features — the layout of the last
    /// negotiation, and before any, of every feature offered: the names get_device and the metrics label counters by
    /// do not change at each reset of an mlx5_net device (vstats answers only after FEATURES_OK, as the kernel's).
    public func queueType(ofVirtqueue vq: Int) -> QueueType {
        let features = status & VirtioStatus.featuresOK != 0 ? driverFeatures : lastNegotiatedFeatures ?? offeredFeatures
        let control = mgmtdev.driver.controlQueue(virtqueueCount: virtqueueCount, driverFeatures: features)
        return mgmtdev.driver.queueType(ofVirtqueue: vq, isControlQueue: vq == control)
    }

    /// The largest queue index vstats accepts before its range check (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX).
    static let vstatsIndexLimit: UInt64 = 0x8000

    /// `vdpa dev vstats show DEV qidx N` (V2), with the checks of vdpa_dev_vendor_stats_fill in their order:
    /// EAGAIN before FEATURES_OK, then (net only, else EOPNOTSUPP) ERANGE past 0x8000, then the parent's
    /// EINVAL for an index that is not one of its queues — and, where the parent counts per session (V4, mlx5),
    /// EAGAIN for a data queue that does not run, and the counts since the last reset.
    public func vendorStats(queue index: UInt64) throws(VDPAError) -> QueueStats {
        guard status & VirtioStatus.featuresOK != 0 else {
            throw VDPAError(.EAGAIN, "\(name) has not negotiated its features (FEATURES_OK is not set)")
        }
        guard mgmtdev.driver.hasVendorStats else {
            throw VDPAError(.EOPNOTSUPP, "\(name) is a \(mgmtdev.name) device; vendor statistics are net only")
        }
        guard index <= Self.vstatsIndexLimit else {
            throw VDPAError(.ERANGE, "qidx \(index) is above \(Self.vstatsIndexLimit)")
        }
        guard index < UInt64(virtqueueCount) else {
            throw VDPAError(.EINVAL, "qidx \(index) is not below nvqs \(virtqueueCount) of \(name)")
        }
        guard hasQueue(Int(index)) else {
            throw VDPAError(
                .EINVAL, "qidx \(index) is not a queue of \(name) under the negotiated features (\(mgmtdev.name): \"virtqueue index is not valid\")")
        }
        let vq = Int(index)
        guard mgmtdev.driver.countsQueuesPerSession else { return queueStats[vq] }
        if vq != controlQueue && !hardwareQueueRuns(vq) {
            throw VDPAError(
                .EAGAIN, "vq \(vq) of \(name) has no running hardware queue to count (\(mgmtdev.name): \"failed to query hardware\")")
        }
        return queueStats[vq].since(queueStatsAtReset[vq])
    }
}
