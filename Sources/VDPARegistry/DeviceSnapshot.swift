// DeviceSnapshot.swift — what an operator's metrics read of a device: a copy
// of its counters and a few gauges, taken under the device's lock for no
// longer than the copy (no table is walked: an IOTLB's entry count is stored).
import VDPACore

/// One device's counters and state at one instant.
public struct DeviceSnapshot: Sendable, Equatable {
    public struct AddressSpace: Sendable, Equatable {
        public var asid: Int
        /// Entries of the owner's session table (nil: no address space yet, R6).
        public var sessionEntries: Int?
        /// Entries the device translates with (0 for passthrough or the DMA MR).
        public var deviceEntries: Int
    }

    public struct Queue: Sendable, Equatable {
        public var index: Int
        public var type: QueueType
        public var stats: QueueStats
    }

    public var name: String
    public var mgmtdev: String
    public var ownerPID: Int32?
    public var status: UInt8
    public var suspended: Bool
    public var stats: DeviceStats
    public var addressSpaces: [AddressSpace]
    public var queues: [Queue]
    /// Bytes of the owner's memory vdpad reaches in shared regions.
    public var sharedMemoryBytes: UInt64

    public init(_ d: VDPADevice) {
        name = d.name.rawValue
        mgmtdev = d.mgmtdev.name
        ownerPID = d.owner?.pid
        status = d.status
        suspended = d.suspended
        stats = d.stats
        addressSpaces = (0..<d.addressSpaceCount).map { a in
            AddressSpace(asid: a, sessionEntries: d.sessionTables[a]?.count, deviceEntries: d.deviceTable(asid: a)?.count ?? 0)
        }
        queues = d.queueStats.indices.map { Queue(index: $0, type: d.queueType(ofVirtqueue: $0), stats: d.queueStats[$0]) }
        sharedMemoryBytes = d.sharedMemory.bytes
    }
}

extension DeviceRegistry {
    /// Every device's snapshot, in name order; each device is held only while it is copied.
    public func snapshots() -> [DeviceSnapshot] {
        allSlots().map { $0.read(DeviceSnapshot.init) }
    }

    /// `vdpa dev vstats show DEV qidx N`: an admin's, as the kernel's VDPA_CMD_DEV_VSTATS_GET needs
    /// CAP_NET_ADMIN (GENL_ADMIN_PERM).  ENODEV, EPERM, then the checks of ``VDPADevice/vendorStats(queue:)``.
    public func vendorStats(_ device: String, queue: UInt64, by caller: Caller) throws(VDPAError) -> (type: QueueType, stats: QueueStats) {
        try withDevice(device, .admin(operation: "get_vstats"), by: caller) { (d: inout VDPADevice) throws(VDPAError) in
            let stats = try d.vendorStats(queue: queue)  // checks the index before it is used
            return (d.queueType(ofVirtqueue: Int(queue)), stats)
        }
    }
}
