// UnixSocketAddress.swift — a Unix-domain socket address built from a path,
// for the daemon's listener, the client library and the tests: one place
// that knows sun_path's size and the sockaddr casts bind and connect need.
#if canImport(Glibc)
    import Glibc
#endif

/// A filesystem Unix-domain socket address.
public struct UnixSocketAddress: Sendable {
    private var storage = sockaddr_un()

    /// nil when `path` (with its terminating NUL) does not fit in `sun_path` (108 bytes on Linux).
    public init?(path: String) {
        storage.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: storage.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in raw.copyBytes(from: bytes) }
    }

    /// Calls `body` with the address as the `sockaddr` pointer and length that `bind` and `connect` take.
    public func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T) rethrows -> T {
        try withUnsafePointer(to: storage) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
