// Syscall.swift — what every system call site shares: the one EINTR retry
// (they were hand-written loops, one per site) and swift-system's errno type
// with its text, so a failure is reported the same way everywhere.
#if canImport(Glibc)
    import Glibc
#endif
import SystemPackage

/// Runs `call` again while it fails with EINTR; returns its last result (errno is left as it set it).
@inlinable
public func retryingOnEINTR<Result: BinaryInteger>(_ call: () -> Result) -> Result {
    while true {
        let result = call()
        if result < 0 && errno == EINTR { continue }
        return result
    }
}

/// An errno value as a type: swift-system's, so a failure keeps its number and is told as text (strerror's,
/// e.g. "No such file or directory") the same way everywhere.
public typealias Errno = SystemPackage.Errno

extension Errno {
    /// The calling thread's errno now (read it before any other call can change it); swift-system keeps its
    /// own accessor internal.
    public static var current: Errno { Errno(rawValue: errno) }
}

/// A system call that failed: what was called, on what, and its errno.
public struct SystemCallError: Error, CustomStringConvertible {
    public var call: String
    public var errno: Errno

    /// `call` names the call and its object ("open /var/lib/vdpad/devices.json.tmp"); the errno is the current one.
    public init(_ call: String, _ errno: Errno = .current) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(errno)" }
}
