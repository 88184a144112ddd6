// Service.swift — the JSON-RPC front end of the registry: the method table
// decodes params, calls the typed `DeviceRegistry` (VDPARegistry) and encodes
// its answer; this type adds what is the wire's own — the daemon's identity,
// request and error counts, and event notifications as JSON.  No sockets: a
// connection is an id plus a sink that receives notifications, so the whole
// protocol runs in-process in tests.
import Logging
import Synchronization
import VDPACore
import VDPADataPath
import VDPAJSON
import VDPAMetrics
import VDPARegistry

/// Where a connection's notifications go (the daemon writes them to the socket).
public protocol NotificationSink: AnyObject, Sendable {
    func send(_ notification: JSON)
    /// Whether the client is gone before its connection's end was read (see `EventSubscriber.peerHungUp`).
    var peerHungUp: Bool { get }
}

extension NotificationSink {
    public var peerHungUp: Bool { false }
}

/// Hands a connection's events to its sink as `event` notifications.
final class EventNotifier: EventSubscriber {
    let sink: any NotificationSink
    init(_ sink: any NotificationSink) { self.sink = sink }
    func deliver(_ event: Event) {
        sink.send(["jsonrpc": "2.0", "method": "event", "params": VDPAService.eventJSON(event)])
    }
    var peerHungUp: Bool { sink.peerHungUp }
}

public final class VDPAService: Sendable {
    /// The typed service every method calls.
    public let registry: DeviceRegistry
    var limits: ServiceLimits { registry.limits }
    let requestCount = Atomic<Int>(0)
    let errorCount = Atomic<Int>(0)
    let started = ContinuousClock.now
    /// What `daemon_upgrade` asks of the daemon (it re-executes itself once the reply is committed); nil where
    /// there is no daemon to upgrade (tests, the benchmark) or sessions would not survive it.
    public let upgrade = Locked<(@Sendable () -> String?)?>(nil)
    /// The session journal's size and generation, for get_stats (nil: no journal).
    public let journalStats = Locked<(@Sendable () -> (bytes: Int, generation: UInt64))?>(nil)
    let version: String
    let pid: Int32
    let logger: Logger

    /// The Prometheus exposition of `metrics` and the daemon's textfile (built only when asked for).
    let metrics = MetricsExporter()

    /// Whether plain map/unmap requests skip the JSON tree (FastPath.swift); tests turn it off to compare.
    let useFastPath: Bool

    public convenience init(
        limits: ServiceLimits = ServiceLimits(), version: String, pid: Int32,
        logger: Logger = Logger(label: "vdpad.rpc", factory: { _ in SwiftLogNoOpLogHandler() }),
        parents: [ManagementDevice] = ManagementDevice.builtIn,
        persist: @escaping @Sendable ([DeviceRecord]) throws -> Void = { _ in },
        journal: (any SessionJournal)? = nil
    ) {
        self.init(
            limits: limits, version: version, pid: pid, logger: logger, parents: parents, persist: persist, useFastPath: true,
            journal: journal)
    }

    /// `useFastPath: false` answers every text through the general path: the reference that tests and
    /// the fuzzer compare the fast path with, byte for byte.
    public init(
        limits: ServiceLimits, version: String, pid: Int32, logger: Logger, parents: [ManagementDevice] = ManagementDevice.builtIn,
        persist: @escaping @Sendable ([DeviceRecord]) throws -> Void, useFastPath: Bool, journal: (any SessionJournal)? = nil
    ) {
        registry = DeviceRegistry(io: ProcessDeviceIO(), limits: limits, logger: logger, parents: parents, persist: persist, journal: journal)
        self.logger = logger
        self.version = version
        self.pid = pid
        self.useFastPath = useFastPath && Self.fastPathAvailable
    }

    /// The fast scanner reads bytes eight at a time and compares them with names spelt as little-endian
    /// words (FastScanner.swift); on a big-endian host those compares would never match, so there the
    /// general path answers everything.
    static var fastPathAvailable: Bool {
        #if _endian(little)
            true
        #else
            false
        #endif
    }

    // MARK: Connections

    public func connectionOpened(_ connection: UInt64, sink: any NotificationSink) {
        registry.connectionOpened(connection, subscriber: EventNotifier(sink))
    }

    /// Releases every device the connection owns (docs/protocol.md §6).
    public func connectionClosed(_ connection: UInt64) { registry.connectionClosed(connection) }

    /// See `DeviceRegistry.descriptorsReceived`.
    public func descriptorsReceived(_ fds: [Int32], on connection: UInt64) -> Bool {
        registry.descriptorsReceived(fds, on: connection)
    }

    public var connectionCount: Int { registry.connectionCount }

    /// Every device's and queue's counters in the Prometheus text format (the `metrics` method, the textfile).
    public func metricsText() -> String {
        let uptime = Int((ContinuousClock.now - started).components.seconds)
        let daemon = DaemonSnapshot(
            connections: connectionCount, requests: requestCount.load(ordering: .relaxed),
            errors: errorCount.load(ordering: .relaxed), uptimeSeconds: uptime)
        return metrics.exposition(devices: registry.snapshots(), daemon: daemon)
    }

    /// How many devices exist (no device is waited for).
    public var deviceCount: Int { registry.deviceCount }

    /// Waits for every device in turn (the watchdog: a device stuck in an operation stops the pings).
    public func probeDevices() { registry.probeDevices() }

    /// The records of every device, sorted by name (for the state file).
    public func deviceRecords() -> [DeviceRecord] { registry.deviceRecords() }

    /// Creates devices from the state file or config at start, without persisting again.
    public func restore(_ records: [DeviceRecord]) throws(RPCError) {
        do throws(VDPAError) { try registry.restore(records) } catch { throw RPCError(error) }
    }

    /// `restore`, with the failure as text (nil on success).
    public func restoreReportingProblem(_ records: [DeviceRecord]) -> String? {
        do throws(VDPAError) {
            try registry.restore(records)
            return nil
        } catch {
            return error.message
        }
    }
}
