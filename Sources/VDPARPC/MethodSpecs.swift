// MethodSpecs.swift — what every method takes and returns, as data: the
// source of `rpc.discover` (an OpenRPC 1.3 document) and of docs/openrpc.json.
// It cannot drift from what the handlers accept: a test sends every method
// each documented param with a wrong type, and without each required one,
// and expects -32602 naming exactly that param; and the names here and in
// the method table must be the same set.
import VDPACore
import VDPAJSON

struct ParamSpec {
    let name: String
    let schema: JSON
    let required: Bool
    let summary: String
}

struct MethodSpec {
    let name: String
    let summary: String
    let params: [ParamSpec]
    let result: JSON
    /// Domain errors the method can answer (besides -32602 and, where a device is named, ENODEV).
    let errors: [KernelErrno]
    let examples: [JSON]

    init(
        _ name: String, _ summary: String, _ params: [ParamSpec] = [], result: JSON = .object([]),
        errors: [KernelErrno] = [], examples: [JSON] = []
    ) {
        (self.name, self.summary, self.params, self.result, self.errors, self.examples) = (name, summary, params, result, errors, examples)
    }
}

/// Schemas shared by many methods.  They are written inline where used (not as `$ref`s) and only the object
/// one is a component: client generators (openrpcclientgenerator among them) make models for object
/// components only and cannot name the others.
enum Schemas {
    static func ref(_ name: String) -> JSON {
        guard case .object(let table) = shared, let schema = table.first(where: { $0.0 == name })?.1 else { return .null }
        return schema
    }
    static let u64 = ref("U64"), deviceName = ref("DeviceName"), featureSet = ref("FeatureSet")
    /// The document's components: the object schemas.
    static var components: JSON { ["FeatureSet": ref("FeatureSet")] }
    static let string: JSON = ["type": "string"], bool: JSON = ["type": "boolean"], object: JSON = ["type": "object"]
    static func stringEnum(_ values: [String]) -> JSON { ["type": "string", "enum": .array(values.map { .string($0) })] }
    static func arrayOf(_ item: JSON) -> JSON { ["type": "array", "items": item] }

    private static let shared: JSON = [
        "U64": [
            "description": "an integer 0…2^64−1 (exact, never a double), or a \"0x…\" hex string of one",
            "oneOf": [
                ["type": "integer", "minimum": 0, "maximum": .unsigned(.max)],
                ["type": "string", "pattern": "^0[xX]0*[0-9a-fA-F]{1,16}$"]
            ]
        ],
        "Features": [
            "description": "a list of feature names, or a mask (an integer 0…2^64−1 or a \"0x…\" hex string)",
            "oneOf": [
                ["type": "array", "items": ["type": "string"]], ["type": "integer", "minimum": 0, "maximum": .unsigned(.max)],
                ["type": "string", "pattern": "^0[xX]0*[0-9a-fA-F]{1,16}$"]
            ]
        ],
        "DeviceName": ["type": "string", "pattern": "^[A-Za-z0-9_.-]{1,32}$"],
        "FeatureSet": [
            "type": "object", "properties": ["names": ["type": "array", "items": ["type": "string"]], "mask": ["type": "integer"]],
            "required": ["names", "mask"]
        ],
        "Permission": [
            "description": "\"ro\", \"wo\", \"rw\" or 1…3; another string or integer is EINVAL",
            "oneOf": [["type": "string", "enum": ["ro", "wo", "rw"]], ["type": "integer", "minimum": 1, "maximum": 3]]
        ]
    ]
}

extension ParamSpec {
    static func device(_ summary: String = "the device") -> ParamSpec {
        ParamSpec(name: "device", schema: Schemas.deviceName, required: true, summary: summary)
    }
    static func u64(_ name: String, _ summary: String, required: Bool = true) -> ParamSpec {
        ParamSpec(name: name, schema: Schemas.u64, required: required, summary: summary)
    }
    static func asid(required: Bool = false) -> ParamSpec {
        u64("asid", required ? "the address space" : "the address space (default 0)", required: required)
    }
    static let vq = u64("vq", "the virtqueue index")
    static let unset = ParamSpec(
        name: "unset", schema: Schemas.bool, required: false, summary: "true: unbind (fd −1) instead of taking a passed descriptor")
}

extension VDPAService {
    static let specs: [MethodSpec] = {
        typealias P = ParamSpec
        let empty = Schemas.object
        let ownerErrors: [KernelErrno] = [.ENODEV, .EPERM]
        return [
            // §5.1 Daemon
            MethodSpec(
                "ping", "Liveness check", result: ["type": "string", "const": "pong"],
                examples: [["name": "ping", "params": [], "result": ["name": "pong", "value": "pong"]]]),
            MethodSpec("get_version", "Daemon version, protocol version and pid", result: empty),
            MethodSpec("rpc_get_methods", "Names of every method served, sorted", result: Schemas.arrayOf(Schemas.string)),
            MethodSpec("rpc.discover", "This OpenRPC document", result: empty),
            MethodSpec("get_stats", "Uptime, connections, requests, errors, devices", result: empty),
            MethodSpec(
                "subscribe", "Receive event notifications on this connection",
                [
                    P(
                        name: "events",
                        schema: Schemas.arrayOf(
                            Schemas.stringEnum(["device_added", "device_removed", "status_changed", "owner_changed", "session_closed"])),
                        required: false, summary: "event types (default: all)")
                ], result: empty),
            MethodSpec(
                "metrics", "Every device's and queue's counters in the Prometheus text format (docs/operations.md)",
                result: ["type": "object", "properties": ["format": Schemas.string, "text": Schemas.string], "required": ["format", "text"]]),
            MethodSpec("get_events", "Buffered events with seq > since", [.u64("since", "the last seq seen", required: false)], result: empty),
            // §5.2 Management
            MethodSpec("list_mgmtdevs", "The device kinds vdpad can create", result: Schemas.arrayOf(Schemas.object)),
            MethodSpec(
                "add_device", "Create a device (admin)",
                [
                    P(name: "name", schema: Schemas.deviceName, required: true, summary: "the new device's name"),
                    P(name: "mgmtdev", schema: Schemas.string, required: true, summary: "vdpasim_net, mlx5_net, vdpasim_blk or platform_net"),
                    P(name: "mac", schema: Schemas.string, required: false, summary: "net: six hex octets"),
                    .u64("mtu", "net: 68…65535", required: false), .u64("max_vqp", "mlx5_net: 1…32", required: false),
                    P(name: "legacy", schema: Schemas.bool, required: false, summary: "a parent from before Linux 6.7"),
                    .u64("iova_first", "the IOVA range's start", required: false), .u64("iova_last", "the IOVA range's end", required: false),
                    P(name: "users", schema: Schemas.arrayOf(Schemas.u64), required: false, summary: "uids that may open it"),
                    P(name: "groups", schema: Schemas.arrayOf(Schemas.u64), required: false, summary: "gids that may open it")
                ],
                result: empty, errors: [.EPERM, .EEXIST, .ENODEV, .EINVAL, .ENOSPC, .EIO]),
            MethodSpec(
                "del_device", "Delete a device (admin)",
                [
                    P(name: "name", schema: Schemas.deviceName, required: true, summary: "the device"),
                    P(name: "force", schema: Schemas.bool, required: false, summary: "close its owner's session first")
                ],
                errors: [.EPERM, .ENODEV, .EBUSY, .EIO]),
            MethodSpec("list_devices", "Every device: name, mgmtdev, owner, status", result: Schemas.arrayOf(Schemas.object)),
            MethodSpec("get_device", "Everything about one device", [.device()], result: empty, errors: [.ENODEV]),
            MethodSpec(
                "get_vstats", "One queue's counters, as vdpa dev vstats show DEV qidx N (net devices after FEATURES_OK)",
                [.device(), .u64("qidx", "the queue index")],
                result: [
                    "type": "object",
                    "properties": [
                        "device": Schemas.string, "qidx": ["type": "integer"], "queue_type": Schemas.stringEnum(QueueType.allCases.map(\.rawValue)),
                        "received_desc": ["type": "integer"], "completed_desc": ["type": "integer"],
                        "bytes": ["type": "integer"], "drops": ["type": "integer"], "errors": ["type": "integer"]
                    ]
                ],
                errors: [.ENODEV, .EAGAIN, .EOPNOTSUPP, .ERANGE, .EINVAL]),
            MethodSpec("get_config", "The config space decoded (net or block layout)", [.device()], result: empty, errors: [.ENODEV]),
            MethodSpec(
                "read_config", "Config space bytes (owner or admin; R47)",
                [.device(), .u64("offset", "the first byte"), .u64("length", "how many bytes")],
                result: ["type": "object", "properties": ["data": ["type": "string", "description": "the bytes in hex"]]],
                errors: ownerErrors + [.EINVAL]),
            MethodSpec(
                "write_config", "Write config space bytes (owner; R49)",
                [
                    .device(), .u64("offset", "the first byte"),
                    P(name: "data", schema: ["type": "string", "pattern": "^([0-9a-fA-F]{2})*$"], required: true, summary: "the bytes in hex")
                ],
                errors: ownerErrors + [.EINVAL]),
            MethodSpec(
                "set_link", "Set a net device's link up or down (admin); signals the config eventfd",
                [.device(), P(name: "link", schema: Schemas.stringEnum(["up", "down"]), required: true, summary: "up or down")],
                errors: [.ENODEV, .EPERM, .EINVAL, .EOPNOTSUPP]),
            // §5.3 Session
            MethodSpec(
                "open", "Own the device on this connection (open + VHOST_SET_OWNER)", [.device()], result: empty,
                errors: [.ENODEV, .EPERM, .EBUSY],
                examples: [
                    [
                        "name": "open vdpa0", "params": [["name": "device", "value": "vdpa0"]],
                        "result": ["name": "identity", "value": ["nvqs": 3, "ngroups": 2, "nas": 2, "device_id": 1]]
                    ]
                ]),
            MethodSpec("close", "Release the device (§6)", [.device()], errors: ownerErrors),
            MethodSpec("get_backend_features", "Offered and acked backend features", [.device()], result: empty, errors: ownerErrors),
            MethodSpec(
                "set_backend_features", "Ack backend features (replaces the acked set; R28)",
                [.device(), P(name: "features", schema: Schemas.ref("Features"), required: true, summary: "names or a mask")],
                errors: ownerErrors + [.EOPNOTSUPP, .EINVAL]),
            MethodSpec(
                "get_features", "The virtio offer (R53) and the driver features", [.device()], result: Schemas.featureSet, errors: ownerErrors),
            MethodSpec(
                "set_features", "Set the virtio driver features (R54)",
                [.device(), P(name: "features", schema: Schemas.ref("Features"), required: true, summary: "names or a mask")],
                errors: ownerErrors + [.EBUSY, .EINVAL]),
            MethodSpec("get_status", "The virtio status byte", [.device()], result: empty, errors: ownerErrors),
            MethodSpec(
                "set_status", "Set the status byte; 0 resets (R56)", [.device(), .u64("status", "the new status byte")],
                errors: ownerErrors + [.EINVAL]),
            MethodSpec("reset", "Device reset: SET_STATUS(0) (R30, R31, R69)", [.device()], errors: ownerErrors),
            MethodSpec(
                "map", "IOTLB UPDATE (R6, R7, R11, R13, R14)",
                [
                    .device(), .asid(), .u64("iova", "the first IOVA"), .u64("size", "bytes"), .u64("addr", "the address it maps to"),
                    P(name: "perm", schema: Schemas.ref("Permission"), required: true, summary: "ro, wo or rw")
                ],
                errors: ownerErrors + [.EINVAL, .EEXIST, .ENOSPC],
                examples: [
                    [
                        "name": "map 64 KiB",
                        "params": [
                            ["name": "device", "value": "vdpa0"], ["name": "iova", "value": "0x100000"],
                            ["name": "size", "value": 65536], ["name": "addr", "value": "0x7f0000000000"],
                            ["name": "perm", "value": "rw"]
                        ],
                        "result": ["name": "done", "value": .object([])]
                    ]
                ]),
            MethodSpec(
                "unmap", "IOTLB INVALIDATE: removes every entry the range touches (R15–R17)",
                [.device(), .asid(), .u64("iova", "the first IOVA"), .u64("size", "bytes")],
                result: ["type": "object", "properties": ["removed": ["type": "integer"]]], errors: ownerErrors + [.EINVAL]),
            MethodSpec("batch_begin", "IOTLB BATCH_BEGIN (R18)", [.device(), .asid()], errors: ownerErrors + [.EINVAL]),
            MethodSpec("batch_end", "IOTLB BATCH_END: commit (R20)", [.device(), .asid()], errors: ownerErrors + [.EINVAL]),
            MethodSpec(
                "reset_map", "Remove an ASID's session table and restore its default mapping (R35, R36)",
                [.device(), .asid(required: true)], result: empty, errors: ownerErrors + [.EINVAL, .EOPNOTSUPP]),
            MethodSpec(
                "set_group_asid", "Bind a virtqueue group to an ASID (R22, R25)",
                [.device(), .u64("group", "the group"), .u64("asid", "the address space")],
                errors: ownerErrors + [.ENOBUFS, .EINVAL, .EOPNOTSUPP]),
            MethodSpec("get_vring_group", "A virtqueue's group (R23)", [.device(), .vq], result: empty, errors: ownerErrors + [.ENOBUFS]),
            MethodSpec(
                "get_vring_desc_group", "A virtqueue's descriptor-table group (R24)", [.device(), .vq], result: empty,
                errors: ownerErrors + [.ENOBUFS, .EOPNOTSUPP]),
            MethodSpec(
                "set_vring", "SET_VRING_NUM / ADDR / BASE / ENABLE in one call (R58–R62)",
                [
                    .device(), .vq, .u64("num", "ring size, a power of two", required: false), .u64("desc", "descriptor table IOVA", required: false),
                    .u64("driver", "driver (avail) area IOVA", required: false), .u64("device_area", "device (used) area IOVA", required: false),
                    .u64("base", "last avail index", required: false),
                    P(name: "ready", schema: Schemas.bool, required: false, summary: "SET_VRING_ENABLE"),
                    .u64("flags", "vhost_vring_addr flags (bit 0 LOG only)", required: false), .u64("log", "log address", required: false)
                ],
                errors: ownerErrors + [.ENOBUFS, .EINVAL, .EOPNOTSUPP]),
            MethodSpec(
                "get_vring", "A virtqueue's state: size, addresses, base, ready, kick, call (owner or admin)", [.device(), .vq],
                result: empty, errors: ownerErrors + [.ENOBUFS]),
            MethodSpec(
                "set_vring_kick", "Bind the kick eventfd passed with SCM_RIGHTS (R63)", [.device(), .vq, .unset],
                errors: ownerErrors + [.ENOBUFS, .EBADF, .EINVAL]),
            MethodSpec(
                "set_vring_call", "Bind the call eventfd passed with SCM_RIGHTS (R64)", [.device(), .vq, .unset],
                errors: ownerErrors + [.ENOBUFS, .EBADF, .EINVAL]),
            MethodSpec(
                "set_config_call", "Bind the config eventfd passed with SCM_RIGHTS (R65)", [.device(), .unset],
                errors: ownerErrors + [.EBADF, .EINVAL]),
            MethodSpec(
                "set_store_agent", "Lend vdpad a socket to the VMM's store agent, which writes ring indexes as single aligned stores (§5.6)",
                [.device(), .unset], errors: ownerErrors + [.EBADF, .EINVAL]),
            MethodSpec("suspend", "VHOST_VDPA_SUSPEND (R66)", [.device()], errors: ownerErrors + [.EOPNOTSUPP]),
            MethodSpec("resume", "VHOST_VDPA_RESUME (R66)", [.device()], errors: ownerErrors + [.EOPNOTSUPP]),
            MethodSpec(
                "translate", "A device DMA through the device mapping (owner or admin)",
                [
                    .device(), P(name: "access", schema: Schemas.stringEnum(["read", "write"]), required: true, summary: "read or write"),
                    .u64("asid", "the address space (or vq + area)", required: false), .u64("vq", "the virtqueue (with area)", required: false),
                    P(name: "area", schema: Schemas.stringEnum(["desc", "driver", "device", "buffer"]), required: false, summary: "with vq"),
                    .u64("iova", "the first IOVA (a ring area defaults to its ring)", required: false),
                    .u64("size", "bytes", required: false)
                ],
                result: ["type": "object", "properties": ["segments": Schemas.arrayOf(Schemas.object)]],
                errors: ownerErrors + [.EINVAL, .EFAULT, .EACCES, .ENOBUFS]),
            MethodSpec(
                "dump_iotlb", "One ASID's entries, a page at a time (owner or admin)",
                [
                    .device(), .asid(required: true),
                    P(name: "layer", schema: Schemas.stringEnum(["session", "device"]), required: false, summary: "session (default) or device"),
                    .u64("first", "entries that end at or after it", required: false),
                    .u64("last", "entries that start at or before it", required: false),
                    .u64("limit", "1…65536 (default 1000)", required: false)
                ],
                result: empty, errors: ownerErrors + [.EINVAL])
        ]
    }()

    /// The OpenRPC 1.3 document `rpc.discover` returns (and docs/openrpc.json holds).
    public static func discoveryDocument(version: String) -> JSON {
        func error(_ e: KernelErrno) -> JSON {
            ["code": .number("-\(e.rawValue)"), "message": .string(e.name), "data": ["errno": .string(e.name)]]
        }
        let invalidParams: JSON = ["code": .number("-32602"), "message": "invalid params", "data": ["field": "the param"]]
        let methods: [JSON] = specs.map { m in
            var method: [(String, JSON)] = [
                ("name", .string(m.name)), ("summary", .string(m.summary)),
                // Required params first: generators that turn params into positional arguments need that order.
                (
                    "params",
                    .array(
                        (m.params.filter(\.required) + m.params.filter { !$0.required }).map { p in
                            ["name": .string(p.name), "summary": .string(p.summary), "required": .bool(p.required), "schema": p.schema]
                        })
                ),
                ("result", ["name": .string("\(m.name) result"), "schema": m.result]),
                ("errors", .array((m.params.isEmpty ? [] : [invalidParams]) + m.errors.map(error)))
            ]
            if !m.examples.isEmpty { method.append(("examples", .array(m.examples))) }
            return .object(method)
        }
        return [
            "openrpc": "1.3.2",
            "info": [
                "title": "vdpad", "version": .string(version),
                "description": "vDPA devices in user space, served as JSON-RPC 2.0 over a Unix socket (docs/protocol.md)"
            ],
            "methods": .array(methods),
            "components": ["schemas": Schemas.components]
        ]
    }
}
