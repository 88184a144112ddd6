// VDPADevice+Config.swift — config space (VHOST_VDPA_GET_CONFIG /
// SET_CONFIG, R47–R52) and the link state behind the net config's
// status field.

extension VDPADevice {
    /// R47: len 0, off > size, or len > size − off is EINVAL (the kernel's internal E2BIG never
    /// reaches userspace).
    func checkConfigRange(offset: UInt64, length: UInt64) throws(VDPAError) -> Range<Int> {
        let size = UInt64(configSize)
        guard length > 0 else { throw VDPAError(.EINVAL, "config access of length 0 on \(name) (R47)") }
        guard offset <= size else {
            throw VDPAError(.EINVAL, "config offset \(offset) is past the \(size)-byte config space of \(name) (R47)")
        }
        guard length <= size - offset else {
            throw VDPAError(.EINVAL, "config bytes [\(offset), \(offset + length)) run past the \(size)-byte config space of \(name) (R47)")
        }
        return Int(offset)..<Int(offset + length)
    }

    /// The whole config space as a read sees it now: a net device's stored bytes with the status field
    /// regenerated from the link (R51, edge #47); a block device's bytes rebuilt (R52).
    public var configBytes: [UInt8] { mgmtdev.driver.configRead(stored: storedConfig, linkUp: linkUp) }

    /// A net device's MAC as a config read returns it (its first six bytes, stored as written: only the status
    /// field is regenerated), without making the whole config space: what a data-path run filters on.
    public var configMAC: ArraySlice<UInt8> { storedConfig.prefix(6) }

    /// VHOST_VDPA_GET_CONFIG (R47, R48).  A read before SET_FEATURES changes nothing: the kernel's implicit
    /// set_features(0) is refused by every parent modelled here (no ACCESS_PLATFORM) and ignored (edge #50).
    public func readConfig(offset: UInt64, length: UInt64) throws(VDPAError) -> [UInt8] {
        Array(configBytes[try checkConfigRange(offset: offset, length: length)])
    }

    /// VHOST_VDPA_SET_CONFIG (R49): vdpa_sim_net keeps every byte written (mac, mtu, … across resets;
    /// status is regenerated on the next read); vdpa_sim_blk and mlx5 accept and drop the write.
    public mutating func writeConfig(offset: UInt64, data: [UInt8]) throws(VDPAError) {
        let range = try checkConfigRange(offset: offset, length: UInt64(data.count))
        guard mgmtdev.driver.keepsConfigWrites else { return }
        storedConfig.replaceSubrange(range, with: data)
    }

    /// The link state (`vdpa dev set … link`, vdpad's `set_link`): a change signals the config eventfd.
    /// - Throws: `EOPNOTSUPP` on a block device, which has no link.
    public mutating func setLink(up: Bool) throws(VDPAError) {
        guard hasLink else { throw VDPAError(.EOPNOTSUPP, "\(name) is a \(mgmtdev.name) device: it has no link") }
        guard up != linkUp else { return }
        linkUp = up
        if let configCall { eventFDEffects.signal.append(configCall) }
    }

    /// The VMM's store agent (vdpad's own, no kernel counterpart): a socket to a thread inside the VMM that
    /// stores a ring index as one aligned 16-bit store (docs/protocol.md §5.6).  `nil` unbinds; the old one
    /// is closed.  Kept until the session ends.
    public mutating func setStoreAgent(_ socket: EventFD?) {
        if let old = storeAgent { eventFDEffects.close.append(old) }
        storeAgent = socket
    }

    /// VHOST_VDPA_SET_CONFIG_CALL (R65): `nil` unbinds.  The previous eventfd is dropped first, as the
    /// kernel drops it before checking the new one (edge #71: a failing call leaves none).
    public mutating func setConfigCall(_ eventfd: EventFD?) {
        if let old = configCall { eventFDEffects.close.append(old) }
        configCall = eventfd
    }
}

extension VDPADevice {
    /// What the data path does with kicks on `vq` (the parent decides, Parents/); nil: nothing yet, or a vq the
    /// parent does not have under the negotiated features (mlx5_vdpa_kick_vq ignores it).
    public func servedQueue(_ vq: Int) -> ServedQueue? {
        guard hasQueue(vq) else { return nil }
        return mgmtdev.driver.servedQueue(vq, isControlQueue: vq == controlQueue, driverFeatures: driverFeatures)
    }

    /// Whether the device has a link (`set_link`, get_device's `link`).
    public var hasLink: Bool { mgmtdev.driver.hasLink }

    /// Whether a kick on `vq` may be served now (docs/kernel-rules.md D1–D3): DRIVER_OK, the vq ready, the device not suspended.
    public func mayServe(_ vq: Int) -> Bool {
        status & VirtioStatus.driverOK != 0 && vq < vrings.count && vrings[vq].ready && !suspended
    }

    /// What a run of the control queue did: the MAC its commands wrote (into the config, whatever the parent's
    /// SET_CONFIG does), the counters, the ring's progress (GET_VRING_BASE's live index), one call per command.
    public mutating func recordControlQueue(vq: Int, run: QueueRunRecord, lastAvail: UInt16) {
        if let mac = run.newMAC { storedConfig = mgmtdev.driver.config(storedConfig, settingMAC: mac) }
        if let pairs = run.newQueuePairs { activeQueuePairs = pairs }
        stats.cvqRequests += run.requests
        stats.cvqSuccesses += run.successes
        stats.cvqErrors += run.errors
        guard vq < vrings.count else { return }
        queueStats[vq].receivedDesc += run.requests
        queueStats[vq].completedDesc += run.completed
        queueStats[vq].bytes += run.bytes
        queueStats[vq].errors += run.errors
        vrings[vq].base = lastAvail
        if run.calls > 0, let call = vrings[vq].call { eventFDEffects.signal += Array(repeating: call, count: run.calls) }
    }

    /// What a run of a data queue did: its counters, the ring's progress, its calls (no config, no CVQ stats).
    public mutating func recordQueueRun(vq: Int, run: QueueRunRecord, lastAvail: UInt16) {
        guard vq < vrings.count else { return }
        queueStats[vq].receivedDesc += run.requests
        queueStats[vq].completedDesc += run.completed
        queueStats[vq].bytes += run.bytes
        queueStats[vq].errors += run.errors
        queueStats[vq].drops += run.drops
        vrings[vq].base = lastAvail
        if run.calls > 0, let call = vrings[vq].call { eventFDEffects.signal.append(call) }  // one call per batch
    }

    /// How a run (of one queue, or of a net pair) reached the owner's memory: every used-idx store not made
    /// atomically was a copy (`completed` counts them all).
    public mutating func recordMemory(_ memory: MemoryAccessCounts, completed: Int) {
        stats.atomicIndexStores += memory.atomicIndexStores
        stats.copiedIndexStores += max(0, completed - memory.atomicIndexStores)
        stats.sharedAccesses += memory.sharedAccesses
        stats.processVMAccesses += memory.processVMAccesses
    }

    // MARK: Shared memory

    /// share_memory: the owner's [region.start, region.end) is now reachable in vdpad (the caller checked
    /// that the file backs those addresses and mapped it).  EEXIST for an overlap, EINVAL for an empty range;
    /// a refusal is counted.
    public mutating func shareMemory(_ region: SharedRegion) throws(VDPAError) {
        do throws(VDPAError) {
            try sharedMemory.insert(region)
        } catch {
            stats.sharesRefused += 1
            throw error
        }
    }

    /// A share_memory refused before it reached the table (the file does not back the addresses claimed).
    public mutating func countRefusedShare() { stats.sharesRefused += 1 }

    /// unshare_memory: the owner unmapped or remapped [start, start+size); every region that meets it goes
    /// (the data path falls back to process_vm_readv/writev there).  Returns how many went.
    public mutating func unshareMemory(start: UInt64, size: UInt64) -> Int {
        let removed = sharedMemory.remove(overlapping: start, size: size)
        eventFDEffects.close += removed.compactMap(\.file)
        stats.unshares += removed.count
        return removed.count
    }
}
