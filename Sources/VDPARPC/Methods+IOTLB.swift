// Methods+IOTLB.swift — §5.3 IOTLB methods: map, unmap, batches, reset_map,
// translate and dump_iotlb.
import VDPACore

extension VDPAService {
    static let iotlbMethods: [String: Handler] = [
        "map": { s, p, caller in
            let asid = try p.optionalU64("asid") ?? 0
            let iova = try p.u64("iova"), size = try p.u64("size"), addr = try p.u64("addr"), perm = try p.permission()
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in
                try d.map(asid: asid, iova: iova, size: size, address: addr, permission: perm)
            }
            return [:]
        },
        "unmap": { s, p, caller in
            let asid = try p.optionalU64("asid") ?? 0
            let iova = try p.u64("iova"), size = try p.u64("size")
            let removed = try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in
                try d.unmap(asid: asid, iova: iova, size: size)
            }
            return ["removed": JSON(removed)]
        },
        "batch_begin": { s, p, caller in
            let asid = try p.optionalU64("asid") ?? 0
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.batchBegin(asid: asid) }
            return [:]
        },
        "batch_end": { s, p, caller in
            let asid = try p.optionalU64("asid") ?? 0
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.batchEnd(asid: asid) }
            return [:]
        },
        "reset_map": { s, p, caller in
            let asid = try p.u64("asid")
            let r = try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.resetMap(asid: asid) }
            return ["removed": JSON(r.removed), "device_mapping": .string(r.mapping.name)]
        },
        "translate": { s, p, caller in
            guard case .string(let accessName)? = p["access"], let access = Access(rawValue: accessName) else {
                throw RPCError.invalidParams("access", "must be \"read\" or \"write\"")
            }
            let target: TranslationTarget
            switch (p.has("asid"), p.has("vq")) {
            case (true, true): throw RPCError.invalidParams("asid", "and vq are exclusive: name one")
            case (false, false): throw RPCError.invalidParams("asid", "or vq (with area) is required")
            case (true, false): target = .asid(try p.u64("asid"))
            case (false, true):
                guard case .string(let areaName)? = p["area"], let area = VirtqueueArea(rawValue: areaName) else {
                    throw RPCError.invalidParams("area", "must be \"desc\", \"driver\", \"device\" or \"buffer\"")
                }
                target = .virtqueue(try p.u64("vq"), area)
            }
            let iova = try p.optionalU64("iova"), size = try p.optionalU64("size")
            let segments = try s.ownedOrAdminSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in
                try d.translate(target, access: access, iova: iova, size: size)
            }
            return ["segments": .array(segments.map { ["iova": .unsigned($0.iova), "size": .unsigned($0.size), "addr": .unsigned($0.address)] })]
        },
        "dump_iotlb": { s, p, caller in
            let asid = try p.u64("asid")
            let layer = try p.optionalString("layer") ?? "session"
            guard layer == "session" || layer == "device" else {
                throw RPCError.invalidParams("layer", "must be \"session\" or \"device\"")
            }
            let first = try p.optionalU64("first") ?? 0, last = try p.optionalU64("last") ?? .max
            let limit = try p.optionalU64("limit") ?? 1000
            guard (1...65536).contains(limit) else { throw RPCError.domain(.EINVAL, "limit \(limit) is outside 1…65536") }
            guard first <= last else { throw RPCError.domain(.EINVAL, "first \(first) is above last \(last)") }
            return try s.ownedOrAdminSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) -> JSON in
                guard asid < UInt64(d.addressSpaceCount) else {
                    throw VDPAError(.EINVAL, "ASID \(asid) is not below nas \(d.addressSpaceCount) of \(d.name)")
                }
                let a = Int(asid)
                let table = layer == "session" ? d.sessionTables[a] : d.deviceTable(asid: a)
                var entries: [JSON] = []
                var next: JSON = .null
                table?.forEachOverlapping(first: first, last: last) { e in
                    if entries.count == Int(limit) {
                        next = .unsigned(e.first)
                        return false
                    }
                    entries.append(entryJSON(e))
                    return true
                }
                return ["entries": .array(entries), "next": next, "device_mapping": .string(d.deviceMapping(asid: a).name),
                        "exists": .bool(d.sessionTables[a] != nil)]
            }
        },
    ]
}
