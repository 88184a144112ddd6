// QueueStatsTests.swift — `vdpa dev vstats show DEV qidx N`: the checks of
// vdpa_dev_vendor_stats_fill in their order, the queue types, and counters
// that survive reset (docs/kernel-rules.md V1–V4).
import Testing
import VDPACore
import _VDPATestSupport

@Suite("Queue statistics (vstats)")
struct QueueStatsTests {
    static let featuresOK = UInt64(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK)

    static func negotiated(_ kind: ManagementDevice = .vdpasimNet) throws -> VDPADevice {
        var d = try device(kind)
        try d.setFeatures(d.offeredFeatures)
        try d.setStatus(featuresOK)
        return d
    }

    @Test("EAGAIN before FEATURES_OK, EOPNOTSUPP on block, ERANGE past 0x8000, EINVAL past nvqs")
    func checksInOrder() throws {
        let fresh = try device()
        expectError(.EAGAIN) { _ = try fresh.vendorStats(queue: 0) }
        let blk = try Self.negotiated(.vdpasimBlock)
        expectError(.EOPNOTSUPP) { _ = try blk.vendorStats(queue: 0) }
        expectError(.EOPNOTSUPP) { _ = try blk.vendorStats(queue: 0x9000) }  // the class is checked before the range
        let net = try Self.negotiated()
        expectError(.ERANGE) { _ = try net.vendorStats(queue: 0x8001) }
        expectError(.EINVAL) { _ = try net.vendorStats(queue: 0x8000) }
        expectError(.EINVAL) { _ = try net.vendorStats(queue: 3) }
        #expect(try net.vendorStats(queue: 2) == QueueStats())
    }

    @Test("net queues are rx, tx, …, control_vq; an mlx5_net with 4 pairs has 9")
    func queueTypes() throws {
        let d = try device()
        #expect((0..<3).map(d.queueType(ofVirtqueue:)) == [.rx, .tx, .controlVQ])
        var attributes = DeviceAttributes()
        attributes.maxVQP = 4
        let mlx = try VDPADevice(name: DeviceName(rawValue: "m")!, mgmtdev: .mlx5Net, attributes: attributes)
        #expect((0..<9).map(mlx.queueType(ofVirtqueue:)) == [.rx, .tx, .rx, .tx, .rx, .tx, .rx, .tx, .controlVQ])
        #expect(try device(.vdpasimBlock).queueType(ofVirtqueue: 0) == .request)
    }

    @Test("a control-queue run counts on the CVQ; the counts survive reset and a new open")
    func controlQueueCountsSurviveReset() throws {
        var d = try Self.negotiated()
        let run = QueueRunRecord(requests: 2, successes: 1, errors: 1, completed: 2, bytes: 17)
        d.recordControlQueue(vq: 2, run: run, lastAvail: 2)
        var expected = QueueStats()
        (expected.receivedDesc, expected.completedDesc, expected.bytes, expected.errors) = (2, 2, 17, 1)
        #expect(try d.vendorStats(queue: 2) == expected)
        d.reset()
        #expect(d.queueStats[2] == expected, "never cleared, as vdpa_sim's counters")
        #expect(d.queueStats[0] == QueueStats())
    }

    @Test(
        "V4: mlx5_net's vstats are its hardware's: EAGAIN for a data queue that does not run, counts since the last reset; get_device's keep them all"
    )
    func mlx5CountsPerSession() throws {
        var m = try device(.mlx5Net)
        let running = Self.featuresOK | UInt64(VirtioStatus.driverOK)
        func negotiate() throws {
            try m.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "CTRL_VQ", class: .net))
            try m.setStatus(Self.featuresOK)
        }
        try negotiate()
        expectError(.EAGAIN) { _ = try m.vendorStats(queue: 0) }  // no hardware queue before DRIVER_OK
        #expect(try m.vendorStats(queue: 2) == QueueStats(), "the CVQ is the driver's: counted from the start")
        try m.setVring(0, num: 64, desc: 0x1000, driver: 0x2000, device: 0x3000, ready: true)
        try m.setStatus(running)
        #expect(try m.vendorStats(queue: 0) == QueueStats())
        expectError(.EAGAIN) { _ = try m.vendorStats(queue: 1) }  // never enabled: its queue is not RDY
        m.recordQueueRun(vq: 0, run: QueueRunRecord(requests: 3, completed: 3, bytes: 180), lastAvail: 3)
        m.recordControlQueue(vq: 2, run: QueueRunRecord(requests: 1, successes: 1, completed: 1, calls: 1), lastAvail: 1)
        #expect(try m.vendorStats(queue: 0).receivedDesc == 3 && m.vendorStats(queue: 2).completedDesc == 1)
        try m.suspend()
        expectError(.EAGAIN) { _ = try m.vendorStats(queue: 0) }  // its queue is in SUSPEND, not RDY
        try m.resume()
        #expect(try m.vendorStats(queue: 0).bytes == 180)
        // A reset destroys the queues and their counter sets and zeroes the CVQ's counts; get_device keeps them all.
        m.reset()
        try negotiate()
        try m.setVring(0, num: nil, desc: nil, driver: nil, device: nil, ready: true)
        try m.setStatus(running)
        #expect(try m.vendorStats(queue: 0) == QueueStats() && m.vendorStats(queue: 2) == QueueStats())
        #expect(m.queueStats[0].receivedDesc == 3 && m.queueStats[2].completedDesc == 1)
    }

    @Test("an accepted MQ_VQ_PAIRS_SET sets the active queue pairs; a reset puts them back to 1")
    func activeQueuePairs() throws {
        var attributes = DeviceAttributes()
        attributes.maxVQP = 4
        var d = try VDPADevice(name: DeviceName(rawValue: "m")!, mgmtdev: .mlx5Net, attributes: attributes)
        #expect(d.activeQueuePairs == 1)
        var run = QueueRunRecord(requests: 1, successes: 1, completed: 1, calls: 1)
        run.newQueuePairs = 3
        d.recordControlQueue(vq: 8, run: run, lastAvail: 1)
        #expect(d.activeQueuePairs == 3)
        d.reset()
        #expect(d.activeQueuePairs == 1)
    }
}
