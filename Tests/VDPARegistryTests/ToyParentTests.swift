// ToyParentTests.swift — adding a parent kind is one file: this one defines
// `toy_net` here, in the test target, hands it to a registry, and the device
// it makes follows its answers everywhere (docs/architecture.md, "Adding a
// parent kind", walks through the same steps).
import Testing
import VDPACore
import VDPADataPath
@testable import VDPARegistry
import _VDPATestSupport

/// A net parent with one queue pair, one group and one address space, that ignores config writes and
/// refuses a driver without MAC (a verdict of its own).
struct ToyNet: NetParent {
    var name: String { "toy_net" }
    var groupCount: Int { 1 }
    var addressSpaceCount: Int { 1 }
    func group(ofVirtqueue vq: Int, isControlQueue: Bool) -> Int { 0 }
    var offeredFeatures: UInt64 { VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "MAC", "CTRL_VQ", class: .net) }
    var keepsConfigWrites: Bool { false }
    func refusal(ofDriverFeatures features: UInt64) -> String? {
        features & VirtioFeatures.mask("MAC", class: .net) == 0 ? "toy_net needs MAC" : nil
    }
}

@Suite("A parent kind defined outside vdpad")
struct ToyParentTests {
    static let admin = Caller(connection: 1, pid: 10, uid: 0, gid: 0, isAdmin: true)
    static let toy = ManagementDevice(ToyNet())

    @Test("a registry given toy_net makes its devices with toy_net's counts, offers, config rules and verdicts")
    func toyDevice() throws {
        let r = DeviceRegistry(io: ProcessDeviceIO(), parents: ManagementDevice.builtIn + [Self.toy])
        #expect(r.parents.map(\.name) == ["vdpasim_net", "mlx5_net", "vdpasim_blk", "platform_net", "toy_net"])
        let d = try r.add(DeviceRecord(name: "t0", mgmtdev: "toy_net", attributes: DeviceAttributes(mac: "02:00:00:00:00:07")), by: Self.admin)
        #expect((d.virtqueueCount, d.groupCount, d.addressSpaceCount, d.configSize) == (3, 1, 1, 24))
        #expect(d.offeredBackendFeatures == [.iotlbMessageV2, .iotlbBatch, .iotlbASID, .suspend, .resume, .enableAfterDriverOK, .iotlbPersist])
        _ = try r.open("t0", by: Self.admin)
        try r.withDevice("t0", .owner, by: Self.admin) { (d: inout VDPADevice) throws(VDPAError) in
            expectError(.EINVAL) { try d.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", class: .net)) }
            try d.setFeatures(ToyNet().offeredFeatures)
            try d.writeConfig(offset: 0, data: [1, 2, 3, 4, 5, 6])
            #expect(Array(d.configBytes[0..<6]) == [2, 0, 0, 0, 0, 7], "toy_net drops config writes")
            #expect(d.servedQueue(2) == .netControl && d.queueType(ofVirtqueue: 1) == .tx)
        }
        // A registry without it knows no such parent.
        expectError(.ENODEV) {
            _ = try DeviceRegistry(io: ProcessDeviceIO()).add(
                DeviceRecord(name: "t0", mgmtdev: "toy_net", attributes: DeviceAttributes()), by: Self.admin)
        }
    }
}
