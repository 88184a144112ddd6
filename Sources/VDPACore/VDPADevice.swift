// VDPADevice.swift — one vDPA device as vhost-vdpa and its parent see it:
// the owner's session (acked backend features, per-ASID session tables,
// batch state) and the device (status, features, group→ASID bindings,
// per-ASID device mappings, vrings).
//
// The type is a value with no I/O and no locking: the daemon keeps each
// device behind its own lock.  Every mutating operation validates all of
// its input before it changes anything, so a thrown VDPAError means "nothing
// happened" (docs/protocol.md §3).

/// Who holds a device open: one connection, identified by the daemon.
public struct Owner: Equatable, Hashable, Sendable {
    public var connection: UInt64
    public var pid: Int32
    public var uid: UInt32

    public init(connection: UInt64, pid: Int32, uid: UInt32) {
        self.connection = connection
        self.pid = pid
        self.uid = uid
    }
}

/// One virtqueue as the parent holds it: ring size and addresses (SET_VRING_NUM / SET_VRING_ADDR),
/// the last avail index (SET/GET_VRING_BASE), readiness (SET_VRING_ENABLE) and its eventfds.
public struct Vring: Equatable, Sendable {
    public var num: UInt32?
    public var desc: UInt64?
    public var driver: UInt64?
    public var device: UInt64?
    public var ready = false
    /// last_avail_idx of a split ring (R60, R61).
    public var base: UInt16 = 0
    public var kick: EventFD?
    public var call: EventFD?

    public init() {}

    /// The size and the three areas: what a ring is built from.
    var layout: RingLayout { (num, desc, driver, device) }
}

/// A ring's size and its descriptor, driver and device areas, each nil until set.
typealias RingLayout = (num: UInt32?, desc: UInt64?, driver: UInt64?, device: UInt64?)

/// A vq's ring as vdpa_sim builds it at a 0→1 enable (R62): from the num and addresses set at that moment, kept
/// until the next such enable — a SET_VRING_NUM or ADDR meanwhile does not reach it, and a SET_VRING_BASE moves
/// last_avail only (R60).  A size or an area not set then leaves the vq ready with no ring.
public struct EnabledRing: Equatable, Sendable {
    /// How many times the vq went from not ready to ready: the data path keeps its ring while this holds.
    public var generation: UInt32 = 0
    public var num: UInt32?
    public var desc: UInt64?, driver: UInt64?, device: UInt64?

    public init() {}

    /// The size and areas this ring was built from.
    var layout: RingLayout {
        get { (num, desc, driver, device) }
        set { (num, desc, driver, device) = newValue }
    }

    /// A 0→1 enable of `ring`: a new generation, with the ring's settings as they are now.
    mutating func enable(_ ring: Vring) {
        generation &+= 1
        layout = ring.layout
    }
}

/// Counters a VMM developer can read to see what a flow cost.
public struct DeviceStats: Equatable, Sendable {
    public var mapCalls = 0
    public var unmapCalls = 0
    /// `.set_map` calls: the session table copied into the device mapping.
    public var deviceCommits = 0
    /// Entries copied into device mappings by those commits.
    public var entriesCopied = 0
    /// Device mappings put back to passthrough or the DMA MR (clean reset, reset_map).
    public var defaultRestores = 0
    public var resetsClean = 0
    public var resetsPersist = 0
    public var translateCalls = 0
    /// The control virtqueue (vdpa_sim's vstats qidx 2): requests, successes, errors.  Never cleared.
    public var cvqRequests = 0
    public var cvqSuccesses = 0
    public var cvqErrors = 0
    /// Used-idx stores done by the VMM's store agent (one aligned 16-bit store) and by process_vm_writev.
    public var atomicIndexStores = 0
    public var copiedIndexStores = 0
    /// Guest-memory accesses (copies and index loads) the data path made in vdpad's mapping of a shared region,
    /// and through process_vm_readv/writev (private memory, or a range no shared region holds).
    public var sharedAccesses = 0
    public var processVMAccesses = 0
    /// share_memory calls refused (a file that does not back the addresses claimed, an overlap, …), and
    /// regions unshared (the VMM unmapped or remapped them).
    public var sharesRefused = 0
    public var unshares = 0

    public init() {}
}

public struct VDPADevice: Sendable {
    public let name: DeviceName
    public let mgmtdev: ManagementDevice
    public let attributes: DeviceAttributes
    public let virtqueueCount: Int
    /// The parent's answers the IOTLB path reads on every map, kept as plain values (no call through the
    /// parent driver on the hot path).
    public let addressSpaceCount: Int
    let mapOperation: MapOperation

    public internal(set) var owner: Owner?
    public internal(set) var status: UInt8 = 0
    public internal(set) var driverFeatures: UInt64 = 0
    /// The driver features of the last negotiation (FEATURES_OK accepted), kept across a reset: the layout queue
    /// types are named by between sessions (``queueType(ofVirtqueue:)``).  In the session image, so a restarted daemon
    /// names them as the one before did.
    public internal(set) var lastNegotiatedFeatures: UInt64?
    public internal(set) var ackedBackendFeatures: BackendFeatures = []
    /// The vhost address spaces (what the VMM mapped), created lazily (R6); nil = no AS.
    public internal(set) var sessionTables: [IntervalTree?]
    /// The ASID of the open batch, if any (R18).
    public internal(set) var batchASID: Int?
    /// Per ASID, what the device translates with (see ``deviceMapping(asid:)``).
    var mappingStates: [MappingState]
    public internal(set) var groupASID: [Int]
    public internal(set) var vrings: [Vring]
    /// Per virtqueue, the ring its last 0→1 enable built (vdpa_sim's data path walks that one, with last_used :=
    /// last_avail at the enable, R62; mlx5's walks the vring's current settings).  The session image keeps those a
    /// ready vq's settings no longer say (`SessionImage.ringsAtEnable`); a restarted daemon's worker starts with no ring.
    public internal(set) var enabledRings: [EnabledRing]
    public internal(set) var suspended = false
    public internal(set) var stats = DeviceStats()
    /// Per virtqueue, what `vdpa dev vstats` reports (QueueStats.swift); never cleared.
    public internal(set) var queueStats: [QueueStats]
    /// `queueStats` at the last reset: where a parent whose vstats counts per session (mlx5) starts counting.
    public internal(set) var queueStatsAtReset: [QueueStats]
    /// The config bytes the parent stores (a net device's, as written: R51, they survive reset); empty for a
    /// parent that rebuilds its config on every read (R52).
    var storedConfig: [UInt8]
    /// The data queue pairs the driver uses: 1 until MQ_VQ_PAIRS_SET (mlx5_net with MQ) sets more; a reset puts it
    /// back to 1.  The data path serves the pairs below it.
    public internal(set) var activeQueuePairs = 1
    /// The link state the config's status field reports (VIRTIO_NET_S_LINK_UP); `set_link` changes it.
    public internal(set) var linkUp = true
    /// VHOST_VDPA_SET_CONFIG_CALL's eventfd, signalled on a config change.
    public internal(set) var configCall: EventFD?
    /// The VMM's store agent socket (`set_store_agent`), if it gave one.
    public internal(set) var storeAgent: EventFD?
    /// The owner's memory vdpad maps too (`share_memory`), kept until the session ends.
    public internal(set) var sharedMemory = SharedRegions()
    /// Shared regions a journaled session had (`restore`), for the daemon to map again from their files.
    public internal(set) var sharedFilesToMap: [SharedFile] = []
    /// Eventfds to signal and to close, left by the operations since the last `takeEventFDEffects()`.
    var eventFDEffects = EventFDEffects()
    /// Whether the table operations are noted for a journal (SessionJournal.swift), and those noted so far.
    var journaling = false
    var journalOps: [SessionOp] = []
    /// ENOSPC above this many entries in one ASID's session table (0 = unlimited).
    public var maxEntriesPerASID: Int

    /// Creates a device (vdpa dev add).
    /// - Throws: `EINVAL` for a bad attribute.
    public init(
        name: DeviceName, mgmtdev: ManagementDevice, attributes: DeviceAttributes = DeviceAttributes(),
        maxEntriesPerASID: Int = 0
    ) throws(VDPAError) {
        let attributes = try attributes.validated(for: mgmtdev, name: name)
        self.name = name
        self.mgmtdev = mgmtdev
        self.attributes = attributes
        self.maxEntriesPerASID = maxEntriesPerASID
        virtqueueCount = mgmtdev.virtqueueCount(maxVQP: attributes.maxVQP ?? 1)
        addressSpaceCount = mgmtdev.addressSpaceCount
        mapOperation = mgmtdev.mapOperation
        sessionTables = Array(repeating: nil, count: mgmtdev.addressSpaceCount)
        mappingStates = (0..<mgmtdev.addressSpaceCount).map { MappingState(mgmtdev.defaultMapping(asid: $0)) }
        groupASID = Array(repeating: 0, count: mgmtdev.groupCount)
        vrings = Array(repeating: Vring(), count: virtqueueCount)
        enabledRings = Array(repeating: EnabledRing(), count: virtqueueCount)
        queueStats = Array(repeating: QueueStats(), count: virtqueueCount)
        queueStatsAtReset = queueStats
        storedConfig = mgmtdev.driver.initialConfig(attributes)
    }

    /// Whether an operation left eventfds to signal or close, or kicks to rescan (cheaper than taking them).
    public var hasEventFDEffects: Bool { !eventFDEffects.isEmpty }

    /// The eventfds to signal and close since the last call (the daemon does both while it holds the device).
    public mutating func takeEventFDEffects() -> EventFDEffects {
        defer { eventFDEffects = EventFDEffects() }
        return eventFDEffects
    }

    /// `takeEventFDEffects` for a caller that carries them out at once: `body` sees them in place, then they are
    /// forgotten with their lists keeping their room.  A data-path run owes a call after nearly every batch, and
    /// a list made afresh each time would be an allocation per run.
    public mutating func carryOutEventFDEffects(_ body: (EventFDEffects) -> Void) {
        body(eventFDEffects)
        eventFDEffects.signal.removeAll(keepingCapacity: true)
        eventFDEffects.close.removeAll(keepingCapacity: true)
        (eventFDEffects.kicksChanged, eventFDEffects.resumed) = (false, false)
    }

    public var deviceID: VirtioDeviceID { mgmtdev.deviceClass.deviceID }
    public var configSize: Int { mgmtdev.driver.configSize }
    public var virtqueueSizeMax: Int { mgmtdev.virtqueueSizeMax }

    public var groupCount: Int { mgmtdev.groupCount }
    public var iovaRange: IOVARange { attributes.iovaRange }
    public var legacy: Bool { attributes.legacy }
    /// The kernel release whose rules the device follows (its attributes were validated: always one).
    public var kernel: KernelVersion { KernelVersion.resolved(attributes.kernel, legacy: legacy) ?? .v6_12 }
    public var offeredBackendFeatures: BackendFeatures { mgmtdev.offeredBackendFeatures(legacy: legacy) }
    public var offeredFeatures: UInt64 { mgmtdev.offeredFeatures }

    /// The vq that is the control queue under the features negotiated so far (mlx5 moves it with MQ), if any.
    public var controlQueue: Int? { mgmtdev.driver.controlQueue(virtqueueCount: virtqueueCount, driverFeatures: driverFeatures) }

    /// Whether the parent has `vq` under the features negotiated so far (`ParentDriver.hasQueue`: mlx5's
    /// is_index_valid).
    public func hasQueue(_ vq: Int) -> Bool { mgmtdev.driver.hasQueue(vq, virtqueueCount: virtqueueCount, driverFeatures: driverFeatures) }

    public func group(ofVirtqueue vq: Int) -> Int { mgmtdev.driver.group(ofVirtqueue: vq, isControlQueue: vq == controlQueue) }

    public func descriptorGroup(ofVirtqueue vq: Int) -> Int? {
        mgmtdev.driver.descriptorGroup(ofVirtqueue: vq, isControlQueue: vq == controlQueue, legacy: legacy)
    }

    // MARK: Checks shared by the operations

    /// EPERM unless `connection` owns the device (R5, R22; docs/protocol.md §4).
    // On every map: inlined (a call to a typed-throws function copies its error buffer even on
    // success), with the messages built out of line so that the inlined part stays a compare.
    @inlinable @inline(__always)
    /// `iotlb`: the call stands for an IOTLB write(), which the kernel answers with EFAULT (R3, R5, edge #5).
    public func requireOwner(_ connection: UInt64, iotlb: Bool = false) throws(VDPAError) {
        if owner?.connection != connection { throw ownershipError(iotlb: iotlb) }
    }

    @usableFromInline
    func ownershipError(iotlb: Bool) -> VDPAError {
        let kernel: KernelErrno? = iotlb ? .EFAULT : nil
        guard let owner else { return VDPAError(.EPERM, "\(name) is not open; call open first", kernelErrno: kernel) }
        return VDPAError(.EPERM, "\(name) is owned by another connection (pid \(owner.pid), uid \(owner.uid))", kernelErrno: kernel)
    }

    /// ENOBUFS for a virtqueue index out of range (R22).
    func checkVirtqueue(_ vq: UInt64, what: String = "vq") throws(VDPAError) -> Int {
        guard vq < UInt64(virtqueueCount) else {
            throw VDPAError(.ENOBUFS, "\(what) \(vq) is not below nvqs \(virtqueueCount) of \(name) (R22)")
        }
        return Int(vq)
    }

    /// EINVAL for an ASID out of range; `iotlb` marks the IOTLB write path, which the kernel reports as EFAULT.
    @inline(__always)
    public func checkASID(_ asid: ASID, iotlb: Bool) throws(VDPAError) -> Int {
        guard asid.rawValue < UInt64(addressSpaceCount) else {
            let message = "ASID \(asid) is not below nas \(addressSpaceCount) of \(name) (R6)"
            throw iotlb ? .iotlb(.EINVAL, message) : VDPAError(.EINVAL, message)
        }
        return Int(asid.rawValue)
    }
}
