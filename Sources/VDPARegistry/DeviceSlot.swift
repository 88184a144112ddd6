// DeviceSlot.swift — a device and the lock that owns it.
//
// Why a mutex and not a serial DispatchQueue (the first design said queue): every
// device operation is synchronous — the caller waits for its answer — and on
// this kind of machine an uncontended `queue.sync` costs about 225 ns against
// 12 ns for a pthread mutex (`vdpad-bench inproc`, README), paid on every map.
// The properties that design asked of the queue hold: one operation at a time per
// device, devices in parallel, and the watchdog's probe waits for each device
// like any caller.
import VDPACore

public final class DeviceSlot: Sendable {
    @usableFromInline let state: Locked<VDPADevice>
    /// What carries out the device's eventfd effects and starts its data path (DeviceIO.swift).
    @usableFromInline let io: any DeviceIO
    /// The data-path worker, started when a kick eventfd is first bound.
    private let worker = Locked<(any DeviceWorker)?>(nil)
    /// Held by the data path for the whole of a run — its snapshot, its copies, its record — and by the
    /// operations that stop or rewind a queue (SUSPEND, a status change such as a reset, SET_VRING_*, the
    /// session's end): those wait for the run in flight, so GET_VRING_BASE after SUSPEND is final (no run can
    /// record after it) and no run records into a ring a reset rebuilt.  Always taken before the device's lock.
    @usableFromInline let runGate = Locked(())

    /// Where the session's changes are journaled (nil: no journal), and the control state last journaled.
    public let journal: (any SessionJournal)?
    @usableFromInline let journaledImage: Locked<SessionImage>

    init(_ device: VDPADevice, io: any DeviceIO, journal: (any SessionJournal)? = nil) {
        var device = device
        device.setJournaling(journal != nil)
        journaledImage = Locked(device.sessionImage)
        state = Locked(device)
        self.io = io
        self.journal = journal
    }

    deinit { worker.withLock { $0?.stop() } }

    /// Runs `body` on the device once `access` lets `caller` in (checked holding the device, so nothing
    /// changes between the check and the operation).
    @inlinable
    public func sync<T>(_ access: DeviceAccess, by caller: Caller, _ body: (inout VDPADevice) throws(VDPAError) -> T) throws(VDPAError) -> T {
        try sync { (d: inout VDPADevice) throws(VDPAError) -> T in
            try access.check(d, caller)
            return try body(&d)
        }
    }

    /// Runs `body` holding the device, for operations that check their caller themselves (the typed IOTLB
    /// operations, several of which a front end may run in one acquisition) and for the registry's own work.
    /// The eventfds the device asked to signal or close are handled before the lock is let go (a descriptor
    /// is never closed while another operation could still name it), and the data path hears of new kick
    /// bindings and of a resume.
    @inlinable
    public func sync<T, E: Error>(_ body: (inout VDPADevice) throws(E) -> T) throws(E) -> T {
        try state.withLock { (d: inout VDPADevice) throws(E) -> T in
            defer {
                settle(&d)
                if journal != nil { journalChanges(&d) }
            }
            return try body(&d)
        }
    }

    /// `sync` for the data path's own records (counters, the ring indexes it reached): nothing a journal
    /// keeps changes there — a restarted daemon reads the rings again (docs/restart.md).
    @inlinable
    public func syncUnjournaled<T>(_ body: (inout VDPADevice) -> T) -> T {
        state.withLock { (d: inout VDPADevice) -> T in
            defer { settle(&d) }
            return body(&d)
        }
    }

    /// Hands the journal the table operations the device noted and its control state when that changed
    /// (called holding the device, so the journal sees each device's changes in the order they happened).
    @usableFromInline
    func journalChanges(_ d: inout VDPADevice) {
        guard let journal else { return }
        let image = d.sessionImage
        let changed = journaledImage.withLock { last in
            if last == image { return false }
            last = image
            return true
        }
        guard d.hasJournalOps || changed else { return }
        let name = d.name.rawValue
        d.withJournalOps { ops in journal.record(device: name, ops: ops, image: changed ? image : nil) }
    }

    /// `sync` for operations that change only the IOTLB tables (map, unmap: the fast path's): their table
    /// operations are journaled and the control state is not compared (it cannot have changed).
    @inlinable
    public func syncTables<T>(_ body: (inout VDPADevice) -> T) -> T {
        state.withLock { (d: inout VDPADevice) -> T in
            defer {
                settle(&d)
                if let journal, d.hasJournalOps {
                    let name = d.name.rawValue
                    d.withJournalOps { ops in journal.record(device: name, ops: ops, image: nil) }
                }
            }
            return body(&d)
        }
    }

    /// Puts a restarted daemon's journaled session on the device; nothing of it is journaled again (the
    /// journal the daemon writes next starts from the result).
    public func adopt<E: Error>(_ body: (inout VDPADevice) throws(E) -> Void) throws(E) {
        try state.withLock { (d: inout VDPADevice) throws(E) in
            d.setJournaling(false)
            defer {
                d.setJournaling(journal != nil)
                let image = d.sessionImage
                journaledImage.withLock { $0 = image }
            }
            try body(&d)
        }
    }

    /// A read of the device's state (no access check: get_device and list_devices show it to anyone).
    @inlinable
    public func read<T>(_ body: (VDPADevice) -> T) -> T { state.withLock { body($0) } }

    /// Carries out what the last operation asked (called with the lock held).
    @usableFromInline
    func settle(_ d: inout VDPADevice) {
        guard d.hasEventFDEffects else { return }
        var (kicksChanged, resumed) = (false, false)
        d.carryOutEventFDEffects { effects in
            if let journal, !effects.close.isEmpty { journal.closing(effects.close) }
            io.carryOut(effects)
            (kicksChanged, resumed) = (effects.kicksChanged, effects.resumed)
        }
        guard kicksChanged || resumed else { return }
        worker.withLock { worker in
            if worker == nil && d.vrings.contains(where: { $0.kick != nil }) { worker = io.startWorker(for: self) }
            worker?.notify(rescan: kicksChanged, resumed: resumed)
        }
    }

    /// Set when a restarted daemon gave the device its session back: the data path reads each ring's used index
    /// once and looks at every ring (docs/restart.md).
    private let ringResync = Locked(false)

    /// Starts the data path of a session a restart gave back (when it has kick eventfds).
    public func resumeAfterRestart() {
        ringResync.withLock { $0 = true }
        sync { $0.resumeAfterRestart() }
    }

    /// Whether the worker must resynchronise with the rings (asked once).
    public func takeRingResync() -> Bool {
        ringResync.withLock { r in
            defer { r = false }
            return r
        }
    }

    /// Runs `body` with no data-path run in flight on this device (see `runGate`).  Inlinable, as `read` and `sync`
    /// are: the worker takes the gate once per run, and a generic call costs a metadata lookup each time.
    @inlinable
    public func quiesced<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        try runGate.withLock { (_: inout Void) throws(E) -> T in try body() }
    }

    /// Releases the session (§6) when `condition` holds; returns the device's name if it did.
    func release(if condition: (VDPADevice) -> Bool) -> String? {
        quiesced { releaseHoldingGate(condition) }
    }

    private func releaseHoldingGate(_ condition: (VDPADevice) -> Bool) -> String? {
        sync { device -> String? in
            guard condition(device), device.owner != nil else { return nil }
            device.release()
            return device.name.rawValue
        }
    }
}
