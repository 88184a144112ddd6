// ParentDriverTests.swift — every parent's answers through the ParentDriver
// protocol (docs/protocol.md §5.2's table): counts, groups, descriptor
// groups, default mappings, offers, config rules, verdicts, reset and queues.
import Testing
import VDPACore
import _VDPATestSupport

@Suite("Parent drivers")
struct ParentDriverTests {
    struct Expected {
        let driver: any ParentDriver
        let nvqs, ngroups, nas: Int
        let groups: [Int]
        let descGroups: [Int]?
        let mappings: [DeviceMapping]
        let backend: UInt64, legacyBackend: UInt64
        let features: UInt64
        let keepsConfigWrites, keepsRings, hasLink: Bool
    }

    static let table: [Expected] = [
        Expected(
            driver: VDPASimNet(), nvqs: 3, ngroups: 2, nas: 2, groups: [0, 0, 1], descGroups: nil, mappings: [.passthrough, .passthrough],
            backend: 0x17E, legacyBackend: 0x07E, features: 0x3_0883_0028, keepsConfigWrites: true, keepsRings: false, hasLink: true),
        Expected(
            driver: MLX5Net(), nvqs: 3, ngroups: 3, nas: 2, groups: [0, 0, 1], descGroups: [2, 2, 1], mappings: [.dmaMR, .table(IntervalTree())],
            backend: 0x1FE, legacyBackend: 0x07E, features: 0x3_00C3_982B, keepsConfigWrites: false, keepsRings: true, hasLink: true),
        Expected(
            driver: VDPASimBlock(), nvqs: 1, ngroups: 1, nas: 1, groups: [0], descGroups: nil, mappings: [.passthrough],
            backend: 0x17E, legacyBackend: 0x07E, features: 0x3_0800_7646, keepsConfigWrites: false, keepsRings: false, hasLink: false),
        Expected(
            driver: PlatformNet(), nvqs: 3, ngroups: 1, nas: 1, groups: [0, 0, 0], descGroups: nil, mappings: [.platform],
            backend: 0x10E, legacyBackend: 0x00E, features: 0x3_0003_0028, keepsConfigWrites: true, keepsRings: false, hasLink: true)
    ]

    @Test("counts, groups, descriptor groups, default mappings and offers, each parent through the protocol")
    func shape() {
        for e in Self.table {
            let p = e.driver, n = p.virtqueueCount(maxVQP: 1)
            #expect((n, p.groupCount, p.addressSpaceCount) == (e.nvqs, e.ngroups, e.nas), "\(p.name)")
            let control = p.controlQueue(virtqueueCount: n, driverFeatures: p.offeredFeatures)
            #expect((0..<n).map { p.group(ofVirtqueue: $0, isControlQueue: $0 == control) } == e.groups, "\(p.name)")
            let desc = (0..<n).map { p.descriptorGroup(ofVirtqueue: $0, isControlQueue: $0 == control, legacy: false) }
            #expect(e.descGroups.map { $0.map(Optional.some) } ?? Array(repeating: nil, count: n) == desc, "\(p.name)")
            #expect((0..<n).allSatisfy { p.descriptorGroup(ofVirtqueue: $0, isControlQueue: $0 == control, legacy: true) == nil }, "\(p.name) legacy")
            #expect((0..<p.addressSpaceCount).map { p.defaultMapping(asid: $0) } == e.mappings, "\(p.name)")
            #expect(p.offeredBackendFeatures(legacy: false).rawValue == e.backend, "\(p.name)")
            #expect(p.offeredBackendFeatures(legacy: true).rawValue == e.legacyBackend, "\(p.name) legacy")
            #expect(p.offeredFeatures == e.features, "\(p.name)")
            #expect(p.keepsConfigWrites == e.keepsConfigWrites && p.keepsRingStateAcrossReset == e.keepsRings && p.hasLink == e.hasLink, "\(p.name)")
        }
    }

    @Test("R23: mlx5_net has up to 32 pairs (2·max_vqp+1 vqs), its CVQ last with MQ and vq 2 without; the others refuse a second pair")
    func queuePairs() throws {
        let mlx = MLX5Net(), mq = VirtioFeatures.mask("MQ", "CTRL_VQ", class: .net), cvq = VirtioFeatures.mask("CTRL_VQ", class: .net)
        #expect(mlx.virtqueueCount(maxVQP: 4) == 9 && mlx.controlQueue(virtqueueCount: 9, driverFeatures: mq) == 8)
        #expect(mlx.controlQueue(virtqueueCount: 9, driverFeatures: cvq) == 2 && mlx.controlQueue(virtqueueCount: 9, driverFeatures: 0) == 2)
        #expect(mlx.group(ofVirtqueue: 8, isControlQueue: true) == 1 && mlx.group(ofVirtqueue: 8, isControlQueue: false) == 0)
        #expect(mlx.queueType(ofVirtqueue: 8, isControlQueue: true) == .controlVQ && mlx.queueType(ofVirtqueue: 7, isControlQueue: false) == .tx)
        #expect(
            VDPASimNet().controlQueue(virtqueueCount: 3, driverFeatures: 0) == 2
                && VDPASimBlock().controlQueue(virtqueueCount: 1, driverFeatures: ~0) == nil)
        var a = DeviceAttributes()
        a.maxVQP = 32
        #expect(try mlx.validate(a, name: DeviceName(rawValue: "m")!).maxVQP == 32)
        a.maxVQP = 33
        expectError(.EINVAL) { _ = try mlx.validate(a, name: DeviceName(rawValue: "m")!) }
        a.maxVQP = 2
        expectError(.EINVAL) { _ = try VDPASimNet().validate(a, name: DeviceName(rawValue: "n")!) }
        expectError(.EINVAL) { _ = try VDPASimBlock().validate(DeviceAttributes(mac: "52:54:00:00:00:01"), name: DeviceName(rawValue: "b")!) }
    }

    @Test("R54, R57: mlx5 refuses MQ without CTRL_VQ, and leaves FEATURES_OK clear without VERSION_1; vdpa_sim keeps any status")
    func verdicts() {
        let mq = VirtioFeatures.bit(named: "MQ", class: .net)!, cvq = VirtioFeatures.bit(named: "CTRL_VQ", class: .net)!
        let v1 = VirtioFeatures.bit(named: "VERSION_1", class: .net)!, ap = VirtioFeatures.bit(named: "ACCESS_PLATFORM", class: .net)!
        #expect(MLX5Net().refusal(ofDriverFeatures: mq | v1 | ap) != nil && MLX5Net().refusal(ofDriverFeatures: mq | cvq | v1 | ap) == nil)
        #expect(VDPASimNet().refusal(ofDriverFeatures: mq) == nil)
        let ok = VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK
        #expect(MLX5Net().statusVerdict(requested: ok, current: 3, driverFeatures: ap) == 3)
        #expect(MLX5Net().statusVerdict(requested: ok, current: 3, driverFeatures: ap | v1) == ok)
        #expect(VDPASimNet().statusVerdict(requested: ok, current: 3, driverFeatures: 0) == ok)
    }

    @Test("R51, R52: net config regenerates its link status and takes a MAC; block config is rebuilt and keeps nothing")
    func config() throws {
        let net = VDPASimNet()
        let stored = net.initialConfig(try net.validate(DeviceAttributes(mac: "02:00:00:00:00:01", mtu: 9000), name: DeviceName(rawValue: "n")!))
        #expect(Array(stored[0..<6]) == [2, 0, 0, 0, 0, 1] && stored[10] == 0x28 && stored[11] == 0x23)  // mtu 9000
        #expect(net.configRead(stored: stored, linkUp: true)[6] == 1 && net.configRead(stored: stored, linkUp: false)[6] == 0)
        #expect(Array(net.config(stored, settingMAC: [9, 8, 7, 6, 5, 4])[0..<6]) == [9, 8, 7, 6, 5, 4])
        let blk = VDPASimBlock()
        #expect(blk.configRead(stored: [], linkUp: true).count == blk.configSize && blk.initialConfig(DeviceAttributes()).isEmpty)
        #expect(blk.config([], settingMAC: [1, 2, 3, 4, 5, 6]).isEmpty)
    }

    @Test("the data path serves a net control queue once CTRL_VQ is negotiated, each rx/tx pair, and a block request queue")
    func servedQueues() {
        let cvq = VirtioFeatures.bit(named: "CTRL_VQ", class: .net)!
        for p in [VDPASimNet(), MLX5Net(), PlatformNet()] as [any ParentDriver] {
            #expect(p.servedQueue(2, isControlQueue: true, driverFeatures: cvq) == .netControl, "\(p.name)")
            #expect(p.servedQueue(2, isControlQueue: true, driverFeatures: 0) == nil)
            #expect(p.servedQueue(0, isControlQueue: false, driverFeatures: cvq) == .netPair(rx: 0, tx: 1))
            #expect(p.servedQueue(1, isControlQueue: false, driverFeatures: 0) == .netPair(rx: 0, tx: 1))
        }
        #expect(MLX5Net().servedQueue(5, isControlQueue: false, driverFeatures: 0) == .netPair(rx: 4, tx: 5))
        #expect(MLX5Net().servedQueue(2, isControlQueue: false, driverFeatures: cvq) == .netPair(rx: 2, tx: 3))
        #expect(VDPASimBlock().servedQueue(0, isControlQueue: false, driverFeatures: ~0) == .blockRequests)
    }
}
