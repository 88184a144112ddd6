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
    /// A stop as QEMU makes it: SUSPEND, GET_VRING_BASE of the pair (returned), guest RAM unmapped, reset.
    func stop() throws -> [UInt16] {
        try registry.suspend(device: "n0", by: vmm)
        let bases = try (0..<2).map { q in try registry.vring(VirtqueueIndex(UInt64(q)), device: "n0", by: vmm).base }
        _ = try registry.unmap(UnmapRequest(iova: HarnessFile.iova, size: UInt64(LoopbackArena.bytes)), device: "n0", by: vmm)
        try registry.changeStatus("n0", by: vmm) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(0) }
        return bases
    }

    /// How `restart` starts the device again.
    struct Start {
        /// The RX ring's areas, when not the arena's.
        var rx: VringChange?
        /// Enable the queues before their rings are set (after the reset vdpa_sim's are at IOVA 0, R69).
        var enableFirst = false
        /// Set DRIVER_OK (false: the queues are enabled and the status stays at FEATURES_OK).
        var driverOK = true
        /// Extra feature bits beside the harness's own (VERSION_1, ACCESS_PLATFORM, MAC).
        var features: UInt64 = 0
        /// The control queue's ring (vq 2, with CTRL_VQ in `features`), set and enabled with the pair.
        var control: VringChange?
    }

    /// `stop`, then `start`: IOTLB_ASID acked beside the harness's backend features, the features, FEATURES_OK, the
    /// rings at the bases the stop read, the arena mapped at `HarnessFile.iova` in ASID 0, DRIVER_OK, the queues
    /// enabled (as `start(bases:)` does it, or before their rings are set), the pair's calls bound again (a reset
    /// drops them).  Posts and kicks nothing.
    func restart(_ start: Start) throws {
        let bases = try stop()
        try registry.setBackendFeatures([.iotlbMessageV2, .iotlbBatch, .iotlbASID], device: "n0", by: vmm)
        let features = VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "MAC", class: .net) | start.features
        try registry.setFeatures(features, device: "n0", by: vmm)
        try registry.changeStatus("n0", by: vmm) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(0xB) }
        var rings: [VringChange] = (0..<2).map { q in
            let v = arena.vring(q)
            let own = VringChange(desc: v.desc, driver: v.driver, device: v.device)
            var change = q == 0 ? start.rx ?? own : own
            change.base = UInt64(bases[q])
            return change
        }
        if let control = start.control { rings.append(control) }
        func enable() throws {
            for q in rings.indices { try registry.setVring(VirtqueueIndex(UInt64(q)), VringChange(ready: true), device: "n0", by: vmm) }
        }
        if start.enableFirst { try enable() }
        for (q, change) in rings.enumerated() { try registry.setVring(VirtqueueIndex(UInt64(q)), change, device: "n0", by: vmm) }
        let size = UInt64(LoopbackArena.bytes)
        try registry.map(MapRequest(iova: HarnessFile.iova, size: size, address: arena.file.address, permission: .name("rw")), device: "n0", by: vmm)
        if start.driverOK { try registry.changeStatus("n0", by: vmm) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(0xF) } }
        if !start.enableFirst { try enable() }
        for q in 0..<2 { try bind(calls[q]) { (d: inout VDPADevice, fd) throws(VDPAError) in try d.setVringCall(VirtqueueIndex(UInt64(q)), fd) } }
    }
}
