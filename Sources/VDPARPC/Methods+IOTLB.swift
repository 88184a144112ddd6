// Methods+IOTLB.swift — §5.3 IOTLB methods: map, unmap, batches, reset_map,
// translate and dump_iotlb.
import VDPACore

extension VDPAService {
    static let iotlbMethods: [String: Handler] = [
        "map": { s, p, caller in
            let asid = try p.optionalU64("asid") ?? 0
            let iova = try p.u64("iova"), size = try p.u64("size"), addr = try p.u64("addr"), perm = try p.permission()
            try s.ownedSlot(p, caller, iotlb: true).sync { (d: inout VDPADevice) throws(VDPAError) in
                try d.map(asid: asid, iova: iova, size: size, address: addr, permission: try perm.validated())
            }
            return [:]
        },
        "unmap": { s, p, caller in
            let asid = try p.optionalU64("asid") ?? 0
            let iova = try p.u64("iova"), size = try p.u64("size")
            let removed = try s.ownedSlot(p, caller, iotlb: true).sync { (d: inout VDPADevice) throws(VDPAError) in
                try d.unmap(asid: asid, iova: iova, size: size)
            }
            return ["removed": JSON(removed)]
        },
        "batch_begin": { s, p, caller in
            let asid = try p.optionalU64("asid") ?? 0
            try s.ownedSlot(p, caller, iotlb: true).sync { (d: inout VDPADevice) throws(VDPAError) in try d.batchBegin(asid: asid) }
            return [:]
        },
        "batch_end": { s, p, caller in
            let asid = try p.optionalU64("asid") ?? 0
            try s.ownedSlot(p, caller, iotlb: true).sync { (d: inout VDPADevice) throws(VDPAError) in try d.batchEnd(asid: asid) }
            return [:]
        },
        "reset_map": { s, p, caller in
            let asid = try p.u64("asid")
            let r = try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.resetMap(asid: asid) }
            return ["removed": JSON(r.removed), "device_mapping": .string(r.mapping.name)]
        },
        "translate": { s, p, caller in
            // -32602 for what is missing or ill-typed, then the device and its owner, then the values (§3).
            let access = try p.enumeration("access", Access.self)
            let target: (UInt64, EnumArgument<VirtqueueArea>?)
            switch (p.has("asid"), p.has("vq")) {
            case (true, true): throw RPCError.invalidParams("asid", "and vq are exclusive: name one")
            case (false, false): throw RPCError.invalidParams("asid", "or vq (with area) is required")
            case (true, false): target = (try p.u64("asid"), nil)
            case (false, true): target = (try p.u64("vq"), try p.enumeration("area", VirtqueueArea.self))
            }
            // A ring area defaults to the ring set_vring gave; an ASID or a buffer has no default.
            let needsRange = target.1 == nil || target.1?.value == .buffer
            let iova = needsRange ? try p.u64("iova") : try p.optionalU64("iova")
            let size = needsRange ? try p.u64("size") : try p.optionalU64("size")
            let segments = try s.ownedOrAdminSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in
                let access = try access.validated(Access.allCases)
                let translationTarget: TranslationTarget = if let area = target.1 {
                    .virtqueue(target.0, try area.validated(VirtqueueArea.allCases))
                } else {
                    .asid(target.0)
                }
                return try d.translate(translationTarget, access: access, iova: iova, size: size)
            }
            return ["segments": .array(segments.map { ["iova": .unsigned($0.iova), "size": .unsigned($0.size), "addr": .unsigned($0.address)] })]
        },
        "dump_iotlb": { s, p, caller in
            let asid = try p.u64("asid")
            let layer = try p.enumeration("layer", IOTLBLayer.self, default: .session)
            let first = try p.optionalU64("first") ?? 0, last = try p.optionalU64("last") ?? .max
            let limit = try p.optionalU64("limit") ?? 1000
            return try s.ownedOrAdminSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) -> JSON in
                let layer = try layer.validated(IOTLBLayer.allCases)
                guard (1...65536).contains(limit) else { throw VDPAError(.EINVAL, "limit \(limit) is outside 1…65536") }
                guard first <= last else { throw VDPAError(.EINVAL, "first \(first) is above last \(last)") }
                let a = try d.checkASID(asid, iotlb: false)
                let table = layer == .session ? d.sessionTables[a] : d.deviceTable(asid: a)
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
