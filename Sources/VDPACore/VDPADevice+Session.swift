// VDPADevice+Session.swift — open/close, feature negotiation, status and
// reset, group bindings and vrings: the ioctl side of vhost-vdpa.

extension VDPADevice {
    // MARK: Open and close

    /// open() + VHOST_SET_OWNER (R34): a second open is EBUSY; the device is reset without
    /// clean-map, no address space exists, no batch is open.
    public mutating func open(by owner: Owner) throws(VDPAError) {
        if let current = self.owner {
            throw VDPAError(.EBUSY, "\(name) is already open (pid \(current.pid), uid \(current.uid)) (R34)")
        }
        resetDevice(cleanMap: false)
        self.owner = owner
        ackedBackendFeatures = []
        batchASID = nil
        sessionTables = Array(repeating: nil, count: addressSpaceCount)
        journal(.open(owner))
    }

    /// release() (R35, docs/protocol.md §6): reset (clean unless IOTLB_PERSIST), drop the batch, and for
    /// every ASID with a session table remove its entries and `reset_map` it.  Cannot fail.
    public mutating func release() {
        resetDevice(cleanMap: !persistsAcrossReset)
        batchASID = nil
        // R70: close() releases every eventfd and puts the vrings back to their first state.
        for ring in vrings { eventFDEffects.close += [ring.kick, ring.call].compactMap { $0 } }
        eventFDEffects.kicksChanged = true
        vrings = Array(repeating: Vring(), count: virtqueueCount)
        setConfigCall(nil)
        setStoreAgent(nil)
        // The mappings go when the last data-path run holding them ends; the files now.
        eventFDEffects.close += sharedMemory.removeAll().compactMap(\.file)
        for asid in 0..<addressSpaceCount where sessionTables[asid] != nil {
            sessionTables[asid] = nil
            if mgmtdev.hasResetMap(legacy: legacy) { restoreDefaultMapping(asid: asid) }
        }
        owner = nil
        ackedBackendFeatures = []
        journal(.release)
    }

    // MARK: Backend features

    /// VHOST_SET_BACKEND_FEATURES, checked in the kernel's order (R28); the value replaces the acked set.
    public mutating func setBackendFeatures(_ requested: BackendFeatures) throws(VDPAError) {
        let unknown = requested.subtracting(.known)
        let offer = offeredBackendFeatures
        if !unknown.isEmpty {
            throw VDPAError(.EOPNOTSUPP, "backend feature bits \(hex(unknown.rawValue)) are unknown (R28)")
        }
        if requested.contains(.suspend) && !mgmtdev.hasSuspendResume {
            throw VDPAError(.EOPNOTSUPP, "\(mgmtdev.name) has no suspend op; SUSPEND cannot be acked (R28)")
        }
        if requested.contains(.resume) && !mgmtdev.hasSuspendResume {
            throw VDPAError(.EOPNOTSUPP, "\(mgmtdev.name) has no resume op; RESUME cannot be acked (R28)")
        }
        if requested.contains(.descASID) && !requested.contains(.iotlbASID) {
            throw VDPAError(.EINVAL, "DESC_ASID requires IOTLB_ASID in the same value (R28)")
        }
        if requested.contains(.descASID) && !offer.contains(.descASID) {
            throw VDPAError(.EOPNOTSUPP, "\(describedParent) has no descriptor groups; DESC_ASID cannot be acked (R28)")
        }
        if requested.contains(.iotlbPersist) && !offer.contains(.iotlbPersist) {
            throw VDPAError(.EOPNOTSUPP, "\(describedParent) cannot keep mappings across reset; IOTLB_PERSIST cannot be acked (R28)")
        }
        ackedBackendFeatures = requested
    }

    var describedParent: String { legacy ? "legacy \(mgmtdev.name)" : mgmtdev.name }

    /// Whether a device reset keeps the device mappings (R30: IOTLB_PERSIST acked on a 6.7+ parent).
    var persistsAcrossReset: Bool { ackedBackendFeatures.contains(.iotlbPersist) && !legacy }

    // MARK: Virtio features and status

    /// VHOST_SET_FEATURES (R54): EBUSY once FEATURES_OK is set (checked first); EINVAL without
    /// ACCESS_PLATFORM on vdpa_sim and mlx5, for MQ without CTRL_VQ on mlx5, and (deliberately, docs/protocol.md
    /// §7) for a bit not offered, which the kernel drops silently (edge #53).  DRIVER_OK without
    /// FEATURES_OK does not stop it; a repeat replaces the value.
    public mutating func setFeatures(_ features: UInt64) throws(VDPAError) {
        if status & VirtioStatus.featuresOK != 0 {
            throw VDPAError(.EBUSY, "features of \(name) are fixed once FEATURES_OK is set; reset first (R54)")
        }
        let c = mgmtdev.deviceClass
        let extra = features & ~offeredFeatures
        if extra != 0 {
            let names = VirtioFeatures.names(of: extra, class: c).joined(separator: ", ")
            throw VDPAError(
                .EINVAL, "\(name) does not offer \(names)",
                details: [
                    ("note", .string("the kernel stores the value ANDed with the offer and returns 0 (edge #53); offer \(hex(offeredFeatures))"))
                ])
        }
        if mgmtdev.requiresAccessPlatform && features & VirtioFeatures.mask("ACCESS_PLATFORM", class: c) == 0 {
            throw VDPAError(.EINVAL, "\(mgmtdev.name) requires ACCESS_PLATFORM (R54, edge #52)")
        }
        if let refusal = mgmtdev.driver.refusal(ofDriverFeatures: features) { throw VDPAError(.EINVAL, refusal) }
        driverFeatures = features
    }

    /// VHOST_VDPA_SET_STATUS (R30): 0 resets; a non-zero status may not clear bits already set.
    public mutating func setStatus(_ newStatus: UInt64) throws(VDPAError) {
        guard newStatus <= 0xFF else { throw VDPAError(.EINVAL, "status \(newStatus) does not fit in a byte") }
        let s = UInt8(newStatus)
        if s == 0 {
            reset()
            return
        }
        if status & ~s != 0 {
            throw VDPAError(.EINVAL, "status \(hex(UInt64(s))) clears bits \(hex(UInt64(status & ~s))) of \(name); only 0 resets (R30, R56)")
        }
        // R57: a parent's verdict is read back, never returned.  vdpa_sim stores anything; a hardware
        // parent (mlx5) leaves FEATURES_OK clear when the driver's features are unacceptable to it.
        status = mgmtdev.driver.statusVerdict(requested: s, current: status, driverFeatures: driverFeatures)
        if status & VirtioStatus.featuresOK != 0 { lastNegotiatedFeatures = driverFeatures }
    }

    /// SET_STATUS(0) (R30, R31): groups back to ASID 0, device mappings back to default unless
    /// IOTLB_PERSIST is acked; session tables and an open batch are untouched (R21, R32).
    public mutating func reset() {
        let clean = !persistsAcrossReset
        resetDevice(cleanMap: clean)
        if clean { stats.resetsClean += 1 } else { stats.resetsPersist += 1 }
        journal(.reset)
    }

    /// The parent's (compat_)reset.  A platform IOMMU is never touched by a device reset.
    mutating func resetDevice(cleanMap: Bool) {
        status = 0
        driverFeatures = 0
        queueStatsAtReset = queueStats
        suspended = false
        activeQueuePairs = 1
        groupASID = Array(repeating: 0, count: groupCount)
        // R69: num is kept; vdpa_sim zeroes the addresses and the base — zero, not unset: its ring now sits at
        // IOVA 0, and get_vring and translate say so — mlx5 keeps both (its base is the index saved when the
        // queue was torn down, R61); nothing is ready; the parent drops the call callback (the VMM must bind
        // CALL again), the kick eventfd stays bound.
        for vq in vrings.indices {
            var ring = vrings[vq]
            ring.ready = false
            if !mgmtdev.driver.keepsRingStateAcrossReset {
                (ring.desc, ring.driver, ring.device, ring.base) = (0, 0, 0, 0)
            }
            if let call = ring.call { eventFDEffects.close.append(call) }
            ring.call = nil
            vrings[vq] = ring
        }
        if cleanMap && mapOperation == .setMap {
            for asid in 0..<addressSpaceCount { restoreDefaultMapping(asid: asid) }
        }
    }

    // MARK: Groups

    /// VHOST_VDPA_SET_GROUP_ASID: ENOBUFS group ≥ nvqs (R22); EINVAL group ≥ ngroups or
    /// asid ≥ nas (R25, 2026); EOPNOTSUPP without the op.
    public mutating func setGroupASID(group: GroupIndex, asid: ASID) throws(VDPAError) {
        _ = try checkVirtqueue(group.rawValue, what: "group")
        guard group.rawValue < UInt64(groupCount) else {
            throw VDPAError(.EINVAL, "group \(group) is not below ngroups \(groupCount) of \(name) (R25)")
        }
        let a = try checkASID(asid, iotlb: false)
        guard mgmtdev.hasSetGroupASID else {
            throw VDPAError(.EOPNOTSUPP, "\(mgmtdev.name) has no set_group_asid op (R25)")
        }
        groupASID[Int(group.rawValue)] = a
    }

    /// VHOST_VDPA_GET_VRING_GROUP (R23).
    public func vringGroup(_ vq: VirtqueueIndex) throws(VDPAError) -> GroupIndex {
        GroupIndex(UInt64(group(ofVirtqueue: try checkVirtqueue(vq.rawValue))))
    }

    /// VHOST_VDPA_GET_VRING_DESC_GROUP (R24): needs the parent op, not DESC_ASID acked.
    public func vringDescriptorGroup(_ vq: VirtqueueIndex) throws(VDPAError) -> GroupIndex {
        let index = try checkVirtqueue(vq.rawValue)
        guard let g = descriptorGroup(ofVirtqueue: index) else {
            throw VDPAError(.EOPNOTSUPP, "\(describedParent) has no get_vq_desc_group op (R24)")
        }
        return GroupIndex(UInt64(g))
    }

    // MARK: Vrings

    /// SET_VRING_NUM / SET_VRING_ADDR / SET_VRING_BASE / SET_VRING_ENABLE in one call; fields left nil keep
    /// their value.  Everything is checked before anything changes, in the kernel's order: the index
    /// (ENOBUFS, R44), num (R58), the addresses' alignment (R59), base ≤ 0xFFFF (R60), then on a 6.8
    /// parent no address or base while DRIVER_OK is set and the device is not suspended (R59, R60;
    /// a legacy device follows 6.7 and accepts them, edge #63), then the parent's own refusals: an address or a base
    /// for a queue it does not have under the negotiated features, a base while its hardware queue runs.
    public mutating func setVring(
        _ vq: VirtqueueIndex, num: UInt64?, desc: UInt64?, driver: UInt64?, device: UInt64?,
        base: UInt64? = nil, ready: Bool?, addressFlags: UInt64? = nil, log: UInt64? = nil
    ) throws(VDPAError) {
        let index = try checkVirtqueue(vq.rawValue)
        if let num {
            guard num > 0, num <= 0xFFFF, num & (num - 1) == 0 else {
                throw VDPAError(.EINVAL, "vring size \(num) of vq \(vq) is not a power of two in 1…32768 (R58)")
            }
        }
        // SET_VRING_ADDR's flags: only bit 0 (LOG, accepted and ignored) exists (R59, edge #61).
        if let addressFlags, addressFlags & ~1 != 0 {
            throw VDPAError(.EOPNOTSUPP, "vring address flags \(hex(addressFlags)) of vq \(vq): only bit 0 (LOG) exists (R59)")
        }
        if let log, log % 4 != 0 {
            throw VDPAError(.EINVAL, "the log address \(hex(log)) of vq \(vq) is not 4-byte aligned, LOG or not (R59)")
        }
        if let driver, driver % 2 != 0 {
            throw VDPAError(.EINVAL, "the driver area (avail ring) \(hex(driver)) of vq \(vq) is not 2-byte aligned (R59)")
        }
        if let device, device % 4 != 0 {
            throw VDPAError(.EINVAL, "the device area (used ring) \(hex(device)) of vq \(vq) is not 4-byte aligned (R59)")
        }
        if let base, base > 0xFFFF {
            throw VDPAError(.EINVAL, "base \(base) of vq \(vq) does not fit a split ring's 16-bit index (R60)")
        }
        let addressing = desc != nil || driver != nil || device != nil || base != nil
        if addressing && kernel.refusesRingChangesWhileRunning && status & VirtioStatus.driverOK != 0 && !suspended {
            throw VDPAError(
                .EINVAL,
                "vq \(vq) of \(name): ring addresses and base cannot change while DRIVER_OK is set and the device runs; suspend first (R59, R60, 6.8+)"
            )
        }
        let parentHasQueue = hasQueue(index)
        if addressing && !parentHasQueue { throw noQueue(vq) }
        if base != nil && mgmtdev.driver.refusesBaseWhileQueueRuns && hardwareQueueRuns(index) {
            throw VDPAError(
                .EINVAL,
                "vq \(vq) of \(name): \(mgmtdev.name) cannot modify the available index of a running hardware queue; disable the vq or suspend the device first (R60)"
            )
        }
        var ring = vrings[index]
        if let num { ring.num = UInt32(num) }
        if let desc { ring.desc = desc }
        if let driver { ring.driver = driver }
        if let device { ring.device = device }
        if let base { ring.base = UInt16(base) }
        if let ready, parentHasQueue {  // a queue the parent does not have stays not ready, and the call returns 0 (R62)
            if ready && !ring.ready { enabledRings[index].enable(ring) }  // 0→1: vdpa_sim builds the ring again (R62)
            ring.ready = ready
        }
        vrings[index] = ring
    }

    /// The size and areas the device walks on `vq` (`get_vring`'s `in_use`), nil while the vq is not ready:
    /// vdpa_sim's as they were at its last 0→1 enable (R62: a NUM or ADDR since waits for the next one), a parent's
    /// that modifies a ring in use (mlx5) as they are now.
    public func ringInUse(_ vq: Int) -> EnabledRing? {
        guard vrings[vq].ready else { return nil }
        var ring = enabledRings[vq]
        if mgmtdev.driver.modifiesRingInUse { ring.layout = vrings[vq].layout }
        return ring
    }

    /// Whether `vq` is a data queue a hardware parent has running: created at DRIVER_OK (it had a size), enabled,
    /// not suspended — mlx5's RDY state (a disable or a SUSPEND moves it to SUSPEND, a reset destroys it).
    func hardwareQueueRuns(_ vq: Int) -> Bool {
        status & VirtioStatus.driverOK != 0 && !suspended && vrings[vq].ready && (vrings[vq].num ?? 0) > 0
            && vq != controlQueue
    }

    /// A vq's state as vdpad keeps it (the index checked, ENOBUFS: R44).
    public func vring(_ vq: VirtqueueIndex) throws(VDPAError) -> Vring { vrings[try checkVirtqueue(vq.rawValue)] }

    /// GET_VRING_BASE and the rest of a vq's state (R61: the last avail index; 0 after a reset on vdpa_sim, the saved
    /// index on mlx5): after the index, the parent's get_vq_state, EINVAL for a queue it does not have under the
    /// negotiated features (mlx5's CVQ before CTRL_VQ).
    public func vringState(_ vq: VirtqueueIndex) throws(VDPAError) -> Vring {
        let ring = try vring(vq)
        guard hasQueue(Int(vq.rawValue)) else { throw noQueue(vq) }
        return ring
    }

    /// The parent's refusal of a vq it does not have under the negotiated features (`ParentDriver.hasQueue`).
    func noQueue(_ vq: VirtqueueIndex) -> VDPAError {
        VDPAError(
            .EINVAL,
            "vq \(vq) of \(name): \(mgmtdev.name) has no such queue under the driver features negotiated (\(hex(driverFeatures))); set the features first (R59, R60, R61)"
        )
    }

    /// SET_VRING_KICK (R63): `nil` unbinds; the eventfd it replaces is closed.
    public mutating func setVringKick(_ vq: VirtqueueIndex, _ eventfd: EventFD?) throws(VDPAError) {
        let index = try checkVirtqueue(vq.rawValue)
        if let old = vrings[index].kick { eventFDEffects.close.append(old) }
        vrings[index].kick = eventfd
        eventFDEffects.kicksChanged = true
    }

    /// SET_VRING_CALL (R64): `nil` unbinds; the eventfd it replaces is closed.  A reset drops it (R69).
    public mutating func setVringCall(_ vq: VirtqueueIndex, _ eventfd: EventFD?) throws(VDPAError) {
        let index = try checkVirtqueue(vq.rawValue)
        if let old = vrings[index].call { eventFDEffects.close.append(old) }
        vrings[index].call = eventfd
    }

    // MARK: Suspend and resume

    /// VHOST_VDPA_SUSPEND: EOPNOTSUPP when the parent has no op (R29: the bit need not be acked).  From 6.9
    /// on, without DRIVER_OK it returns at once and marks nothing, even on a parent without the op (R66).
    public mutating func suspend() throws(VDPAError) {
        if kernel.suspendIsNoOpBeforeDriverOK && status & VirtioStatus.driverOK == 0 { return }
        guard mgmtdev.hasSuspendResume else { throw VDPAError(.EOPNOTSUPP, "\(mgmtdev.name) has no suspend op") }
        suspended = true
    }

    /// VHOST_VDPA_RESUME, gated as SUSPEND is (R66).
    public mutating func resume() throws(VDPAError) {
        if kernel.suspendIsNoOpBeforeDriverOK && status & VirtioStatus.driverOK == 0 { return }
        guard mgmtdev.hasSuspendResume else { throw VDPAError(.EOPNOTSUPP, "\(mgmtdev.name) has no resume op") }
        suspended = false
        eventFDEffects.resumed = true
    }

    /// VHOST_VDPA_GET_VRING_SIZE (R46): on 6.7 and 6.8 an unknown command (ENOTTY after the index check, R43);
    /// from 6.9 the parent's `get_vq_size`, which none of the parents vdpad models has (vdpa_sim has it only
    /// in its non-batch ops table, not the one vhost-vdpa gets by default) → EOPNOTSUPP.
    public func vringSize(_ vq: VirtqueueIndex) throws(VDPAError) -> Int {
        _ = try checkVirtqueue(vq.rawValue)
        guard kernel.hasGetVringSize else {
            throw VDPAError(.ENOTTY, "GET_VRING_SIZE does not exist in Linux \(kernel.rawValue) (R46: it arrived in 6.9)")
        }
        throw VDPAError(.EOPNOTSUPP, "\(mgmtdev.name) has no get_vq_size op (R46)")
    }
}
