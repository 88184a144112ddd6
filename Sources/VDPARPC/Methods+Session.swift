// Methods+Session.swift — §5.3: open/close, negotiation, status, groups,
// vrings, eventfds, suspend/resume.  Changes need the caller's connection
// to own the device; the reads of device state are the owner's or an
// admin's.
import VDPACore
import VDPAJSON
import VDPARegistry

extension VDPAService {
    static let sessionMethods: [String: Handler] = [
        "open": { s, p, caller in
            let d = try s.registry.open(try p.string("device"), by: caller)
            return [
                "nvqs": JSON(d.virtqueueCount), "ngroups": JSON(d.groupCount), "nas": JSON(d.addressSpaceCount),
                "iova_first": .unsigned(d.iovaRange.first), "iova_last": .unsigned(d.iovaRange.last),
                "backend_features": backendJSON(d.offeredBackendFeatures),
                "device_id": JSON(Int(d.deviceID.rawValue)), "vq_num_max": JSON(d.virtqueueSizeMax),
                "config_size": JSON(d.configSize), "features": featuresJSON(d.offeredFeatures, d.mgmtdev.deviceClass)
            ]
        },
        "close": { s, p, caller in
            try s.registry.close(try p.string("device"), by: caller)
            return [:]
        },
        "get_backend_features": { s, p, caller in
            let f = try s.registry.backendFeatures(device: try p.string("device"), by: caller)
            return ["offered": backendJSON(f.offered), "acked": backendJSON(f.acked)]
        },
        "set_backend_features": { s, p, caller in
            let features = try p.backendFeatures()
            try s.registry.setBackendFeatures(features, device: try p.string("device"), by: caller)
            return [:]
        },
        "get_features": { s, p, caller in
            // R53: what the parent offers (no ioctl reads the negotiated set back); vdpad adds it.
            let f = try s.registry.features(device: try p.string("device"), by: caller)
            return [
                "names": .array(VirtioFeatures.names(of: f.offered, class: f.class).map { .string($0) }),
                "mask": .unsigned(f.offered), "driver_features": featuresJSON(f.driver, f.class)
            ]
        },
        "set_features": { s, p, caller in
            try p.checkVirtioFeatureNames("features")  // -32602 before the device (§3's order)
            // The names resolve for the device's class (anyone may read it), then the owner's change.
            let name = try p.string("device")
            let mask = try p.virtioFeatures("features", class: try s.registry.deviceClass(of: name))
            try s.registry.setFeatures(mask, device: name, by: caller)
            return [:]
        },
        "get_status": { s, p, caller in
            ["status": .unsigned(UInt64(try s.registry.status(device: try p.string("device"), by: caller)))]
        },
        "set_status": { s, p, caller in
            let status = try p.u64("status")
            try s.registry.changeStatus(try p.string("device"), by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(status) }
            return [:]
        },
        "reset": { s, p, caller in
            try s.registry.changeStatus(try p.string("device"), by: caller) { (d: inout VDPADevice) throws(VDPAError) in d.reset() }
            return [:]
        },
        "set_group_asid": { s, p, caller in
            let group = GroupIndex(try p.u64("group")), asid = ASID(try p.u64("asid"))
            try s.registry.setGroupASID(group: group, asid: asid, device: try p.string("device"), by: caller)
            return [:]
        },
        "get_vring_group": { s, p, caller in
            let vq = VirtqueueIndex(try p.u64("vq"))
            let g = try s.registry.vringGroup(vq, device: try p.string("device"), by: caller)
            return ["vq": .unsigned(vq.rawValue), "group": .unsigned(g.rawValue)]
        },
        "get_vring_desc_group": { s, p, caller in
            let vq = VirtqueueIndex(try p.u64("vq"))
            let g = try s.registry.vringDescriptorGroup(vq, device: try p.string("device"), by: caller)
            return ["vq": .unsigned(vq.rawValue), "group": .unsigned(g.rawValue)]
        },
        "set_vring": { s, p, caller in
            let vq = VirtqueueIndex(try p.u64("vq"))
            let num = try p.optionalU64("num"), desc = try p.optionalU64("desc"), driver = try p.optionalU64("driver")
            let device = try p.optionalU64("device_area"), ready = try p.optionalBool("ready")
            let base = try p.optionalU64("base"), flags = try p.optionalU64("flags"), log = try p.optionalU64("log")
            let change = VringChange(
                num: num, desc: desc, driver: driver, device: device, base: base, ready: ready, addressFlags: flags, log: log)
            try s.registry.setVring(vq, change, device: try p.string("device"), by: caller)
            return [:]
        },
        "get_vring": { s, p, caller in
            let vq = VirtqueueIndex(try p.u64("vq"))
            let r = try s.registry.vring(vq, device: try p.string("device"), by: caller)
            return vringJSON(Int(vq.rawValue), r)
        },
        "set_vring_kick": { s, p, caller in
            let vq = VirtqueueIndex(try p.u64("vq"))
            try s.withPassedDescriptor(p, caller) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                try d.setVringKick(vq, fd)
            } precheck: { (d: inout VDPADevice) throws(VDPAError) in
                _ = try d.vring(vq)
            }
            return [:]
        },
        "set_vring_call": { s, p, caller in
            let vq = VirtqueueIndex(try p.u64("vq"))
            try s.withPassedDescriptor(p, caller) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                try d.setVringCall(vq, fd)
            } precheck: { (d: inout VDPADevice) throws(VDPAError) in
                _ = try d.vring(vq)
            }
            return [:]
        },
        "set_store_agent": { s, p, caller in
            try s.withPassedDescriptor(p, caller, kind: .socket) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                d.setStoreAgent(fd)
            } precheck: { (_: inout VDPADevice) throws(VDPAError) in
            }
            return [:]
        },
        "set_config_call": { s, p, caller in
            // R65's quirk: the old eventfd goes before the new one is checked, so a failing call leaves none.
            try s.withPassedDescriptor(p, caller) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                d.setConfigCall(fd)
            } precheck: { (d: inout VDPADevice) throws(VDPAError) in
                d.setConfigCall(nil)
            }
            return [:]
        },
        "suspend": { s, p, caller in
            try s.registry.suspend(device: try p.string("device"), by: caller)
            return [:]
        },
        "resume": { s, p, caller in
            try s.registry.resume(device: try p.string("device"), by: caller)
            return [:]
        }
    ]

    /// The descriptor methods (docs/protocol.md §5.5): `unset`, then the oldest descriptor the connection passed
    /// is taken (before the device is decoded, so requests and descriptors stay paired even when one fails),
    /// then the registry's rules for it (`DeviceRegistry.useDescriptor`).
    func withPassedDescriptor(
        _ p: Params, _ caller: Caller, kind: DescriptorKind = .eventfd,
        _ apply: (inout VDPADevice, EventFD?) throws(VDPAError) -> Void,
        precheck: (inout VDPADevice) throws(VDPAError) -> Void
    ) throws {
        let unset = try p.optionalBool("unset") ?? false
        let fd = unset ? nil : registry.takeDescriptor(for: caller)
        let name: String
        do {
            name = try p.string("device")
        } catch {
            if let fd { registry.discardDescriptor(fd) }
            throw error
        }
        try registry.useDescriptor(fd, unset: unset, kind: kind, device: name, by: caller, apply, precheck: precheck)
    }
}
