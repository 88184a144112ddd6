// MetricsExporterTests.swift — the exposition: names, types, HELP, labels and
// values after a known sequence of device operations; series of a deleted
// device go away; counters follow the devices' counts.
import Testing
import VDPACore
import VDPAMetrics
import VDPARegistry
import _VDPATestSupport

@Suite("Metrics exposition")
struct MetricsExporterTests {
    static let daemon = DaemonSnapshot(connections: 2, requests: 10, errors: 1, uptimeSeconds: 5)

    /// The value of the sample written exactly as `series` (name and labels); gauges are written as floats.
    static func value(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
    }

    /// vdpa0 (vdpasim_net) after two maps, an unmap, a clean reset and a control-queue run of 3 commands.
    static func busyDevice() throws -> VDPADevice {
        var d = try device()
        try d.map(iova: 0x1000, size: 0x1000, address: 0x7000, permission: .readWrite)
        try d.map(iova: 0x4000, size: 0x1000, address: 0x9000, permission: .read)
        try d.map(iova: 0x8000, size: 0x1000, address: 0xA000, permission: .read)
        _ = try d.unmap(iova: 0x8000, size: 0x1000)
        let run = QueueRunRecord(requests: 3, successes: 2, errors: 1, completed: 3, bytes: 27)
        d.recordControlQueue(vq: 2, run: run, lastAvail: 3)
        return d
    }

    @Test("every family has HELP and TYPE, and the values are the device's")
    func exposition() throws {
        let text = MetricsExporter().exposition(devices: [DeviceSnapshot(try Self.busyDevice())], daemon: Self.daemon)
        for family in MetricFamily.all {
            #expect(text.contains("# TYPE \(family.name) \(family.kind.rawValue)\n"), "\(family.name)")
            #expect(text.contains("# HELP \(family.name) \(family.help)\n"), "\(family.name)")
        }
        #expect(Self.value(text, "vdpad_devices") == 1)
        #expect(Self.value(text, "vdpad_connections") == 2)
        #expect(Self.value(text, "vdpad_rpc_requests_total") == 10)
        #expect(Self.value(text, #"vdpad_device_info{device="vdpa0",mgmtdev="vdpasim_net"}"#) == 1)
        #expect(Self.value(text, #"vdpad_device_owner_pid{device="vdpa0"}"#) == Double(me.pid))
        #expect(Self.value(text, #"vdpad_map_calls_total{device="vdpa0"}"#) == 3)
        #expect(Self.value(text, #"vdpad_unmap_calls_total{device="vdpa0"}"#) == 1)
        #expect(Self.value(text, #"vdpad_iotlb_entries{device="vdpa0",asid="0",layer="session"}"#) == 2)
        #expect(Self.value(text, #"vdpad_iotlb_entries{device="vdpa0",asid="1",layer="session"}"#) == 0)
        #expect(Self.value(text, #"vdpad_cvq_requests_total{device="vdpa0"}"#) == 3)
        #expect(Self.value(text, #"vdpad_queue_received_desc_total{device="vdpa0",qidx="2",queue_type="control_vq"}"#) == 3)
        #expect(Self.value(text, #"vdpad_queue_completed_desc_total{device="vdpa0",qidx="2",queue_type="control_vq"}"#) == 3)
        #expect(Self.value(text, #"vdpad_queue_bytes_total{device="vdpa0",qidx="2",queue_type="control_vq"}"#) == 27)
        #expect(Self.value(text, #"vdpad_queue_errors_total{device="vdpa0",qidx="2",queue_type="control_vq"}"#) == 1)
        #expect(Self.value(text, #"vdpad_queue_received_desc_total{device="vdpa0",qidx="0",queue_type="rx"}"#) == 0)
        #expect(Self.value(text, #"vdpad_queue_received_desc_total{device="vdpa0",qidx="1",queue_type="tx"}"#) == 0)
    }

    @Test("a second export follows the counts; a deleted device's series go; one made again starts from its own count")
    func followsTheDevices() throws {
        let exporter = MetricsExporter()
        var d = try Self.busyDevice()
        _ = exporter.exposition(devices: [DeviceSnapshot(d)], daemon: Self.daemon)
        d.reset()
        try d.map(iova: 0x20000, size: 0x1000, address: 0x7000, permission: .readWrite)
        var text = exporter.exposition(devices: [DeviceSnapshot(d)], daemon: Self.daemon)
        #expect(Self.value(text, #"vdpad_map_calls_total{device="vdpa0"}"#) == 4)
        #expect(Self.value(text, #"vdpad_resets_total{device="vdpa0",kind="clean"}"#) != nil)

        text = exporter.exposition(devices: [], daemon: Self.daemon)
        #expect(!text.contains(#"device="vdpa0""#), "the deleted device's series are gone")
        #expect(Self.value(text, "vdpad_devices") == 0)

        let fresh = try device()
        text = exporter.exposition(devices: [DeviceSnapshot(fresh)], daemon: Self.daemon)
        #expect(Self.value(text, #"vdpad_map_calls_total{device="vdpa0"}"#) == 0)
    }

    @Test("block devices' queues are request queues")
    func blockQueues() throws {
        let text = MetricsExporter().exposition(devices: [DeviceSnapshot(try device(.vdpasimBlock))], daemon: Self.daemon)
        #expect(Self.value(text, #"vdpad_queue_received_desc_total{device="vdpa0",qidx="0",queue_type="request"}"#) == 0)
    }
}
