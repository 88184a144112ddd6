// Methods+IOTLB.swift — §5.3 IOTLB methods: map, unmap, batches, reset_map,
// translate and dump_iotlb.  Each decodes its params (-32602), calls the
// registry's typed operation (which checks the caller and the rule) and
// encodes the result; the fast path (FastPath.swift) calls the same
// operations for plain map/unmap.
import VDPACore
import VDPAJSON
import VDPARegistry

extension VDPAService {
    static let iotlbMethods: [RPCMethod] = [
        RPCMethod(
            MethodSpec(
                "map", "IOTLB UPDATE (R6, R7, R11, R13, R14)",
                [
                    .device(), .asid(), .u64("iova", "the first IOVA"), .u64("size", "bytes"), .u64("addr", "the address it maps to"),
                    ParamSpec(name: "perm", schema: Schemas.ref("Permission"), required: true, summary: "ro, wo or rw (or 0…255, stored as given)")
                ],
                errors: VDPAService.ownerErrors + [.EINVAL, .EEXIST, .ENOSPC],
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
            handler: { s, p, caller in
                let asid = ASID(try p.optionalU64("asid") ?? 0)
                let request = MapRequest(
                    asid: asid, iova: try p.u64("iova"), size: try p.u64("size"), address: try p.u64("addr"),
                    permission: try p.permission())
                try s.registry.map(request, device: try p.string("device"), by: caller)
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "unmap", "IOTLB INVALIDATE: removes every entry the range touches (R15–R17)",
                [.device(), .asid(), .u64("iova", "the first IOVA"), .u64("size", "bytes")],
                result: ["type": "object", "properties": ["removed": ["type": "integer"]]], errors: VDPAService.ownerErrors + [.EINVAL]),
            handler: { s, p, caller in
                let asid = ASID(try p.optionalU64("asid") ?? 0)
                let request = UnmapRequest(asid: asid, iova: try p.u64("iova"), size: try p.u64("size"))
                return ["removed": JSON(try s.registry.unmap(request, device: try p.string("device"), by: caller))]
            }
        ),
        RPCMethod(
            MethodSpec("batch_begin", "IOTLB BATCH_BEGIN (R18)", [.device(), .asid()], errors: VDPAService.ownerErrors + [.EINVAL]),
            handler: { s, p, caller in
                try s.registry.batchBegin(asid: ASID(try p.optionalU64("asid") ?? 0), device: try p.string("device"), by: caller)
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec("batch_end", "IOTLB BATCH_END: commit (R20)", [.device(), .asid()], errors: VDPAService.ownerErrors + [.EINVAL]),
            handler: { s, p, caller in
                try s.registry.batchEnd(asid: ASID(try p.optionalU64("asid") ?? 0), device: try p.string("device"), by: caller)
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "reset_map", "Remove an ASID's session table and restore its default mapping (R35, R36)",
                [.device(), .asid(required: true)], result: Schemas.object, errors: VDPAService.ownerErrors + [.EINVAL, .EOPNOTSUPP]),
            handler: { s, p, caller in
                let r = try s.registry.resetMap(asid: ASID(try p.u64("asid")), device: try p.string("device"), by: caller)
                return ["removed": JSON(r.removed), "device_mapping": .string(r.mapping.name)]
            }
        ),
        RPCMethod(
            MethodSpec(
                "translate", "A device DMA through the device mapping (owner or admin)",
                [
                    .device(), ParamSpec(name: "access", schema: Schemas.stringEnum(["read", "write"]), required: true, summary: "read or write"),
                    .u64("asid", "the address space (or vq + area)", required: false), .u64("vq", "the virtqueue (with area)", required: false),
                    ParamSpec(name: "area", schema: Schemas.stringEnum(["desc", "driver", "device", "buffer"]), required: false, summary: "with vq"),
                    .u64("iova", "the first IOVA (a ring area defaults to its ring)", required: false),
                    .u64("size", "bytes", required: false)
                ],
                result: ["type": "object", "properties": ["segments": Schemas.arrayOf(Schemas.object)]],
                errors: VDPAService.ownerErrors + [.EINVAL, .EFAULT, .EACCES, .ENOBUFS]),
            handler: { s, p, caller in
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
            }
        ),
        RPCMethod(
            MethodSpec(
                "dump_iotlb", "One ASID's entries, a page at a time (owner or admin)",
                [
                    .device(), .asid(required: true),
                    ParamSpec(
                        name: "layer", schema: Schemas.stringEnum(["session", "device"]), required: false, summary: "session (default) or device"),
                    .u64("first", "entries that end at or after it", required: false),
                    .u64("last", "entries that start at or before it", required: false),
                    .u64("limit", "1…65536 (default 1000)", required: false)
                ],
                result: Schemas.object, errors: VDPAService.ownerErrors + [.EINVAL]),
            handler: { s, p, caller in
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
        )
    ]
}
