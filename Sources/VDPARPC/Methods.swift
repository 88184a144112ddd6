// Methods.swift — the method table: every method of docs/protocol.md §5 bound to
// the registry.  A handler decodes its params (-32602), calls the registry's
// typed operation — which finds the device (ENODEV), checks the caller's role
// (EPERM) and runs the rule holding the device's lock — and encodes the
// result.  A registry error becomes a wire error in one place (Dispatcher).
import Logging
import VDPACore
import VDPAJSON
import VDPAMetrics
import VDPARegistry

/// A method: RPCError and VDPAError are mapped to the wire (Dispatcher); anything else becomes -32603.
typealias Handler = @Sendable (VDPAService, Params, Caller) throws -> JSON

/// One method of the wire: what it takes and returns (its OpenRPC spec) beside the handler that does it,
/// so a method is added in one place (docs/architecture.md, "Adding a method").
struct RPCMethod: Sendable {
    let spec: MethodSpec
    let handler: Handler

    init(_ spec: MethodSpec, handler: @escaping Handler) {
        (self.spec, self.handler) = (spec, handler)
    }
}

extension VDPAService {
    /// Every method, in docs/protocol.md §5's order.
    static let allMethods: [RPCMethod] = daemonMethods + managementMethods + sessionMethods + iotlbMethods

    static let methods: [String: Handler] = Dictionary(uniqueKeysWithValues: allMethods.map { ($0.spec.name, $0.handler) })

    /// Names of every method served, sorted.
    public static var methodNames: [String] { methods.keys.sorted() }

    /// The domain errors of a method that needs the caller to own the device.
    static let ownerErrors: [KernelErrno] = [.ENODEV, .EPERM]

    // MARK: Shared helpers

    /// A read of the device the `device` param names, open to anyone (get_device, get_config).
    func read<T>(_ p: Params, _ body: (VDPADevice) -> T) throws -> T {
        try registry.slot(named: try p.string("device")).read(body)
    }

    // MARK: §5.1 Daemon

    static let daemonMethods: [RPCMethod] = [
        RPCMethod(
            MethodSpec(
                "ping", "Liveness check", result: ["type": "string", "const": "pong"],
                examples: [["name": "ping", "params": [], "result": ["name": "pong", "value": "pong"]]]),
            handler: { _, _, _ in "pong" }
        ),
        RPCMethod(
            MethodSpec("get_version", "Daemon version, protocol version and pid", result: Schemas.object),
            handler: { s, _, _ in ["version": .string(s.version), "protocol": 1, "pid": JSON(Int(s.pid))] }
        ),
        RPCMethod(
            MethodSpec(
                "daemon_upgrade",
                "Re-executes the daemon's binary in place, its sessions, connections and descriptors kept (docs/restart.md); admin. "
                    + "The reply comes from the process about to be replaced; the next request is answered by the new one",
                result: ["type": "object", "properties": ["pid": ["type": "integer"], "version": Schemas.string], "required": ["pid", "version"]],
                errors: [.EPERM, .EOPNOTSUPP]),
            handler: { s, _, caller in
                try caller.requireAdmin("daemon_upgrade")
                guard let start = s.upgrade.withLock({ $0 }) else {
                    throw RPCError(VDPAError(.EOPNOTSUPP, "this daemon cannot upgrade in place (keep_sessions = false)"))
                }
                if let problem = start() { throw RPCError(VDPAError(.EOPNOTSUPP, problem)) }
                return ["pid": JSON(Int(s.pid)), "version": .string(s.version)]
            }
        ),
        RPCMethod(
            MethodSpec("rpc_get_methods", "Names of every method served, sorted", result: Schemas.arrayOf(Schemas.string)),
            handler: { _, _, _ in .array(methodNames.map { .string($0) }) }
        ),
        RPCMethod(
            MethodSpec("rpc.discover", "This OpenRPC document", result: Schemas.object),
            handler: { s, _, _ in discoveryDocument(version: s.version) }
        ),
        RPCMethod(
            MethodSpec(
                "get_stats", "Uptime, connections, requests, errors, devices, and the session journal's bytes and generation",
                result: Schemas.object),
            handler: { s, _, _ in
                let uptime = UInt64((ContinuousClock.now - s.started).components.seconds)
                let journal: JSON =
                    s.journalStats.withLock { $0 }.map { stats in
                        let (bytes, generation) = stats()
                        return ["bytes": JSON(bytes), "generation": .unsigned(generation)]
                    } ?? .null
                return [
                    "uptime_s": .unsigned(uptime), "connections": JSON(s.connectionCount),
                    "requests": JSON(s.requestCount.load(ordering: .relaxed)), "errors": JSON(s.errorCount.load(ordering: .relaxed)),
                    "devices": JSON(s.deviceCount), "journal": journal
                ]
            }
        ),
        RPCMethod(
            MethodSpec(
                "subscribe", "Receive event notifications on this connection",
                [
                    ParamSpec(
                        name: "events",
                        schema: Schemas.arrayOf(
                            Schemas.stringEnum(["device_added", "device_removed", "status_changed", "owner_changed", "session_closed"])),
                        required: false, summary: "event types (default: all)")
                ], result: Schemas.object),
            handler: { s, p, caller in
                var types = Set(EventType.allCases)
                if let v = p["events"] {
                    guard case .array(let items) = v else { throw RPCError.invalidParams("events", "must be an array of event types") }
                    var wanted: Set<EventType> = []
                    for item in items {
                        guard case .string(let t) = item, let type = EventType(rawValue: t) else {
                            let known = EventType.allCases.map(\.rawValue).joined(separator: ", ")
                            throw RPCError.invalidParams("events", "has an unknown event type \(item.text); known: \(known)")
                        }
                        wanted.insert(type)
                    }
                    types = wanted
                }
                return ["seq": .unsigned(s.registry.subscribe(caller.connection, to: types))]
            }
        ),
        RPCMethod(
            MethodSpec(
                "metrics", "Every device's and queue's counters in the Prometheus text format (docs/operations.md)",
                result: ["type": "object", "properties": ["format": Schemas.string, "text": Schemas.string], "required": ["format", "text"]]),
            handler: { s, _, _ in
                ["format": .string(MetricsExporter.contentType), "text": .string(s.metricsText())]
            }
        ),
        RPCMethod(
            MethodSpec(
                "get_events", "Buffered events with seq > since", [.u64("since", "the last seq seen", required: false)], result: Schemas.object),
            handler: { s, p, _ in
                let (events, next) = s.registry.events(since: try p.optionalU64("since") ?? 0)
                return ["events": .array(events.map(eventJSON)), "next_seq": .unsigned(next)]
            }
        )
    ]

    // MARK: §5.2 Management

    static let managementMethods: [RPCMethod] = [
        RPCMethod(
            MethodSpec("list_mgmtdevs", "The device kinds vdpad can create", result: Schemas.arrayOf(Schemas.object)),
            handler: { s, _, _ in
                .array(
                    s.registry.parents.map { m in
                        [
                            "name": .string(m.name), "class": .string(m.deviceClass.rawValue), "nvqs": JSON(m.virtqueueCount(maxVQP: 1)),
                            "ngroups": JSON(m.groupCount), "nas": JSON(m.addressSpaceCount),
                            "desc_group": .bool(m.hasDescriptorGroups(legacy: false)), "reset_map": .bool(m.hasResetMap(legacy: false)),
                            "persist": .bool(m.offeredBackendFeatures(legacy: false).contains(.iotlbPersist)),
                            "map_op": .string(m.mapOperation.rawValue)
                        ]
                    })
            }
        ),
        RPCMethod(
            MethodSpec(
                "add_device", "Create a device (admin)",
                [
                    ParamSpec(name: "name", schema: Schemas.deviceName, required: true, summary: "the new device's name"),
                    ParamSpec(name: "mgmtdev", schema: Schemas.string, required: true, summary: "vdpasim_net, mlx5_net, vdpasim_blk or platform_net"),
                    ParamSpec(name: "mac", schema: Schemas.string, required: false, summary: "net: six hex octets"),
                    .u64("mtu", "net: 68…65535", required: false), .u64("max_vqp", "mlx5_net: 1…32", required: false),
                    ParamSpec(name: "legacy", schema: Schemas.bool, required: false, summary: "a parent from before Linux 6.7"),
                    ParamSpec(
                        name: "kernel", schema: Schemas.stringEnum(KernelVersion.allCases.map(\.rawValue)), required: false,
                        summary: "the Linux release whose vhost-vdpa rules it follows (default 6.12; 6.7 for a legacy device)"),
                    .u64("iova_first", "the IOVA range's start", required: false), .u64("iova_last", "the IOVA range's end", required: false),
                    ParamSpec(name: "users", schema: Schemas.arrayOf(Schemas.u64), required: false, summary: "uids that may open it"),
                    ParamSpec(name: "groups", schema: Schemas.arrayOf(Schemas.u64), required: false, summary: "gids that may open it"),
                    ParamSpec(
                        name: "backing", schema: Schemas.string, required: false,
                        summary: "vdpasim_blk: an absolute file path the disk is read from and written through to")
                ],
                result: Schemas.object, errors: [.EPERM, .EEXIST, .ENODEV, .EINVAL, .ENOSPC, .EIO]),
            handler: { s, p, caller in
                let record = try DeviceRecord(params: p)  // types first (-32602), then the role, then values
                return deviceJSON(try s.registry.add(record, by: caller))
            }
        ),
        RPCMethod(
            MethodSpec(
                "del_device", "Delete a device (admin)",
                [
                    ParamSpec(name: "name", schema: Schemas.deviceName, required: true, summary: "the device"),
                    ParamSpec(name: "force", schema: Schemas.bool, required: false, summary: "close its owner's session first")
                ],
                errors: [.EPERM, .ENODEV, .EBUSY, .EIO]),
            handler: { s, p, caller in
                try s.registry.remove(try p.string("name"), force: try p.optionalBool("force") ?? false, by: caller)
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec("list_devices", "Every device: name, mgmtdev, owner, status", result: Schemas.arrayOf(Schemas.object)),
            handler: { s, _, _ in
                .array(
                    s.registry.allSlots().map {
                        $0.read { d in
                            [
                                "name": .string(d.name.rawValue), "mgmtdev": .string(d.mgmtdev.name), "owner": ownerJSON(d.owner),
                                "status": .unsigned(UInt64(d.status))
                            ] as JSON
                        }
                    })
            }
        ),
        RPCMethod(
            MethodSpec("get_device", "Everything about one device", [.device()], result: Schemas.object, errors: [.ENODEV]),
            handler: { s, p, _ in try s.read(p) { deviceJSON($0) } }
        ),
        RPCMethod(
            MethodSpec(
                "get_vstats", "One queue's counters, as vdpa dev vstats show DEV qidx N (admin; net devices after FEATURES_OK)",
                [.device(), .u64("qidx", "the queue index")],
                result: [
                    "type": "object",
                    "properties": [
                        "device": Schemas.string, "qidx": ["type": "integer"], "queue_type": Schemas.stringEnum(QueueType.allCases.map(\.rawValue)),
                        "received_desc": ["type": "integer"], "completed_desc": ["type": "integer"],
                        "bytes": ["type": "integer"], "drops": ["type": "integer"], "errors": ["type": "integer"]
                    ]
                ],
                errors: [.ENODEV, .EPERM, .EAGAIN, .EOPNOTSUPP, .ERANGE, .EINVAL]),
            handler: { s, p, caller in
                let name = try p.string("device"), qidx = try p.u64("qidx")
                let (type, stats) = try s.registry.vendorStats(name, queue: qidx, by: caller)
                return queueStatsJSON(stats, leading: [("device", .string(name)), ("qidx", .unsigned(qidx)), ("queue_type", .string(type.rawValue))])
            }
        ),
        RPCMethod(
            MethodSpec("get_config", "The config space decoded (net or block layout)", [.device()], result: Schemas.object, errors: [.ENODEV]),
            handler: { s, p, _ in
                try s.read(p) { configJSON($0.mgmtdev.deviceClass, $0.configBytes) }
            }
        ),
        RPCMethod(
            MethodSpec(
                "read_config", "Config space bytes (owner or admin; R47)",
                [.device(), .u64("offset", "the first byte"), .u64("length", "how many bytes")],
                result: ["type": "object", "properties": ["data": ["type": "string", "description": "the bytes in hex"]]],
                errors: VDPAService.ownerErrors + [.EINVAL]),
            handler: { s, p, caller in
                let offset = try p.u64("offset"), length = try p.u64("length")
                let bytes = try s.registry.readConfig(device: try p.string("device"), offset: offset, length: length, by: caller)
                return ["data": .string(hexString(bytes))]
            }
        ),
        RPCMethod(
            MethodSpec(
                "write_config", "Write config space bytes (owner; R49)",
                [
                    .device(), .u64("offset", "the first byte"),
                    ParamSpec(name: "data", schema: ["type": "string", "pattern": "^([0-9a-fA-F]{2})*$"], required: true, summary: "the bytes in hex")
                ],
                errors: VDPAService.ownerErrors + [.EINVAL]),
            handler: { s, p, caller in
                let offset = try p.u64("offset"), data = try p.hexBytes("data")
                try s.registry.writeConfig(device: try p.string("device"), offset: offset, data: data, by: caller)
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "set_link", "Set a net device's link up or down (admin); signals the config eventfd",
                [.device(), ParamSpec(name: "link", schema: Schemas.stringEnum(["up", "down"]), required: true, summary: "up or down")],
                errors: [.ENODEV, .EPERM, .EINVAL, .EOPNOTSUPP]),
            handler: { s, p, caller in
                let link = try p.enumeration("link", LinkState.self)
                let name = try p.string("device")
                try s.registry.setLink(device: name, link: link, by: caller)
                s.logger.notice("link set", metadata: ["device": "\(name)", "link": "\(link.text)", "uid": "\(caller.uid)"])
                return [:]
            }
        )
    ]

}

extension DeviceRecord {
    /// Every key a device record has: add_device's params, a state-file entry and a config [[devices]] table.
    public static let keys: Set<String> = [
        "name", "mgmtdev", "mac", "mtu", "max_vqp", "legacy", "kernel", "iova_first", "iova_last",
        "users", "groups", "backing"
    ]

    /// The one decoder of a device record, whatever carries it — add_device's params, an entry of the state
    /// file, a config file's [[devices]] table read as JSON — so all three accept the same values with the
    /// same messages.  Types only: a value out of its range is refused by the attributes' own check (EINVAL)
    /// when the device is made, which for add_device runs after the caller's role (docs/protocol.md §3's order).
    public init(fields: JSON) throws(RPCError) {
        try self.init(params: try Params(fields))
    }

    init(params p: Params) throws(RPCError) {
        func int(_ key: String) throws(RPCError) -> Int? {
            try p.optionalU64(key).map { Int(clamping: $0) }
        }
        var attributes = DeviceAttributes(
            mac: try p.optionalString("mac"), mtu: try int("mtu"), maxVQP: try int("max_vqp"),
            legacy: try p.optionalBool("legacy") ?? false)
        attributes.iovaRange = IOVARange(first: try p.optionalU64("iova_first") ?? 0, last: try p.optionalU64("iova_last") ?? .max)
        attributes.users = try p.optionalIDs("users") ?? []
        attributes.groups = try p.optionalIDs("groups") ?? []
        attributes.backing = try p.optionalString("backing")
        attributes.kernel = try p.optionalString("kernel")
        self.init(name: try p.string("name"), mgmtdev: try p.string("mgmtdev"), attributes: attributes)
    }
}
