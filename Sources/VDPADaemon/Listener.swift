// Listener.swift — the listening Unix socket: taken from systemd
// (sd_listen_fds) or created here.  Creating refuses to replace a socket that
// a live vdpad still answers on, and replaces a stale one.
import Dispatch
import UnixSocket
#if canImport(Glibc)
    import Glibc
#endif

enum Listener {
    static func address(_ path: String) throws -> UnixSocketAddress {
        guard let address = UnixSocketAddress(path: path) else { throw ConfigError("socket path is too long: \(path)") }
        return address
    }

    /// Whether something accepts connections on `path` right now.
    static func isLive(_ path: String) -> Bool {
        guard let addr = try? address(path) else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return addr.withSockaddr { connect(fd, $0, $1) } == 0
    }

    /// Creates, binds and listens; mode and group applied before anyone can connect.
    static func create(path: String, mode: UInt32, group: gid_t?) throws -> Int32 {
        if access(path, F_OK) == 0 {
            if isLive(path) { throw ConfigError("another vdpad is already serving \(path); stop it first") }
            unlink(path)  // stale socket from a process that died
        }
        let dir = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !dir.isEmpty { mkdir(dir, 0o755) }
        let addr = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError("socket") }
        let old = umask(0o177)
        let r = addr.withSockaddr { bind(fd, $0, $1) }
        umask(old)
        guard r == 0 else { let e = Errno.current; close(fd); throw SystemCallError("bind \(path)", e) }
        if let group, chown(path, uid_t.max, group) != 0 { let e = Errno.current; close(fd); throw SystemCallError("chown \(path)", e) }
        guard chmod(path, mode_t(mode)) == 0 else { let e = Errno.current; close(fd); throw SystemCallError("chmod \(path)", e) }
        guard listen(fd, 512) == 0 else { let e = Errno.current; close(fd); throw SystemCallError("listen \(path)", e) }
        return fd
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// `struct ucred`, which Glibc's Swift module hides (it needs _GNU_SOURCE); same layout.
    struct PeerCredentials {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    /// SO_PEERCRED of a connected socket.
    static func peerCredentials(_ fd: Int32) -> PeerCredentials? {
        var cred = PeerCredentials()
        var len = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0, len == MemoryLayout<PeerCredentials>.size else {
            return nil
        }
        return cred
    }

    /// Supplementary groups of a uid (for `groups`/`admin_group` membership).
    static func groups(of uid: uid_t, primary: gid_t) -> [gid_t] {
        guard let pw = getpwuid(uid) else { return [primary] }
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: 64)
        if getgrouplist(pw.pointee.pw_name, primary, &list, &count) < 0 {
            list = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(pw.pointee.pw_name, primary, &list, &count)
        }
        return Array(list.prefix(Int(max(count, 0))))
    }

    static func groupID(_ name: String) -> gid_t? {
        if let n = gid_t(name) { return n }
        return getgrnam(name).map { $0.pointee.gr_gid }
    }
}
