// vdpad — the daemon executable: flags over the config file, then Daemon.run().
import ArgumentParser
import Logging
import UnixSocket
import VDPADaemon
import VDPARPC
#if canImport(Glibc)
    import Glibc
#endif

struct VDPAD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vdpad",
        abstract: "Serve vDPA devices to VMMs and admins as JSON-RPC 2.0 over a Unix socket.",
        discussion: """
            Flags override the config file. Without --socket the socket is VDPAD_SOCKET,
            else /run/vdpad/vdpad.sock for root, else $XDG_RUNTIME_DIR/vdpad.sock
            (./.vdpad/vdpad.sock when XDG_RUNTIME_DIR is unset); a socket passed by
            systemd (socket activation) wins over all of them.
              vdpad --config config/vdpad.toml
              vdpad --socket /tmp/v/vdpad.sock --state-dir /tmp/v/state --log-level debug
            Signals: SIGTERM stops (in-flight requests are answered; with keep_sessions
            under a service manager, the sessions wait in its store for the next start),
            SIGHUP reloads the config, SIGUSR2 upgrades in place: the binary is executed
            again with every session kept (vdpad-cli daemon upgrade asks the same).
            """,
        version: "vdpad \(Daemon.version) (protocol 1)"
    )

    @Option(help: "Config file (TOML). Default: none, built-in defaults.")
    var config: String?

    @Option(help: "Socket path to create.")
    var socket: String?

    @Option(name: .customLong("state-dir"), help: "Directory for devices.json (default /var/lib/vdpad for root, else ./.vdpad/state).")
    var stateDir: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @Flag(name: .customLong("openrpc"), help: "Print the OpenRPC document rpc.discover answers (docs/openrpc.json) and exit.")
    var printOpenRPC = false

    func run() throws {
        if printOpenRPC {
            print(VDPAService.discoveryDocument(version: Daemon.version).prettyText)
            return
        }
        var cfg = DaemonConfig()
        if let config {
            let text: String
            do {
                text = try String(decoding: readFile(config), as: UTF8.self)
            } catch {
                throw ValidationError("cannot read config \(config): \(error)")
            }
            do { cfg = try DaemonConfig.parse(text) } catch { throw ValidationError("\(config): \(error)") }
        }
        if let logLevel { cfg.logLevel = logLevel }
        guard let level = Logger.Level(rawValue: cfg.logLevel) else { throw ValidationError("unknown log level \(cfg.logLevel)") }
        let root = getuid() == 0
        let env = { (name: String) in getenv(name).map { String(cString: $0) } }
        let socketPath = socket ?? env(DefaultSocketPath.environmentVariable) ?? cfg.socketPath ?? DefaultSocketPath.forDaemon()
        let stateDirectory = stateDir ?? cfg.stateDirectory ?? (root ? "/var/lib/vdpad" : "./.vdpad/state")
        LoggingSystem.bootstrap { _ in StderrLogHandler(level: level) }
        let logger = Logger(label: "vdpad")
        do {
            let daemon = try Daemon(config: cfg, configPath: config, socketPath: socketPath, stateDirectory: stateDirectory, logger: logger)
            try daemon.run()
        } catch {
            logger.critical("vdpad cannot start: \(error)")
            throw ExitCode(1)
        }
    }
}

VDPAD.main()
