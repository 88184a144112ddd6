// Daemon.swift — the runtime: state restore, the listener, connections,
// signals (TERM stops, HUP reloads), the systemd notifications and the
// watchdog.  READY=1 is sent only once the socket listens and the devices
// are restored.
// Dispatch's source types are not marked Sendable on Linux; here they are only touched under a lock.
@preconcurrency import Dispatch
import Logging
import UnixSocket
import VDPARPC
import VDPARegistry
#if canImport(Glibc)
    import Glibc
#endif

public final class Daemon: Sendable {
    public static let version = "0.1.0"

    let config: DaemonConfig
    let configPath: String?
    let socketPath: String
    let stateStore: StateStore
    let logger: Logger
    let service: VDPAService
    let adminGroup: gid_t?
    private let queue = DispatchQueue(label: "vdpad.main")
    let connections = Locked<[UInt64: Connection]>([:])
    private let ownsSocketPath: Bool
    /// The descriptors the last process left (docs/restart.md), until `restoreSessions` took them.
    let handover: Locked<Handover?>
    /// Where the descriptors a restart needs are kept, and the session journal (nil: keep_sessions = false).
    let fdStore: FDStore
    let journal: DaemonJournal?
    /// What changes over the daemon's life, behind one lock (touched at start, on the main queue and by the
    /// watchdog's queue).
    let runtime: Locked<Runtime>

    /// Where the daemon is in its life; it only moves forward.
    enum Lifecycle: Equatable, Sendable {
        /// Restoring state and opening the socket; no READY=1 yet.
        case starting
        /// READY=1 sent; accepting connections.
        case serving
        /// SIGTERM or SIGINT: no new connections, answering what each sent, then exit 0.
        case stopping
    }

    struct Runtime: Sendable {
        var lifecycle = Lifecycle.starting
        var listenFD: Int32
        var acceptSource: (any DispatchSourceRead)?
        var watchdog: (any DispatchSourceTimer)?
        var metricsTimer: (any DispatchSourceTimer)?
        /// The last textfile failure logged, so a file that cannot be written is reported once, not every interval.
        var metricsProblem: String?
        var nextConnection: UInt64 = 0
    }

    /// Where the daemon is now.
    var lifecycle: Lifecycle { runtime.withLock { $0.lifecycle } }

    public init(config: DaemonConfig, configPath: String?, socketPath: String, stateDirectory: String, logger: Logger) throws {
        self.config = config
        self.configPath = configPath
        self.socketPath = socketPath
        self.logger = logger
        stateStore = StateStore(directory: stateDirectory)
        if let name = config.adminGroup {
            guard let g = Listener.groupID(name) else { throw ConfigError("admin_group \"\(name)\" is not a known group") }
            adminGroup = g
        } else {
            adminGroup = nil
        }
        let store = stateStore
        // vdpad.socket names its fd "vdpad" (FileDescriptorName=); without that name, take the first.  Whatever
        // else came back is a previous process's sessions (Handover.swift).
        let handover = Handover(Systemd.listenFDs() + Handover.inherited())
        ownsSocketPath = handover.listener == nil || handover.ownsListener
        fdStore = FDStore(logger: logger, supervised: getenv("NOTIFY_SOCKET") != nil)
        if let listener = handover.listener { fdStore.adopt(listener, name: ownsSocketPath ? "vdpad-owned" : "vdpad") }
        if config.keepSessions {
            journal = try DaemonJournal(
                store: fdStore, logger: logger, generation: handover.nextGeneration, complete: handover.journal == nil)
        } else {
            journal = nil
        }
        service = VDPAService(
            limits: config.limits, version: Self.version, pid: getpid(), logger: logger,
            persist: { try store.save($0) }, journal: journal)
        self.handover = Locked(handover)
        runtime = Locked(Runtime(listenFD: handover.listener ?? -1))
        executablePath = (try? readLink("/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The binary this process was started from, by path: an upgrade runs what is at that path now.
    let executablePath: String

    /// Restores state, listens, notifies READY=1, and serves until SIGTERM.  Never returns.
    public func run() throws -> Never {
        // First, before any thread of ours exists: a signal sent from now on waits for `DaemonSignals.serve`
        // (a SIGTERM that comes as soon as the socket exists, or during a restore, stops the daemon once it serves).
        DaemonSignals.block()
        ReaderPark.install()
        signal(SIGPIPE, SIG_IGN)
        raiseFileLimit()
        try restoreState()
        // Before the sessions come back: a connection given back is answered from then on.
        if let journal {
            service.journalStats.withLock { $0 = { (journal.bytes, journal.generation) } }
            service.upgrade.withLock {
                $0 = { [weak self] in
                    guard let self else { return "the daemon is stopping" }
                    return self.upgrade()
                }
            }
        }
        restoreSessions()
        if ownsSocketPath && runtime.withLock({ $0.listenFD }) < 0 {
            var group: gid_t?
            if let name = config.socketGroup {
                guard let g = Listener.groupID(name) else { throw ConfigError("socket_group \"\(name)\" is not a known group") }
                group = g
            }
            let fd = try Listener.create(path: socketPath, mode: config.socketMode, group: group)
            runtime.withLock { $0.listenFD = fd }
            fdStore.store(fd, name: "vdpad-owned")
        }
        let listenFD = runtime.withLock { $0.listenFD }
        Listener.setNonBlocking(listenFD)
        startAccepting(listenFD)
        startWatchdog()
        startMetricsTextfile()
        runtime.withLock { $0.lifecycle = .serving }
        logger.notice(
            "vdpad ready",
            metadata: [
                "socket": "\(ownsSocketPath ? socketPath : "systemd fd \(listenFD)")",
                "devices": "\(service.deviceCount)"
            ])
        notify("READY=1\nSTATUS=\(statusLine())")
        DaemonSignals.serve(on: queue) { sig in
            switch sig {
            case SIGHUP: reload()
            case SIGUSR2:
                if let problem = upgradeProblem() {
                    logger.error("cannot upgrade in place", metadata: ["reason": "\(problem)"])
                } else {
                    reexecute()
                }
            default: stop()
            }
        }
    }

    /// Every connection is a descriptor: lift the soft RLIMIT_NOFILE to the hard limit so
    /// max_connections, not the 1024 default, is what bounds clients.
    private func raiseFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logger.warning("could not raise the open-file limit", metadata: ["error": "\(Errno.current)"])
        }
    }

    func statusLine() -> String {
        "serving \(service.deviceCount) devices, \(service.connectionCount) connections"
    }

    private func restoreState() throws {
        mkdir(stateStore.directory, 0o700)
        let loaded = stateStore.load()
        if let aside = loaded.movedAside {
            logger.error("state file is corrupt; moved aside", metadata: ["path": "\(aside)", "problem": "\(loaded.problem ?? "")"])
        }
        var records = loaded.records
        for device in config.devices where !records.contains(where: { $0.name == device.name }) { records.append(device) }
        if let problem = service.restoreReportingProblem(records) {
            throw ConfigError("cannot create the configured devices: \(problem)")
        }
        guard records != loaded.records else { return }
        do {
            try stateStore.save(service.deviceRecords())
        } catch {
            // Serve what exists; every later change of the device set is refused with EIO.
            logger.error(
                "cannot write the state file; device changes will be refused until it is writable",
                metadata: ["path": "\(stateStore.path)", "error": "\(error)"])
        }
    }

    // MARK: Accepting

    private func startAccepting(_ listenFD: Int32) {
        let source = DispatchSource.makeReadSource(fileDescriptor: listenFD, queue: queue)
        source.setEventHandler { [weak self] in self?.acceptAll(listenFD) }
        source.resume()
        runtime.withLock { $0.acceptSource = source }
    }

    private func acceptAll(_ listenFD: Int32) {
        while true {
            let fd = retryingOnEINTR { accept(listenFD, nil, nil) }
            if fd < 0 {
                if errno != EAGAIN && errno != EWOULDBLOCK {
                    logger.error("accept failed", metadata: ["error": "\(Errno.current)"])
                }
                return
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            admit(fd)  // left blocking: its reader thread blocks in recv; sends use MSG_DONTWAIT
        }
    }

    /// Tells systemd; a failure (as opposed to "not under systemd") is logged with its errno.
    private func notify(_ state: String) {
        if case .failed(let errno) = Systemd.notify(state) {
            logger.warning("sd_notify failed", metadata: ["state": "\(state.prefix { $0 != "=" })", "errno": "\(errno)"])
        }
    }

    private func admit(_ fd: Int32) {
        guard let cred = Listener.peerCredentials(fd) else {
            close(fd)
            return
        }
        if connections.withLock({ $0.count }) >= config.maxConnections {
            let line = service.connectionLimitError(maxConnections: config.maxConnections)
            _ = line.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            close(fd)
            logger.warning("connection refused: max_connections reached", metadata: ["pid": "\(cred.pid)"])
            return
        }
        let id = runtime.withLock { r -> UInt64 in
            r.nextConnection += 1
            return r.nextConnection
        }
        var log: ConnectionLog?
        if journal != nil {
            // Stored before a byte is read: whatever the socket lets go from now on lands in a file the store keeps.
            do {
                let made = try ConnectionLog.create(connection: id)
                for (name, descriptor) in zip(ConnectionLog.names(id), [fd, made.inbox.fd, made.outbox.fd]) {
                    fdStore.store(descriptor, name: name)
                }
                log = made
            } catch {
                logger.error("cannot keep a connection's input for a restart; serving it without", metadata: ["error": "\(error)"])
            }
        }
        guard let connection = makeConnection(id: id, fd: fd, log: log, credentials: cred), connection.start() else {
            connections.withLock { _ = $0.removeValue(forKey: id) }
            if log != nil { for name in ConnectionLog.names(id) { fdStore.remove(name) } }
            close(fd)
            return
        }
    }

    /// A connection on `fd` (accepted, or given back by a restart with its `log`), in the table, not started.
    func makeConnection(id: UInt64, fd: Int32, log: ConnectionLog?, credentials: Listener.PeerCredentials? = nil) -> Connection? {
        guard let cred = credentials ?? Listener.peerCredentials(fd) else { return nil }
        let groups = Listener.groups(of: cred.uid, primary: cred.gid)
        let isAdmin = cred.uid == 0 || adminGroup.map { groups.contains($0) } == true
        let caller = Caller(
            connection: id, pid: cred.pid, uid: cred.uid, gid: cred.gid,
            supplementaryGroups: groups, isAdmin: isAdmin)
        let limits = Connection.ConnectionLimits(
            maxRequestBytes: config.maxRequestBytes, maxOutputBytes: config.maxOutputBytes,
            idleTimeoutSeconds: config.idleTimeoutSeconds)
        let connection = Connection(
            id: id, fd: fd, caller: caller, service: service, limits: limits,
            logger: logger, journaled: log.flatMap { log in journal.map { (log, $0) } }
        ) { [weak self] id in self?.connectionEnded(id) }
        connections.withLock { $0[connection.id] = connection }
        return connection
    }

    func connectionEnded(_ id: UInt64) {
        let remaining = connections.withLock { table -> Int in
            table.removeValue(forKey: id)
            return table.count
        }
        queue.async { [self] in
            if lifecycle == .stopping && remaining == 0 { finishStop() }
        }
    }

    // MARK: Signals

    /// SIGTERM: stop accepting, answer what each connection already sent, close, exit 0.
    private func stop() {
        let accepting = runtime.withLock { r -> (any DispatchSourceRead)?? in
            guard r.lifecycle != .stopping else { return nil }
            r.lifecycle = .stopping
            return .some(r.acceptSource)
        }
        guard let accepting else { return }
        if let journal, fdStore.supervised {
            // Under a service manager the sessions are in its store: SIGTERM leaves them there.  A restart
            // (`systemctl restart`, Restart=) hands them to the next process, which goes on where this one stopped;
            // a stop empties the store, which closes the connections (docs/restart.md).  Each round in flight
            // commits first, and what was answered is offered to each socket once.
            logger.notice("stopping on signal; sessions stay in the service manager's file descriptor store")
            notify("STOPPING=1\nSTATUS=stopping; sessions kept for the next start")
            _ = parkReaders()
            journal.quiesced {
                for c in connections.withLock({ Array($0.values) }) { c.sendPending() }
                logger.notice("stopped")
                exit(0)
            }
        }
        logger.notice("stopping on signal")
        notify("STOPPING=1\nSTATUS=stopping")
        accepting?.cancel()
        if ownsSocketPath { unlink(socketPath) }
        let open = connections.withLock { Array($0.values) }
        if open.isEmpty { finishStop() }
        for c in open { c.shutdown() }
        // Never hang on a connection that does not let go.
        queue.asyncAfter(deadline: .now() + 5) { [self] in finishStop() }
    }

    private func finishStop() {
        logger.notice("stopped")
        exit(0)
    }

    /// SIGHUP: re-read the config; create configured devices that do not exist yet.  Limits and
    /// the socket need a restart (they are fixed for live connections).
    private func reload() {
        notify("RELOADING=1\nMONOTONIC_USEC=\(Systemd.monotonicMicroseconds())\nSTATUS=reloading")
        defer { notify("READY=1\nSTATUS=\(statusLine())") }
        guard let configPath else {
            logger.info("reload: no config file to re-read")
            return
        }
        do {
            let fresh = try DaemonConfig.parse(String(decoding: try readFile(configPath), as: UTF8.self))
            let existing = Set(service.deviceRecords().map(\.name))
            let missing = fresh.devices.filter { !existing.contains($0.name) }
            if !missing.isEmpty {
                try service.restore(missing)
                try stateStore.save(service.deviceRecords())
            }
            logger.notice("reloaded configuration", metadata: ["path": "\(configPath)", "new_devices": "\(missing.count)"])
        } catch {
            logger.error("reload failed; keeping the running configuration", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Upgrade in place

    /// daemon_upgrade and SIGUSR2 (docs/restart.md): re-executes the binary at `executablePath` with every stored
    /// descriptor inherited under its name (VDPAD_HANDOVER, read with the service manager's LISTEN_FDNAMES by
    /// `Handover`); the new process restores the sessions as after a crash, with no round in flight.  Returns why
    /// it cannot, or nil once it is on its way: the signal thread does it, as for a SIGUSR2 (`DaemonSignals`).
    func upgrade() -> String? {
        if let problem = upgradeProblem() { return problem }
        DaemonSignals.raise(SIGUSR2)
        return nil
    }

    /// Why an upgrade cannot happen now.  A request answered while the daemon still starts (a connection a restart
    /// gave back answers before READY=1) is not refused: the signal thread takes the SIGUSR2 once it serves.
    private func upgradeProblem() -> String? {
        guard journal != nil else { return "keep_sessions is off" }
        guard lifecycle != .stopping else { return "the daemon is stopping" }
        guard access(executablePath, X_OK) == 0 else { return "\(executablePath) is not executable: \(Errno.current)" }
        return nil
    }

    private func reexecute() {
        guard let journal else { return }
        logger.notice("upgrading in place", metadata: ["binary": "\(executablePath)", "connections": "\(service.connectionCount)"])
        notify("RELOADING=1\nMONOTONIC_USEC=\(Systemd.monotonicMicroseconds())\nSTATUS=upgrading in place")
        let parked = parkReaders()
        defer { for c in parked { c.park.unpark() } }  // reached only when the exec failed
        journal.quiesced {
            // The descriptors stay at their numbers (other threads run until the exec, and a number that moved
            // under a data-path thread would take its next eventfd signal into another file): only their
            // close-on-exec flag is cleared, and the new process finds them by VDPAD_HANDOVER.  Nothing closes a
            // stored descriptor meanwhile: every path that does holds the journal, which this holds exclusively.
            let entries = fdStore.all
            for (name, fd) in entries {
                logger.debug("handing over", metadata: ["name": "\(name)", "fd": "\(fd)"])
                _ = fcntl(fd, F_SETFD, 0)
            }
            setenv(Handover.environmentKey, Handover.encode(entries), 1)
            let arguments = CommandLine.arguments
            var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
            execv(executablePath, &argv)
            logger.error("cannot upgrade in place: exec failed", metadata: ["error": "\(Errno.current)"])
            unsetenv(Handover.environmentKey)
            for (_, fd) in entries { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            notify("READY=1\nSTATUS=\(statusLine())")
        }
    }

    /// Stops every connection's reader before its next receive (ReaderPark): what this process received, it has
    /// answered or holds in the store, and nothing more comes in until the exec or the exit.
    private func parkReaders() -> [Connection] {
        let open = connections.withLock { Array($0.values) }
        ReaderPark.parkAll(open.map(\.park))
        return open
    }

    // MARK: Watchdog

    /// WATCHDOG=1 at half the interval, sent only after every device has been free once and the
    /// daemon's queue has answered: a hung device or queue stops the pings and gets the daemon restarted.
    private func startWatchdog() {
        guard let usec = Systemd.watchdogInterval() else { return }
        let probe = DispatchQueue(label: "vdpad.watchdog")
        let timer = DispatchSource.makeTimerSource(queue: probe)
        let interval = DispatchTimeInterval.microseconds(Int(usec / 2))
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [weak self] in
            guard let self else { return }
            self.service.probeDevices()
            self.queue.sync {}
            self.notify("WATCHDOG=1\nSTATUS=\(self.statusLine())")
        }
        timer.resume()
        runtime.withLock { $0.watchdog = timer }
    }

    // MARK: Metrics textfile

    /// Every `metrics_interval_s`, the `metrics` exposition replaces `metrics_textfile` atomically, for
    /// node_exporter's textfile collector.  Off (no timer, no work) unless the config names a file.
    private func startMetricsTextfile() {
        guard let path = config.metricsTextfile else { return }
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "vdpad.metrics"))
        timer.schedule(deadline: .now(), repeating: .seconds(config.metricsIntervalSeconds))
        timer.setEventHandler { [weak self] in self?.writeMetrics(to: path) }
        timer.resume()
        runtime.withLock { $0.metricsTimer = timer }
        logger.info("writing metrics", metadata: ["path": "\(path)", "interval_s": "\(config.metricsIntervalSeconds)"])
    }

    private func writeMetrics(to path: String) {
        var problem: String?
        do {
            try writeFileAtomically(path, Array(service.metricsText().utf8), mode: 0o644, durable: false)
        } catch {
            problem = "\(error)"
        }
        let previous = runtime.withLock { r in
            defer { r.metricsProblem = problem }
            return r.metricsProblem
        }
        if let problem, problem != previous {
            logger.error("cannot write the metrics textfile", metadata: ["path": "\(path)", "error": "\(problem)"])
        } else if problem == nil, previous != nil {
            logger.notice("metrics textfile written again", metadata: ["path": "\(path)"])
        }
    }
}
