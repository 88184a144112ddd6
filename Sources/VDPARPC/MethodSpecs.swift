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
            "description": .string(
                "\"ro\", \"wo\", \"rw\", or the IOTLB message's 8-bit perm 0…255 stored as given (edge #14); "
                    + "another string or a larger integer is EINVAL"),
            "oneOf": [["type": "string", "enum": ["ro", "wo", "rw"]], ["type": "integer", "minimum": 0, "maximum": 255]]
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
    /// Every method's spec, in the OpenRPC document's order (the descriptors live beside their handlers).
    static var specs: [MethodSpec] { allMethods.map(\.spec) }

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
