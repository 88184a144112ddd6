// SystemdTests.swift — the daemon under a fake systemd: notifications on a
// datagram NOTIFY_SOCKET, socket activation, signals, restart with state, and
// the unit files themselves.
import Foundation
import Testing
import UnixSocket
import VDPAClient

@Suite("systemd and lifecycle", .serialized)
struct SystemdTests {
    @Test("READY=1 after the socket listens, WATCHDOG=1, RELOADING=1 on SIGHUP, STOPPING=1 and exit 0 on SIGTERM")
    func notifications() throws {
        let dir = TempDirectory()
        let notify = NotifySocket(path: dir.path + "/notify")
        let d = try Daemon(environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"], wait: false)
        let ready = notify.waitFor("READY=1")
        #expect(ready.last?.contains("STATUS=serving 1 devices") == true)
        #expect((try d.client().call("ping")) == "pong", "READY=1 came after the socket listens")
        #expect(notify.waitFor("WATCHDOG=1").last?.contains("WATCHDOG=1") == true)
        try (Daemon.defaultConfig + "\n[[devices]]\nname = \"blk0\"\nmgmtdev = \"vdpasim_blk\"\n").write(
            toFile: d.configPath, atomically: true, encoding: .utf8)
        d.signal(SIGHUP)
        let reload = notify.waitFor("RELOADING=1")
        #expect(reload.last?.contains("MONOTONIC_USEC=") == true)
        #expect(notify.waitFor("READY=1").last?.contains("READY=1") == true)
        #expect(try d.client().call("get_device", ["device": "blk0"])["mgmtdev"] == "vdpasim_blk")
        let vmm = try d.client()
        try vmm.call("open", ["device": "vdpa0"])
        d.signal(SIGTERM)
        #expect(notify.waitFor("STOPPING=1").last?.contains("STOPPING=1") == true)
        #expect(d.waitForExit() == 0)
    }

    @Test("socket activation through systemd-socket-activate: the fd named vdpad is served")
    func socketActivation() throws {
        let dir = TempDirectory()
        let path = dir.path + "/activated.sock"
        let activator = try Child(
            "/usr/bin/systemd-socket-activate",
            [
                "-l", dir.path + "/other.sock", "-l", path, "--fdname=other:vdpad", product("vdpad"), "--state-dir", dir.path + "/state", "--socket",
                dir.path + "/unused.sock"
            ],
            outputIn: dir.path)
        defer { kill(activator.pid, SIGTERM); activator.wait(seconds: 10) }
        var answered = false
        for _ in 0..<400 {
            if let c = try? VDPAClient(path: path, timeout: 10), (try? c.call("ping")) == "pong" { answered = true; break }
            usleep(25_000)
        }
        #expect(answered)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/unused.sock"), "a passed socket wins over --socket")
    }

    @Test("devices survive a restart; a corrupt state file is moved aside and reported")
    func restart() throws {
        let first = try Daemon()
        try first.client().call("add_device", ["name": "keep", "mgmtdev": "mlx5_net", "max_vqp": 3, "legacy": true])
        first.signal(SIGTERM)
        #expect(first.waitForExit() == 0)
        let second = try Daemon(reuseStateOf: first)
        let kept = try second.client().call("get_device", ["device": "keep"])
        #expect(kept["nvqs"] == 7 && kept["legacy"] == true)
        second.signal(SIGTERM)
        _ = second.waitForExit()
        try "{ not json".write(toFile: first.statePath + "/devices.json", atomically: true, encoding: .utf8)
        let third = try Daemon(reuseStateOf: first)
        _ = expectRemoteError("ENODEV") { try third.client().call("get_device", ["device": "keep"]) }
        let files = try FileManager.default.contentsOfDirectory(atPath: first.statePath)
        #expect(files.contains { $0.hasPrefix("devices.json.corrupt-") })
    }

    @Test("a live daemon's socket is refused, a stale one replaced; a bad config exits non-zero naming the key")
    func startupChecks() throws {
        let live = try Daemon()
        let second = try runCommand(product("vdpad"), ["--socket", live.socketPath, "--state-dir", live.dir.path + "/other"], in: live.dir.path)
        #expect(second.status != 0)
        #expect(second.err.contains("already serving"))
        // A stale socket (nobody answers) is replaced.
        let stale = live.dir.path + "/stale.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        _ = UnixSocketAddress(path: stale)!.withSockaddr { bind(fd, $0, $1) }
        close(fd)
        let replacer = try Child(product("vdpad"), ["--socket", stale, "--state-dir", live.dir.path + "/third"], outputIn: live.dir.path)
        var answered = false
        for _ in 0..<400 where !answered {
            answered = (try? VDPAClient(path: stale, timeout: 5).call("ping")) == "pong"
            usleep(25_000)
        }
        #expect(answered, "a stale socket file is replaced")
        kill(replacer.pid, SIGTERM)
        #expect(replacer.wait() == 0)
        let bad = try Daemon(config: "socket_mode = \"999\"\n", wait: false)
        #expect(bad.waitForExit() != 0)
        #expect(bad.stderrText().contains("socket_mode"))
        let typo = try Daemon(config: "[limits]\nmax_conections = 3\n", wait: false)
        #expect(typo.waitForExit() != 0)
        #expect(typo.stderrText().contains("limits.max_conections"))
    }

    @Test("unit files: systemd-analyze verify is silent and the exposure is at most 2.0")
    func unitFiles() throws {
        let dir = TempDirectory()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for unit in ["vdpad.service", "vdpad.socket"] {
            var text = try String(contentsOf: root.appendingPathComponent("systemd/\(unit)"), encoding: .utf8)
            text = text.replacingOccurrences(of: "/usr/local/bin/vdpad", with: product("vdpad"))
            try text.write(toFile: dir.path + "/" + unit, atomically: true, encoding: .utf8)
        }
        func run(_ args: [String]) throws -> (Int32, String) {
            let r = try runCommand("/usr/bin/systemd-analyze", args, in: dir.path)
            return (r.status, r.out + r.err)
        }
        let (status, verify) = try run(["verify", dir.path + "/vdpad.socket", dir.path + "/vdpad.service"])
        #expect(status == 0 && verify.isEmpty, "\(verify)")
        let (_, security) = try run(["security", "--offline=yes", dir.path + "/vdpad.service"])
        let level = security.split(separator: "\n").first { $0.contains("Overall exposure level") }
            .flatMap { line in line.split(separator: ":").last?.split(separator: " ").first }.flatMap { Double($0) }
        #expect(level != nil && level! <= 2.0, "\(security.suffix(300))")
    }
}
