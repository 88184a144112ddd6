// Methods+Session.swift — §5.3: open/close, negotiation, status, groups,
// vrings, eventfds, suspend/resume.  Changes need the caller's connection
// to own the device; the reads of device state are the owner's or an
// admin's.
import VDPACore
import VDPAJSON
import VDPARegistry

extension VDPAService {
    static let sessionMethods: [RPCMethod] = [
        RPCMethod(
            MethodSpec(
                "open", "Own the device on this connection (open + VHOST_SET_OWNER)", [.device()], result: Schemas.object,
                errors: [.ENODEV, .EPERM, .EBUSY],
                examples: [
                    [
                        "name": "open vdpa0", "params": [["name": "device", "value": "vdpa0"]],
                        "result": ["name": "identity", "value": ["nvqs": 3, "ngroups": 2, "nas": 2, "device_id": 1]]
                    ]
                ]),
            handler: { s, p, caller in
                let d = try s.registry.open(try p.string("device"), by: caller)
                return [
                    "nvqs": JSON(d.virtqueueCount), "ngroups": JSON(d.groupCount), "nas": JSON(d.addressSpaceCount),
                    "iova_first": .unsigned(d.iovaRange.first), "iova_last": .unsigned(d.iovaRange.last),
                    "backend_features": backendJSON(d.offeredBackendFeatures),
                    "device_id": JSON(Int(d.deviceID.rawValue)), "vq_num_max": JSON(d.virtqueueSizeMax),
                    "config_size": JSON(d.configSize), "features": featuresJSON(d.offeredFeatures, d.mgmtdev.deviceClass)
                ]
            }
        ),
        RPCMethod(
            MethodSpec("close", "Release the device (§6)", [.device()], errors: VDPAService.ownerErrors),
            handler: { s, p, caller in
                try s.registry.close(try p.string("device"), by: caller)
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "get_backend_features", "Offered and acked backend features", [.device()], result: Schemas.object, errors: VDPAService.ownerErrors),
            handler: { s, p, caller in
                let f = try s.registry.backendFeatures(device: try p.string("device"), by: caller)
                return ["offered": backendJSON(f.offered), "acked": backendJSON(f.acked)]
            }
        ),
        RPCMethod(
            MethodSpec(
                "set_backend_features", "Ack backend features (replaces the acked set; R28)",
                [.device(), ParamSpec(name: "features", schema: Schemas.ref("Features"), required: true, summary: "names or a mask")],
                errors: VDPAService.ownerErrors + [.EOPNOTSUPP, .EINVAL]),
            handler: { s, p, caller in
                let features = try p.backendFeatures()
                try s.registry.setBackendFeatures(features, device: try p.string("device"), by: caller)
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "get_features", "The virtio offer (R53) and the driver features", [.device()], result: Schemas.featureSet,
                errors: VDPAService.ownerErrors),
            handler: { s, p, caller in
                // R53: what the parent offers (no ioctl reads the negotiated set back); vdpad adds it.
                let f = try s.registry.features(device: try p.string("device"), by: caller)
                return [
                    "names": .array(VirtioFeatures.names(of: f.offered, class: f.class).map { .string($0) }),
                    "mask": .unsigned(f.offered), "driver_features": featuresJSON(f.driver, f.class)
                ]
            }
        ),
        RPCMethod(
            MethodSpec(
                "set_features", "Set the virtio driver features (R54)",
                [.device(), ParamSpec(name: "features", schema: Schemas.ref("Features"), required: true, summary: "names or a mask")],
                errors: VDPAService.ownerErrors + [.EBUSY, .EINVAL]),
            handler: { s, p, caller in
                try p.checkVirtioFeatureNames("features")  // -32602 before the device (§3's order)
                // The names resolve for the device's class (anyone may read it), then the owner's change.
                let name = try p.string("device")
                let mask = try p.virtioFeatures("features", class: try s.registry.deviceClass(of: name))
                try s.registry.setFeatures(mask, device: name, by: caller)
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec("get_status", "The virtio status byte", [.device()], result: Schemas.object, errors: VDPAService.ownerErrors),
            handler: { s, p, caller in
                ["status": .unsigned(UInt64(try s.registry.status(device: try p.string("device"), by: caller)))]
            }
        ),
        RPCMethod(
            MethodSpec(
                "set_status", "Set the status byte; 0 resets (R56)", [.device(), .u64("status", "the new status byte")],
                errors: VDPAService.ownerErrors + [.EINVAL]),
            handler: { s, p, caller in
                let status = try p.u64("status")
                try s.registry.changeStatus(try p.string("device"), by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(status) }
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec("reset", "Device reset: SET_STATUS(0) (R30, R31, R69)", [.device()], errors: VDPAService.ownerErrors),
            handler: { s, p, caller in
                try s.registry.changeStatus(try p.string("device"), by: caller) { (d: inout VDPADevice) throws(VDPAError) in d.reset() }
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "set_group_asid", "Bind a virtqueue group to an ASID (R22, R25)",
                [.device(), .u64("group", "the group"), .u64("asid", "the address space")],
                errors: VDPAService.ownerErrors + [.ENOBUFS, .EINVAL, .EOPNOTSUPP]),
            handler: { s, p, caller in
                let group = GroupIndex(try p.u64("group")), asid = ASID(try p.u64("asid"))
                try s.registry.setGroupASID(group: group, asid: asid, device: try p.string("device"), by: caller)
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "get_vring_group", "A virtqueue's group (R23)", [.device(), .vq], result: Schemas.object, errors: VDPAService.ownerErrors + [.ENOBUFS]
            ),
            handler: { s, p, caller in
                let vq = VirtqueueIndex(try p.u64("vq"))
                let g = try s.registry.vringGroup(vq, device: try p.string("device"), by: caller)
                return ["vq": .unsigned(vq.rawValue), "group": .unsigned(g.rawValue)]
            }
        ),
        RPCMethod(
            MethodSpec(
                "get_vring_size",
                "VHOST_VDPA_GET_VRING_SIZE (R46): ENOTTY on a 6.7/6.8 device, else the parent's get_vq_size (EOPNOTSUPP without it)",
                [.device(), .vq], result: Schemas.object, errors: VDPAService.ownerErrors + [.ENOBUFS, .ENOTTY, .EOPNOTSUPP]),
            handler: { s, p, caller in
                let vq = VirtqueueIndex(try p.u64("vq"))
                let size = try s.registry.vringSize(vq, device: try p.string("device"), by: caller)
                return ["vq": .unsigned(vq.rawValue), "size": JSON(size)]
            }
        ),
        RPCMethod(
            MethodSpec(
                "get_vring_desc_group", "A virtqueue's descriptor-table group (R24)", [.device(), .vq], result: Schemas.object,
                errors: VDPAService.ownerErrors + [.ENOBUFS, .EOPNOTSUPP]),
            handler: { s, p, caller in
                let vq = VirtqueueIndex(try p.u64("vq"))
                let g = try s.registry.vringDescriptorGroup(vq, device: try p.string("device"), by: caller)
                return ["vq": .unsigned(vq.rawValue), "group": .unsigned(g.rawValue)]
            }
        ),
        RPCMethod(
            MethodSpec(
                "set_vring", "SET_VRING_NUM / ADDR / BASE / ENABLE in one call (R58–R62)",
                [
                    .device(), .vq, .u64("num", "ring size, a power of two", required: false), .u64("desc", "descriptor table IOVA", required: false),
                    .u64("driver", "driver (avail) area IOVA", required: false), .u64("device_area", "device (used) area IOVA", required: false),
                    .u64("base", "last avail index", required: false),
                    ParamSpec(name: "ready", schema: Schemas.bool, required: false, summary: "SET_VRING_ENABLE"),
                    .u64("flags", "vhost_vring_addr flags (bit 0 LOG only)", required: false), .u64("log", "log address", required: false)
                ],
                errors: VDPAService.ownerErrors + [.ENOBUFS, .EINVAL, .EOPNOTSUPP]),
            handler: { s, p, caller in
                let vq = VirtqueueIndex(try p.u64("vq"))
                let num = try p.optionalU64("num"), desc = try p.optionalU64("desc"), driver = try p.optionalU64("driver")
                let device = try p.optionalU64("device_area"), ready = try p.optionalBool("ready")
                let base = try p.optionalU64("base"), flags = try p.optionalU64("flags"), log = try p.optionalU64("log")
                let change = VringChange(
                    num: num, desc: desc, driver: driver, device: device, base: base, ready: ready, addressFlags: flags, log: log)
                try s.registry.setVring(vq, change, device: try p.string("device"), by: caller)
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "get_vring", "A virtqueue's state: size, addresses, base, ready, kick, call, and the ring the device walks (owner or admin)",
                [.device(), .vq],
                result: Schemas.object, errors: VDPAService.ownerErrors + [.ENOBUFS]),
            handler: { s, p, caller in
                let vq = VirtqueueIndex(try p.u64("vq"))
                let (r, inUse) = try s.registry.vringAndRingInUse(vq, device: try p.string("device"), by: caller)
                return vringJSON(Int(vq.rawValue), r, inUse: inUse)
            }
        ),
        RPCMethod(
            MethodSpec(
                "set_vring_kick", "Bind the kick eventfd passed with SCM_RIGHTS (R63)", [.device(), .vq, .unset],
                errors: VDPAService.ownerErrors + [.ENOBUFS, .EBADF, .EINVAL]),
            handler: { s, p, caller in
                let vq = VirtqueueIndex(try p.u64("vq"))
                try s.withPassedDescriptor(p, caller) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                    try d.setVringKick(vq, fd)
                } precheck: { (d: inout VDPADevice) throws(VDPAError) in
                    _ = try d.vring(vq)
                }
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "set_vring_call", "Bind the call eventfd passed with SCM_RIGHTS (R64)", [.device(), .vq, .unset],
                errors: VDPAService.ownerErrors + [.ENOBUFS, .EBADF, .EINVAL]),
            handler: { s, p, caller in
                let vq = VirtqueueIndex(try p.u64("vq"))
                try s.withPassedDescriptor(p, caller) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                    try d.setVringCall(vq, fd)
                } precheck: { (d: inout VDPADevice) throws(VDPAError) in
                    _ = try d.vring(vq)
                }
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "set_config_call", "Bind the config eventfd passed with SCM_RIGHTS (R65)", [.device(), .unset],
                errors: VDPAService.ownerErrors + [.EBADF, .EINVAL]),
            handler: { s, p, caller in
                // R65's quirk: the old eventfd goes before the new one is checked, so a failing call leaves none.
                try s.withPassedDescriptor(p, caller) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                    d.setConfigCall(fd)
                } precheck: { (d: inout VDPADevice) throws(VDPAError) in
                    d.setConfigCall(nil)
                }
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "set_store_agent", "Lend vdpad a socket to the VMM's store agent, which writes ring indexes as single aligned stores (§5.6)",
                [.device(), .unset], errors: VDPAService.ownerErrors + [.EBADF, .EINVAL]),
            handler: { s, p, caller in
                try s.withPassedDescriptor(p, caller, kind: .socket) { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in
                    d.setStoreAgent(fd)
                } precheck: { (_: inout VDPADevice) throws(VDPAError) in
                }
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec(
                "share_memory",
                "The file passed with SCM_RIGHTS (a memfd) backs the owner's [addr, addr+size) from offset on: vdpad maps it and "
                    + "reaches buffers there without a system call (§5.7)",
                [
                    .device(), .u64("addr", "the owner's first address the file backs"), .u64("size", "bytes (page-aligned)"),
                    .u64("offset", "the file offset at addr (default 0)", required: false)
                ],
                result: ["type": "object", "properties": ["regions": ["type": "integer"]], "required": ["regions"]],
                errors: VDPAService.ownerErrors + [.EBADF, .EINVAL, .EEXIST, .ENOSPC]),
            handler: { s, p, caller in
                // Taken first, as every descriptor method does, so requests and descriptors stay paired.
                let fd = s.registry.takeDescriptor(for: caller)
                let (device, address, size, offset): (String, UInt64, UInt64, UInt64)
                do {
                    (address, size, offset) = (try p.u64("addr"), try p.u64("size"), try p.optionalU64("offset") ?? 0)
                    device = try p.string("device")
                } catch {
                    if let fd { s.registry.discardDescriptor(fd) }
                    throw error
                }
                let regions = try s.registry.shareMemory(fd, address: address, size: size, offset: offset, device: device, by: caller)
                return ["regions": JSON(regions)]
            }
        ),
        RPCMethod(
            MethodSpec(
                "unshare_memory", "The owner unmapped or remapped [addr, addr+size): every shared region that meets it goes (§5.7)",
                [.device(), .u64("addr", "the first address"), .u64("size", "bytes")],
                result: ["type": "object", "properties": ["removed": ["type": "integer"]], "required": ["removed"]],
                errors: VDPAService.ownerErrors),
            handler: { s, p, caller in
                let removed = try s.registry.unshareMemory(
                    address: try p.u64("addr"), size: try p.u64("size"), device: try p.string("device"), by: caller)
                return ["removed": JSON(removed)]
            }
        ),
        RPCMethod(
            MethodSpec("suspend", "VHOST_VDPA_SUSPEND (R66)", [.device()], errors: VDPAService.ownerErrors + [.EOPNOTSUPP]),
            handler: { s, p, caller in
                try s.registry.suspend(device: try p.string("device"), by: caller)
                return [:]
            }
        ),
        RPCMethod(
            MethodSpec("resume", "VHOST_VDPA_RESUME (R66)", [.device()], errors: VDPAService.ownerErrors + [.EOPNOTSUPP]),
            handler: { s, p, caller in
                try s.registry.resume(device: try p.string("device"), by: caller)
                return [:]
            }
        )
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
