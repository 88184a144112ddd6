// DeviceIO.swift — the I/O the registry needs and does not do: signalling and
// closing the eventfds a device names, checking a passed descriptor's kind,
// closing descriptors it will not keep, and a data-path worker per device.
// VDPADataPath provides it (`ProcessDeviceIO`); the front end that makes the
// registry hands it in, so the registry itself makes no system call.
import VDPACore

/// What a descriptor passed with SCM_RIGHTS must be for the request that takes it.
public enum DescriptorKind: Sendable {
    /// Kick, call and config eventfds (R63–R65).
    case eventfd
    /// The VMM's store agent (set_store_agent).
    case socket
}

public protocol DeviceIO: Sendable {
    /// Signals, then closes, what the device's last operations asked (called holding the device).
    func carryOut(_ effects: EventFDEffects)
    /// Closes a descriptor the registry was handed and will not keep.
    func discard(_ fd: Int32)
    /// Nil when `fd` is of `kind`; else the errno the kernel's check would give (EBADF, EINVAL: R63–R65).
    func check(_ fd: Int32, is kind: DescriptorKind) -> KernelErrno?
    /// Maps the file `fd` (taken) as the owner `pid`'s [address, address+size) at the file's `offset`, after
    /// checking that the file backs exactly those addresses (share_memory).  On success the descriptor stays open
    /// for the region to keep (a restarted daemon maps the file again from it); on failure it is closed.
    func mapShared(_ fd: Int32, address: UInt64, size: UInt64, offset: UInt64, pid: Int32) -> Result<any SharedMapping, VDPAError>
    /// Starts the data path of the device in `slot` (when a kick eventfd is first bound); nil if it cannot.
    func startWorker(for slot: DeviceSlot) -> (any DeviceWorker)?
}

/// One device's data path, started by `DeviceIO.startWorker`.
public protocol DeviceWorker: AnyObject, Sendable {
    /// The kick bindings changed (`rescan`), or the device resumed (`resumed`: replay remembered kicks).
    func notify(rescan: Bool, resumed: Bool)
    func stop()
}

/// Where the devices' session changes go, so that a restarted daemon finds every session as it was
/// (the daemon's journal, docs/restart.md).  Called holding the device's lock, from any thread.
public protocol SessionJournal: AnyObject, Sendable {
    /// `ops`: the table operations the last operation carried out; `image`: the control state, when it changed.
    func record(device: String, ops: [SessionOp], image: SessionImage?)
    /// A device of that name was added or removed.
    func forget(device: String)
    /// These eventfds are about to be closed (their numbers may name other files from now on).
    func closing(_ fds: [EventFD])
    /// A file that holds a RAM disk's bytes across restarts (a device with no `backing` file): the caller's own
    /// descriptor for it, `bytes` long; nil when there is none to give.
    func diskFile(device: String, bytes: Int) -> Int32?
}
