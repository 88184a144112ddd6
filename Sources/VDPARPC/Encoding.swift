// Encoding.swift — every typed result as the wire writes it: devices,
// vrings, queues, features, owners, events, IOTLB entries and config spaces.
// The methods decode, call the registry and hand its answer to one of these.
import VDPACore
import VDPAJSON
import VDPARegistry

extension VDPAService {
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
            // ro, wo, rw by name; a perm stored as given (0, 4…255: edge #14) as its number.
            "perm": (1...3).contains(e.permission.rawValue) ? .string(e.permission.description) : .unsigned(UInt64(e.permission.rawValue))
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
            "atomic_index_stores": JSON(s.atomicIndexStores), "copied_index_stores": JSON(s.copiedIndexStores),
            "shared_accesses": JSON(s.sharedAccesses), "process_vm_accesses": JSON(s.processVMAccesses),
            "shares_refused": JSON(s.sharesRefused), "unshares": JSON(s.unshares)
        ]
        return [
            "name": .string(d.name.rawValue), "mgmtdev": .string(d.mgmtdev.name), "legacy": .bool(d.legacy),
            "kernel": .string(d.kernel.rawValue),
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
            "shared_memory": [
                "regions": .array(d.sharedMemory.regions.map { ["addr": .unsigned($0.start), "size": .unsigned($0.size)] }),
                "bytes": .unsigned(d.sharedMemory.bytes)
            ],
            "active_queue_pairs": JSON(d.activeQueuePairs),
            "vrings": .array(d.vrings.indices.map { vringJSON($0, d.vrings[$0], inUse: d.ringInUse($0)) }),
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

    /// `get_vring`'s object: what the VMM set, and `in_use`, the ring the device walks (null while not ready).
    static func vringJSON(_ vq: Int, _ r: Vring, inUse: EnabledRing?) -> JSON {
        func opt(_ v: UInt64?) -> JSON { v.map { .unsigned($0) } ?? .null }
        let walked: JSON =
            inUse.map { u in
                ["num": opt(u.num.map(UInt64.init)), "desc": opt(u.desc), "driver": opt(u.driver), "device_area": opt(u.device)]
            } ?? .null
        return [
            "vq": JSON(vq), "num": opt(r.num.map(UInt64.init)), "desc": opt(r.desc), "driver": opt(r.driver),
            "device_area": opt(r.device), "ready": .bool(r.ready), "base": JSON(Int(r.base)),
            "kick": .bool(r.kick != nil), "call": .bool(r.call != nil), "in_use": walked
        ]
    }

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
