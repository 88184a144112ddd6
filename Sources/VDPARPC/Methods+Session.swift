// Methods+Session.swift — §5.3: open/close, negotiation, status, groups,
// vrings, suspend/resume.  Every method but `open` needs the caller's
// connection to own the device.
import VDPACore

extension VDPAService {
    static let sessionMethods: [String: Handler] = [
        "open": { s, p, caller in
            let slot = try s.slot(try p.string("device"))
            let reply = try slot.sync { (d: inout VDPADevice) throws(VDPAError) -> JSON in
                let a = d.attributes
                guard caller.isAdmin || a.users.contains(caller.uid) || a.groups.contains(caller.gid)
                    || !Set(a.groups).isDisjoint(with: caller.supplementaryGroups) else {
                    throw VDPAError(.EPERM, "uid \(caller.uid) may not open \(d.name): not an admin and not in its users or groups")
                }
                try d.open(by: caller.owner)
                return ["nvqs": JSON(d.virtqueueCount), "ngroups": JSON(d.groupCount), "nas": JSON(d.addressSpaceCount),
                        "iova_first": .unsigned(d.iovaRange.first), "iova_last": .unsigned(d.iovaRange.last),
                        "backend_features": backendJSON(d.offeredBackendFeatures)]
            }
            s.emit("owner_changed", device: try p.string("device"), [("owner", ownerJSON(caller.owner))])
            return reply
        },
        "close": { s, p, caller in
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in d.release() }
            s.emit("owner_changed", device: try p.string("device"), [("owner", .null), ("reason", "close")])
            return [:]
        },
        "get_backend_features": { s, p, caller in
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) -> JSON in
                ["offered": backendJSON(d.offeredBackendFeatures), "acked": backendJSON(d.ackedBackendFeatures)]
            }
        },
        "set_backend_features": { s, p, caller in
            let features = try p.backendFeatures()
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.setBackendFeatures(features) }
            return [:]
        },
        "get_features": { s, p, caller in
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) -> JSON in
                featuresJSON(d.driverFeatures, d.mgmtdev.deviceClass)
            }
        },
        "set_features": { s, p, caller in
            try p.checkVirtioFeatureNames("features")  // -32602 before the device (§3's order)
            let slot = try s.ownedSlot(p, caller)
            let c = slot.read { $0.mgmtdev.deviceClass }
            let mask = try p.virtioFeatures("features", class: c)
            try slot.sync { (d: inout VDPADevice) throws(VDPAError) in try d.setFeatures(mask) }
            return [:]
        },
        "get_status": { s, p, caller in
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) -> JSON in ["status": .unsigned(UInt64(d.status))] }
        },
        "set_status": { s, p, caller in
            let status = try p.u64("status")
            try s.changeStatus(p, caller) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(status) }
            return [:]
        },
        "reset": { s, p, caller in
            try s.changeStatus(p, caller) { (d: inout VDPADevice) throws(VDPAError) in d.reset() }
            return [:]
        },
        "set_group_asid": { s, p, caller in
            let group = try p.u64("group"), asid = try p.u64("asid")
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.setGroupASID(group: group, asid: asid) }
            return [:]
        },
        "get_vring_group": { s, p, caller in
            let vq = try p.u64("vq")
            let g = try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.vringGroup(vq) }
            return ["vq": .unsigned(vq), "group": JSON(g)]
        },
        "get_vring_desc_group": { s, p, caller in
            let vq = try p.u64("vq")
            let g = try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.vringDescriptorGroup(vq) }
            return ["vq": .unsigned(vq), "group": JSON(g)]
        },
        "set_vring": { s, p, caller in
            let vq = try p.u64("vq")
            let num = try p.optionalU64("num"), desc = try p.optionalU64("desc"), driver = try p.optionalU64("driver")
            let device = try p.optionalU64("device_area"), ready = try p.optionalBool("ready")
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in
                try d.setVring(vq, num: num, desc: desc, driver: driver, device: device, ready: ready)
            }
            return [:]
        },
        "get_vring": { s, p, caller in
            let vq = try p.u64("vq")
            let r = try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.vring(vq) }
            func opt(_ v: UInt64?) -> JSON { v.map { .unsigned($0) } ?? .null }
            return ["vq": .unsigned(vq), "num": opt(r.num.map(UInt64.init)), "desc": opt(r.desc), "driver": opt(r.driver),
                    "device_area": opt(r.device), "ready": .bool(r.ready)]
        },
        "suspend": { s, p, caller in
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.suspend() }
            return [:]
        },
        "resume": { s, p, caller in
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.resume() }
            return [:]
        },
    ]

    /// Runs a status-changing operation and reports `status_changed` when the byte moved.
    func changeStatus(_ p: Params, _ caller: Caller, _ body: (inout VDPADevice) throws(VDPAError) -> Void) throws(RPCError) {
        let name = try p.string("device")
        let (before, after) = try ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) -> (UInt8, UInt8) in
            let before = d.status
            try body(&d)
            return (before, d.status)
        }
        if before != after || after == 0 {
            emit("status_changed", device: name, [("status", .unsigned(UInt64(after))), ("previous", .unsigned(UInt64(before)))])
        }
    }
}
