// EventFDs.swift — the only place the service touches the eventfds a VMM
// passes (SCM_RIGHTS): check that a descriptor is an eventfd as the kernel
// does (R63–R65: a bad descriptor is EBADF, another kind of file EINVAL),
// signal one, close one.  The core decides when; this carries it out.
import SystemPackage
import VDPACore
import VDPARegistry
#if canImport(Glibc)
    import Glibc
#endif

enum EventFDs {
    /// Nil when `fd` is of `kind` (an eventfd for kick, call and config; a socket for the store agent); else
    /// the errno the kernel's eventfd_ctx_fdget would give (EBADF, EINVAL).
    static func check(_ fd: Int32, is kind: DescriptorKind = .eventfd) -> KernelErrno? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .EBADF }
        if kind == .socket { return st.st_mode & S_IFMT == S_IFSOCK ? nil : .EINVAL }
        var target = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/self/fd/\(fd)", &target, target.count - 1)
        guard n > 0 else { return .EBADF }
        let name = String(decoding: target[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name == "anon_inode:[eventfd]" ? nil : .EINVAL
    }

    /// Adds 1 to the eventfd's counter (what the parent's callback does); a full counter or a closed
    /// peer is not an error here, as eventfd_signal ignores it.
    static func signal(_ fd: Int32) {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { try? FileDescriptor(rawValue: fd).write($0) }
    }

    /// A descriptor vdpad holds and gives up; a failure (EBADF) leaves nothing to do.
    static func close(_ fd: Int32) { try? FileDescriptor(rawValue: fd).close() }

    static func carryOut(_ effects: EventFDEffects) {
        guard !effects.isEmpty else { return }
        for e in effects.signal { signal(e.descriptor) }
        for e in effects.close { close(e.descriptor) }
    }
}

/// The registry's I/O as this process does it: eventfds signalled and closed with write(2) and close(2),
/// descriptors checked through /proc/self/fd, and a data-path thread per device (DataPathWorker).
public struct ProcessDeviceIO: DeviceIO {
    public init() {}
    public func carryOut(_ effects: EventFDEffects) { EventFDs.carryOut(effects) }
    public func discard(_ fd: Int32) { EventFDs.close(fd) }
    public func check(_ fd: Int32, is kind: DescriptorKind) -> KernelErrno? { EventFDs.check(fd, is: kind) }
    public func mapShared(_ fd: Int32, address: UInt64, size: UInt64, offset: UInt64, pid: Int32) -> Result<any SharedMapping, VDPAError> {
        let result = SharedFiles.map(dup(fd), address: address, size: size, offset: offset, pid: pid)  // it closes its copy
        if case .failure = result { close(fd) }
        return result
    }
    public func startWorker(for slot: DeviceSlot) -> (any DeviceWorker)? { DataPathWorker(slot: slot) }
}
