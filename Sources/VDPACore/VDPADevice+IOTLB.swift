// VDPADevice+IOTLB.swift — the IOTLB message path (UPDATE, INVALIDATE,
// BATCH_BEGIN/END) and `reset_map`, with the kernel's validation order and
// the point where the session table reaches the device (R14, R16, R20).
//
// Deliberate differences from the kernel (docs/protocol.md): errors keep their
// real errno (kernel_errno says EFAULT); an asid ≠ 0 without IOTLB_ASID acked
// is EINVAL instead of silently ASID 0; the batch gate leaves no empty table.

extension VDPADevice {
    /// docs/protocol.md: an asid other than 0 while IOTLB_ASID is not acked is EINVAL (the kernel uses ASID 0, edge #7).
    // The checks below are inlined: calling a function that throws VDPAError (a large type) copies
    // its error buffer even when nothing is thrown — three copies per map showed in callgrind.
    @inline(__always)
    func checkASIDNegotiated(_ asid: ASID) throws(VDPAError) {
        guard asid.rawValue == 0 || ackedBackendFeatures.contains(.iotlbASID) else {
            throw VDPAError(
                .EINVAL, "ASID \(asid) used on \(name) but IOTLB_ASID is not acked",
                details: [
                    ("note", .string("the kernel would silently use ASID 0 (R1, edge #7); ack IOTLB_ASID to use other ASIDs"))
                ])
        }
    }

    /// The batch gate (R7): while a batch is open only its ASID is accepted.
    @inline(__always)
    func checkBatchGate(_ asid: Int) throws(VDPAError) {
        if let open = batchASID, open != asid {
            throw .iotlb(.EINVAL, "a batch is open on ASID \(open) of \(name); ASID \(asid) must wait for batch_end (R7)")
        }
    }

    func describe(_ first: UInt64, _ last: UInt64) -> String { "[\(hex(first)), \(hex(last))]" }

    // MARK: UPDATE

    /// VHOST_IOTLB_UPDATE: map `[iova, iova+size−1]` → `address` in `asid`, all or nothing (R11, R13).
    public mutating func map(
        asid requestedASID: ASID = 0, iova: UInt64, size: UInt64, address: UInt64,
        permission: Permission
    ) throws(VDPAError) {
        try checkASIDNegotiated(requestedASID)
        guard size > 0 else { throw VDPAError(.EINVAL, "map of size 0 at \(hex(iova)) (R2)") }
        let asid = try checkASID(requestedASID, iotlb: true)
        try checkBatchGate(asid)
        let range = iovaRange
        guard iova <= UInt64.max - (size - 1) else {
            throw .iotlb(.EINVAL, "[\(hex(iova)), +\(hex(size))] wraps past 2^64 (R11)")
        }
        let last = iova + (size - 1)
        guard iova >= range.first, last <= range.last else {
            throw .iotlb(.EINVAL, "\(describe(iova, last)) is outside the IOVA range \(describe(range.first, range.last)) of \(name) (R11)")
        }
        func overlapError(_ hit: IOTLBEntry) -> VDPAError {
            .iotlb(.EEXIST, "\(describe(iova, last)) overlaps \(describe(hit.first, hit.last)) in ASID \(asid) of \(name) (R11)")
        }
        // The table is edited in place through `sessionTables[asid]!` (no local copy): a copy costs a
        // retain and a release per map, atomic operations that showed in profiles, and a shared tree
        // would be copied whole on insert.  Creating the table first leaves none behind a failing map:
        // a new, empty table can be neither full nor overlapped.
        if sessionTables[asid] == nil { sessionTables[asid] = IntervalTree() }
        let count = sessionTables[asid]!.count
        if maxEntriesPerASID > 0 && count >= maxEntriesPerASID {
            if let hit = sessionTables[asid]!.firstOverlapping(first: iova, last: last) { throw overlapError(hit) }  // EEXIST before ENOSPC
            throw .iotlb(.ENOSPC, "ASID \(asid) of \(name) already holds \(count) entries, the limit (max_iotlb_entries)")
        }
        // The insert finds an overlap on its way down and then changes nothing (R13), so one descent
        // both checks and inserts.
        if let hit = sessionTables[asid]!.insert(IOTLBEntry(first: iova, last: last, address: address, permission: permission)) {
            throw overlapError(hit)
        }
        stats.mapCalls += 1
        if batchASID == nil { commit(asid: asid) }
        journal(.map(asid: requestedASID.rawValue, iova: iova, size: size, address: address, permission: permission.rawValue))
    }

    // MARK: INVALIDATE

    /// VHOST_IOTLB_INVALIDATE: removes every entry intersecting the range, whole (R15–R17).  Size 0 is the
    /// kernel's too (R2, corrected): the range [iova, iova − 1] wraps, so it removes the entry that holds both
    /// iova − 1 and iova, if any — and for iova 0, where iova − 1 is 2^64 − 1, every entry of the ASID.
    /// - Returns: the number of entries removed.
    public mutating func unmap(asid requestedASID: ASID = 0, iova: UInt64, size: UInt64) throws(VDPAError) -> Int {
        try checkASIDNegotiated(requestedASID)
        let asid = try checkASID(requestedASID, iotlb: true)
        guard sessionTables[asid] != nil else {
            throw .iotlb(
                .EINVAL, "ASID \(asid) of \(name) has no address space: nothing was mapped or batch_begun since open or reset_map (R6, edge #16)")
        }
        try checkBatchGate(asid)
        let last = iova &+ (size &- 1)
        let removed: Int
        if last >= iova {
            removed = sessionTables[asid]!.removeOverlapping(first: iova, last: last)  // in place, as in map
        } else if let spanning = sessionTables[asid]!.translate(iova), spanning.first <= last {
            // R17: a wrapped range matches only an entry spanning both ends.
            removed = sessionTables[asid]!.removeOverlapping(first: spanning.first, last: spanning.first)
        } else {
            removed = 0
        }
        stats.unmapCalls += 1
        if batchASID == nil { commit(asid: asid) }  // R16: issued even when nothing was removed
        journal(.unmap(asid: requestedASID.rawValue, iova: iova, size: size))
        return removed
    }

    // MARK: Batching

    /// VHOST_IOTLB_BATCH_BEGIN (R18): creates the address space; repeating it on the same ASID is harmless.
    public mutating func batchBegin(asid requestedASID: ASID = 0) throws(VDPAError) {
        try checkASIDNegotiated(requestedASID)
        let asid = try checkASID(requestedASID, iotlb: true)
        try checkBatchGate(asid)
        if sessionTables[asid] == nil { sessionTables[asid] = IntervalTree() }
        if batchASID == nil, case .committed = mappingStates[asid] {
            // The device keeps translating with the last commit while the batch edits the table.
            mappingStates[asid] = .snapshot(sessionTables[asid]!)
        }
        batchASID = asid
        journal(.batchBegin(asid: requestedASID.rawValue))
    }

    /// VHOST_IOTLB_BATCH_END (R20): needs the address space; commits an open batch; no-op without one.
    public mutating func batchEnd(asid requestedASID: ASID = 0) throws(VDPAError) {
        try checkASIDNegotiated(requestedASID)
        let asid = try checkASID(requestedASID, iotlb: true)
        guard sessionTables[asid] != nil else {
            throw .iotlb(.EINVAL, "ASID \(asid) of \(name) has no address space; the batch stays open (R20, edge #23)")
        }
        try checkBatchGate(asid)
        journal(.batchEnd(asid: requestedASID.rawValue))
        guard batchASID != nil else { return }
        batchASID = nil
        commit(asid: asid)
    }

    // MARK: reset_map

    /// Address-space removal with `.reset_map` (R35, R36): drops the ASID's session table (ending a
    /// batch open on it) and restores the device default mapping.
    /// - Returns: how many session entries were removed, and the mapping now in place.
    public mutating func resetMap(asid requestedASID: ASID) throws(VDPAError) -> (removed: Int, mapping: DeviceMapping) {
        let asid = try checkASID(requestedASID, iotlb: false)
        guard mgmtdev.hasResetMap(legacy: legacy) else {
            throw VDPAError(.EOPNOTSUPP, "\(describedParent) has no reset_map op (R36)")
        }
        let removed = sessionTables[asid]?.count ?? 0
        sessionTables[asid] = nil
        if batchASID == asid { batchASID = nil }
        restoreDefaultMapping(asid: asid)
        journal(.resetMap(asid: requestedASID.rawValue))
        return (removed, deviceMapping(asid: asid))
    }

    // MARK: Reaching the device

    /// `.set_map(asid, table)`: the device now translates with the session table as it is.
    /// A platform IOMMU needs nothing: it already is the session table.
    mutating func commit(asid: Int) {
        guard mapOperation == .setMap else { return }
        if !mappingStates[asid].isCommitted { mappingStates[asid] = .committed }  // most maps: no write, no release
        stats.deviceCommits += 1
        stats.entriesCopied += sessionTables[asid]?.count ?? 0
    }

    mutating func restoreDefaultMapping(asid: Int) {
        let initial = mgmtdev.defaultMapping(asid: asid)
        if initial.isIdentity && deviceMapping(asid: asid) != initial { stats.defaultRestores += 1 }
        mappingStates[asid] = MappingState(initial)
    }

    /// What the device translates `asid` with.
    public func deviceMapping(asid: Int) -> DeviceMapping {
        switch mappingStates[asid] {
        case .passthrough: .passthrough
        case .dmaMR: .dmaMR
        case .snapshot(let table): .table(table)
        case .committed: .table(sessionTables[asid] ?? IntervalTree())
        case .platform: .platform
        }
    }

    /// A page of one ASID's entries in `[first, last]`, at most `limit` (dump_iotlb): the session's
    /// (what map/unmap built) or the device's (what it translates with).  EINVAL for a limit outside
    /// 1…65536, first above last, or an ASID not below nas (R6).
    public func dumpIOTLB(
        asid requestedASID: ASID, layer: IOTLBLayer, first: UInt64, last: UInt64,
        limit: UInt64
    ) throws(VDPAError) -> IOTLBDump {
        guard (1...65536).contains(limit) else { throw VDPAError(.EINVAL, "limit \(limit) is outside 1…65536") }
        guard first <= last else { throw VDPAError(.EINVAL, "first \(first) is above last \(last)") }
        let asid = try checkASID(requestedASID, iotlb: false)
        let table = layer == .session ? sessionTables[asid] : deviceTable(asid: asid)
        var dump = IOTLBDump(entries: [], next: nil, deviceMapping: deviceMapping(asid: asid), exists: sessionTables[asid] != nil)
        table?.forEachOverlapping(first: first, last: last) { e in
            guard dump.entries.count < Int(limit) else {
                dump.next = e.first
                return false
            }
            dump.entries.append(e)
            return true
        }
        return dump
    }

    /// The entries the device translates `asid` with: a committed table, or the platform's
    /// (the session table); nil for an identity mapping.
    public func deviceTable(asid: Int) -> IntervalTree? {
        switch deviceMapping(asid: asid) {
        case .passthrough, .dmaMR: nil
        case .table(let table): table
        case .platform: sessionTables[asid] ?? IntervalTree()
        }
    }
}

/// How a device mapping is held.  A commit makes the device's table equal to the session
/// table; instead of copying it (O(n) per unbatched map, as vdpa_sim does), the device is
/// marked `committed` and reads the session table until a batch opens, when it keeps a
/// copy-on-write snapshot.  The stats still count the entries the kernel would copy.
enum MappingState: Sendable {
    case passthrough
    case dmaMR
    case committed
    case snapshot(IntervalTree)
    case platform

    var isCommitted: Bool {
        if case .committed = self { true } else { false }
    }

    init(_ mapping: DeviceMapping) {
        switch mapping {
        case .passthrough: self = .passthrough
        case .dmaMR: self = .dmaMR
        case .table(let t): self = .snapshot(t)
        case .platform: self = .platform
        }
    }
}

/// One page of dump_iotlb.
public struct IOTLBDump: Equatable, Sendable {
    public var entries: [IOTLBEntry]
    /// Where the next page starts, when the range holds more than the limit.
    public var next: UInt64?
    public var deviceMapping: DeviceMapping
    /// Whether the session table exists (a set_map or a first map made it).
    public var exists: Bool
}
