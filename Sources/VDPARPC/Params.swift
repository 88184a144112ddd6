// Params.swift — typed access to a request's params, so every handler gets
// the same -32602 (with data.field) for a missing or ill-typed value, and
// numbers are exact over 0…2^64−1 whether sent as integers or "0x…" strings.
import VDPACore
import VDPAJSON
import VDPARegistry

struct Params {
    let members: [(String, JSON)]

    init(_ params: JSON?) throws(RPCError) {
        switch params {
        case nil, .null?: members = []
        case .object(let m)?: members = m
        case .array?: throw RPCError.invalidParams("params", "must be an object (by-name params)")
        default: throw RPCError.invalidParams("params", "must be an object")
        }
    }

    subscript(_ key: String) -> JSON? {
        guard let v = members.last(where: { $0.0 == key })?.1, v != .null else { return nil }
        return v
    }

    func has(_ key: String) -> Bool { self[key] != nil }

    func u64(_ key: String) throws(RPCError) -> UInt64 {
        guard let v = try optionalU64(key) else { throw RPCError.invalidParams(key, "is required") }
        return v
    }

    func optionalU64(_ key: String) throws(RPCError) -> UInt64? {
        guard let v = self[key] else { return nil }
        return try Self.number(v, field: key)
    }

    static func number(_ v: JSON, field: String) throws(RPCError) -> UInt64 {
        switch v {
        case .unsigned(let u): return u
        case .number(let s): throw RPCError.invalidParams(field, "must be an integer in 0…2^64−1, got \(s)")
        case .string(let s):
            // "0x" and 1… hex digits; leading zeros are fine while the value fits in 64 bits.
            let digits = s.utf8.dropFirst(2).drop { $0 == UInt8(ascii: "0") }
            guard s.utf8.count > 2, s.hasPrefix("0x") || s.hasPrefix("0X"),
                s.utf8.dropFirst(2).allSatisfy({ $0 < 0x80 && Character(Unicode.Scalar($0)).isHexDigit }),
                digits.count <= 16, let u = digits.isEmpty ? 0 : UInt64(String(decoding: digits, as: UTF8.self), radix: 16)
            else {
                throw RPCError.invalidParams(field, "must be an integer or a \"0x…\" hex string of a value in 0…2^64−1, got \"\(s)\"")
            }
            return u
        default: throw RPCError.invalidParams(field, "must be an integer, got \(v.typeName)")
        }
    }

    func string(_ key: String) throws(RPCError) -> String {
        guard let v = try optionalString(key) else { throw RPCError.invalidParams(key, "is required") }
        return v
    }

    func optionalString(_ key: String) throws(RPCError) -> String? {
        guard let v = self[key] else { return nil }
        guard case .string(let s) = v else { throw RPCError.invalidParams(key, "must be a string, got \(v.typeName)") }
        return s
    }

    func optionalBool(_ key: String) throws(RPCError) -> Bool? {
        guard let v = self[key] else { return nil }
        guard case .bool(let b) = v else { throw RPCError.invalidParams(key, "must be a boolean, got \(v.typeName)") }
        return b
    }

    func optionalIDs(_ key: String) throws(RPCError) -> [UInt32]? {
        guard let v = self[key] else { return nil }
        guard case .array(let items) = v else { throw RPCError.invalidParams(key, "must be an array of ids") }
        var ids: [UInt32] = []
        for item in items {
            let n = try Self.number(item, field: key)
            guard n <= UInt64(UInt32.max) else { throw RPCError.domain(.EINVAL, "\(key): id \(n) does not fit in 32 bits") }
            ids.append(UInt32(n))
        }
        return ids
    }

    /// `perm` as sent: a string or an integer (else -32602).  Its value is checked by `PermissionArgument.validated()`
    /// after the device and its owner, as every method checks ranges after ownership (docs/protocol.md §3).
    func permission(_ key: String = "perm") throws(RPCError) -> PermissionArgument {
        guard let v = self[key] else { throw RPCError.invalidParams(key, "is required") }
        switch v {
        case .string(let s): return .name(s)
        case .unsigned(let u): return .number(u)
        default: throw RPCError.invalidParams(key, "must be \"ro\", \"wo\", \"rw\" or 0…255, got \(v.typeName)")
        }
    }

    /// A string param whose value must be one of an enum's (`access`, `area`, `layer`): -32602 when it is
    /// missing or not a string; an unknown value is a domain error (EINVAL, §2), raised by `EnumArgument.validated()`.
    func enumeration<E: RawRepresentable>(_ key: String, _: E.Type, default value: E? = nil) throws(RPCError) -> EnumArgument<E>
    where E.RawValue == String {
        guard let text = try optionalString(key) else {
            guard let value else { throw RPCError.invalidParams(key, "is required") }
            return EnumArgument(field: key, text: value.rawValue)
        }
        return EnumArgument(field: key, text: text)
    }

    /// Bytes as a hex string (`"0a1b…"`, an even number of hex digits, no prefix): -32602 otherwise.
    func hexBytes(_ key: String) throws(RPCError) -> [UInt8] {
        let text = try string(key)
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { throw RPCError.invalidParams(key, "must be an even number of hex digits") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for k in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(decoding: digits[k...k + 1], as: UTF8.self), radix: 16),
                digits[k] != UInt8(ascii: "+"), digits[k] != UInt8(ascii: "-")
            else {
                throw RPCError.invalidParams(key, "must be hex digits, got \"\(text)\"")
            }
            bytes.append(byte)
        }
        return bytes
    }

    /// A backend feature set: names or a mask.  Unknown name → -32602; unknown bits are left for the device (EOPNOTSUPP).
    func backendFeatures(_ key: String = "features") throws(RPCError) -> BackendFeatures {
        guard let v = self[key] else { throw RPCError.invalidParams(key, "is required") }
        if case .array(let items) = v {
            var set: BackendFeatures = []
            for item in items {
                guard case .string(let name) = item else { throw RPCError.invalidParams(key, "names must be strings") }
                guard let f = BackendFeatures(name: name.hasPrefix("VHOST_BACKEND_F_") ? String(name.dropFirst(16)) : name) else {
                    throw RPCError.invalidParams(key, "has an unknown backend feature \"\(name)\"")
                }
                set.formUnion(f)
            }
            return set
        }
        return BackendFeatures(rawValue: try Self.number(v, field: key))
    }

    /// The shape of a virtio feature set, checked before the device is known: a mask, or names each known
    /// to some device class (-32602 otherwise).  `virtioFeatures` then resolves them for the device's class.
    func checkVirtioFeatureNames(_ key: String) throws(RPCError) {
        guard let v = self[key] else { throw RPCError.invalidParams(key, "is required") }
        guard case .array(let items) = v else { _ = try Self.number(v, field: key); return }
        for item in items {
            guard case .string(let name) = item else { throw RPCError.invalidParams(key, "names must be strings") }
            let bare = name.hasPrefix("VIRTIO_") ? String(name.split(separator: "_F_", maxSplits: 1).last ?? "") : name
            guard DeviceClass.allCases.contains(where: { VirtioFeatures.bit(named: bare, class: $0) != nil }) else {
                throw RPCError.invalidParams(key, "has an unknown feature \"\(name)\"")
            }
        }
    }

    func virtioFeatures(_ key: String, class deviceClass: DeviceClass) throws(RPCError) -> UInt64 {
        guard let v = self[key] else { throw RPCError.invalidParams(key, "is required") }
        if case .array(let items) = v {
            var mask: UInt64 = 0
            for item in items {
                guard case .string(let name) = item else { throw RPCError.invalidParams(key, "names must be strings") }
                let bare = name.hasPrefix("VIRTIO_") ? String(name.split(separator: "_F_", maxSplits: 1).last ?? "") : name
                guard let bit = VirtioFeatures.bit(named: bare, class: deviceClass) else {
                    throw RPCError.invalidParams(key, "has an unknown \(deviceClass.rawValue) feature \"\(name)\"")
                }
                mask |= bit
            }
            return mask
        }
        return try Self.number(v, field: key)
    }
}
