// DaemonHarness.swift — starts the real built `vdpad` on a socket in a fresh
// temporary directory, and a datagram socket that plays systemd's
// NOTIFY_SOCKET, so end-to-end tests see exactly what a VMM and systemd see.
import Foundation
import Testing
import UnixSocket
import VDPAClient

/// The directory holding the built products (next to the test bundle).
let productsDirectory: URL = {
    if let dir = ProcessInfo.processInfo.environment["VDPAD_PRODUCTS"] { return URL(fileURLWithPath: dir) }
    return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
}()

func product(_ name: String) -> String { productsDirectory.appendingPathComponent(name).path }

final class TempDirectory {
    let path: String
    init() {
        path = "/tmp/vdpad-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A datagram socket standing in for systemd's notification socket.
final class NotifySocket {
    let path: String
    let fd: Int32

    init(path: String) {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        _ = UnixSocketAddress(path: path)!.withSockaddr { bind(fd, $0, $1) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Reads datagrams until one contains `needle` (or the 10 s timeout); returns everything read.
    func waitFor(_ needle: String) -> [String] {
        var seen: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, 4096, 0) }
            guard n > 0 else { return seen }
            let message = String(decoding: buffer[0..<n], as: UTF8.self)
            seen.append(message)
            if message.contains(needle) { return seen }
        }
    }
}

/// A child process started with posix_spawn and reaped with waitpid by us alone.  Foundation's
/// Process reaps on SIGCHLD in the background and, with many children, was seen to miss an
/// exit and hang in waitUntilExit; owning the pid avoids that race.
final class Child {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    private(set) var status: Int32?

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, outputIn dir: String) throws {
        let tag = UInt32.random(in: 0...UInt32.max)
        stdoutPath = dir + "/child-\(tag).out"
        stderrPath = dir + "/child-\(tag).err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let r = posix_spawn(&child, executable, &actions, nil, argv, envp)
        guard r == 0 else { throw ClientError("posix_spawn \(executable): \(String(cString: strerror(r)))") }
        pid = child
    }

    var isRunning: Bool {
        if status != nil { return false }
        var s: Int32 = 0
        let r = waitpid(pid, &s, WNOHANG)
        if r == pid { status = Self.exitCode(s) }
        return status == nil
    }

    static func exitCode(_ s: Int32) -> Int32 { (s & 0x7F) == 0 ? (s >> 8) & 0xFF : 128 + (s & 0x7F) }

    /// Waits up to `seconds`, then SIGKILLs; returns the exit status (128+signal when killed).
    @discardableResult
    func wait(seconds: Double = 15) -> Int32 {
        var waited = 0.0
        while isRunning && waited < seconds {
            usleep(10_000)
            waited += 0.01
        }
        if isRunning {
            kill(pid, SIGKILL)
            var s: Int32 = 0
            waitpid(pid, &s, 0)
            status = Self.exitCode(s)
        }
        return status!
    }

    var standardOutput: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var standardError: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    deinit {
        if isRunning { wait(seconds: 0) }
    }
}

/// Runs a command to completion.
func runCommand(_ executable: String, _ arguments: [String], in dir: String) throws -> (status: Int32, out: String, err: String) {
    let c = try Child(executable, arguments, outputIn: dir)
    let status = c.wait(seconds: 60)
    return (status, c.standardOutput, c.standardError)
}

final class Daemon {
    let dir = TempDirectory()
    private(set) var child: Child!
    var socketPath: String { dir.path + "/vdpad.sock" }
    var statePath: String { dir.path + "/state" }
    var configPath: String { dir.path + "/vdpad.toml" }
    var pid: pid_t { child.pid }

    static let defaultConfig = """
        [[devices]]
        name = "vdpa0"
        mgmtdev = "vdpasim_net"
        """

    /// Starts vdpad and waits until it answers (or fails the test).
    init(
        config: String = Daemon.defaultConfig, environment: [String: String] = [:], wait: Bool = true,
        reuseStateOf other: Daemon? = nil
    ) throws {
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let state = other?.statePath ?? statePath
        var env = ProcessInfo.processInfo.environment
        for key in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC", "WATCHDOG_PID", "VDPAD_SOCKET"] {
            env.removeValue(forKey: key)
        }
        for (k, v) in environment { env[k] = v }
        child = try Child(
            product("vdpad"), ["--config", configPath, "--socket", socketPath, "--state-dir", state],
            environment: env, outputIn: dir.path)
        if wait { try waitUntilServing() }
    }

    func waitUntilServing() throws {
        for _ in 0..<400 {
            if let c = try? VDPAClient(path: socketPath, timeout: 10), (try? c.call("ping")) == "pong" { return }
            if !child.isRunning { throw ClientError("vdpad exited: \(child.standardError)") }
            usleep(25_000)
        }
        throw ClientError("vdpad did not answer on \(socketPath)")
    }

    func client() throws -> VDPAClient { try VDPAClient(path: socketPath, timeout: 20) }

    func signal(_ sig: Int32) { kill(child.pid, sig) }

    /// Waits for exit (SIGKILL after 15 s); returns the status.
    func waitForExit() -> Int32 { child.wait() }

    func stderrText() -> String { child.standardError }

    deinit {
        if child.isRunning {
            kill(child.pid, SIGTERM)
            child.wait(seconds: 10)
        }
    }
}

/// Polls `condition` for up to `seconds` (a disconnect is processed asynchronously by the daemon).
func eventually(seconds: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    var waited = 0.0
    while waited < seconds {
        if try condition() { return true }
        usleep(10_000)
        waited += 0.01
    }
    return try condition()
}

/// Runs a call expected to fail; returns the remote error.
func expectRemoteError(
    _ errno: String?, code: Int? = nil, _ body: () throws -> Void,
    sourceLocation: SourceLocation = #_sourceLocation
) -> RemoteError? {
    do {
        try body()
        Issue.record("expected an error, got success", sourceLocation: sourceLocation)
    } catch let e as RemoteError {
        if let errno { #expect(e.errno == errno, "\(e.message)", sourceLocation: sourceLocation) }
        if let code { #expect(e.code == code, "\(e.message)", sourceLocation: sourceLocation) }
        return e
    } catch {
        Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
