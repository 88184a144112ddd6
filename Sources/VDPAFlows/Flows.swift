// Flows.swift — what newer QEMU does to a vhost-vdpa device, as real vdpad
// calls on a real (in-process) device, and what each flow's downtime window
// costs in the model (docs/vmm.md, "Record, replay", gives the
// call sequences of QEMU 8.0–10.2 and the published figures).  Upstream QEMU never acked IOTLB_PERSIST
// or DESC_ASID: the flows that use them model what a VMM gains by acking them,
// as Si-Wei Liu's unmerged series did (`persist`, `desc_asid` variants).
import Logging
import VDPACore
import VDPACostModel
import VDPAJSON
import VDPARPC
import VDPARegistry
#if canImport(Glibc)
    import Glibc
#endif

public struct FlowParameters: Sendable {
    public var guestGiB: Int
    public var queuePairs: Int
    /// The host's page size backing guest RAM: 4 KiB (one IOTLB entry per page at worst), 2 MiB (THP) or 1 GiB.
    public var pageSize: UInt64
    public init(guestGiB: Int, queuePairs: Int = 8, pageSize: UInt64 = 4096) {
        (self.guestGiB, self.queuePairs, self.pageSize) = (guestGiB, queuePairs, pageSize)
    }
}

/// The parent kinds a flow runs on: before Linux 6.7 (no IOTLB_PERSIST, no descriptor groups) and 6.7+.
public enum ParentKind: String, CaseIterable, Sendable {
    case legacy, linux67 = "6.7"
}

public enum Flow: String, CaseIterable, Sendable {
    /// VM boot: device start with guest RAM mapped (startup time, not downtime).
    case boot
    /// CVQ isolated in ASID 1 with a shadow CVQ (8.0+), at boot.
    case cvqIsolation = "cvq_isolation"
    /// Guest reboot: device reset and restart; QEMU unmaps and re-maps all RAM, unless IOTLB_PERSIST.
    case reboot, rebootPersist = "reboot_persist"
    /// Live migration, source stop to destination vring enable (the published downtime):
    /// RAM mapped at device start (QEMU ≤10.0), at vhost_vdpa_init (10.1), or kept (IOTLB_PERSIST).
    case migrationLegacy = "migration_map_at_start", migrationEarlyMap = "migration_early_map", migrationPersist = "migration_persist"
    /// Only the two halves of the legacy migration, for reading the parts.
    case sourceStop = "source_stop", destinationStart = "destination_start"
    /// Switching data vqs to shadow virtqueues at migration start: all guest RAM re-mapped, or (DESC_ASID) only rings.
    case svqSwitch = "svq_switch", svqSwitchDescASID = "svq_switch_desc_asid"

    /// What the flow is on a parent from before Linux 6.7, where a VMM cannot ack IOTLB_PERSIST or DESC_ASID.
    public var onLegacyParent: Flow {
        switch self {
        case .rebootPersist: .reboot
        case .migrationPersist: .migrationEarlyMap
        case .svqSwitchDescASID: .svqSwitch
        default: self
        }
    }

    public var summary: String {
        switch self {
        case .boot: "VM boot (startup)"
        case .cvqIsolation: "boot, CVQ in ASID 1 with a shadow CVQ (startup)"
        case .reboot: "guest reboot: unmap + re-map all RAM"
        case .rebootPersist: "guest reboot, IOTLB_PERSIST acked: maps kept"
        case .migrationLegacy: "migration downtime, RAM mapped at device start (QEMU ≤10.0)"
        case .migrationEarlyMap: "migration downtime, RAM mapped at init (QEMU 10.1)"
        case .migrationPersist: "migration downtime, IOTLB_PERSIST: maps made at init kept"
        case .sourceStop: "source: suspend, reset, unmap all"
        case .destinationStart: "destination: start, map all RAM cold"
        case .svqSwitch: "switch data vqs to SVQ: all RAM re-mapped"
        case .svqSwitchDescASID: "switch data vqs to SVQ with DESC_ASID: only rings mapped"
        }
    }
}

/// One run of a flow: its downtime window's tally, all calls, and vdpad's own time.
public struct FlowResult: Sendable {
    public var flow: Flow
    public var parent: ParentKind
    public var parameters: FlowParameters
    public var window = Tally()
    public var totalCalls = 0
    /// Answers other than success: a flow is a real sequence, so any is a bug in the flow or in vdpad.
    public var failures: [String] = []
    public var vdpadSeconds = 0.0
}

/// Runs flows on an in-process vdpad (the daemon's own service and devices).
public final class FlowRunner {
    let service: VDPAService
    let admin = Caller(connection: 1, pid: 1, uid: 0, gid: 0, isAdmin: true)
    var nextDevice = 0

    public init() {
        service = VDPAService(
            limits: ServiceLimits(), version: "flows", pid: getpid(),
            logger: Logger(label: "flows", factory: { _ in SwiftLogNoOpLogHandler() }), persist: { _ in }, useFastPath: true)
    }

    public func run(_ flow: Flow, on parent: ParentKind, _ p: FlowParameters) -> FlowResult {
        var run = Run(runner: self, flow: flow, parent: parent, parameters: p)
        run.execute()
        return run.result
    }

    /// Sends one request; nil result and the error text on failure.
    func call(_ method: String, _ params: [(String, JSON)], connection: UInt64) -> (JSON?, String?) {
        let request: JSON = ["jsonrpc": "2.0", "id": 1, "method": .string(method), "params": .object(params)]
        let caller = Caller(connection: connection, pid: 1, uid: 0, gid: 0, isAdmin: true)
        guard let bytes = service.handle(text: Array(request.text.utf8), caller: caller).bytes,
            let reply = try? JSON.parse(bytes)
        else { return (nil, "no reply") }
        if let error = reply["error"] { return (nil, error.text) }
        return (reply["result"], nil)
    }
}

/// The guest RAM QEMU's `-M pc` maps, as its memory listener's sections (one UPDATE each): low RAM with
/// the BIOS holes, then RAM above 4 GiB.
func ramSections(guestGiB: Int) -> [(iova: UInt64, size: UInt64, perm: String)] {
    let gib: UInt64 = 1 << 30
    let total = UInt64(guestGiB) * gib
    let low = min(total, 3 * gib)
    var sections: [(UInt64, UInt64, String)] = [
        (0, 0xC0000, "rw"), (0xC0000, 0x20000, "ro"), (0xE0000, 0x10000, "rw"),
        (0xF0000, 0x10000, "ro"), (0x100000, low - 0x100000, "rw"), (0xFFFF_0000, 0x10000, "ro")
    ]
    if total > low { sections.append((4 * gib, total - low, "rw")) }
    return sections
}

/// One flow's execution: a VMM process (its pinned memory) and a device.
struct Run {
    let runner: FlowRunner
    let flow: Flow
    let parent: ParentKind
    let parameters: FlowParameters
    var result: FlowResult
    var inWindow = false
    var connection: UInt64 = 100
    var device = ""
    /// Whether this VMM process's guest pages are resident (pinned before) — cold in a fresh process.
    var resident = false
    /// Bytes mapped per ASID in the session table (what a set_map commit copies).
    var mapped: [UInt64] = [0, 0]
    var batchOpen = false

    init(runner: FlowRunner, flow: Flow, parent: ParentKind, parameters: FlowParameters) {
        (self.runner, self.flow, self.parent, self.parameters) = (runner, flow, parent, parameters)
        result = FlowResult(flow: flow, parent: parent, parameters: parameters)
    }

    var has67: Bool { parent == .linux67 }
    /// IOTLB_PERSIST acked: the persist flows, and the DESC_ASID switch (Si-Wei Liu's series acked both).
    var persist: Bool { has67 && [.rebootPersist, .migrationPersist, .svqSwitchDescASID].contains(flow) }
    var descASID: Bool { has67 && flow == .svqSwitchDescASID }
    var nvqs: Int { 2 * parameters.queuePairs + 1 }
    var gibPerByte: Double { 1.0 / Double(1 << 30) }
    /// The kernel's entries for `bytes` of guest RAM: one per contiguous run, here one host page.
    func entries(_ bytes: UInt64) -> Double { Double(bytes) / Double(parameters.pageSize) }

    mutating func call(_ method: String, _ params: [(String, JSON)] = []) {
        let start = ContinuousClock.now
        let (_, error) = runner.call(method, [("device", .string(device))] + params, connection: connection)
        let d = ContinuousClock.now - start
        result.vdpadSeconds += Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        result.totalCalls += 1
        if inWindow { result.window.calls += 1 }
        if let error { result.failures.append("\(method): \(error)") }
    }

    mutating func newDevice() {
        runner.nextDevice += 1
        device = "flow\(runner.nextDevice)"
        connection = 100 + UInt64(runner.nextDevice)
        let params: [(String, JSON)] = [
            ("name", .string(device)), ("mgmtdev", "mlx5_net"),
            ("max_vqp", JSON(parameters.queuePairs)), ("legacy", .bool(!has67))
        ]
        if let error = runner.call("add_device", params, connection: 1).1 { result.failures.append("add_device: \(error)") }
        mapped = [0, 0]
        call("open")
    }

    mutating func removeDevice() {
        _ = runner.call("del_device", [("name", .string(device)), ("force", true)], connection: 1)
    }

    /// Acks what the VMM acks: MSG_V2, BATCH, IOTLB_ASID; + IOTLB_PERSIST / DESC_ASID in the flows that model them.
    mutating func backendFeatures() {
        var names: [JSON] = ["IOTLB_MSG_V2", "IOTLB_BATCH", "IOTLB_ASID"]
        if persist { names.append("IOTLB_PERSIST") }
        if descASID { names += ["DESC_ASID"] }
        call("set_backend_features", [("features", .array(names))])
    }

    mutating func map(asid: Int, iova: UInt64, size: UInt64, perm: String, ram: Bool) {
        call(
            "map",
            [
                ("asid", JSON(asid)), ("iova", .unsigned(iova)), ("size", .unsigned(size)),
                ("addr", .unsigned(0x7F00_0000_0000 &+ iova)), ("perm", .string(perm))
            ])
        mapped[asid] += size
        guard ram, inWindow else { return }
        if resident { result.window.residentPinnedGiB += Double(size) * gibPerByte } else { result.window.coldPinnedGiB += Double(size) * gibPerByte }
        result.window.entries += entries(size)
    }

    mutating func unmap(asid: Int, iova: UInt64, size: UInt64, ram: Bool) {
        call("unmap", [("asid", JSON(asid)), ("iova", .unsigned(iova)), ("size", .unsigned(size))])
        mapped[asid] -= min(size, mapped[asid])
        if ram && inWindow { result.window.unpinnedGiB += Double(size) * gibPerByte }
    }

    mutating func commit(asid: Int) {
        if inWindow { result.window.entriesCopied += entries(mapped[asid]) }
    }

    /// The listener's region_adds, batched (asid 0), at `offset` IOVAs (shadow data: allocated IOVAs).
    mutating func mapRAM(offset: UInt64 = 0) {
        call("batch_begin", [("asid", 0)])
        for s in ramSections(guestGiB: parameters.guestGiB) { map(asid: 0, iova: offset + s.iova, size: s.size, perm: s.perm, ram: true) }
        call("batch_end", [("asid", 0)])
        commit(asid: 0)
        resident = true
    }

    mutating func unmapRAM(offset: UInt64 = 0) {
        call("batch_begin", [("asid", 0)])
        for s in ramSections(guestGiB: parameters.guestGiB) { unmap(asid: 0, iova: offset + s.iova, size: s.size, ram: true) }
        call("batch_end", [("asid", 0)])
        commit(asid: 0)
    }

    /// vhost_net_start (8.2+): features, vrings, CVQ isolation with the shadow CVQ in ASID 1, RAM, DRIVER_OK,
    /// the MAC through the CVQ, then the vrings enabled.
    mutating func deviceStart(mapRAM ramAtStart: Bool) {
        call("set_features", [("features", ["VERSION_1", "ACCESS_PLATFORM", "MAC", "STATUS", "CTRL_VQ", "MQ", "CTRL_MAC_ADDR"])])
        call("set_status", [("status", 0xB)])
        let cvq = nvqs - 1
        for vq in 0..<cvq {
            call(
                "set_vring",
                [
                    ("vq", JSON(vq)), ("num", 256), ("base", 0),
                    ("desc", .unsigned(0x10_0000 + UInt64(vq) * 0x4000)), ("driver", .unsigned(0x10_1000 + UInt64(vq) * 0x4000)),
                    ("device_area", .unsigned(0x10_2000 + UInt64(vq) * 0x4000))
                ])
            call("set_vring_kick", [("vq", JSON(vq)), ("unset", true)])
        }
        call("get_vring_group", [("vq", JSON(cvq))])
        call("set_group_asid", [("group", 1), ("asid", 1)])
        for (k, perm) in [(0, "ro"), (1, "rw"), (2, "ro"), (3, "rw")] {  // shadow CVQ buffers and rings
            map(asid: 1, iova: 0x1000 * UInt64(k + 1), size: 0x1000, perm: perm, ram: false)
        }
        commit(asid: 1)
        call("set_vring", [("vq", JSON(cvq)), ("num", 64), ("base", 0), ("desc", 0x3000), ("driver", 0x3400), ("device_area", 0x4000)])
        if ramAtStart { mapRAM() }
        call("set_status", [("status", 0xF)])
        call("set_vring", [("vq", JSON(cvq)), ("ready", true)])
        if inWindow { result.window.cvqCommands += 1 }
        for vq in 0..<cvq { call("set_vring", [("vq", JSON(vq)), ("ready", true)]) }
        if inWindow { result.window.deviceStarts += 1 }
    }

    /// vhost_net_stop: SUSPEND, vring bases, CVQ rings unmapped, reset, (listener) RAM unmapped.
    mutating func deviceStop(unmapRAM ramAtStop: Bool) {
        call("suspend")
        if inWindow { result.window.suspends += 1 }
        for vq in 0..<(nvqs - 1) { call("get_vring", [("vq", JSON(vq))]) }
        for k in 0..<4 { unmap(asid: 1, iova: 0x1000 * UInt64(k + 1), size: 0x1000, ram: false) }
        commit(asid: 1)
        call("reset")
        if ramAtStop { unmapRAM() }
        call("set_status", [("status", 0x3)])
    }

    mutating func execute() {
        let flow = has67 ? self.flow : self.flow.onLegacyParent
        newDevice()
        backendFeatures()
        call("set_status", [("status", 0x3)])
        switch flow {
        case .boot, .cvqIsolation:
            inWindow = true
            deviceStart(mapRAM: true)
        case .reboot, .rebootPersist:
            deviceStart(mapRAM: true)
            inWindow = true
            deviceStop(unmapRAM: !persist)
            deviceStart(mapRAM: !persist)
        case .sourceStop:
            deviceStart(mapRAM: true)
            inWindow = true
            deviceStop(unmapRAM: true)
        case .destinationStart:
            inWindow = true
            deviceStart(mapRAM: true)
        case .migrationLegacy, .migrationEarlyMap, .migrationPersist:
            // The source: a running VM, stopped inside the downtime.
            deviceStart(mapRAM: true)
            inWindow = true
            deviceStop(unmapRAM: !persist)
            inWindow = false
            removeDevice()
            // The destination: a fresh VMM process, its pages cold.
            resident = false
            newDevice()
            backendFeatures()
            call("set_status", [("status", 0x3)])
            switch flow {
            case .migrationEarlyMap:
                mapRAM()  // at vhost_vdpa_init, before the downtime (pinning the cold pages)…
                unmapRAM()  // …INVALIDATEd by the machine reset before the main loop (flows §2.3)
            case .migrationPersist:
                mapRAM()  // made at init and kept: IOTLB_PERSIST, the listener stays registered
            default:
                break
            }
            inWindow = true
            deviceStart(mapRAM: flow != .migrationPersist)
        case .svqSwitch, .svqSwitchDescASID:
            deviceStart(mapRAM: true)
            inWindow = true
            if descASID {
                // The device still stops and starts, but guest RAM stays mapped (IOTLB_PERSIST) and only the data
                // rings move: desc group 2 to ASID 1, the ring areas mapped there (12 KiB per vq).
                deviceStop(unmapRAM: false)
                deviceStart(mapRAM: false)
                call("set_group_asid", [("group", 2), ("asid", 1)])
                for vq in 0..<(nvqs - 1) {
                    map(asid: 1, iova: 0x10000 + UInt64(vq) * 0x3000, size: 0x3000, perm: "rw", ram: false)
                }
                commit(asid: 1)
            } else {
                // Full stop and start with shadow_data: RAM unmapped and mapped again at allocated IOVAs.
                deviceStop(unmapRAM: true)
                deviceStart(mapRAM: false)
                mapRAM(offset: 1 << 46)
            }
        }
        inWindow = false
        removeDevice()
    }
}
