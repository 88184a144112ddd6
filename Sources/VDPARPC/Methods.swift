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

extension VDPAService {
    static let methods: [String: Handler] = {
        var table: [String: Handler] = [:]
        table.merge(daemonMethods) { a, _ in a }
        table.merge(managementMethods) { a, _ in a }
        table.merge(sessionMethods) { a, _ in a }
        table.merge(iotlbMethods) { a, _ in a }
        return table
    }()

    /// Names of every method served, sorted.
    public static var methodNames: [String] { methods.keys.sorted() }

    // MARK: Shared helpers

    /// A read of the device the `device` param names, open to anyone (get_device, get_config).
    func read<T>(_ p: Params, _ body: (VDPADevice) -> T) throws -> T {
        try registry.slot(named: try p.string("device")).read(body)
    }

    static func backendJSON(_ f: BackendFeatures) -> JSON {
        ["names": .array(f.names.map { .string($0) }), "mask": .unsigned(f.rawValue)]
    }

    static func featuresJSON(_ mask: UInt64, _ c: DeviceClass) -> JSON {
        ["names": .array(VirtioFeatures.names(of: mask, class: c).map { .string($0) }), "mask": .unsigned(mask)]
    }

    static func ownerJSON(_ owner: Owner?) -> JSON {
        guard let owner else { return .null }
        return ["pid": JSON(Int(owner.pid)), "uid": .unsigned(UInt64(owner.uid))]
    }

    /// An event as `get_events` lists it and an `event` notification carries it (docs/protocol.md §5.4).
    static func eventJSON(_ e: Event) -> JSON {
        let fields: [(String, JSON)] =
            switch e.kind {
            case .deviceAdded(let mgmtdev): [("mgmtdev", .string(mgmtdev))]
            case .deviceRemoved: []
            case .statusChanged(let status, let previous): [("status", .unsigned(UInt64(status))), ("previous", .unsigned(UInt64(previous)))]
            case .ownerChanged(let owner, let reason): [("owner", ownerJSON(owner))] + (reason.map { [("reason", .string($0.rawValue))] } ?? [])
            case .sessionClosed(let reason): [("reason", .string(reason.rawValue))]
            }
        return .object(
            [
                ("seq", .unsigned(e.seq)), ("time", .unsigned(e.time)), ("type", .string(e.type.rawValue)),
                ("device", .string(e.device))
            ] + fields)
    }

    static func entryJSON(_ e: IOTLBEntry) -> JSON {
        // The whole 2^64 space has no UInt64 size; report 0 as the kernel's u64 would wrap.
        [
            "iova": .unsigned(e.first), "size": .unsigned(e.size ?? 0), "addr": .unsigned(e.address),
            "perm": .string(e.permission.description)
        ]
    }

    static func deviceJSON(_ d: VDPADevice) -> JSON {
        let vqs = 0..<d.virtqueueCount
        let descGroups: JSON =
            d.mgmtdev.hasDescriptorGroups(legacy: d.legacy)
            ? .array(vqs.map { JSON(d.descriptorGroup(ofVirtqueue: $0)!) }) : .null
        let asids: [JSON] = (0..<d.addressSpaceCount).map { a in
            let mapping = d.deviceMapping(asid: a)
            return [
                "asid": JSON(a), "session_entries": d.sessionTables[a].map { JSON($0.count) } ?? .null,
                "device_mapping": .string(mapping.name), "device_entries": JSON(d.deviceTable(asid: a)?.count ?? 0)
            ]
        }
        let s = d.stats
        let stats: JSON = [
            "map_calls": JSON(s.mapCalls), "unmap_calls": JSON(s.unmapCalls), "device_commits": JSON(s.deviceCommits),
            "entries_copied": JSON(s.entriesCopied), "default_restores": JSON(s.defaultRestores),
            "resets_clean": JSON(s.resetsClean), "resets_persist": JSON(s.resetsPersist),
            "translate_calls": JSON(s.translateCalls),
            "cvq_requests": JSON(s.cvqRequests), "cvq_successes": JSON(s.cvqSuccesses), "cvq_errors": JSON(s.cvqErrors),
            "atomic_index_stores": JSON(s.atomicIndexStores), "copied_index_stores": JSON(s.copiedIndexStores)
        ]
        return [
            "name": .string(d.name.rawValue), "mgmtdev": .string(d.mgmtdev.name), "legacy": .bool(d.legacy),
            "nvqs": JSON(d.virtqueueCount), "ngroups": JSON(d.groupCount), "nas": JSON(d.addressSpaceCount),
            "iova_first": .unsigned(d.iovaRange.first), "iova_last": .unsigned(d.iovaRange.last),
            "vq_groups": .array(vqs.map { JSON(d.group(ofVirtqueue: $0)) }), "vq_desc_groups": descGroups,
            "group_asid": .array(d.groupASID.map { JSON($0) }), "status": .unsigned(UInt64(d.status)),
            "features": featuresJSON(d.driverFeatures, d.mgmtdev.deviceClass),
            "backend_features": ["offered": backendJSON(d.offeredBackendFeatures), "acked": backendJSON(d.ackedBackendFeatures)],
            "owner": ownerJSON(d.owner), "suspended": .bool(d.suspended), "asids": .array(asids), "stats": stats,
            "device_id": JSON(Int(d.deviceID.rawValue)), "vq_num_max": JSON(d.virtqueueSizeMax), "config_size": JSON(d.configSize),
            "offered_features": featuresJSON(d.offeredFeatures, d.mgmtdev.deviceClass),
            "link": d.hasLink ? .string(d.linkUp ? "up" : "down") : .null,
            "config_call": .bool(d.configCall != nil), "store_agent": .bool(d.storeAgent != nil),
            "vrings": .array(d.vrings.enumerated().map { vringJSON($0.offset, $0.element) }),
            "queues": .array(
                d.queueStats.indices.map { q in
                    queueStatsJSON(d.queueStats[q], leading: [("qidx", JSON(q)), ("queue_type", .string(d.queueType(ofVirtqueue: q).rawValue))])
                })
        ]
    }

    /// A queue's counters as `get_vstats` and `get_device.queues` show them (vdpa dev vstats' names).
    static func queueStatsJSON(_ q: QueueStats, leading: [(String, JSON)]) -> JSON {
        .object(
            leading + [
                ("received_desc", JSON(q.receivedDesc)), ("completed_desc", JSON(q.completedDesc)), ("bytes", JSON(q.bytes)),
                ("drops", JSON(q.drops)), ("errors", JSON(q.errors))
            ])
    }

    static func vringJSON(_ vq: Int, _ r: Vring) -> JSON {
        func opt(_ v: UInt64?) -> JSON { v.map { .unsigned($0) } ?? .null }
        return [
            "vq": JSON(vq), "num": opt(r.num.map(UInt64.init)), "desc": opt(r.desc), "driver": opt(r.driver),
            "device_area": opt(r.device), "ready": .bool(r.ready), "base": JSON(Int(r.base)),
            "kick": .bool(r.kick != nil), "call": .bool(r.call != nil)
        ]
    }

    // MARK: §5.1 Daemon

    static let daemonMethods: [String: Handler] = [
        "ping": { _, _, _ in "pong" },
        "get_version": { s, _, _ in ["version": .string(s.version), "protocol": 1, "pid": JSON(Int(s.pid))] },
        "rpc_get_methods": { _, _, _ in .array(methodNames.map { .string($0) }) },
        "rpc.discover": { s, _, _ in discoveryDocument(version: s.version) },
        "get_stats": { s, _, _ in
            let uptime = UInt64((ContinuousClock.now - s.started).components.seconds)
            return [
                "uptime_s": .unsigned(uptime), "connections": JSON(s.connectionCount),
                "requests": JSON(s.requestCount.load(ordering: .relaxed)), "errors": JSON(s.errorCount.load(ordering: .relaxed)),
                "devices": JSON(s.deviceCount)
            ]
        },
        "subscribe": { s, p, caller in
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
        },
        "metrics": { s, _, _ in
            ["format": .string(MetricsExporter.contentType), "text": .string(s.metricsText())]
        },
        "get_events": { s, p, _ in
            let (events, next) = s.registry.events(since: try p.optionalU64("since") ?? 0)
            return ["events": .array(events.map(eventJSON)), "next_seq": .unsigned(next)]
        }
    ]

    // MARK: §5.2 Management

    static let managementMethods: [String: Handler] = [
        "list_mgmtdevs": { s, _, _ in
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
        },
        "add_device": { s, p, caller in
            let record = try DeviceRecord(params: p)  // types first (-32602), then the role, then values
            return deviceJSON(try s.registry.add(record, by: caller))
        },
        "del_device": { s, p, caller in
            try s.registry.remove(try p.string("name"), force: try p.optionalBool("force") ?? false, by: caller)
            return [:]
        },
        "list_devices": { s, _, _ in
            .array(
                s.registry.allSlots().map {
                    $0.read { d in
                        [
                            "name": .string(d.name.rawValue), "mgmtdev": .string(d.mgmtdev.name), "owner": ownerJSON(d.owner),
                            "status": .unsigned(UInt64(d.status))
                        ] as JSON
                    }
                })
        },
        "get_device": { s, p, _ in try s.read(p) { deviceJSON($0) } },
        "get_vstats": { s, p, _ in
            let name = try p.string("device"), qidx = try p.u64("qidx")
            let (type, stats) = try s.registry.vendorStats(name, queue: qidx)
            return queueStatsJSON(stats, leading: [("device", .string(name)), ("qidx", .unsigned(qidx)), ("queue_type", .string(type.rawValue))])
        },
        "get_config": { s, p, _ in
            try s.read(p) { configJSON($0.mgmtdev.deviceClass, $0.configBytes) }
        },
        "read_config": { s, p, caller in
            let offset = try p.u64("offset"), length = try p.u64("length")
            let bytes = try s.registry.readConfig(device: try p.string("device"), offset: offset, length: length, by: caller)
            return ["data": .string(hexString(bytes))]
        },
        "write_config": { s, p, caller in
            let offset = try p.u64("offset"), data = try p.hexBytes("data")
            try s.registry.writeConfig(device: try p.string("device"), offset: offset, data: data, by: caller)
            return [:]
        },
        "set_link": { s, p, caller in
            let link = try p.enumeration("link", LinkState.self)
            let name = try p.string("device")
            try s.registry.setLink(device: name, link: link, by: caller)
            s.logger.notice("link set", metadata: ["device": "\(name)", "link": "\(link.text)", "uid": "\(caller.uid)"])
            return [:]
        }
    ]

    static func hexString(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }

    /// The decoded view of config bytes (`get_config`): a net device's fields by virtio_net_config, whose
    /// `status` is the link-status field (VIRTIO_NET_S_LINK_UP), not the device status byte; a block
    /// device's by virtio_blk_config.
    static func configJSON(_ c: DeviceClass, _ b: [UInt8]) -> JSON {
        func u(_ at: Int, _ size: Int) -> JSON { .unsigned(b.le(at, size)) }
        switch c {
        case .net:
            let mac = b[0..<6].map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            return [
                "mac": .string(mac.joined(separator: ":")), "status": u(6, 2), "link": .string(b.le(6, 2) & 1 != 0 ? "up" : "down"),
                "max_vq_pairs": u(8, 2), "mtu": u(10, 2), "speed": u(12, 4), "duplex": u(16, 1)
            ]
        case .block:
            return [
                "capacity": u(0, 8), "size_max": u(8, 4), "seg_max": u(12, 4),
                "geometry": ["cylinders": u(16, 2), "heads": u(18, 1), "sectors": u(19, 1)],
                "blk_size": u(20, 4), "physical_block_exp": u(24, 1), "alignment_offset": u(25, 1),
                "min_io_size": u(26, 2), "opt_io_size": u(28, 4), "wce": u(32, 1), "num_queues": u(34, 2),
                "max_discard_sectors": u(36, 4), "max_discard_seg": u(40, 4), "discard_sector_alignment": u(44, 4),
                "max_write_zeroes_sectors": u(48, 4), "max_write_zeroes_seg": u(52, 4), "write_zeroes_may_unmap": u(56, 1)
            ]
        }
    }
}

extension DeviceRecord {
    /// Every key a device record has: add_device's params, a state-file entry and a config [[devices]] table.
    public static let keys: Set<String> = [
        "name", "mgmtdev", "mac", "mtu", "max_vqp", "legacy", "iova_first", "iova_last",
        "users", "groups"
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
        self.init(name: try p.string("name"), mgmtdev: try p.string("mgmtdev"), attributes: attributes)
    }
}
