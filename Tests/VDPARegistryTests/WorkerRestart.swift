// WorkerRestart.swift — the worker harness's device stopped and started again
// in an order a test spells out, for the rules that hang on that order: what
// an enable builds (R62), what DRIVER_OK gates (D3), which ASID the control
// queue's rings are in (D27).
#if canImport(Glibc)
    import Glibc
#endif
import VDPACore
@testable import VDPADataPath
@testable import VDPARegistry

extension WorkerLoopbackHarness {
    /// How `restart` starts the device again.
    struct Start {
        /// The pair's bases (SET_VRING_BASE after the reset, which zeroed them on vdpa_sim).
        var bases: [UInt16] = [0, 0]
        /// The RX ring's areas, when not the arena's.
        var rx: VringChange?
        /// Enable the queues before their rings are set (after the reset vdpa_sim's are at IOVA 0, R69).
        var enableFirst = false
        /// Set DRIVER_OK at the end (false: the queues are enabled and the status stays at FEATURES_OK).
        var driverOK = true
        /// Extra feature bits beside the harness's own (VERSION_1, ACCESS_PLATFORM, MAC).
        var features: UInt64 = 0
        /// The control queue's ring (vq 2, with CTRL_VQ in `features`), set and enabled with the pair.
        var control: VringChange?
    }

    /// A stop as QEMU makes it (SUSPEND, guest RAM unmapped, reset), then `start`: IOTLB_ASID acked beside the
    /// harness's backend features, the features, FEATURES_OK, the rings with the queues enabled before or after
    /// them, the arena mapped at `HarnessFile.iova` in ASID 0, DRIVER_OK unless not wanted, the pair's calls bound
    /// again (a reset drops them).  Posts and kicks nothing.
    func restart(_ start: Start) throws {
        let size = UInt64(LoopbackArena.bytes)
        try registry.suspend(device: "n0", by: vmm)
        _ = try registry.unmap(UnmapRequest(iova: HarnessFile.iova, size: size), device: "n0", by: vmm)
        try registry.changeStatus("n0", by: vmm) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(0) }
        try registry.setBackendFeatures([.iotlbMessageV2, .iotlbBatch, .iotlbASID], device: "n0", by: vmm)
        let features = VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "MAC", class: .net) | start.features
        try registry.setFeatures(features, device: "n0", by: vmm)
        try registry.changeStatus("n0", by: vmm) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(0xB) }
        var rings: [VringChange] = (0..<2).map { q in
            let v = arena.vring(q)
            let own = VringChange(desc: v.desc, driver: v.driver, device: v.device)
            var change = q == 0 ? start.rx ?? own : own
            change.base = UInt64(start.bases[q])
            return change
        }
        if let control = start.control { rings.append(control) }
        func enable() throws {
            for q in rings.indices { try registry.setVring(VirtqueueIndex(UInt64(q)), VringChange(ready: true), device: "n0", by: vmm) }
        }
        if start.enableFirst { try enable() }
        for (q, change) in rings.enumerated() { try registry.setVring(VirtqueueIndex(UInt64(q)), change, device: "n0", by: vmm) }
        try registry.map(MapRequest(iova: HarnessFile.iova, size: size, address: arena.file.address, permission: .name("rw")), device: "n0", by: vmm)
        if !start.enableFirst { try enable() }
        if start.driverOK { try registry.changeStatus("n0", by: vmm) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(0xF) } }
        for q in 0..<2 {
            let bind = { (d: inout VDPADevice, fd: EventFD?) throws(VDPAError) in try d.setVringCall(VirtqueueIndex(UInt64(q)), fd) }
            try registry.useDescriptor(dup(calls[q]), unset: false, device: "n0", by: vmm, bind, precheck: { _ in })
        }
    }
}
