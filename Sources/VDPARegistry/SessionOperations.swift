// SessionOperations.swift — the session, config and vring operations, each
// with its role decided here (DeviceAccess: the owner's, the owner's or an
// admin's, an admin's): a front end names the operation and never the role,
// so a second front end cannot get one wrong.  The IOTLB and group
// operations are in Operations.swift, open/close/status in DeviceRegistry.
import VDPACore

/// SET_VRING_NUM / ADDR / BASE / ENABLE in one change, each part optional (R58–R62).
public struct VringChange: Sendable {
    public var num: UInt64?, desc: UInt64?, driver: UInt64?, device: UInt64?, base: UInt64?
    public var ready: Bool?
    /// vhost_vring_addr's flags and log address (R59).
    public var addressFlags: UInt64?, log: UInt64?

    public init(
        num: UInt64? = nil, desc: UInt64? = nil, driver: UInt64? = nil, device: UInt64? = nil, base: UInt64? = nil,
        ready: Bool? = nil, addressFlags: UInt64? = nil, log: UInt64? = nil
    ) {
        (self.num, self.desc, self.driver, self.device, self.base, self.ready, self.addressFlags, self.log) =
            (num, desc, driver, device, base, ready, addressFlags, log)
    }
}

extension DeviceRegistry {
    /// GET_BACKEND_FEATURES: the owner's.
    public func backendFeatures(device: String, by caller: Caller) throws(VDPAError) -> (offered: BackendFeatures, acked: BackendFeatures) {
        try withDevice(device, .owner, by: caller) { d in (d.offeredBackendFeatures, d.ackedBackendFeatures) }
    }

    /// SET_BACKEND_FEATURES (R28): the owner's.
    public func setBackendFeatures(_ features: BackendFeatures, device: String, by caller: Caller) throws(VDPAError) {
        try withDevice(device, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.setBackendFeatures(features) }
    }

    /// The device's virtio class, which names its features: anyone may read it (list_devices shows the mgmtdev).
    public func deviceClass(of device: String) throws(VDPAError) -> DeviceClass {
        try slot(named: device).read { $0.mgmtdev.deviceClass }
    }

    /// GET_FEATURES (R53) and the negotiated set: the owner's or an admin's.
    public func features(device: String, by caller: Caller) throws(VDPAError) -> (offered: UInt64, driver: UInt64, class: DeviceClass) {
        try withDevice(device, .ownerOrAdmin, by: caller) { d in (d.offeredFeatures, d.driverFeatures, d.mgmtdev.deviceClass) }
    }

    /// SET_FEATURES (R54): the owner's.
    public func setFeatures(_ mask: UInt64, device: String, by caller: Caller) throws(VDPAError) {
        try withDevice(device, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.setFeatures(mask) }
    }

    /// GET_STATUS: the owner's or an admin's.
    public func status(device: String, by caller: Caller) throws(VDPAError) -> UInt8 {
        try withDevice(device, .ownerOrAdmin, by: caller) { $0.status }
    }

    /// The vring ioctls in one change (R58–R62): the owner's.
    public func setVring(_ vq: VirtqueueIndex, _ change: VringChange, device: String, by caller: Caller) throws(VDPAError) {
        try withQuiescedDevice(device, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in
            try d.setVring(
                vq, num: change.num, desc: change.desc, driver: change.driver, device: change.device, base: change.base,
                ready: change.ready, addressFlags: change.addressFlags, log: change.log)
        }
    }

    /// A vring's state as GET_VRING_BASE answers it (R61): the owner's or an admin's.
    public func vring(_ vq: VirtqueueIndex, device: String, by caller: Caller) throws(VDPAError) -> Vring {
        try vringAndRingInUse(vq, device: device, by: caller).vring
    }

    /// GET_VRING_BASE's state with the ring the device walks on that vq (`VDPADevice.ringInUse`), read at once.
    public func vringAndRingInUse(_ vq: VirtqueueIndex, device: String, by caller: Caller) throws(VDPAError) -> (vring: Vring, inUse: EnabledRing?) {
        try withDevice(device, .ownerOrAdmin, by: caller) { (d: inout VDPADevice) throws(VDPAError) in
            (try d.vringState(vq), d.ringInUse(Int(vq.rawValue)))
        }
    }

    /// SUSPEND (R66): the owner's (the kernel needs no owner; vdpad's session does, docs/protocol.md §4).
    public func suspend(device: String, by caller: Caller) throws(VDPAError) {
        // After the run in flight, so GET_VRING_BASE reads what it left (the kernel's suspend waits for its worker too).
        try withQuiescedDevice(device, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.suspend() }
    }

    /// RESUME (R66): the owner's.
    public func resume(device: String, by caller: Caller) throws(VDPAError) {
        try withDevice(device, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.resume() }
    }

    /// GET_CONFIG (R47, R48): the owner's or an admin's.
    public func readConfig(device: String, offset: UInt64, length: UInt64, by caller: Caller) throws(VDPAError) -> [UInt8] {
        try withDevice(device, .ownerOrAdmin, by: caller) { (d: inout VDPADevice) throws(VDPAError) in
            try d.readConfig(offset: offset, length: length)
        }
    }

    /// SET_CONFIG (R49): the owner's.
    public func writeConfig(device: String, offset: UInt64, data: [UInt8], by caller: Caller) throws(VDPAError) {
        try withDevice(device, .owner, by: caller) { (d: inout VDPADevice) throws(VDPAError) in try d.writeConfig(offset: offset, data: data) }
    }

    /// `vdpa dev set … link`: an admin's (outside the VMM's file); EINVAL for a word other than up or down.
    public func setLink(device: String, link: EnumArgument<LinkState>, by caller: Caller) throws(VDPAError) {
        try withDevice(device, .admin(operation: "set_link"), by: caller) { (d: inout VDPADevice) throws(VDPAError) in
            try d.setLink(up: try link.validated() == .up)
        }
    }
}

/// A link's state, as `set_link` takes it.
public enum LinkState: String, CaseIterable, Sendable { case up, down }
