// Methods+Session.swift — §5.3: open/close, negotiation, status, groups,
// vrings, eventfds, suspend/resume.  Changes need the caller's connection
// to own the device; the reads of device state are the owner's or an
// admin's.
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
                        "backend_features": backendJSON(d.offeredBackendFeatures),
                        "device_id": JSON(Int(d.deviceID.rawValue)), "vq_num_max": JSON(d.virtqueueSizeMax),
                        "config_size": JSON(d.configSize), "features": featuresJSON(d.offeredFeatures, d.mgmtdev.deviceClass)]
            }
            s.emit(.ownerChanged, device: try p.string("device"), [("owner", ownerJSON(caller.owner))])
            return reply
        },
        "close": { s, p, caller in
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in d.release() }
            s.emit(.ownerChanged, device: try p.string("device"), [("owner", .null), ("reason", "close")])
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
            // R53: what the parent offers (no ioctl reads the negotiated set back); vdpad adds it.
            try s.ownedOrAdminSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) -> JSON in
                let c = d.mgmtdev.deviceClass
                return ["names": .array(VirtioFeatures.names(of: d.offeredFeatures, class: c).map { .string($0) }),
                        "mask": .unsigned(d.offeredFeatures), "driver_features": featuresJSON(d.driverFeatures, c)]
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
            try s.ownedOrAdminSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) -> JSON in ["status": .unsigned(UInt64(d.status))] }
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
            let base = try p.optionalU64("base"), flags = try p.optionalU64("flags"), log = try p.optionalU64("log")
            try s.ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in
                try d.setVring(vq, num: num, desc: desc, driver: driver, device: device, base: base, ready: ready,
                               addressFlags: flags, log: log)
            }
            return [:]
        },
        "get_vring": { s, p, caller in
            let vq = try p.u64("vq")
            let r = try s.ownedOrAdminSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in try d.vring(vq) }
            return vringJSON(Int(vq), r)
        },
        "set_vring_kick": { s, p, caller in
            let vq = try p.u64("vq")
            try s.withPassedEventFD(p, caller) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                try d.setVringKick(vq, fd)
            } precheck: { (d: inout VDPADevice) throws(VDPAError) in _ = try d.vring(vq) }
            return [:]
        },
        "set_vring_call": { s, p, caller in
            let vq = try p.u64("vq")
            try s.withPassedEventFD(p, caller) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                try d.setVringCall(vq, fd)
            } precheck: { (d: inout VDPADevice) throws(VDPAError) in _ = try d.vring(vq) }
            return [:]
        },
        "set_store_agent": { s, p, caller in
            try s.withPassedEventFD(p, caller, kind: .socket) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                d.setStoreAgent(fd)
            } precheck: { (_: inout VDPADevice) throws(VDPAError) in }
            return [:]
        },
        "set_config_call": { s, p, caller in
            // R65's quirk: the old eventfd goes before the new one is checked, so a failing call leaves none.
            try s.withPassedEventFD(p, caller) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                d.setConfigCall(fd)
            } precheck: { (d: inout VDPADevice) throws(VDPAError) in d.setConfigCall(nil) }
            return [:]
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

    /// The eventfd methods (docs/protocol.md §5.5): the request takes the oldest descriptor its connection passed
    /// (taken first, so requests and descriptors stay paired even when it fails), unless `unset` is true.
    /// Then the device, its owner and `precheck` (the vq index; R44 before R63); then EBADF when nothing was
    /// passed, EBADF/EINVAL when the descriptor is not an eventfd; then `apply`.  On failure the descriptor
    /// is closed; on success the device holds it.
    func withPassedEventFD(_ p: Params, _ caller: Caller, kind: EventFDs.Kind = .eventfd,
                           _ apply: (inout VDPADevice, EventFD?) throws(VDPAError) -> Void,
                           precheck: (inout VDPADevice) throws(VDPAError) -> Void) throws(RPCError) {
        let unset = try p.optionalBool("unset") ?? false
        let fd = unset ? nil : takeDescriptor(caller.connection)
        do throws(RPCError) {
            try ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) in
                try precheck(&d)
                if !unset {
                    guard let fd else {
                        throw VDPAError(.EBADF, "no descriptor was passed for this request: send an eventfd with SCM_RIGHTS "
                                        + "with (or before) the request's bytes, or set unset: true")
                    }
                    if let errno = EventFDs.check(fd, is: kind) {
                        throw VDPAError(errno, errno == .EBADF ? "descriptor \(fd) is not open"
                                        : "the descriptor passed is not \(kind == .eventfd ? "an eventfd (R63–R65)" : "a socket")")
                    }
                }
                try apply(&d, fd.map(EventFD.init))
            }
        } catch {
            if let fd { EventFDs.close(fd) }
            throw error
        }
    }

    /// Runs a status-changing operation and reports `status_changed` when the byte moved.
    func changeStatus(_ p: Params, _ caller: Caller, _ body: (inout VDPADevice) throws(VDPAError) -> Void) throws(RPCError) {
        let name = try p.string("device")
        let (before, after) = try ownedSlot(p, caller).sync { (d: inout VDPADevice) throws(VDPAError) -> (UInt8, UInt8) in
            let before = d.status
            try body(&d)
            return (before, d.status)
        }
        if before != after || after == 0 {
            emit(.statusChanged, device: name, [("status", .unsigned(UInt64(after))), ("previous", .unsigned(UInt64(before)))])
        }
    }
}
