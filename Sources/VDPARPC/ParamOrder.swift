// ParamOrder.swift — which param a -32602 names when several are wrong.
// docs/protocol.md §3: the first of them in the order the OpenRPC document
// lists the method's params (required ones first, then the optional ones,
// each in §5's order).  Handlers decode in whatever order their operation
// needs, so the dispatcher settles the name only when a handler has already
// refused its params: a request that succeeds pays nothing for this.
import VDPAJSON

extension VDPAService {
    static let specsByName: [String: MethodSpec] = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0) })

    /// A method's params in the document's order.
    static func documentOrder(_ spec: MethodSpec) -> [ParamSpec] {
        spec.params.filter(\.required) + spec.params.filter { !$0.required }
    }

    /// `error` (a -32602 from `method`'s handler), or the -32602 of the param that comes first in the document's
    /// order when that one is missing or of the wrong type too.
    static func firstInvalidParam(_ error: RPCError, method: String, params: JSON?) -> RPCError {
        guard error.code == -32602, let spec = specsByName[method], case .object(let members)? = params else { return error }
        for p in documentOrder(spec) {
            guard let value = members.first(where: { $0.0 == p.name })?.1 else {
                if p.required { return error.names(p.name) ? error : .invalidParams(p.name, "is required") }
                continue
            }
            if !ParamType.matches(value, p.schema) {
                return error.names(p.name) ? error : .invalidParams(p.name, "must be \(ParamType.describe(p.schema)), got \(value.typeName)")
            }
        }
        return error
    }
}

extension RPCError {
    /// Whether this is a params error about `field`.
    func names(_ field: String) -> Bool { data?["field"] == .string(field) }
}

/// The JSON type a param's schema asks for, as the handlers check it before any rule: types, the hex form of a
/// number, a hex byte string, and the names inside a list.  Values that are the rules' business (a device name
/// that names no device, a permission or an enum word at the top level, which are EINVAL) are not checked here.
enum ParamType {
    static func matches(_ value: JSON, _ schema: JSON, inList: Bool = false) -> Bool {
        if case .array(let alternatives)? = schema["oneOf"] {
            return alternatives.contains { matches(value, $0, inList: inList) }
        }
        guard case .string(let type)? = schema["type"] else { return true }
        switch (type, value) {
        case ("integer", .unsigned): return true
        case ("boolean", .bool): return true
        case ("object", .object): return true
        case ("array", .array(let items)):
            guard let item = schema["items"] else { return true }
            return items.allSatisfy { matches($0, item, inList: true) }
        case ("string", .string(let s)):
            if inList, case .array(let allowed)? = schema["enum"] { return allowed.contains(value) }
            guard schema != Schemas.deviceName, case .string(let pattern)? = schema["pattern"] else { return true }
            return (try? Regex(pattern).wholeMatch(in: s)) != nil
        default: return false
        }
    }

    static func describe(_ schema: JSON) -> String {
        if case .array(let alternatives)? = schema["oneOf"] { return alternatives.map(describe).joined(separator: " or ") }
        guard case .string(let type)? = schema["type"] else { return "a value" }
        switch type {
        case "integer": return "an integer"
        case "boolean": return "a boolean"
        case "array": return "an array"
        case "object": return "an object"
        default: return schema["pattern"] != nil && schema != Schemas.deviceName ? "a string of the form \(schema["pattern"]!.text)" : "a string"
        }
    }
}
