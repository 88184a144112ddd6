// MetricFamilies.swift — every metric vdpad exports, with its type and help
// text, named as Prometheus's conventions ask: a `vdpad_` prefix, base units,
// `_total` on counters, labels for what varies (device, asid, qidx, …).
// docs/operations.md lists the same table for operators.

/// One exported metric family.
public struct MetricFamily: Sendable, Hashable {
    public enum Kind: String, Sendable { case counter, gauge }

    public let name: String
    public let kind: Kind
    public let help: String

    init(_ name: String, _ kind: Kind, _ help: String) {
        (self.name, self.kind, self.help) = (name, kind, help)
    }
}

extension MetricFamily {
    // The daemon.
    static let devices = MetricFamily("vdpad_devices", .gauge, "Devices the daemon holds.")
    static let connections = MetricFamily("vdpad_connections", .gauge, "Open client connections.")
    static let uptime = MetricFamily("vdpad_uptime_seconds", .gauge, "Seconds since the daemon started.")
    static let requests = MetricFamily("vdpad_rpc_requests_total", .counter, "JSON-RPC requests answered.")
    static let requestErrors = MetricFamily("vdpad_rpc_errors_total", .counter, "JSON-RPC requests answered with an error.")

    // Each device (label device; device_info adds mgmtdev).
    static let deviceInfo = MetricFamily("vdpad_device_info", .gauge, "1 for each device; the mgmtdev label names its parent driver.")
    static let ownerPID = MetricFamily("vdpad_device_owner_pid", .gauge, "Process id of the VMM that owns the device, 0 when it is not open.")
    static let status = MetricFamily("vdpad_device_status", .gauge, "The device's virtio status byte.")
    static let suspended = MetricFamily("vdpad_device_suspended", .gauge, "1 while the device is suspended.")
    static let iotlbEntries = MetricFamily(
        "vdpad_iotlb_entries", .gauge,
        "IOTLB entries of one address space: layer session is what the VMM mapped, layer device what the device translates with.")
    static let mapCalls = MetricFamily("vdpad_map_calls_total", .counter, "IOTLB updates (map) applied.")
    static let unmapCalls = MetricFamily("vdpad_unmap_calls_total", .counter, "IOTLB invalidations (unmap) applied.")
    static let deviceCommits = MetricFamily("vdpad_device_commits_total", .counter, "Session tables committed to the device (set_map).")
    static let entriesCopied = MetricFamily("vdpad_iotlb_entries_copied_total", .counter, "IOTLB entries copied into device mappings by commits.")
    static let defaultRestores = MetricFamily(
        "vdpad_default_mapping_restores_total", .counter,
        "Device mappings put back to their default (clean reset, reset_map).")
    static let resets = MetricFamily(
        "vdpad_resets_total", .counter, "Device resets; kind clean drops the mappings, kind persist keeps them (IOTLB_PERSIST).")
    static let translateCalls = MetricFamily("vdpad_translate_calls_total", .counter, "Device DMA translations answered (translate).")
    static let cvqRequests = MetricFamily("vdpad_cvq_requests_total", .counter, "Control-queue commands read.")
    static let cvqSuccesses = MetricFamily("vdpad_cvq_successes_total", .counter, "Control-queue commands acked OK.")
    static let cvqErrors = MetricFamily("vdpad_cvq_errors_total", .counter, "Control-queue commands acked with an error or malformed.")
    static let indexStores = MetricFamily(
        "vdpad_used_index_stores_total", .counter,
        "Used-index stores into the VMM: method atomic in shared memory or through its store agent, copied through process_vm_writev.")
    static let sharedMemoryBytes = MetricFamily(
        "vdpad_shared_memory_bytes", .gauge, "Bytes of the owner's memory vdpad maps too (share_memory): reached without a system call.")
    static let memoryAccesses = MetricFamily(
        "vdpad_guest_memory_accesses_total", .counter,
        "Data-path accesses to the owner's memory: method shared in a shared region, process_vm through process_vm_readv/writev.")
    static let shareRefusals = MetricFamily(
        "vdpad_shared_memory_refusals_total", .counter,
        "share_memory calls refused: a file that does not back the addresses claimed, an overlap, no descriptor.")
    static let unshares = MetricFamily(
        "vdpad_shared_memory_unshares_total", .counter, "Shared regions dropped because the VMM unmapped or remapped them.")

    // Each virtqueue (labels device, qidx, queue_type), as `vdpa dev vstats` names them.
    static let receivedDesc = MetricFamily("vdpad_queue_received_desc_total", .counter, "Descriptor chains the device fetched from the queue.")
    static let completedDesc = MetricFamily(
        "vdpad_queue_completed_desc_total", .counter, "Descriptor chains the device returned through the used ring.")
    static let queueBytes = MetricFamily("vdpad_queue_bytes_total", .counter, "Buffer bytes the device read or wrote on the queue.")
    static let queueDrops = MetricFamily("vdpad_queue_drops_total", .counter, "Chains or frames dropped on purpose (a receive filter, no room).")
    static let queueErrors = MetricFamily("vdpad_queue_errors_total", .counter, "Chains the device could not serve.")

    /// Every family, in the order operators read them.
    public static let all: [MetricFamily] = [
        devices, connections, uptime, requests, requestErrors,
        deviceInfo, ownerPID, status, suspended, iotlbEntries, mapCalls, unmapCalls, deviceCommits, entriesCopied,
        defaultRestores, resets, translateCalls, cvqRequests, cvqSuccesses, cvqErrors, indexStores,
        sharedMemoryBytes, memoryAccesses, shareRefusals, unshares,
        receivedDesc, completedDesc, queueBytes, queueDrops, queueErrors
    ]
}
