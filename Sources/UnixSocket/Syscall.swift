// Syscall.swift — the one EINTR retry every blocking call site shares
// (they were hand-written loops, one per site).
#if canImport(Glibc)
import Glibc
#endif

/// Runs `call` again while it fails with EINTR; returns its last result (errno is left as it set it).
@inlinable
public func retryingOnEINTR<Result: BinaryInteger>(_ call: () -> Result) -> Result {
    while true {
        let result = call()
        if result < 0 && errno == EINTR { continue }
        return result
    }
}
