// RestoreTests.swift — restore (the state file at start, the config on a
// reload) takes the registry's lock and checks as add_device does, so a
// SIGHUP reload racing an add_device of the same name never replaces the
// device the add made.
import Dispatch
import Testing
import VDPACore
import VDPADataPath
@testable import VDPARegistry
import _VDPATestSupport

@Suite("Device registry: restore")
struct RestoreTests {
    static let admin = Caller(connection: 1, pid: 10, uid: 0, gid: 0, isAdmin: true)

    static func record(_ name: String, _ mgmtdev: String = "vdpasim_net") -> DeviceRecord {
        DeviceRecord(name: name, mgmtdev: mgmtdev, attributes: DeviceAttributes())
    }

    @Test("a name taken, here or twice in the records, is EEXIST and nothing is added; past max_devices ENOSPC")
    func checks() throws {
        var limits = ServiceLimits()
        limits.maxDevices = 3
        let r = DeviceRegistry(io: ProcessDeviceIO(), limits: limits)
        _ = try r.add(Self.record("n0"), by: Self.admin)
        expectError(.EEXIST) { try r.restore([Self.record("n1"), Self.record("n0")]) }
        expectError(.EEXIST) { try r.restore([Self.record("n1"), Self.record("n1")]) }
        expectError(.ENOSPC) { try r.restore([Self.record("n1"), Self.record("n2"), Self.record("n3")]) }
        expectError(.ENODEV) { try r.restore([Self.record("n1"), Self.record("n2", "nope")]) }
        #expect(r.deviceRecords().map(\.name) == ["n0"], "all or nothing")
        try r.restore([Self.record("n1"), Self.record("n2", "mlx5_net")])
        #expect(r.deviceRecords().map(\.name) == ["n0", "n1", "n2"])
    }

    @Test("a reload racing add_device of the same name: exactly one wins, and the winner's device stays")
    func raceWithAdd() throws {
        for round in 0..<200 {
            let r = DeviceRegistry(io: ProcessDeviceIO())
            let name = "race\(round)"
            let outcomes = Locked<[String: Bool]>([:])
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                do {
                    if i == 0 {
                        _ = try r.add(Self.record(name, "mlx5_net"), by: Self.admin)
                    } else {
                        try r.restore([Self.record(name, "vdpasim_net")])
                    }
                    outcomes.withLock { $0[i == 0 ? "add" : "restore"] = true }
                } catch {
                    #expect((error as? VDPAError)?.errno == .EEXIST, "\(error)")
                    outcomes.withLock { $0[i == 0 ? "add" : "restore"] = false }
                }
            }
            let won = outcomes.withLock { $0 }
            #expect(won.values.filter { $0 }.count == 1, "round \(round): \(won)")
            let kind = try r.slot(named: name).read { $0.mgmtdev }
            #expect(kind == (won["add"] == true ? .mlx5Net : .vdpasimNet), "round \(round): the winner's device, never replaced")
        }
    }
}
