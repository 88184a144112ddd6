// Config.swift — the daemon's configuration (config/vdpad.toml), parsed with
// TOMLKit.  Every key is checked: an unknown key, a wrong type or a bad value
// is a ConfigError naming the key, so a typo never half-starts the daemon.
import TOMLKit
import VDPACore
import VDPAJSON
import VDPARPC
import VDPARegistry
#if canImport(Glibc)
    import Glibc
#endif

public struct ConfigError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

public struct DaemonConfig: Sendable {
    public var socketPath: String?
    public var socketMode: UInt32 = 0o660
    public var socketGroup: String?
    public var adminGroup: String?
    public var stateDirectory: String?
    public var logLevel = "info"
    public var maxConnections = 1024
    public var maxRequestBytes = 1 << 20
    public var maxOutputBytes = 16 << 20
    public var idleTimeoutSeconds = 30
    public var limits = ServiceLimits()
    public var devices: [DeviceRecord] = []
    /// Where to write the metrics for node_exporter's textfile collector (nil: never written).
    public var metricsTextfile: String?
    public var metricsIntervalSeconds = 15
    /// Sessions survive a restart (docs/restart.md): the journal, the inbox/outbox per connection, the fd store.
    public var keepSessions = true

    public init() {}

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Parses TOML text.  - Throws: `ConfigError` naming the key or line.
    public static func parse(_ text: String) throws(ConfigError) -> DaemonConfig {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw ConfigError("\(e.description) (\(e.source.begin.debugDescription))")
        } catch { throw ConfigError("\(error)") }
        var c = DaemonConfig()
        let top = Keys(table, "")
        try top.only([
            "socket", "socket_mode", "socket_group", "admin_group", "state_dir", "log_level", "limits", "devices",
            "metrics_textfile", "metrics_interval_s", "keep_sessions"
        ])
        c.keepSessions = try top.bool("keep_sessions") ?? c.keepSessions
        c.socketPath = try top.string("socket")
        if let mode = try top.string("socket_mode") {
            guard let m = UInt32(mode, radix: 8), m <= 0o777 else { throw ConfigError("socket_mode \"\(mode)\" is not an octal mode like \"0660\"") }
            c.socketMode = m
        }
        c.socketGroup = try top.string("socket_group").flatMap { $0.isEmpty ? nil : $0 }
        c.adminGroup = try top.string("admin_group").flatMap { $0.isEmpty ? nil : $0 }
        c.stateDirectory = try top.string("state_dir")
        if let level = try top.string("log_level") {
            guard logLevels.contains(level) else { throw ConfigError("log_level \"\(level)\" is not one of \(logLevels.joined(separator: ", "))") }
            c.logLevel = level
        }
        if let path = try top.string("metrics_textfile"), !path.isEmpty {
            guard path.hasPrefix("/"), !path.hasSuffix("/") else {
                throw ConfigError("metrics_textfile \"\(path)\" must be an absolute file path (node_exporter reads *.prom files)")
            }
            c.metricsTextfile = path
        }
        c.metricsIntervalSeconds = try top.positive("metrics_interval_s") ?? c.metricsIntervalSeconds
        if let limitsTable = try top.table("limits") {
            let l = Keys(limitsTable, "limits.")
            try l.only([
                "max_connections", "max_request_bytes", "max_output_bytes", "idle_timeout_s", "max_batch", "max_devices",
                "max_iotlb_entries"
            ])
            c.maxConnections = try l.positive("max_connections") ?? c.maxConnections
            c.maxRequestBytes = try l.positive("max_request_bytes") ?? c.maxRequestBytes
            c.maxOutputBytes = try l.positive("max_output_bytes") ?? c.maxOutputBytes
            c.idleTimeoutSeconds = try l.positive("idle_timeout_s") ?? c.idleTimeoutSeconds
            c.limits.maxBatch = try l.positive("max_batch") ?? c.limits.maxBatch
            c.limits.maxDevices = try l.positive("max_devices") ?? c.limits.maxDevices
            c.limits.maxIOTLBEntries = try l.positive("max_iotlb_entries") ?? c.limits.maxIOTLBEntries
        }
        if let devices = table["devices"] {
            guard let array = devices.array else { throw ConfigError("devices must be an array of tables ([[devices]])") }
            for (i, item) in array.enumerated() {
                guard let t = item.table else { throw ConfigError("devices[\(i)] must be a table") }
                try Keys(t, "devices[\(i)].").only(DeviceRecord.keys)
                // Read as JSON and decoded by add_device's decoder: one set of rules for every source of a record.
                do throws(RPCError) {
                    c.devices.append(try DeviceRecord(fields: Self.json(t)))
                } catch {
                    throw ConfigError("devices[\(i)]: \(error.message)")
                }
            }
        }
        return c
    }
}

extension DaemonConfig {
    /// A TOML table as JSON, for the decoders shared with the wire.  A negative integer becomes a JSON number
    /// the decoders refuse as they would on the wire; a float, a date or a time becomes its text, refused likewise.
    static func json(_ table: TOMLTable) -> JSON {
        .object(table.keys.sorted().map { ($0, json(value: table[$0])) })
    }

    private static func json(value: (any TOMLValueConvertible)?) -> JSON {
        guard let value else { return .null }
        if let s = value.string { return .string(s) }
        if let b = value.bool { return .bool(b) }
        if let i = value.int { return i >= 0 ? .unsigned(UInt64(i)) : .number(String(i)) }
        if let a = value.array { return .array(a.map { json(value: $0) }) }
        if let t = value.table { return json(t) }
        return .number(value.debugDescription)
    }
}

/// Typed lookups in one TOML table, with errors that name the full key.
private struct Keys {
    let table: TOMLTable
    let prefix: String
    init(_ table: TOMLTable, _ prefix: String) {
        self.table = table
        self.prefix = prefix
    }

    func only(_ known: Set<String>) throws(ConfigError) {
        for key in table.keys where !known.contains(key) {
            throw ConfigError("unknown key \(prefix)\(key); known keys: \(known.sorted().joined(separator: ", "))")
        }
    }

    func string(_ key: String) throws(ConfigError) -> String? {
        guard let v = table[key] else { return nil }
        guard let s = v.string else { throw ConfigError("\(prefix)\(key) must be a string") }
        return s
    }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let v = table[key] else { return nil }
        guard let b = v.bool else { throw ConfigError("\(prefix)\(key) must be true or false") }
        return b
    }

    func table(_ key: String) throws(ConfigError) -> TOMLTable? {
        guard let v = table[key] else { return nil }
        guard let t = v.table else { throw ConfigError("\(prefix)\(key) must be a table") }
        return t
    }

    func nonNegative(_ key: String) throws(ConfigError) -> Int? {
        guard let v = table[key] else { return nil }
        guard let i = v.int, i >= 0 else { throw ConfigError("\(prefix)\(key) must be a non-negative integer") }
        return i
    }

    func positive(_ key: String) throws(ConfigError) -> Int? {
        guard let i = try nonNegative(key) else { return nil }
        guard i > 0 else { throw ConfigError("\(prefix)\(key) must be positive") }
        return i
    }

    func ids(_ key: String) throws(ConfigError) -> [UInt32] {
        guard let v = table[key] else { return [] }
        guard let array = v.array else { throw ConfigError("\(prefix)\(key) must be an array of ids") }
        return try array.map { (item) throws(ConfigError) -> UInt32 in
            guard let i = item.int, i >= 0, i <= Int(UInt32.max) else { throw ConfigError("\(prefix)\(key) must hold uids/gids") }
            return UInt32(i)
        }
    }
}
