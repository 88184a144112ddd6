// DaemonHarness.swift — starts the real built `vdpad` on a socket in a fresh
// temporary directory, and a datagram socket that plays systemd's
// NOTIFY_SOCKET, so end-to-end tests see exactly what a VMM and systemd see.
import Foundation
import Testing
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
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
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

final class Daemon {
    let dir = TempDirectory()
    let process = Process()
    var socketPath: String { dir.path + "/vdpad.sock" }
    var statePath: String { dir.path + "/state" }
    var configPath: String { dir.path + "/vdpad.toml" }
    let stderr = Pipe()

    static let defaultConfig = """
        [[devices]]
        name = "vdpa0"
        mgmtdev = "vdpasim_net"
        """

    /// Starts vdpad and waits until it answers (or fails the test).
    init(config: String = Daemon.defaultConfig, environment: [String: String] = [:], wait: Bool = true,
         reuseStateOf other: Daemon? = nil) throws {
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: product("vdpad"))
        let state = other?.statePath ?? statePath
        process.arguments = ["--config", configPath, "--socket", socketPath, "--state-dir", state]
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "NOTIFY_SOCKET")
        env.removeValue(forKey: "LISTEN_FDS")
        env.removeValue(forKey: "WATCHDOG_USEC")
        env.removeValue(forKey: "WATCHDOG_PID")
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardError = stderr
        try process.run()
        if wait { try waitUntilServing() }
    }

    func waitUntilServing() throws {
        for _ in 0..<400 {
            if let c = try? VDPAClient(path: socketPath, timeout: 10), (try? c.call("ping")) == "pong" { return }
            if !process.isRunning { throw ClientError("vdpad exited: \(stderrText())") }
            usleep(25_000)
        }
        throw ClientError("vdpad did not answer on \(socketPath)")
    }

    func client() throws -> VDPAClient { try VDPAClient(path: socketPath, timeout: 20) }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for exit; returns the status.
    func waitForExit() -> Int32 {
        for _ in 0..<400 where process.isRunning { usleep(25_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    func stderrText() -> String {
        if process.isRunning { return "" }
        return String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

/// Runs a call expected to fail; returns the remote error.
func expectRemoteError(_ errno: String?, code: Int? = nil, _ body: () throws -> Void,
                       sourceLocation: SourceLocation = #_sourceLocation) -> RemoteError? {
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
