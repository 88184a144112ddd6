// DefaultSocketPath.swift — where vdpad listens and where its clients look
// when no path is given: one definition for the daemon, vdpad-cli, vdpad-run
// and the installed units, so they cannot disagree (they once did when
// XDG_RUNTIME_DIR was unset).
#if canImport(Glibc)
    import Glibc
#endif

public enum DefaultSocketPath {
    /// The system daemon's socket: systemd/vdpad.socket listens here, and so does a root vdpad without one.
    public static let system = "/run/vdpad/vdpad.sock"
    /// The variable that overrides every default, for the daemon and its clients alike.
    public static let environmentVariable = "VDPAD_SOCKET"

    /// A per-user daemon's socket: `$XDG_RUNTIME_DIR/vdpad.sock`, else `./.vdpad/vdpad.sock`.
    public static func user(environment: (String) -> String? = processEnvironment) -> String {
        if let dir = environment("XDG_RUNTIME_DIR"), !dir.isEmpty { return dir + "/vdpad.sock" }
        return "./.vdpad/vdpad.sock"
    }

    /// Where a daemon started without `--socket` listens: VDPAD_SOCKET, else the system socket as root,
    /// else the per-user one.
    public static func forDaemon(uid: UInt32 = getuid(), environment: (String) -> String? = processEnvironment) -> String {
        if let path = environment(environmentVariable), !path.isEmpty { return path }
        return uid == 0 ? system : user(environment: environment)
    }

    /// Where a client started without `-s` looks, in order: VDPAD_SOCKET alone when set; else the
    /// system socket, then (not as root) a per-user daemon's.
    public static func forClient(uid: UInt32 = getuid(), environment: (String) -> String? = processEnvironment) -> [String] {
        if let path = environment(environmentVariable), !path.isEmpty { return [path] }
        return uid == 0 ? [system] : [system, user(environment: environment)]
    }

    public static func processEnvironment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}
