// DeviceControlTests.swift — groups, features, reset, reset_map, release and
// translate (rules R22–R36 and the matching edge cases).
import Testing
@testable import VDPACore
import _VDPATestSupport

@Suite("Control rules")
struct ControlRuleTests {
    @Test("R22 / edge #28: a group index ≥ nvqs is ENOBUFS, checked first")
    func r22() throws {
        var d = try device()
        expectError(.ENOBUFS) { try d.setGroupASID(group: 3, asid: 9) }
        expectError(.ENOBUFS) { _ = try d.vringGroup(VirtqueueIndex(.max)) }
        var p = try device(.platformNet)
        expectError(.ENOBUFS) { try p.setGroupASID(group: 3, asid: 0) }
    }

    @Test("R23: GET_VRING_GROUP follows the parent's layout (mlx5's with the negotiated MQ: mlx5ControlQueueMovesWithMQ)")
    func r23() throws {
        let d = try device()
        #expect(try [0, 1, 2].map { try d.vringGroup($0) } == [0, 0, 1])
        var m = try VDPADevice(name: DeviceName(rawValue: "m")!, mgmtdev: .mlx5Net, attributes: DeviceAttributes(maxVQP: 2))
        try m.open(by: me)
        #expect(m.virtqueueCount == 5)
        try m.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "CTRL_VQ", "MQ", class: .net))
        #expect(try (0..<5).map { try m.vringGroup(VirtqueueIndex(UInt64($0))) } == [0, 0, 0, 0, 1])
    }

    @Test("R24 / edge #34, #35: GET_VRING_DESC_GROUP needs the op, not DESC_ASID acked")
    func r24() throws {
        let sim = try device()
        expectError(.EOPNOTSUPP) { _ = try sim.vringDescriptorGroup(0) }  // #34
        expectError(.ENOBUFS) { _ = try sim.vringDescriptorGroup(3) }  // range before capability
        let m = try device(.mlx5Net, acked: [])
        #expect(try m.vringDescriptorGroup(0) == 2)  // #35
        #expect(try m.vringDescriptorGroup(2) == 1)
        let legacy = try device(.mlx5Net, legacy: true)
        expectError(.EOPNOTSUPP) { _ = try legacy.vringDescriptorGroup(0) }
    }

    @Test("R25 / edge #29, #30, #31: set_group_asid range checks then capability")
    func r25() throws {
        var d = try device()
        expectError(.EINVAL) { try d.setGroupASID(group: 2, asid: 0) }  // #29 (2026 rule)
        expectError(.EINVAL) { try d.setGroupASID(group: 1, asid: 2) }  // #30
        var p = try device(.platformNet)
        expectError(.EINVAL) { try p.setGroupASID(group: 0, asid: 1) }
        expectError(.EOPNOTSUPP) { try p.setGroupASID(group: 0, asid: 0) }  // #31
        try d.setGroupASID(group: 1, asid: 1)  // no IOTLB_ASID or AS needed
        #expect(d.groupASID == [0, 1])
        try d.setStatus(UInt64(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK | VirtioStatus.driverOK))
        try d.setGroupASID(group: 1, asid: 0)  // edge #32: mainline allows it after DRIVER_OK
    }

    @Test("R27: the offer per parent, legacy included")
    func r27() throws {
        func offer(_ k: ManagementDevice, legacy: Bool = false) -> UInt64 { k.offeredBackendFeatures(legacy: legacy).rawValue }
        #expect(offer(.vdpasimNet) == 0x17E)
        #expect(offer(.mlx5Net) == 0x1FE)
        #expect(offer(.vdpasimBlock) == 0x17E)
        #expect(offer(.platformNet) == 0x10E)
        #expect(offer(.vdpasimNet, legacy: true) == 0x07E)
        #expect(offer(.platformNet, legacy: true) == 0x00E)
        #expect(offer(.mlx5Net, legacy: true) == 0x07E)
    }

    @Test("R28 / edge #36–#40: set_backend_features checks in order and replaces the acked set")
    func r28() throws {
        var d = try device(acked: [])
        expectError(.EOPNOTSUPP) { try d.setBackendFeatures(BackendFeatures(rawValue: 1)) }  // #36 bit 0
        expectError(.EOPNOTSUPP) { try d.setBackendFeatures(BackendFeatures(rawValue: 1 << 9)) }
        expectError(.EINVAL) { try d.setBackendFeatures(.descASID) }  // #37
        expectError(.EOPNOTSUPP) { try d.setBackendFeatures([.descASID, .iotlbASID]) }  // #38
        var p = try device(.platformNet, acked: [])
        expectError(.EOPNOTSUPP) { try p.setBackendFeatures(.suspend) }
        expectError(.EOPNOTSUPP) { try p.setBackendFeatures(.resume) }
        try p.setBackendFeatures(.enableAfterDriverOK)  // #39 accepted though not offered
        var legacy = try device(legacy: true, acked: [])
        expectError(.EOPNOTSUPP) { try legacy.setBackendFeatures(.iotlbPersist) }
        try d.setBackendFeatures([.iotlbBatch, .iotlbPersist])
        try d.setBackendFeatures(.iotlbASID)  // #40 replaces
        #expect(d.ackedBackendFeatures == .iotlbASID)
    }

    @Test("R29: acking IOTLB_ASID enables other ASIDs; DESC_ASID changes no routing")
    func r29() throws {
        var d = try device(acked: [])
        expectError(.EINVAL) { try d.map(asid: 1, iova: 0, size: 1, address: 0, permission: .read) }
        try d.setBackendFeatures(.iotlbASID)
        try d.map(asid: 1, iova: 0, size: 1, address: 0, permission: .read)
        var m = try device(.mlx5Net, acked: [.iotlbASID])
        try m.setGroupASID(group: 2, asid: 1)
        #expect(try m.asid(forVirtqueue: 0, area: .desc) == 1, "desc group routing without DESC_ASID acked")
        #expect(try m.asid(forVirtqueue: 0, area: .buffer) == 0)
    }

    @Test("R30 / edge #41: reset without IOTLB_PERSIST restores passthrough and keeps the session table")
    func r30() throws {
        var d = try device()
        try d.map(iova: 0, size: 0x1000, address: 0x8000, permission: .read)
        try d.setStatus(1)
        expectError(.EINVAL) { try d.setStatus(2) }  // clears ACKNOWLEDGE
        try d.setGroupASID(group: 1, asid: 1)
        d.reset()
        #expect(d.deviceMapping(asid: 0) == .passthrough)
        #expect(d.sessionTables[0]?.count == 1)
        #expect(d.groupASID == [0, 0])
        #expect(d.stats.resetsClean == 1 && d.stats.defaultRestores == 1)
    }

    @Test("R31 / edge #42: reset with IOTLB_PERSIST keeps the device tables; mlx5 clean reset recreates the DMA MR")
    func r31() throws {
        var d = try device(acked: [.iotlbASID, .iotlbPersist])
        try d.map(iova: 0, size: 0x1000, address: 0x8000, permission: .read)
        try d.setGroupASID(group: 1, asid: 1)
        d.reset()
        #expect(d.deviceTable(asid: 0)?.count == 1)
        #expect(d.groupASID == [0, 0])
        #expect(d.stats.resetsPersist == 1)
        var m = try device(.mlx5Net)
        try m.map(iova: 0, size: 0x1000, address: 0, permission: .read)
        m.reset()
        #expect(m.deviceMapping(asid: 0) == .dmaMR)
        #expect(m.deviceMapping(asid: 1) == .table(IntervalTree()))
        var legacy = try device(legacy: true)
        try legacy.map(iova: 0, size: 1, address: 0, permission: .read)
        legacy.reset()
        #expect(legacy.deviceMapping(asid: 0) == .passthrough)
    }

    @Test("R32: after a clean reset the session table still rejects a re-map (split brain)")
    func r32() throws {
        var d = try device()
        try d.map(iova: 0, size: 0x1000, address: 0, permission: .read)
        d.reset()
        expectError(.EEXIST) { try d.map(iova: 0, size: 0x1000, address: 0, permission: .read) }
        _ = try d.unmap(iova: 0x5000, size: 1)
        #expect(d.deviceTable(asid: 0)?.count == 1, "the next commit re-copies the session table")
    }

    @Test("R33: a fresh ASID is passthrough until the first commit")
    func r33() throws {
        var d = try device()
        #expect(d.deviceMapping(asid: 1) == .passthrough)
        #expect(try d.translate(.asid(1), access: .write, iova: 0xABC, size: 4) == [TranslatedSegment(iova: 0xABC, size: 4, address: 0xABC)])
    }

    @Test("R34: a second open is EBUSY")
    func r34() throws {
        var d = try device()
        expectError(.EBUSY) { try d.open(by: Owner(connection: 2, pid: 1, uid: 1)) }
    }

    @Test("R35 / edge #43: release resets, drops the batch, frees every address space and reset_maps it")
    func r35() throws {
        var d = try device(acked: [.iotlbASID, .iotlbPersist])
        try d.map(asid: 1, iova: 0, size: 0x1000, address: 0, permission: .read)
        try d.batchBegin(asid: 0)
        d.release()
        #expect(d.owner == nil && d.batchASID == nil)
        #expect(d.sessionTables.allSatisfy { $0 == nil })
        #expect(d.deviceMapping(asid: 1) == .passthrough && d.deviceMapping(asid: 0) == .passthrough)
        var p = try device(.platformNet)
        try p.map(iova: 0, size: 1, address: 0, permission: .read)
        p.release()
        #expect(p.deviceTable(asid: 0)?.isEmpty == true)
    }

    @Test("R36: reset_map drops the session table, ends its batch, restores the default; EOPNOTSUPP without the op")
    func r36() throws {
        var d = try device()
        try d.map(asid: 1, iova: 0, size: 1, address: 0, permission: .read)
        try d.batchBegin(asid: 0)
        try d.map(asid: 0, iova: 0, size: 1, address: 0, permission: .read)
        let r = try d.resetMap(asid: 1)
        #expect(r.removed == 1 && r.mapping == .passthrough)
        #expect(d.batchASID == 0, "a batch on another ASID stays open")
        _ = try d.resetMap(asid: 0)
        #expect(d.batchASID == nil)
        expectError(.EINVAL) { _ = try d.unmap(asid: 0, iova: 0, size: 1) }
        var m = try device(.mlx5Net)
        try m.map(iova: 0, size: 1, address: 0, permission: .read)
        #expect(try m.resetMap(asid: 0).mapping == .dmaMR)
        var p = try device(.platformNet)
        expectError(.EINVAL) { _ = try p.resetMap(asid: 1) }  // range before capability
        expectError(.EOPNOTSUPP) { _ = try p.resetMap(asid: 0) }
        var legacy = try device(legacy: true)
        expectError(.EOPNOTSUPP) { _ = try legacy.resetMap(asid: 0) }
    }

    @Test("edge #44: the shape is readable without owning the device")
    func edge44() throws {
        let d = try VDPADevice(name: DeviceName(rawValue: "x")!, mgmtdev: .vdpasimNet)
        #expect(d.addressSpaceCount == 2 && d.groupCount == 2 && d.virtqueueCount == 3)
    }

    @Test("translate: rings through the desc group's ASID, buffers through the data group's; misses and permissions")
    func translateRouting() throws {
        var m = try device(.mlx5Net)
        try m.map(asid: 1, iova: 0x10000, size: 0x1000, address: 0xAA0000, permission: .readWrite)
        try m.setGroupASID(group: 2, asid: 1)
        try m.setVring(0, num: 256, desc: 0x10000, driver: nil, device: nil, ready: true)
        let segments = try m.translate(.virtqueue(0, .desc), access: .read, iova: nil, size: nil)
        #expect(segments == [TranslatedSegment(iova: 0x10000, size: 4096, address: 0xAA0000)])
        #expect(try m.translate(.virtqueue(0, .buffer), access: .write, iova: 0x123, size: 8).first?.address == 0x123)
        expectError(.EINVAL) { _ = try m.translate(.virtqueue(0, .driver), access: .read, iova: nil, size: nil) }
        try m.map(asid: 1, iova: 0x11000, size: 0x1000, address: 0xBB0000, permission: .read)
        #expect(try m.translate(.asid(1), access: .read, iova: 0x10FF0, size: 0x20).count == 2)
        do {
            _ = try m.translate(.asid(1), access: .write, iova: 0x10FF0, size: 0x20)
            Issue.record("write to ro")
        } catch { #expect(error.errno == .EACCES) }
        do {
            _ = try m.translate(.asid(1), access: .read, iova: 0x11FF0, size: 0x20)
            Issue.record("miss")
        } catch {
            #expect(error.errno == .EFAULT)
            #expect(error.details.first?.1 == .integer(0x12000))
        }
    }

    @Test("features: EINVAL for an unoffered bit or no ACCESS_PLATFORM on vdpa_sim, EBUSY after FEATURES_OK")
    func features() throws {
        var d = try device()
        let version1 = VirtioFeatures.bit(named: "VERSION_1", class: .net)!
        let access = VirtioFeatures.bit(named: "ACCESS_PLATFORM", class: .net)!
        expectError(.EINVAL) { try d.setFeatures(version1) }
        expectError(.EINVAL) { try d.setFeatures(version1 | access | 1 << 22) }
        try d.setFeatures(version1 | access)
        try d.setStatus(UInt64(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK))
        expectError(.EBUSY) { try d.setFeatures(version1 | access) }
    }

    @Test("attributes: names, mac, mtu, max_vqp and the IOVA range are validated")
    func attributes() throws {
        #expect(DeviceName(rawValue: "bad name") == nil)
        #expect(DeviceName(rawValue: String(repeating: "a", count: 33)) == nil)
        let n = DeviceName(rawValue: "d")!
        #expect(throws: VDPAError.self) { try VDPADevice(name: n, mgmtdev: .vdpasimNet, attributes: DeviceAttributes(maxVQP: 2)) }
        #expect(throws: VDPAError.self) { try VDPADevice(name: n, mgmtdev: .mlx5Net, attributes: DeviceAttributes(maxVQP: 33)) }
        #expect(throws: VDPAError.self) { try VDPADevice(name: n, mgmtdev: .vdpasimNet, attributes: DeviceAttributes(mac: "zz")) }
        #expect(throws: VDPAError.self) { try VDPADevice(name: n, mgmtdev: .vdpasimBlock, attributes: DeviceAttributes(mtu: 1500)) }
        #expect(throws: VDPAError.self) {
            try VDPADevice(name: n, mgmtdev: .vdpasimNet, attributes: DeviceAttributes(iovaRange: IOVARange(first: 2, last: 1)))
        }
        let d = try VDPADevice(name: n, mgmtdev: .vdpasimNet)
        #expect(d.attributes.mtu == 1500 && d.attributes.mac?.hasPrefix("52:54:00:") == true)
    }

    @Test("limits: ENOSPC past max entries per ASID, nothing changed")
    func entryLimit() throws {
        var d = try device()
        d.maxEntriesPerASID = 2
        try d.map(iova: 0, size: 1, address: 0, permission: .read)
        try d.map(iova: 1, size: 1, address: 0, permission: .read)
        expectError(.ENOSPC, kernel: .EFAULT) { try d.map(iova: 2, size: 1, address: 0, permission: .read) }
        // A full table still reports an overlap as the overlap (R11), not as the limit.
        expectError(.EEXIST, kernel: .EFAULT) { try d.map(iova: 1, size: 1, address: 0, permission: .read) }
        #expect(d.sessionTables[0]?.count == 2)
        // Below the limit, the insert itself finds the overlap and changes nothing (R13).
        d.maxEntriesPerASID = 0
        let before = d.sessionTables[0]
        expectError(.EEXIST, kernel: .EFAULT) { try d.map(iova: 0, size: 2, address: 0, permission: .read) }
        #expect(d.sessionTables[0]?.count == 2 && d.stats.mapCalls == 2)
        #expect(d.sessionTables[0]?.firstOverlapping(first: 0, last: 1) == before?.firstOverlapping(first: 0, last: 1))
    }
}
