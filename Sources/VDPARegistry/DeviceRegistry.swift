// DeviceRegistry.swift — the typed service at the centre: the device table,
// sessions, roles, limits, events and passed descriptors, behind one Swift
// API that every front end calls the same way (decode, call, encode).  No
// JSON and no sockets here: a connection is an id, a caller and an event
// subscriber, so the whole service runs in-process in tests.
//
// Concurrency (docs/architecture.md): each device is owned by its own lock and every
// operation on it runs holding that lock, so operations on one device are
// serial and different devices proceed in parallel; the table of devices is
// a small map behind a lock; calls from one connection arrive in order, and
// each call waits for its device, so replies keep request order.
import Logging
import Synchronization
import VDPACore

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

public final class DeviceRegistry: Sendable {
    public let limits: ServiceLimits
    /// The parent drivers devices can be made of (list_mgmtdevs, add_device's `mgmtdev`).
    public let parents: [ManagementDevice]
    /// The system calls and data-path threads the registry asks for (DeviceIO.swift).
    /// The I/O the devices' operations need (eventfds, shared files, the data path).
    public let io: any DeviceIO
    private let devices = Locked<[DeviceName: DeviceSlot]>([:])
    /// Bumped on every change of `devices`, so a front end may keep the slot it used last.
    private let generation = Atomic<UInt64>(0)
    /// Serialises add/del with the persistence hook so the state file follows acknowledged order.
    private let registryLock = Locked<Void>(())
    private let events: EventLog
    private let subscribers = Locked<[UInt64: Subscription]>([:])
    private let openConnections = Atomic<Int>(0)
    /// Moves after any connection's subscription changed (`subscriptionGeneration`).
    private let subscriptionChanges = Atomic<UInt64>(0)
    /// Descriptors each connection passed (SCM_RIGHTS) that no request has taken yet, oldest first.
    private let passedDescriptors = Locked<[UInt64: [Int32]]>([:])
    /// Called under the registry lock after every change of the device set, with the new set.
    /// Throwing refuses the change (e.g. the state file cannot be written).
    private let persist: @Sendable ([DeviceRecord]) throws -> Void
    /// Where session changes are journaled (nil: sessions end with the process).
    public let journal: (any SessionJournal)?
    let logger: Logger

    private struct Subscription {
        let subscriber: any EventSubscriber
        var types: Set<EventType>?
    }

    /// `parents`: the built-in parent drivers unless a front end adds its own (docs/architecture.md,
    /// "Adding a parent kind").
    public init(
        io: any DeviceIO,
        limits: ServiceLimits = ServiceLimits(),
        logger: Logger = Logger(label: "vdpad.registry", factory: { _ in SwiftLogNoOpLogHandler() }),
        parents: [ManagementDevice] = ManagementDevice.builtIn,
        persist: @escaping @Sendable ([DeviceRecord]) throws -> Void = { _ in },
        journal: (any SessionJournal)? = nil
    ) {
        self.io = io
        self.journal = journal
        self.limits = limits
        self.parents = parents
        self.logger = logger
        self.persist = persist
        events = EventLog(capacity: limits.eventBuffer)
    }

    // MARK: The device table

    /// Changes whenever a device is added or removed: a slot found at one value stays right while it holds.
    @inlinable
    public var tableGeneration: UInt64 { generationValue() }

    @usableFromInline
    func generationValue() -> UInt64 { generation.load(ordering: .acquiring) }

    /// The device named `name`; ENODEV when there is none (a name no device could have included).
    public func slot(named name: String) throws(VDPAError) -> DeviceSlot {
        guard let key = DeviceName(rawValue: name), let slot = devices.withLock({ $0[key] }) else {
            throw VDPAError(.ENODEV, "no device named \(name)")
        }
        return slot
    }

    /// Runs `body` on the device named `name` once `access` lets `caller` in: ENODEV, then EPERM, then the
    /// operation's own rules (docs/protocol.md §3's order).
    func withDevice<T>(
        _ name: String, _ access: DeviceAccess, by caller: Caller,
        _ body: (inout VDPADevice) throws(VDPAError) -> T
    ) throws(VDPAError) -> T {
        try slot(named: name).sync(access, by: caller, body)
    }

    /// `withDevice` once no data-path run is in flight on the device (`DeviceSlot.quiesced`): for the operations
    /// that stop or rewind its queues.
    func withQuiescedDevice<T>(
        _ name: String, _ access: DeviceAccess, by caller: Caller,
        _ body: (inout VDPADevice) throws(VDPAError) -> T
    ) throws(VDPAError) -> T {
        let slot = try slot(named: name)
        return try slot.quiesced { () throws(VDPAError) -> T in try slot.sync(access, by: caller, body) }
    }

    /// Every device's slot, in name order.
    public func allSlots() -> [DeviceSlot] {
        devices.withLock { table in table.keys.sorted().map { table[$0]! } }
    }

    public var deviceCount: Int { devices.withLock { $0.count } }

    /// Waits for every device in turn (the watchdog: a device stuck in an operation stops the pings).
    public func probeDevices() { for slot in allSlots() { slot.read { _ in } } }

    /// The records of every device, sorted by name (for the state file).
    public func deviceRecords() -> [DeviceRecord] {
        allSlots().map { s in s.read { DeviceRecord(name: $0.name.rawValue, mgmtdev: $0.mgmtdev.name, attributes: $0.attributes) } }
    }

    private func setSlot(_ slot: DeviceSlot?, for name: DeviceName) {
        devices.withLock {
            $0[name] = slot
            generation.add(1, ordering: .releasing)
        }
    }

    /// A device as `record` describes it: EINVAL for a bad name or attribute, ENODEV for an unknown parent.
    public func makeDevice(_ record: DeviceRecord) throws(VDPAError) -> VDPADevice {
        guard let name = DeviceName(rawValue: record.name) else {
            throw VDPAError(.EINVAL, "device name \"\(record.name)\" is not 1–32 of [A-Za-z0-9_.-]")
        }
        guard let mgmtdev = parents.first(where: { $0.name == record.mgmtdev }) else {
            throw VDPAError(.ENODEV, "no management device named \(record.mgmtdev); see list_mgmtdevs")
        }
        return try VDPADevice(name: name, mgmtdev: mgmtdev, attributes: record.attributes, maxEntriesPerASID: limits.maxIOTLBEntries)
    }

    /// Creates devices from the state file or config (at start, and on a reload), without persisting again.
    /// All or nothing, under the registry's lock as `add` is: EEXIST for a name taken (by a device already
    /// here, or twice in `records`), ENOSPC past max_devices, EINVAL/ENODEV for a record; on any of them no
    /// device is added, so a reload racing an add_device of the same name never replaces that device.
    public func restore(_ records: [DeviceRecord]) throws(VDPAError) {
        let made = try records.map { (record) throws(VDPAError) in try makeDevice(record) }
        try registryLock.withLock { _ throws(VDPAError) in
            try devices.withLock { (table) throws(VDPAError) in
                var names = Set(table.keys)
                for device in made where !names.insert(device.name).inserted {
                    throw VDPAError(.EEXIST, "a device named \(device.name) already exists")
                }
                guard names.count <= limits.maxDevices else {
                    throw VDPAError(.ENOSPC, "\(made.count) devices more would pass max_devices \(limits.maxDevices)")
                }
            }
            for device in made { setSlot(DeviceSlot(device, io: io, journal: journal), for: device.name) }
        }
    }

    /// add_device: an admin's; EINVAL/ENODEV for the record, EEXIST, ENOSPC past max_devices, EIO when the
    /// state file cannot be written (nothing added).  Returns the new device as it starts.
    public func add(_ record: DeviceRecord, by caller: Caller) throws(VDPAError) -> VDPADevice {
        try caller.requireAdmin("add_device")
        let device = try makeDevice(record)
        try registryLock.withLock { _ throws(VDPAError) in
            let (count, taken) = devices.withLock { ($0.count, $0[device.name] != nil) }
            if taken { throw VDPAError(.EEXIST, "a device named \(record.name) already exists") }
            guard count < limits.maxDevices else {
                throw VDPAError(.ENOSPC, "vdpad already holds max_devices \(limits.maxDevices) devices")
            }
            do {
                try persist(deviceRecords() + [record])
            } catch {
                throw VDPAError(.EIO, "could not save the state file, \(record.name) not added: \(error)")
            }
            journal?.forget(device: record.name)
            setSlot(DeviceSlot(device, io: io, journal: journal), for: device.name)
        }
        logger.notice("device added", metadata: ["device": "\(record.name)", "mgmtdev": "\(record.mgmtdev)", "uid": "\(caller.uid)"])
        emit(.deviceAdded(mgmtdev: record.mgmtdev), device: record.name)
        return device
    }

    /// del_device: an admin's; ENODEV, EBUSY while open unless `force` (which ends the session first and
    /// tells its owner) — an owner whose client hung up does not count (`pastAGoneOwner`) —, EIO when the state
    /// file cannot be written (nothing deleted).
    public func remove(_ name: String, force: Bool, by caller: Caller) throws(VDPAError) {
        try caller.requireAdmin("del_device")
        guard let key = DeviceName(rawValue: name) else { throw VDPAError(.ENODEV, "no device named \(name)") }
        let owner: Owner? = try pastAGoneOwner(of: name, for: caller) { () throws(VDPAError) -> Owner? in try removeSlot(name, key, force: force) }
        if let owner { emit(.sessionClosed(reason: .deviceDeleted), device: name, alsoTo: owner.connection) }
        logger.notice("device deleted", metadata: ["device": "\(name)", "forced": "\(owner != nil)", "uid": "\(caller.uid)"])
        emit(.deviceRemoved, device: name)
    }

    /// del_device's work under the registry's lock: EBUSY for an owned device unless `force`; the owner it had.
    private func removeSlot(_ name: String, _ key: DeviceName, force: Bool) throws(VDPAError) -> Owner? {
        try registryLock.withLock { _ throws(VDPAError) in
            let slot = try slot(named: name)
            let owner = try slot.sync { (d: inout VDPADevice) throws(VDPAError) -> Owner? in
                guard let owner = d.owner else { return nil }
                guard force else {
                    throw VDPAError(.EBUSY, "\(name) is open (pid \(owner.pid), uid \(owner.uid)); use force to close its session first")
                }
                return owner
            }
            do {
                try persist(deviceRecords().filter { $0.name != name })
            } catch {
                throw VDPAError(.EIO, "could not save the state file, \(name) not deleted: \(error)")
            }
            slot.sync { $0.release() }
            journal?.forget(device: name)
            setSlot(nil, for: key)
            return owner
        }
    }

    // MARK: Sessions

    /// open: whoever the device lets open it; EBUSY when open already (R34).  Returns the device as opened.
    public func open(_ name: String, by caller: Caller) throws(VDPAError) -> VDPADevice {
        let device = try pastAGoneOwner(of: name, for: caller) { () throws(VDPAError) -> VDPADevice in
            try self.withDevice(name, .opener, by: caller) { (d: inout VDPADevice) throws(VDPAError) -> VDPADevice in
                try d.open(by: caller.owner)
                return d
            }
        }
        emit(.ownerChanged(owner: caller.owner, reason: nil), device: name)
        return device
    }

    /// Runs `body`, and once more when it failed EBUSY because the device is owned through a connection whose
    /// client is gone though its end is still unread (killed, then reaped: the kernel released its file as it
    /// died), after ending that connection's sessions — so an open or a delete right after never fails for it.
    private func pastAGoneOwner<T>(
        of name: String, for caller: Caller, _ body: () throws(VDPAError) -> T
    ) throws(VDPAError) -> T {
        do {
            return try body()
        } catch let error where error.errno == .EBUSY {
            // No owner now: released meanwhile (its connection's end was read).
            guard let holder = try? slot(named: name).read({ $0.owner?.connection }) else { return try body() }
            guard holder != caller.connection else { throw error }
            // Nil: the connection is unknown — closing right now (its sessions end first), or never opened here.
            switch subscriber(of: holder)?.peerHungUp {
            case false?: throw error
            case true?: releaseSessions(of: holder)
            case nil: break
            }
            return try body()
        }
    }

    /// close: the owner's; the session ends as at a disconnect (§6).
    public func close(_ name: String, by caller: Caller) throws(VDPAError) {
        try withDevice(name, .owner, by: caller) { $0.release() }
        emit(.ownerChanged(owner: nil, reason: .close), device: name)
    }

    /// Runs a status-changing operation (set_status, reset) for the owner and reports `status_changed`
    /// when the byte moved or was written 0.
    public func changeStatus(_ name: String, by caller: Caller, _ body: (inout VDPADevice) throws(VDPAError) -> Void) throws(VDPAError) {
        let (before, after) = try withQuiescedDevice(name, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) -> (UInt8, UInt8) in
            let before = d.status
            try body(&d)
            return (before, d.status)
        }
        if before != after || after == 0 { emit(.statusChanged(status: after, previous: before), device: name) }
    }

    // MARK: Connections

    public func connectionOpened(_ connection: UInt64, subscriber: any EventSubscriber) {
        subscribers.withLock { $0[connection] = Subscription(subscriber: subscriber, types: nil) }
        openConnections.add(1, ordering: .relaxed)
    }

    /// Releases every device the connection owns (docs/protocol.md §6) and closes the descriptors it passed
    /// that no request took.
    public func connectionClosed(_ connection: UInt64) {
        // The sessions first, while the connection is still known: an `open` meanwhile asks it whether its client
        // is gone rather than finding the device owned by a connection it cannot ask.
        releaseSessions(of: connection)
        subscribers.withLock { _ = $0.removeValue(forKey: connection) }
        for fd in passedDescriptors.withLock({ $0.removeValue(forKey: connection) }) ?? [] { io.discard(fd) }
        openConnections.subtract(1, ordering: .relaxed)
    }

    /// Ends every session `connection` owns, as at its disconnect (a second call finds none).
    private func releaseSessions(of connection: UInt64) {
        for slot in allSlots() {
            // Check and release in one hop, so nobody can open the device in between.
            guard let name = slot.release(if: { $0.owner?.connection == connection }) else { continue }
            logger.info("session released on disconnect", metadata: ["device": "\(name)", "connection": "\(connection)"])
            emit(.ownerChanged(owner: nil, reason: .disconnect), device: name)
        }
    }

    /// The connection's event subscriber (the daemon's connection object), if it is open.
    private func subscriber(of connection: UInt64) -> (any EventSubscriber)? {
        subscribers.withLock { $0[connection]?.subscriber }
    }

    public var connectionCount: Int { openConnections.load(ordering: .relaxed) }

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
        if !accepted { fds.forEach(io.discard) }
        return accepted
    }

    /// The oldest descriptor `caller`'s connection passed and no request has taken yet.  A request takes it
    /// before anything else is checked, so requests and descriptors stay paired even when one fails; whoever
    /// takes it hands it to `useDescriptor` or `discardDescriptor`.
    public func takeDescriptor(for caller: Caller) -> Int32? {
        passedDescriptors.withLock { table -> Int32? in
            guard var queue = table[caller.connection], !queue.isEmpty else { return nil }
            let fd = queue.removeFirst()
            table[caller.connection] = queue
            return fd
        }
    }

    /// How many descriptors `connection` passed that no request has taken yet.
    public func pendingDescriptors(on connection: UInt64) -> Int {
        passedDescriptors.withLock { $0[connection]?.count ?? 0 }
    }

    /// Closes a taken descriptor that no device will hold (its request failed before reaching one).
    public func discardDescriptor(_ fd: Int32) { io.discard(fd) }

    /// What a descriptor method expects to be passed.

    /// The descriptor methods (docs/protocol.md §5.5), with the descriptor taken by `takeDescriptor` (nil:
    /// none was passed, or the request unsets): the device, its owner and `precheck` (the vq index; R44
    /// before R63); then EBADF when nothing was passed (unless `unset`), EBADF/EINVAL when the descriptor is
    /// not of `kind`; then `apply`.  On failure the descriptor is closed; on success the device holds it.
    public func useDescriptor(
        _ fd: Int32?, unset: Bool, kind: DescriptorKind = .eventfd, device name: String, by caller: Caller,
        _ apply: (inout VDPADevice, EventFD?) throws(VDPAError) -> Void,
        precheck: (inout VDPADevice) throws(VDPAError) -> Void
    ) throws(VDPAError) {
        do throws(VDPAError) {
            try withDevice(name, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in
                try precheck(&d)
                if !unset {
                    guard let fd else {
                        throw VDPAError(
                            .EBADF,
                            "no descriptor was passed for this request: send an eventfd with SCM_RIGHTS "
                                + "with (or before) the request's bytes, or set unset: true")
                    }
                    if let errno = io.check(fd, is: kind) {
                        throw VDPAError(
                            errno,
                            errno == .EBADF
                                ? "descriptor \(fd) is not open"
                                : "the descriptor passed is not \(kind == .eventfd ? "an eventfd (R63–R65)" : "a socket")")
                    }
                }
                try apply(&d, fd.map(EventFD.init))
            }
        } catch {
            if let fd { io.discard(fd) }
            throw error
        }
    }

    // MARK: Shared memory

    /// share_memory (docs/protocol.md §5.7): the owner's [address, address+size) is the file `fd` (taken by
    /// `takeDescriptor`; nil when none was passed) from `offset` on.  The device and its owner first, then
    /// EBADF when nothing was passed, then the file against the owner's own mappings (`DeviceIO.mapShared`,
    /// EINVAL when it does not back those addresses), then the table (EEXIST for an overlap).  A refusal is
    /// counted and closes the descriptor; a region keeps it (a restarted daemon maps the file again from it) until
    /// the region goes.  Returns the region count.
    public func shareMemory(
        _ fd: Int32?, address: UInt64, size: UInt64, offset: UInt64, device name: String, by caller: Caller
    ) throws(VDPAError) -> Int {
        var pending = fd
        defer { if let fd = pending { io.discard(fd) } }
        return try withDevice(name, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) -> Int in
            guard let fd = pending, let owner = d.owner else {
                d.countRefusedShare()
                throw VDPAError(.EBADF, "no descriptor was passed for this request: send the file (a memfd) with SCM_RIGHTS")
            }
            pending = nil
            switch io.mapShared(fd, address: address, size: size, offset: offset, pid: owner.pid) {
            case .failure(let error):
                d.countRefusedShare()
                throw error
            case .success(let mapping):
                do throws(VDPAError) {
                    try d.shareMemory(SharedRegion(start: address, size: size, mapping: mapping, file: EventFD(fd), offset: offset))
                } catch {
                    io.discard(fd)
                    throw error
                }
                return d.sharedMemory.count
            }
        }
    }

    /// unshare_memory: the owner unmapped or remapped [address, address+size); returns how many regions went.
    public func unshareMemory(address: UInt64, size: UInt64, device name: String, by caller: Caller) throws(VDPAError) -> Int {
        try withDevice(name, .owner, by: caller) { (d: inout VDPADevice) -> Int in d.unshareMemory(start: address, size: size) }
    }

    // MARK: Events

    /// Subscribes `connection` to `types` (replacing what it had); returns the latest sequence number.
    public func subscribe(_ connection: UInt64, to types: Set<EventType>) -> UInt64 {
        subscribers.withLock { $0[connection]?.types = types }
        subscriptionChanges.add(1, ordering: .releasing)
        return events.latest
    }

    /// Moves whenever a subscription changes (after the change): a journaled connection's commit reads its mask
    /// again only when this moved since it last did, not under the subscribers' lock every round.
    public var subscriptionGeneration: UInt64 { subscriptionChanges.load(ordering: .acquiring) }

    /// `connection`'s subscription as a journal keeps it (ConnectionCursor.subscriptions): 0 for none, else bit 31
    /// and one bit per type in `EventType.allCases` order.  A commit asks only when `subscriptionGeneration` moved.
    public func subscriptionMask(_ connection: UInt64) -> UInt32 {
        guard let types = subscribers.withLock({ $0[connection]?.types }) else { return 0 }
        return EventType.allCases.enumerated().reduce(UInt32(1) << 31) { mask, e in types.contains(e.element) ? mask | 1 << e.offset : mask }
    }

    /// Puts back a subscription a restarted daemon's journal kept (`subscriptionMask`); 0 leaves none.
    public func restoreSubscription(_ connection: UInt64, mask: UInt32) {
        guard mask & 1 << 31 != 0 else { return }
        let types = Set(EventType.allCases.enumerated().filter { mask & 1 << $0.offset != 0 }.map(\.element))
        subscribers.withLock { $0[connection]?.types = types }
        subscriptionChanges.add(1, ordering: .releasing)
    }

    /// Numbers the next events above `seq` (a restarted daemon: above any number the previous process gave).
    public func continueEvents(above seq: UInt64) { events.advance(to: seq) }

    /// The events after `seq` still in the buffer, and the sequence number to ask from next.
    public func events(since seq: UInt64) -> (events: [Event], next: UInt64) { events.since(seq) }

    /// Records an event and delivers it to its subscribers (and to `owner`'s connection, subscribed or not).
    func emit(_ kind: Event.Kind, device: String, alsoTo owner: UInt64? = nil) {
        let event = events.append(kind, device: device)
        let targets = subscribers.withLock { table in
            table.compactMap { (id, s) -> (any EventSubscriber)? in
                (s.types?.contains(event.type) == true || id == owner) ? s.subscriber : nil
            }
        }
        for target in targets { target.deliver(event) }
    }
}
