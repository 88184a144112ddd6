// DeviceRegistryTests.swift — the typed service driven as a front end would
// drive it, with no JSON anywhere: typed requests in, typed results and
// VDPAError out, typed events to a subscriber.
#if canImport(Glibc)
    import Glibc
#endif
import Foundation
import Testing
import VDPACore
import VDPADataPath
@testable import VDPARegistry
import _VDPATestSupport

/// Collects the events delivered to one connection.
final class Subscriber: EventSubscriber {
    let events = Locked<[Event]>([])
    /// What the connection says of its client (`EventSubscriber.peerHungUp`).
    let hungUp = Locked(false)
    func deliver(_ event: Event) { events.withLock { $0.append(event) } }
    var kinds: [Event.Kind] { events.withLock { $0.map(\.kind) } }
    var peerHungUp: Bool { hungUp.withLock { $0 } }
}

@Suite("Device registry")
struct DeviceRegistryTests {
    static let admin = Caller(connection: 1, pid: 10, uid: 0, gid: 0, isAdmin: true)
    static let vmm = Caller(connection: 2, pid: 20, uid: 1000, gid: 1000, isAdmin: false)
    static let other = Caller(connection: 3, pid: 30, uid: 1001, gid: 1001, isAdmin: false)

    static func registry(users: [UInt32] = [1000]) throws -> DeviceRegistry {
        let r = DeviceRegistry(io: ProcessDeviceIO())
        _ = try r.add(DeviceRecord(name: "n0", mgmtdev: "vdpasim_net", attributes: DeviceAttributes(users: users)), by: admin)
        return r
    }

    @Test("add_device is an admin's; a second of the same name is EEXIST; an unknown parent ENODEV; a bad name EINVAL")
    func add() throws {
        let r = try Self.registry()
        let record = DeviceRecord(name: "n1", mgmtdev: "vdpasim_net", attributes: DeviceAttributes())
        expectError(.EPERM) { _ = try r.add(record, by: Self.vmm) }
        expectError(.EEXIST) { _ = try r.add(DeviceRecord(name: "n0", mgmtdev: "vdpasim_net", attributes: DeviceAttributes()), by: Self.admin) }
        expectError(.ENODEV) { _ = try r.add(DeviceRecord(name: "x", mgmtdev: "nope", attributes: DeviceAttributes()), by: Self.admin) }
        expectError(.EINVAL) { _ = try r.add(DeviceRecord(name: "a b", mgmtdev: "vdpasim_net", attributes: DeviceAttributes()), by: Self.admin) }
        #expect(r.deviceRecords().map(\.name) == ["n0"])
    }

    @Test("map and unmap through the typed requests: the owner's, ownership errors carry kernel EFAULT (R5)")
    func mapUnmap() throws {
        let r = try Self.registry()
        let map = MapRequest(iova: 0x1000, size: 0x1000, address: 0x7000, permission: .name("rw"))
        do {
            try r.map(map, device: "n0", by: Self.vmm)
            Issue.record("a map before open succeeded")
        } catch {
            #expect(error.errno == .EPERM && error.kernelErrno == .EFAULT)
        }
        _ = try r.open("n0", by: Self.vmm)
        try r.map(map, device: "n0", by: Self.vmm)
        expectError(.EPERM) { try r.map(map, device: "n0", by: Self.other) }
        expectError(.EINVAL) { try r.map(MapRequest(iova: 0x9000, size: 1, address: 0, permission: .number(256)), device: "n0", by: Self.vmm) }
        expectError(.ENODEV) { try r.map(map, device: "nosuch", by: Self.vmm) }
        let dump = try r.dumpIOTLB(DumpRequest(asid: 0, layer: EnumArgument(field: "layer", IOTLBLayer.session)), device: "n0", by: Self.admin)
        #expect(dump.entries.map(\.first) == [0x1000] && dump.exists)
        #expect(try r.unmap(UnmapRequest(iova: 0, size: 0x10000), device: "n0", by: Self.vmm) == 1)
    }

    @Test("the order of checks: ENODEV, then EPERM, then the value (an unknown perm from a stranger is EPERM)")
    func orderOfChecks() throws {
        let r = try Self.registry()
        _ = try r.open("n0", by: Self.vmm)
        let bad = MapRequest(iova: 0, size: 1, address: 0, permission: .name("rx"))
        expectError(.ENODEV) { try r.map(bad, device: "nosuch", by: Self.other) }
        expectError(.EPERM) { try r.map(bad, device: "n0", by: Self.other) }
        expectError(.EINVAL) { try r.map(bad, device: "n0", by: Self.vmm) }
    }

    @Test("DeviceAccess: opener by users/groups, owner-or-admin reads, admin-only operations")
    func access() throws {
        let r = try Self.registry(users: [1000])
        expectError(.EPERM) { _ = try r.open("n0", by: Self.other) }
        _ = try r.open("n0", by: Self.vmm)
        expectError(.EBUSY) { _ = try r.open("n0", by: Self.admin) }
        let read = TranslateRequest(target: .asid(0), access: EnumArgument(field: "access", Access.read), iova: 0, size: 1)
        #expect(throws: Never.self) { _ = try r.translate(read, device: "n0", by: Self.admin) }
        expectError(.EPERM) { _ = try r.translate(read, device: "n0", by: Self.other) }
        expectError(.EPERM) { try r.withDevice("n0", .admin(operation: "set_link"), by: Self.vmm) { (_: inout VDPADevice) in } }
    }

    @Test("a subscription's journal mask, and the generation that tells a commit to read it again, move together")
    func subscriptionGeneration() throws {
        let r = try Self.registry()
        r.connectionOpened(Self.admin.connection, subscriber: Subscriber())
        let before = r.subscriptionGeneration
        #expect(r.subscriptionMask(Self.admin.connection) == 0)
        _ = r.subscribe(Self.admin.connection, to: [EventType.allCases[1]])
        #expect(r.subscriptionGeneration > before && r.subscriptionMask(Self.admin.connection) == 1 << 31 | 1 << 1)
        let restored = r.subscriptionGeneration
        r.restoreSubscription(Self.admin.connection, mask: 1 << 31 | 1)
        #expect(r.subscriptionGeneration > restored && r.subscriptionMask(Self.admin.connection) == 1 << 31 | 1)
    }

    @Test("events are typed and numbered; a forced delete tells the owner's connection even unsubscribed")
    func events() throws {
        let r = try Self.registry()
        let watcher = Subscriber(), owner = Subscriber()
        r.connectionOpened(Self.admin.connection, subscriber: watcher)
        r.connectionOpened(Self.vmm.connection, subscriber: owner)
        _ = r.subscribe(Self.admin.connection, to: Set(EventType.allCases))
        _ = try r.open("n0", by: Self.vmm)
        try r.changeStatus("n0", by: Self.vmm) { (d: inout VDPADevice) throws(VDPAError) in try d.setStatus(1) }
        expectError(.EBUSY) { try r.remove("n0", force: false, by: Self.admin) }
        try r.remove("n0", force: true, by: Self.admin)
        #expect(
            watcher.kinds == [
                .ownerChanged(owner: Self.vmm.owner, reason: nil), .statusChanged(status: 1, previous: 0),
                .sessionClosed(reason: .deviceDeleted), .deviceRemoved
            ])
        #expect(owner.kinds == [.sessionClosed(reason: .deviceDeleted)])
        let (all, next) = r.events(since: 0)
        #expect(all.map(\.seq) == [1, 2, 3, 4, 5] && next == 5 && all.first?.kind == .deviceAdded(mgmtdev: "vdpasim_net"))
    }

    @Test("a disconnect releases the connection's sessions and closes the descriptors no request took")
    func disconnect() throws {
        let r = try Self.registry()
        _ = try r.open("n0", by: Self.vmm)
        #expect(r.descriptorsReceived([dup(0)], on: Self.vmm.connection))
        r.connectionClosed(Self.vmm.connection)
        #expect(r.takeDescriptor(for: Self.vmm) == nil)
        #expect(try r.slot(named: "n0").read { $0.owner } == nil)
        _ = try r.open("n0", by: Self.vmm)  // free again
    }

    @Test("R34 with an owner whose client is gone: open and del_device end its session at once; a live or unknown one is EBUSY")
    func openAfterTheOwnerDied() throws {
        let r = try Self.registry(users: [1000, 1001])
        let owner = Subscriber(), watcher = Subscriber()
        r.connectionOpened(Self.vmm.connection, subscriber: owner)
        r.connectionOpened(Self.admin.connection, subscriber: watcher)
        _ = r.subscribe(Self.admin.connection, to: [.ownerChanged])
        _ = try r.open("n0", by: Self.vmm)
        expectError(.EBUSY) { _ = try r.open("n0", by: Self.other) }  // its client is there
        owner.hungUp.withLock { $0 = true }  // killed and reaped; the end of its connection not read yet
        _ = try r.open("n0", by: Self.other)
        #expect(try r.slot(named: "n0").read { $0.owner } == Self.other.owner)
        #expect(watcher.kinds.suffix(2) == [.ownerChanged(owner: nil, reason: .disconnect), .ownerChanged(owner: Self.other.owner, reason: nil)])
        r.connectionClosed(Self.vmm.connection)  // the end read later releases nothing of the new owner's
        #expect(try r.slot(named: "n0").read { $0.owner } == Self.other.owner)
        // An owner whose connection the registry does not know (closing right now, or never opened): one more try.
        let s = try Self.registry(users: [1000, 1001])
        _ = try s.open("n0", by: Self.vmm)
        expectError(.EBUSY) { _ = try s.open("n0", by: Self.other) }
        // del_device without force the same way: EBUSY for a live owner, done for one whose client hung up.
        let other = Subscriber()
        r.connectionOpened(Self.other.connection, subscriber: other)
        expectError(.EBUSY) { try r.remove("n0", force: false, by: Self.admin) }
        other.hungUp.withLock { $0 = true }
        try r.remove("n0", force: false, by: Self.admin)
        #expect(r.deviceCount == 0)
        #expect(watcher.kinds.last == .ownerChanged(owner: nil, reason: .disconnect), "the session ended as at a disconnect")
    }

    @Test("the state-file hook refuses a change it cannot write: EIO, nothing added or removed")
    func persistence() throws {
        struct Full: Error {}
        let r = DeviceRegistry(io: ProcessDeviceIO(), persist: { records in if records.count > 1 { throw Full() } })
        _ = try r.add(DeviceRecord(name: "a", mgmtdev: "vdpasim_net", attributes: DeviceAttributes()), by: Self.admin)
        expectError(.EIO) { _ = try r.add(DeviceRecord(name: "b", mgmtdev: "vdpasim_net", attributes: DeviceAttributes()), by: Self.admin) }
        #expect(r.deviceRecords().map(\.name) == ["a"] && r.deviceCount == 1)
    }

    @Test("SUSPEND waits for the data-path run in flight: nothing records after it, so GET_VRING_BASE is final")
    func suspendWaitsForTheRunInFlight() throws {
        let r = try Self.registry()
        _ = try r.open("n0", by: Self.vmm)
        let slot = try r.slot(named: "n0")
        let order = Locked<[String]>([])
        let running = DispatchSemaphore(value: 0)
        // A stand-in for the worker: it holds the run gate, records, and only then lets go.
        let worker = Thread {
            slot.quiesced {
                running.signal()
                usleep(200_000)
                order.withLock { $0.append("run recorded") }
            }
        }
        worker.start()
        running.wait()
        try r.suspend(device: "n0", by: Self.vmm)
        order.withLock { $0.append("suspended") }
        #expect(order.withLock { $0 } == ["run recorded", "suspended"])
    }
}
