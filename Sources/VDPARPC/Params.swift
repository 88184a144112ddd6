// Params.swift — typed access to a request's params, so every handler gets
// the same -32602 (with data.field) for a missing or ill-typed value, and
// numbers are exact over 0…2^64−1 whether sent as integers or "0x…" strings.
import VDPACore

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
            let lower = s.lowercased()
            guard lower.hasPrefix("0x"), lower.count > 2, lower.count <= 18, let u = UInt64(lower.dropFirst(2), radix: 16) else {
                throw RPCError.invalidParams(field, "must be an integer or a \"0x…\" hex string, got \"\(s)\"")
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

    /// `perm`: "ro"/"wo"/"rw" or 1…3; another string or integer is EINVAL (deliberate, R11), another type -32602.
    func permission(_ key: String = "perm") throws(RPCError) -> Permission {
        guard let v = self[key] else { throw RPCError.invalidParams(key, "is required") }
        switch v {
        case .string(let s):
            if let p = Permission(name: s) { return p }
            if s.lowercased().hasPrefix("0x") { return try Self.permissionValue(try Self.number(v, field: key)) }
            throw RPCError.domain(.EINVAL, "perm \"\(s)\" is not ro, wo or rw")
        case .unsigned(let u): return try Self.permissionValue(u)
        default: throw RPCError.invalidParams(key, "must be \"ro\", \"wo\", \"rw\" or 1…3, got \(v.typeName)")
        }
    }

    static func permissionValue(_ u: UInt64) throws(RPCError) -> Permission {
        guard (1...3).contains(u) else { throw RPCError.domain(.EINVAL, "perm \(u) is not 1 (ro), 2 (wo) or 3 (rw)") }
        return Permission(rawValue: UInt8(u))
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
