// SessionJournal.swift — a device's session as records a journal can keep
// (docs/restart.md): what a restarted daemon needs to give the VMM back its
// session exactly.  Two kinds, so that `map` stays cheap:
//
// * `SessionOp`: the operations that change the IOTLB tables (the session
//   tables, the device mappings, the open batch).  The device notes each one
//   it carries out while `journaling` is on; replaying them in order on the
//   same device rebuilds the same tables, because each is deterministic given
//   the tables and the control state before it.
// * `SessionImage`: everything else a session holds (owner, features, status,
//   groups, vrings and their eventfds, config, link …), small, taken whole
//   after a control operation changed it.  Counters are not in it: they count
//   what this process did.
//
// Pure: eventfds are written as tokens a caller chooses (the daemon's names in
// the service manager's file descriptor store) and read back through a lookup.

/// An operation on a device's IOTLB tables, as the device carried it out.
public enum SessionOp: Equatable, Sendable {
    case open(Owner)
    case release
    case reset
    case map(asid: UInt64, iova: UInt64, size: UInt64, address: UInt64, permission: UInt8)
    case unmap(asid: UInt64, iova: UInt64, size: UInt64)
    case batchBegin(asid: UInt64)
    case batchEnd(asid: UInt64)
    case resetMap(asid: UInt64)
    /// What a compacted journal writes instead of the history: an ASID's session table (nil: no address space),
    /// its device mapping, and the open batch, set as they were.
    case setTable(asid: Int, entries: [IOTLBEntry]?)
    case setMapping(asid: Int, MappingImage)
    case setBatch(asid: Int?)
}

/// How a device mapping is held, as a journal writes it.
public enum MappingImage: Equatable, Sendable {
    case passthrough, dmaMR, committed, platform
    case snapshot([IOTLBEntry])
}

/// The control state of a session: all of it but the IOTLB tables and the counters.
public struct SessionImage: Equatable, Sendable {
    public var owner: Owner?
    public var status: UInt8 = 0
    public var driverFeatures: UInt64 = 0
    public var ackedBackendFeatures: UInt64 = 0
    public var groupASID: [Int] = []
    public var vrings: [Vring] = []
    public var suspended = false
    public var storedConfig: [UInt8] = []
    public var activeQueuePairs = 1
    public var linkUp = true
    public var configCall: EventFD?
    public var storeAgent: EventFD?
    /// The shared regions with the file each maps (a restart maps them again).
    public var sharedFiles: [SharedFile] = []
    /// Per ready vq whose ring was built at its last enable from other settings than it has now (vdpa_sim keeps
    /// that ring till the next enable, R62): the size and areas of that ring, its generation 0 (the data path's
    /// count, not the session's).  A ready vq not here walks its settings.
    public var ringsAtEnable: [Int: EnabledRing] = [:]
    /// The features of the device's last negotiation, in this session or an earlier one (nil: none since the device
    /// was added): how a net device names its queues while no features are set (mlx5's control queue moves with MQ).
    public var lastNegotiatedFeatures: UInt64?

    public init() {}

    /// The descriptors the image names — eventfds, the store agent's socket, shared memory's files (each must
    /// outlive the process for the image to be restored).
    public var eventFDs: [EventFD] {
        vrings.flatMap { [$0.kick, $0.call] }.compactMap { $0 } + [configCall, storeAgent].compactMap { $0 } + sharedFiles.map(\.file)
    }
}

/// A shared region as a journal keeps it: the owner's [start, start+size) is `file` from `offset` on.
public struct SharedFile: Equatable, Sendable {
    public var start: UInt64, size: UInt64, offset: UInt64
    public var file: EventFD
    public init(start: UInt64, size: UInt64, offset: UInt64, file: EventFD) {
        (self.start, self.size, self.offset, self.file) = (start, size, offset, file)
    }
}

extension VDPADevice {
    /// The session's control state as it is now.
    public var sessionImage: SessionImage {
        var image = SessionImage()
        image.owner = owner
        image.status = status
        image.driverFeatures = driverFeatures
        image.ackedBackendFeatures = ackedBackendFeatures.rawValue
        image.groupASID = groupASID
        image.vrings = vrings
        image.suspended = suspended
        image.storedConfig = storedConfig
        image.activeQueuePairs = activeQueuePairs
        image.linkUp = linkUp
        image.configCall = configCall
        image.storeAgent = storeAgent
        image.sharedFiles = sharedMemory.regions.compactMap { r in
            r.file.map { SharedFile(start: r.start, size: r.size, offset: r.offset, file: $0) }
        }
        for (vq, v) in vrings.enumerated() where v.ready {
            var ring = enabledRings[vq]
            ring.generation = 0
            if ring.layout != v.layout { image.ringsAtEnable[vq] = ring }
        }
        image.lastNegotiatedFeatures = lastNegotiatedFeatures
        return image
    }

    /// Puts the control state of `image` in place (the tables are the ops' business).  EINVAL when the image
    /// does not fit this device (another kind or size under the same name): nothing changes then.
    public mutating func restore(_ image: SessionImage) throws(VDPAError) {
        guard image.vrings.count == virtqueueCount, image.groupASID.count == groupCount,
            image.groupASID.allSatisfy({ $0 >= 0 && $0 < addressSpaceCount }),
            image.storedConfig.count == storedConfig.count || storedConfig.isEmpty
        else {
            throw VDPAError(.EINVAL, "the journaled session does not fit \(name) (\(mgmtdev.name), \(virtqueueCount) vqs)")
        }
        owner = image.owner
        status = image.status
        driverFeatures = image.driverFeatures
        ackedBackendFeatures = BackendFeatures(rawValue: image.ackedBackendFeatures)
        groupASID = image.groupASID
        vrings = image.vrings
        // A ready vq walks the ring of its last enable: its settings now, unless the image says they changed since.
        for vq in vrings.indices where vrings[vq].ready {
            enabledRings[vq].enable(vrings[vq])
            if let r = image.ringsAtEnable[vq] { enabledRings[vq].layout = r.layout }
        }
        suspended = image.suspended
        if !storedConfig.isEmpty { storedConfig = image.storedConfig }
        activeQueuePairs = image.activeQueuePairs
        linkUp = image.linkUp
        configCall = image.configCall
        storeAgent = image.storeAgent
        lastNegotiatedFeatures = image.lastNegotiatedFeatures
        // Mappings are I/O: the daemon makes them again (`takeSharedFilesToMap`) once the replay is done.
        sharedFilesToMap = image.sharedFiles
    }

    /// The shared regions the restored session had, each to map again from its file (then `shareMemory`) or to
    /// drop; asked once.
    public mutating func takeSharedFilesToMap() -> [SharedFile] {
        defer { sharedFilesToMap = [] }
        return sharedFilesToMap
    }

    /// Replays one journaled table operation.  It succeeded when it was journaled, on the same state; a
    /// throw means the journal does not describe this device, and the caller drops the session.
    public mutating func replay(_ op: SessionOp) throws(VDPAError) {
        switch op {
        case .open(let owner):
            self.owner = nil
            try open(by: owner)
        case .release: release()
        case .reset: reset()
        case .map(let asid, let iova, let size, let address, let permission):
            try map(asid: ASID(asid), iova: iova, size: size, address: address, permission: Permission(rawValue: permission))
        case .unmap(let asid, let iova, let size): _ = try unmap(asid: ASID(asid), iova: iova, size: size)
        case .batchBegin(let asid): try batchBegin(asid: ASID(asid))
        case .batchEnd(let asid): try batchEnd(asid: ASID(asid))
        case .resetMap(let asid): _ = try resetMap(asid: ASID(asid))
        case .setTable(let asid, let entries):
            guard asid < addressSpaceCount else { throw VDPAError(.EINVAL, "journaled ASID \(asid) is not below nas") }
            sessionTables[asid] = entries.map { IntervalTree($0) }
        case .setMapping(let asid, let image):
            guard asid < addressSpaceCount else { throw VDPAError(.EINVAL, "journaled ASID \(asid) is not below nas") }
            mappingStates[asid] =
                switch image {
                case .passthrough: .passthrough
                case .dmaMR: .dmaMR
                case .committed: .committed
                case .platform: .platform
                case .snapshot(let entries): .snapshot(IntervalTree(entries))
                }
        case .setBatch(let asid):
            guard asid.map({ $0 < addressSpaceCount }) ?? true else { throw VDPAError(.EINVAL, "journaled batch ASID is not below nas") }
            batchASID = asid
        }
        // A replay signals and closes nothing: those eventfds were the old process's business.
        eventFDEffects = EventFDEffects()
    }

    /// The operations that set the tables as they are now, without their history (a compacted journal).
    public var tableImage: [SessionOp] {
        var ops: [SessionOp] = []
        for asid in 0..<addressSpaceCount {
            ops.append(.setTable(asid: asid, entries: sessionTables[asid]?.entries()))
            let mapping: MappingImage =
                switch mappingStates[asid] {
                case .passthrough: .passthrough
                case .dmaMR: .dmaMR
                case .committed: .committed
                case .platform: .platform
                case .snapshot(let table): .snapshot(table.entries())
                }
            ops.append(.setMapping(asid: asid, mapping))
        }
        ops.append(.setBatch(asid: batchASID))
        return ops
    }

    /// A restarted daemon's first look: the data path reads the kick bindings and the rings again, and every ready
    /// queue's call eventfd is signalled once — the process that died may have completed chains and not yet
    /// signalled them (a driver takes a spurious interrupt in its stride; a lost one stalls it).
    public mutating func resumeAfterRestart() {
        eventFDEffects.kicksChanged = true
        eventFDEffects.resumed = true
        for ring in vrings where ring.ready { if let call = ring.call { eventFDEffects.signal.append(call) } }
    }

    /// Turns journaling of table operations on or off (off: the ops pending are dropped).
    public mutating func setJournaling(_ on: Bool) {
        journaling = on
        if !on { journalOps.removeAll() }
    }

    /// The table operations carried out since the last call, in order.
    public mutating func takeJournalOps() -> [SessionOp] {
        defer { journalOps.removeAll(keepingCapacity: true) }
        return journalOps
    }

    public var hasJournalOps: Bool { !journalOps.isEmpty }

    /// Hands the table operations carried out since the last call to `body` (which must not keep the array) and
    /// forgets them, keeping the buffer: no allocation per map.
    public mutating func withJournalOps(_ body: ([SessionOp]) -> Void) {
        body(journalOps)
        journalOps.removeAll(keepingCapacity: true)
    }

    @inline(__always)
    mutating func journal(_ op: @autoclosure () -> SessionOp) {
        if journaling { journalOps.append(op()) }
    }
}

// MARK: Encoding

/// Little-endian bytes out.  Every `map` writes a record through one on the daemon's hot path, so a field is one
/// store into room already there — inlined into the encoders of every module — not an array append (which cost
/// 30–70 instructions a field, ~900 a map's record).  A value: a copy writes to bytes of its own.
public struct JournalWriter {
    @usableFromInline var buffer: JournalBuffer?
    @usableFromInline var written = 0
    public init() {}

    /// Bytes written.
    public var count: Int { written }

    /// A copy of the bytes written (for a cold path or a test; the daemon's appends use `withBytes`).
    public var bytes: [UInt8] { withBytes { Array($0) } }

    /// The bytes written, valid inside `body` only.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        body(UnsafeRawBufferPointer(start: buffer?.base, count: written))
    }

    /// Where the next `n` bytes go, with room for them in a buffer this writer alone holds.
    @inlinable @inline(__always)
    mutating func room(_ n: Int) -> UnsafeMutableRawPointer {
        if _slowPath(buffer == nil || written + n > buffer!.capacity || !isKnownUniquelyReferenced(&buffer)) { grow(n) }
        return buffer!.base + written
    }

    /// A buffer of its own with room for `n` more bytes (twice what is needed, at least 256).
    @usableFromInline mutating func grow(_ n: Int) {
        let capacity = Swift.max(256, 2 * (written + n), buffer?.capacity ?? 0)
        let fresh = JournalBuffer(capacity: capacity)
        if let buffer, written > 0 { fresh.base.copyMemory(from: buffer.base, byteCount: written) }
        buffer = fresh
    }

    @inlinable @inline(__always)
    mutating func put<T: FixedWidthInteger>(_ v: T) {
        room(MemoryLayout<T>.size).storeBytes(of: v.littleEndian, as: T.self)
        written += MemoryLayout<T>.size
    }

    mutating func put(_ raw: UnsafeRawBufferPointer) {
        guard let source = raw.baseAddress, raw.count > 0 else { return }
        room(raw.count).copyMemory(from: source, byteCount: raw.count)
        written += raw.count
    }

    @inlinable @inline(__always) public mutating func u8(_ v: UInt8) { put(v) }
    @inlinable @inline(__always) public mutating func u16(_ v: UInt16) { put(v) }
    @inlinable @inline(__always) public mutating func u32(_ v: UInt32) { put(v) }
    @inlinable @inline(__always) public mutating func u64(_ v: UInt64) { put(v) }
    @inlinable public mutating func bool(_ v: Bool) { u8(v ? 1 : 0) }
    public mutating func blob(_ v: [UInt8]) {
        u32(UInt32(v.count))
        v.withUnsafeBytes { put($0) }
    }
    public mutating func string(_ v: String) {
        var v = v
        v.withUTF8 { utf8 in
            u32(UInt32(utf8.count))
            put(UnsafeRawBufferPointer(utf8))
        }
    }
    public mutating func optionalU64(_ v: UInt64?) {
        bool(v != nil)
        if let v { u64(v) }
    }
    public mutating func reserveCapacity(_ n: Int) { if n > written { _ = room(n - written) } }
    /// Overwrites the u32 at `offset` (a length written before what it counts).
    public mutating func setU32(at offset: Int, _ v: UInt32) {
        precondition(offset >= 0 && offset + 4 <= written)
        (room(0) - written + offset).storeBytes(of: v.littleEndian, as: UInt32.self)
    }
    public mutating func removeAll() { written = 0 }
}

/// A journal writer's bytes.
@usableFromInline final class JournalBuffer {
    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline let capacity: Int

    @usableFromInline init(capacity: Int) {
        base = .allocate(byteCount: capacity, alignment: 8)
        self.capacity = capacity
    }

    deinit { base.deallocate() }
}

/// Little-endian bytes in; every read past the end throws (a torn or foreign record is refused, never guessed).
public struct JournalReader {
    public struct Truncated: Error { public init() {} }
    let bytes: UnsafeRawBufferPointer
    public private(set) var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public var isAtEnd: Bool { offset == bytes.count }

    mutating func take<T: FixedWidthInteger>(_: T.Type) throws(Truncated) -> T {
        let size = MemoryLayout<T>.size
        guard bytes.count - offset >= size else { throw Truncated() }
        defer { offset += size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
    public mutating func u8() throws(Truncated) -> UInt8 { try take(UInt8.self) }
    public mutating func u16() throws(Truncated) -> UInt16 { try take(UInt16.self) }
    public mutating func u32() throws(Truncated) -> UInt32 { try take(UInt32.self) }
    public mutating func u64() throws(Truncated) -> UInt64 { try take(UInt64.self) }
    public mutating func bool() throws(Truncated) -> Bool { try u8() != 0 }
    public mutating func blob() throws(Truncated) -> [UInt8] {
        let n = Int(try u32())
        guard bytes.count - offset >= n else { throw Truncated() }
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }
    public mutating func string() throws(Truncated) -> String { String(decoding: try blob(), as: UTF8.self) }
    public mutating func optionalU64() throws(Truncated) -> UInt64? { try bool() ? try u64() : nil }
}

extension SessionOp {
    public func encode(into w: inout JournalWriter) {
        switch self {
        case .open(let o):
            w.u8(1)
            w.u64(o.connection)
            w.u32(UInt32(bitPattern: o.pid))
            w.u32(o.uid)
        case .release: w.u8(2)
        case .reset: w.u8(3)
        case .map(let asid, let iova, let size, let address, let permission):
            w.u8(4)
            w.u64(asid)
            w.u64(iova)
            w.u64(size)
            w.u64(address)
            w.u8(permission)
        case .unmap(let asid, let iova, let size):
            w.u8(5)
            w.u64(asid)
            w.u64(iova)
            w.u64(size)
        case .batchBegin(let asid):
            w.u8(6)
            w.u64(asid)
        case .batchEnd(let asid):
            w.u8(7)
            w.u64(asid)
        case .resetMap(let asid):
            w.u8(8)
            w.u64(asid)
        case .setTable(let asid, let entries):
            w.u8(9)
            w.u32(UInt32(asid))
            w.bool(entries != nil)
            if let entries { Self.encode(entries, into: &w) }
        case .setMapping(let asid, let mapping):
            w.u8(10)
            w.u32(UInt32(asid))
            switch mapping {
            case .passthrough: w.u8(0)
            case .dmaMR: w.u8(1)
            case .committed: w.u8(2)
            case .platform: w.u8(3)
            case .snapshot(let entries):
                w.u8(4)
                Self.encode(entries, into: &w)
            }
        case .setBatch(let asid):
            w.u8(11)
            w.bool(asid != nil)
            w.u32(UInt32(asid ?? 0))
        }
    }

    static func encode(_ entries: [IOTLBEntry], into w: inout JournalWriter) {
        w.u32(UInt32(entries.count))
        w.reserveCapacity(w.count + entries.count * 25)
        for e in entries {
            w.u64(e.first)
            w.u64(e.last)
            w.u64(e.address)
            w.u8(e.permission.rawValue)
        }
    }

    static func decodeEntries(_ r: inout JournalReader) throws(JournalReader.Truncated) -> [IOTLBEntry] {
        let n = Int(try r.u32())
        guard n <= (r.bytes.count - r.offset) / 25 else { throw JournalReader.Truncated() }
        var entries: [IOTLBEntry] = []
        entries.reserveCapacity(n)
        for _ in 0..<n {
            entries.append(IOTLBEntry(first: try r.u64(), last: try r.u64(), address: try r.u64(), permission: Permission(rawValue: try r.u8())))
        }
        return entries
    }

    public init(from r: inout JournalReader) throws(JournalReader.Truncated) {
        switch try r.u8() {
        case 1: self = .open(Owner(connection: try r.u64(), pid: Int32(bitPattern: try r.u32()), uid: try r.u32()))
        case 2: self = .release
        case 3: self = .reset
        case 4: self = .map(asid: try r.u64(), iova: try r.u64(), size: try r.u64(), address: try r.u64(), permission: try r.u8())
        case 5: self = .unmap(asid: try r.u64(), iova: try r.u64(), size: try r.u64())
        case 6: self = .batchBegin(asid: try r.u64())
        case 7: self = .batchEnd(asid: try r.u64())
        case 8: self = .resetMap(asid: try r.u64())
        case 9:
            let asid = Int(try r.u32())
            self = .setTable(asid: asid, entries: try r.bool() ? try Self.decodeEntries(&r) : nil)
        case 10:
            let asid = Int(try r.u32())
            let mapping: MappingImage
            switch try r.u8() {
            case 0: mapping = .passthrough
            case 1: mapping = .dmaMR
            case 2: mapping = .committed
            case 3: mapping = .platform
            case 4: mapping = .snapshot(try Self.decodeEntries(&r))
            default: throw JournalReader.Truncated()
            }
            self = .setMapping(asid: asid, mapping)
        case 11:
            let open = try r.bool()
            let asid = Int(try r.u32())
            self = .setBatch(asid: open ? asid : nil)
        default: throw JournalReader.Truncated()
        }
    }
}

extension SessionImage {
    /// `token` names each eventfd (0 is never a token: it stands for none).
    public func encode(into w: inout JournalWriter, token: (EventFD) -> UInt32) {
        func fd(_ e: EventFD?) { w.u32(e.map(token) ?? 0) }
        w.bool(owner != nil)
        if let owner {
            w.u64(owner.connection)
            w.u32(UInt32(bitPattern: owner.pid))
            w.u32(owner.uid)
        }
        w.u8(status)
        w.u64(driverFeatures)
        w.u64(ackedBackendFeatures)
        w.u32(UInt32(groupASID.count))
        for g in groupASID { w.u32(UInt32(g)) }
        w.u32(UInt32(vrings.count))
        for v in vrings {
            w.optionalU64(v.num.map(UInt64.init))
            w.optionalU64(v.desc)
            w.optionalU64(v.driver)
            w.optionalU64(v.device)
            w.bool(v.ready)
            w.u16(v.base)
            fd(v.kick)
            fd(v.call)
        }
        w.bool(suspended)
        w.blob(storedConfig)
        w.u32(UInt32(activeQueuePairs))
        w.bool(linkUp)
        fd(configCall)
        fd(storeAgent)
        // Trailing sections, each written only when it or a later one has something: a journal written before a
        // section was kept still reads (its image ends before it), and an image with none costs nothing more.
        let sections = lastNegotiatedFeatures != nil ? 3 : !ringsAtEnable.isEmpty ? 2 : !sharedFiles.isEmpty ? 1 : 0
        if sections >= 1 {
            w.u32(UInt32(sharedFiles.count))
            for f in sharedFiles {
                w.u64(f.start)
                w.u64(f.size)
                w.u64(f.offset)
                fd(f.file)
            }
        }
        if sections >= 2 {
            w.u32(UInt32(ringsAtEnable.count))
            for (vq, ring) in ringsAtEnable.sorted(by: { $0.key < $1.key }) {
                w.u32(UInt32(vq))
                w.optionalU64(ring.num.map(UInt64.init))
                w.optionalU64(ring.desc)
                w.optionalU64(ring.driver)
                w.optionalU64(ring.device)
            }
        }
        if sections >= 3 { w.optionalU64(lastNegotiatedFeatures) }
    }

    /// `eventFD` resolves a token; nil leaves the binding empty (the fd did not survive: the caller logs it).
    public init(from r: inout JournalReader, eventFD: (UInt32) -> EventFD?) throws(JournalReader.Truncated) {
        func fd() throws(JournalReader.Truncated) -> EventFD? {
            let t = try r.u32()
            return t == 0 ? nil : eventFD(t)
        }
        self.init()
        if try r.bool() { owner = Owner(connection: try r.u64(), pid: Int32(bitPattern: try r.u32()), uid: try r.u32()) }
        status = try r.u8()
        driverFeatures = try r.u64()
        ackedBackendFeatures = try r.u64()
        let groups = Int(try r.u32())
        guard groups <= 1 << 16 else { throw JournalReader.Truncated() }
        for _ in 0..<groups { groupASID.append(Int(try r.u32())) }
        let rings = Int(try r.u32())
        guard rings <= 1 << 16 else { throw JournalReader.Truncated() }
        for _ in 0..<rings {
            var v = Vring()
            v.num = try r.optionalU64().map { UInt32(truncatingIfNeeded: $0) }
            v.desc = try r.optionalU64()
            v.driver = try r.optionalU64()
            v.device = try r.optionalU64()
            v.ready = try r.bool()
            v.base = try r.u16()
            v.kick = try fd()
            v.call = try fd()
            vrings.append(v)
        }
        suspended = try r.bool()
        storedConfig = try r.blob()
        activeQueuePairs = Int(try r.u32())
        linkUp = try r.bool()
        configCall = try fd()
        storeAgent = try fd()
        guard !r.isAtEnd else { return }
        let files = Int(try r.u32())
        guard files <= 1 << 16 else { throw JournalReader.Truncated() }
        for _ in 0..<files {
            let (start, size, offset) = (try r.u64(), try r.u64(), try r.u64())
            // A file that did not come back: the region is left out (the data path reaches it by process_vm).
            if let file = try fd() { sharedFiles.append(SharedFile(start: start, size: size, offset: offset, file: file)) }
        }
        guard !r.isAtEnd else { return }
        let changed = Int(try r.u32())
        guard changed <= 1 << 16 else { throw JournalReader.Truncated() }
        for _ in 0..<changed {
            let vq = Int(try r.u32())
            var ring = EnabledRing()
            ring.num = try r.optionalU64().map { UInt32(truncatingIfNeeded: $0) }
            (ring.desc, ring.driver, ring.device) = (try r.optionalU64(), try r.optionalU64(), try r.optionalU64())
            ringsAtEnable[vq] = ring
        }
        guard !r.isAtEnd else { return }
        lastNegotiatedFeatures = try r.optionalU64()
    }
}
