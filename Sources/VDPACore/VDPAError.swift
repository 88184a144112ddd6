// VDPAError.swift — the one domain error of the model.
//
// Every failure a VMM can provoke is a VDPAError: it carries the errno the
// rule yields, the errno the kernel would have shown userspace where that
// differs (the IOTLB write path squashes everything into EFAULT, R3), and a
// message that names the object and the rule.  The wire mapping (code =
// −errno, data.errno = name) is done once, in the RPC layer.

/// The Linux errno values the model can produce.
public enum KernelErrno: Int32, Sendable, CaseIterable {
    case EPERM = 1
    case EIO = 5
    case EBADF = 9
    case EAGAIN = 11
    case E2BIG = 7
    case EACCES = 13
    case EFAULT = 14
    case EBUSY = 16
    case EEXIST = 17
    case ENODEV = 19
    case ENOTTY = 25
    case EINVAL = 22
    case ENOSPC = 28
    case ERANGE = 34
    case EOPNOTSUPP = 95
    case ENOBUFS = 105

    /// The C name, e.g. "EINVAL".
    public var name: String { "\(self)" }
}

/// A value attached to an error's `data` object on the wire.
public enum ErrorDetail: Equatable, Sendable {
    case integer(UInt64)
    case string(String)
}

/// A rule of the vdpa model was broken.  A call that throws this changed nothing.
public struct VDPAError: Error, Equatable, Sendable, CustomStringConvertible {
    public var errno: KernelErrno
    public var message: String
    /// What the kernel would have returned to userspace, when it is not `errno` (R3: EFAULT).
    public var kernelErrno: KernelErrno?
    /// Extra machine-readable fields (`miss_iova`, `note`, …), in order.
    public var details: [(String, ErrorDetail)]

    public init(
        _ errno: KernelErrno, _ message: String, kernelErrno: KernelErrno? = nil,
        details: [(String, ErrorDetail)] = []
    ) {
        self.errno = errno
        self.message = "\(errno.name): \(message)"
        self.kernelErrno = kernelErrno
        self.details = details
    }

    public var description: String { message }

    public static func == (a: VDPAError, b: VDPAError) -> Bool {
        a.errno == b.errno && a.message == b.message && a.kernelErrno == b.kernelErrno
            && a.details.map(\.0) == b.details.map(\.0) && a.details.map(\.1) == b.details.map(\.1)
    }

    /// An error on the IOTLB write path, which the kernel reports as EFAULT (R3).
    static func iotlb(_ errno: KernelErrno, _ message: String, details: [(String, ErrorDetail)] = []) -> VDPAError {
        VDPAError(errno, message, kernelErrno: errno == .EFAULT ? nil : .EFAULT, details: details)
    }
}
