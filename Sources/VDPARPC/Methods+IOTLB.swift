// Methods+IOTLB.swift — §5.3 IOTLB methods: map, unmap, batches, reset_map,
// translate and dump_iotlb.  Each decodes its params (-32602), calls the
// registry's typed operation (which checks the caller and the rule) and
// encodes the result; the fast path (FastPath.swift) calls the same
// operations for plain map/unmap.
import VDPACore
import VDPAJSON
import VDPARegistry

extension VDPAService {
    static let iotlbMethods: [String: Handler] = [
        "map": { s, p, caller in
            let asid = ASID(try p.optionalU64("asid") ?? 0)
            let request = MapRequest(
                asid: asid, iova: try p.u64("iova"), size: try p.u64("size"), address: try p.u64("addr"),
                permission: try p.permission())
            try s.registry.map(request, device: try p.string("device"), by: caller)
            return [:]
        },
        "unmap": { s, p, caller in
            let asid = ASID(try p.optionalU64("asid") ?? 0)
            let request = UnmapRequest(asid: asid, iova: try p.u64("iova"), size: try p.u64("size"))
            return ["removed": JSON(try s.registry.unmap(request, device: try p.string("device"), by: caller))]
        },
        "batch_begin": { s, p, caller in
            try s.registry.batchBegin(asid: ASID(try p.optionalU64("asid") ?? 0), device: try p.string("device"), by: caller)
            return [:]
        },
        "batch_end": { s, p, caller in
            try s.registry.batchEnd(asid: ASID(try p.optionalU64("asid") ?? 0), device: try p.string("device"), by: caller)
            return [:]
        },
        "reset_map": { s, p, caller in
            let r = try s.registry.resetMap(asid: ASID(try p.u64("asid")), device: try p.string("device"), by: caller)
            return ["removed": JSON(r.removed), "device_mapping": .string(r.mapping.name)]
        },
        "translate": { s, p, caller in
            // -32602 for what is missing or ill-typed, then the device and its owner, then the values (§3).
            let access = try p.enumeration("access", Access.self)
            let target: TranslateRequest.Target
            switch (p.has("asid"), p.has("vq")) {
            case (true, true): throw RPCError.invalidParams("asid", "and vq are exclusive: name one")
            case (false, false): throw RPCError.invalidParams("asid", "or vq (with area) is required")
            case (true, false): target = .asid(ASID(try p.u64("asid")))
            case (false, true): target = .virtqueue(VirtqueueIndex(try p.u64("vq")), try p.enumeration("area", VirtqueueArea.self))
            }
            // A ring area defaults to the ring set_vring gave; an ASID or a buffer has no default.
            let needsRange =
                switch target {
                case .asid: true
                case .virtqueue(_, let area): area.value == .buffer
                }
            let iova = needsRange ? try p.u64("iova") : try p.optionalU64("iova")
            let size = needsRange ? try p.u64("size") : try p.optionalU64("size")
            let segments = try s.registry.translate(
                TranslateRequest(target: target, access: access, iova: iova, size: size),
                device: try p.string("device"), by: caller)
            return ["segments": .array(segments.map { ["iova": .unsigned($0.iova), "size": .unsigned($0.size), "addr": .unsigned($0.address)] })]
        },
        "dump_iotlb": { s, p, caller in
            let request = DumpRequest(
                asid: ASID(try p.u64("asid")), layer: try p.enumeration("layer", IOTLBLayer.self, default: .session),
                first: try p.optionalU64("first") ?? 0, last: try p.optionalU64("last") ?? .max,
                limit: try p.optionalU64("limit") ?? 1000)
            let dump = try s.registry.dumpIOTLB(request, device: try p.string("device"), by: caller)
            return [
                "entries": .array(dump.entries.map(entryJSON)), "next": dump.next.map { .unsigned($0) } ?? .null,
                "device_mapping": .string(dump.deviceMapping.name), "exists": .bool(dump.exists)
            ]
        }
    ]
}
