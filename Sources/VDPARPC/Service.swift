// Service.swift — the device table, sessions, events and counters behind the
// method table.  No sockets here: a connection is an id plus a sink that
// receives notifications, so the whole protocol runs in-process in tests.
//
// Concurrency (DESIGN.md): each device is owned by its own lock and every
// operation on it runs holding that lock, so operations on one device are
// serial and different devices proceed in parallel; the table of devices is
// a small map behind a lock (Locked); calls from one connection arrive in
// order, and each call waits for its device, so replies keep request order.
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization
import VDPACore

/// Who is calling: from SO_PEERCRED, decided once per connection.
public struct Caller: Sendable {
    public var connection: UInt64
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    public var supplementaryGroups: [UInt32]
    public var isAdmin: Bool

    public init(connection: UInt64, pid: Int32, uid: UInt32, gid: UInt32, supplementaryGroups: [UInt32] = [],
                isAdmin: Bool) {
        self.connection = connection
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.supplementaryGroups = supplementaryGroups
        self.isAdmin = isAdmin
    }

    var owner: Owner { Owner(connection: connection, pid: pid, uid: uid) }
}

/// Where a connection's notifications go (the daemon writes them to the socket).
public protocol NotificationSink: AnyObject, Sendable {
    func send(_ notification: JSON)
}

/// A device and the lock that owns it.
///
/// Why a mutex and not a serial DispatchQueue (DESIGN.md says queue): every device operation is
/// synchronous — the caller waits for its answer — and on this kind of machine an uncontended
/// `queue.sync` costs about 225 ns against 12 ns for a pthread mutex (`vdpad-bench inproc`, README),
/// paid on every map.  The properties DESIGN.md asks of the queue hold: one operation at a time per
/// device, devices in parallel, and the watchdog's probe waits for each device like any caller.
final class DeviceSlot: @unchecked Sendable {
    private let state: Locked<VDPADevice>
    /// The data-path worker (DataPath.swift), started when a kick eventfd is first bound.  Only touched
    /// under the device's lock.
    private var worker: DataPathWorker?

    init(_ device: VDPADevice) { state = Locked(device) }

    deinit { worker?.stop() }

    /// Runs `body` on the device; the eventfds it asked to signal or close are handled before the lock
    /// is let go (a descriptor is never closed while another operation could still name it), and the data
    /// path hears of new kick bindings and of a resume.
    func sync<T>(_ body: (inout VDPADevice) throws(VDPAError) -> T) throws(RPCError) -> T {
        do throws(VDPAError) {
            return try state.withLock { (d: inout VDPADevice) throws(VDPAError) -> T in
                defer { settle(&d) }
                return try body(&d)
            }
        } catch {
            throw RPCError(error)
        }
    }

    /// Carries out what the last operation asked (called with the lock held).
    private func settle(_ d: inout VDPADevice) {
        let effects = d.takeEventFDEffects()
        EventFDs.carryOut(effects)
        guard effects.kicksChanged || effects.resumed else { return }
        if worker == nil && d.vrings.contains(where: { $0.kick != nil }) { worker = DataPathWorker(slot: self) }
        worker?.notify(rescan: effects.kicksChanged, resumed: effects.resumed)
    }

    /// For work that reports its own errors (a run of a batch).
    func modify(_ body: (inout VDPADevice) -> Void) { state.withLock(body) }

    func read<T>(_ body: (VDPADevice) -> T) -> T { state.withLock { body($0) } }

    /// Releases the session (§6) when `condition` holds; returns the device name if it did.
    func release(if condition: (VDPADevice) -> Bool) -> String? {
        state.withLock { device -> String? in
            guard condition(device) else { return nil }
            device.release()
            settle(&device)
            return device.name.rawValue
        }
    }
}

/// A device reached on behalf of a connection that must own it (nil: an admin, no check).
struct OwnedSlot {
    let slot: DeviceSlot
    let connection: UInt64?
    /// An IOTLB method: the kernel's write() says EFAULT for a non-owner (R5).
    var iotlb = false

    func sync<T>(_ body: (inout VDPADevice) throws(VDPAError) -> T) throws(RPCError) -> T {
        try slot.sync { (d: inout VDPADevice) throws(VDPAError) -> T in
            if let connection { try d.requireOwner(connection, iotlb: iotlb) }
            return try body(&d)
        }
    }

    func read<T>(_ body: (VDPADevice) -> T) -> T { slot.read(body) }
}

/// The events a connection can subscribe to (docs/protocol.md §5.4).
public enum EventType: String, CaseIterable, Sendable {
    case deviceAdded = "device_added", deviceRemoved = "device_removed", statusChanged = "status_changed"
    case ownerChanged = "owner_changed", sessionClosed = "session_closed"
}

/// What survives a restart: how a device was created.
public struct DeviceRecord: Equatable, Sendable {
    public var name: String
    public var mgmtdev: String
    public var attributes: DeviceAttributes

    public init(name: String, mgmtdev: String, attributes: DeviceAttributes) {
        self.name = name
        self.mgmtdev = mgmtdev
        self.attributes = attributes
    }
}

public struct ServiceLimits: Sendable {
    public var maxDevices = 1024
    public var maxIOTLBEntries = 1 << 21
    public var maxBatch = 4096
    public var eventBuffer = 4096

    public init() {}
}

public final class VDPAService: Sendable {
    let limits: ServiceLimits
    let devices = Locked<[String: DeviceSlot]>([:])
    /// Bumped on every change of `devices`, so a connection may keep the slot it used last (SlotCache).
    let deviceTableGeneration = Atomic<UInt64>(0)
    /// Serialises add/del with the persistence hook so the state file follows acknowledged order.
    let registryLock = Locked<Void>(())
    let events: EventLog
    let sinks = Locked<[UInt64: Sink]>([:])
    let requestCount = Atomic<Int>(0)
    let errorCount = Atomic<Int>(0)
    let openConnections = Atomic<Int>(0)
    let started = ContinuousClock.now
    let version: String
    let pid: Int32
    /// Called under the registry lock after every change of the device set, with the new set.
    /// Throwing refuses the change (e.g. the state file cannot be written).
    let persist: @Sendable ([DeviceRecord]) throws -> Void
    let logger: Logger

    struct Sink {
        let sink: any NotificationSink
        var subscribed: Set<EventType>?
    }

    /// Descriptors each connection passed (SCM_RIGHTS) that no request has taken yet, oldest first.
    let passedDescriptors = Locked<[UInt64: [Int32]]>([:])

    /// Whether plain map/unmap requests skip the JSON tree (FastPath.swift); tests turn it off to compare.
    let useFastPath: Bool

    public convenience init(limits: ServiceLimits = ServiceLimits(), version: String, pid: Int32,
                            logger: Logger = Logger(label: "vdpad.rpc", factory: { _ in SwiftLogNoOpLogHandler() }),
                            persist: @escaping @Sendable ([DeviceRecord]) throws -> Void = { _ in }) {
        self.init(limits: limits, version: version, pid: pid, logger: logger, persist: persist, useFastPath: true)
    }

    /// `useFastPath: false` answers every text through the general path: the reference that tests and
    /// the fuzzer compare the fast path with, byte for byte.
    public init(limits: ServiceLimits, version: String, pid: Int32, logger: Logger,
                persist: @escaping @Sendable ([DeviceRecord]) throws -> Void, useFastPath: Bool) {
        self.limits = limits
        self.logger = logger
        self.version = version
        self.pid = pid
        self.persist = persist
        self.useFastPath = useFastPath
        events = EventLog(capacity: limits.eventBuffer)
    }

    // MARK: Connections

    public func connectionOpened(_ connection: UInt64, sink: any NotificationSink) {
        sinks.withLock { $0[connection] = Sink(sink: sink, subscribed: nil) }
        openConnections.add(1, ordering: .relaxed)
    }

    /// Releases every device the connection owns (docs/protocol.md §6).
    public func connectionClosed(_ connection: UInt64) {
        sinks.withLock { _ = $0.removeValue(forKey: connection) }
        // Descriptors passed and never taken by a request are closed with the connection.
        for fd in passedDescriptors.withLock({ $0.removeValue(forKey: connection) }) ?? [] { EventFDs.close(fd) }
        openConnections.subtract(1, ordering: .relaxed)
        for slot in allSlots() {
            // Check and release in one hop, so nobody can open the device in between.
            let released = slot.release(if: { $0.owner?.connection == connection })
            guard let name = released else { continue }
            logger.info("session released on disconnect", metadata: ["device": "\(name)", "connection": "\(connection)"])
            emit(.ownerChanged, device: name, [("owner", .null), ("reason", .string("disconnect"))])
        }
    }

    // MARK: Descriptors passed with SCM_RIGHTS

    /// How many passed descriptors a connection may hold before requests take them.
    public static let maxPassedDescriptors = 64

    /// Queues descriptors received on `connection` (in arrival order: the n-th request that takes one takes
    /// the n-th passed).  Returns false, and closes them, when the queue would exceed `maxPassedDescriptors`:
    /// the caller then ends the connection.
    public func descriptorsReceived(_ fds: [Int32], on connection: UInt64) -> Bool {
        let accepted = passedDescriptors.withLock { table -> Bool in
            guard (table[connection]?.count ?? 0) + fds.count <= Self.maxPassedDescriptors else { return false }
            table[connection, default: []] += fds
            return true
        }
        if !accepted { fds.forEach(EventFDs.close) }
        return accepted
    }

    /// The oldest descriptor `connection` passed and no request has taken yet.
    func takeDescriptor(_ connection: UInt64) -> Int32? {
        passedDescriptors.withLock { table -> Int32? in
            guard var queue = table[connection], !queue.isEmpty else { return nil }
            let fd = queue.removeFirst()
            table[connection] = queue
            return fd
        }
    }

    public var connectionCount: Int { openConnections.load(ordering: .relaxed) }

    /// How many devices exist (no device is waited for).
    public var deviceCount: Int { devices.withLock { $0.count } }

    func allSlots() -> [DeviceSlot] { devices.withLock { Array($0.values) } }

    /// Waits for every device in turn (the watchdog: a device stuck in an operation stops the pings).
    public func probeDevices() { for slot in allSlots() { slot.read { _ in } } }

    /// Puts a slot in the table or takes one out.
    func setSlot(_ slot: DeviceSlot?, for name: String) {
        devices.withLock {
            $0[name] = slot
            deviceTableGeneration.add(1, ordering: .releasing)
        }
    }

    func slot(_ name: String) throws(RPCError) -> DeviceSlot {
        guard let slot = devices.withLock({ $0[name] }) else {
            throw RPCError.domain(.ENODEV, "no device named \(name)")
        }
        return slot
    }

    /// The records of every device, sorted by name (for the state file).
    public func deviceRecords() -> [DeviceRecord] {
        allSlots().map { s in s.read { DeviceRecord(name: $0.name.rawValue, mgmtdev: $0.mgmtdev.name, attributes: $0.attributes) } }
            .sorted { $0.name < $1.name }
    }

    /// Creates devices from the state file or config at start, without persisting again.
    public func restore(_ records: [DeviceRecord]) throws(RPCError) {
        for record in records {
            let device = try makeDevice(record)
            setSlot(DeviceSlot(device), for: record.name)
        }
    }

    /// `restore`, with the failure as text (nil on success).
    public func restoreReportingProblem(_ records: [DeviceRecord]) -> String? {
        do throws(RPCError) {
            try restore(records)
            return nil
        } catch {
            return error.message
        }
    }

    func makeDevice(_ record: DeviceRecord) throws(RPCError) -> VDPADevice {
        guard let name = DeviceName(rawValue: record.name) else {
            throw RPCError.domain(.EINVAL, "device name \"\(record.name)\" is not 1–32 of [A-Za-z0-9_.-]")
        }
        guard let mgmtdev = ManagementDevice(rawValue: record.mgmtdev) else {
            throw RPCError.domain(.ENODEV, "no management device named \(record.mgmtdev); see list_mgmtdevs")
        }
        do throws(VDPAError) {
            return try VDPADevice(name: name, mgmtdev: mgmtdev, attributes: record.attributes,
                                  maxEntriesPerASID: limits.maxIOTLBEntries)
        } catch { throw RPCError(error) }
    }

    // MARK: Events

    func emit(_ type: EventType, device: String, _ fields: [(String, JSON)] = [], alsoTo owner: UInt64? = nil) {
        let event = events.append(type: type.rawValue, device: device, fields: fields)
        let targets = sinks.withLock { table in
            table.compactMap { (id, s) -> (any NotificationSink)? in
                (s.subscribed?.contains(type) == true || id == owner) ? s.sink : nil
            }
        }
        let note: JSON = ["jsonrpc": "2.0", "method": "event", "params": event]
        for sink in targets { sink.send(note) }
    }

    func subscribe(_ connection: UInt64, to types: Set<EventType>) {
        sinks.withLock { $0[connection]?.subscribed = types }
    }
}

/// A bounded buffer of events with increasing sequence numbers.
final class EventLog: Sendable {
    private let state: Locked<(seq: UInt64, items: [JSON])>
    private let capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 1024)
        state = Locked((0, []))
    }

    func append(type: String, device: String, fields: [(String, JSON)]) -> JSON {
        let time = UInt64(max(0, Glibc.time(nil)))
        return state.withLock { s in
            s.seq += 1
            let event: JSON = .object([("seq", .unsigned(s.seq)), ("time", .unsigned(time)), ("type", .string(type)),
                                       ("device", .string(device))] + fields)
            s.items.append(event)
            if s.items.count > capacity { s.items.removeFirst(s.items.count - capacity) }
            return event
        }
    }

    var latest: UInt64 { state.withLock { $0.seq } }

    func since(_ seq: UInt64) -> (events: [JSON], next: UInt64) {
        state.withLock { s in
            // The buffer holds consecutive seqs ending at s.seq, so the answer is a suffix.
            let wanted = s.seq > seq ? Int(min(s.seq - seq, UInt64(s.items.count))) : 0
            return (Array(s.items.suffix(wanted)), s.seq)
        }
    }
}
