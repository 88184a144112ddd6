// DeviceSurfaceTests.swift — the vhost-vdpa surface beside the IOTLB: identity,
// config space, virtio features, status, vrings, eventfds, suspend and what a
// reset and a close do to them (reference section B12: rules R45–R70, edge
// cases #45–#75).  One test per rule or edge case, named after it; the ones
// that do not apply at this layer are listed in README.md here.
import Testing
@testable import VDPACore
import _VDPATestSupport

private func features(_ names: String..., class c: DeviceClass = .net) -> UInt64 {
    names.reduce(0) { $0 | VirtioFeatures.bit(named: $1, class: c)! }
}

private let accepted = features("VERSION_1", "ACCESS_PLATFORM")

@Suite("Device surface rules")
struct DeviceSurfaceTests {
    // MARK: B13 identity

    @Test("R45: device id, vqs, queue maximum and config size per parent; none change with status or features")
    func r45() throws {
        var net = try device()
        #expect(net.deviceID == .net && net.virtqueueCount == 3 && net.virtqueueSizeMax == 256 && net.configSize == 24)
        let blk = try device(.vdpasimBlock)
        #expect(blk.deviceID == .block && blk.virtqueueCount == 1 && blk.virtqueueSizeMax == 256 && blk.configSize == 96)
        let mlx = try device(.mlx5Net)
        #expect(mlx.deviceID == .net && mlx.virtqueueSizeMax == 256 && mlx.iovaRange == .full)
        try net.setFeatures(accepted)
        try net.setStatus(0x0F)
        #expect(net.deviceID == .net && net.virtqueueSizeMax == 256 && net.configSize == 24)
    }

    // MARK: B14 config space

    @Test("R47 / edge #45, #46: len 0, off past the end and a range past the end are all EINVAL (never E2BIG)")
    func r47() throws {
        var d = try device()
        expectError(.EINVAL) { _ = try d.readConfig(offset: 0, length: 0) }  // #45
        expectError(.EINVAL) { _ = try d.readConfig(offset: 25, length: 1) }  // #45 off > size
        expectError(.EINVAL) { _ = try d.readConfig(offset: 24, length: 1) }  // #46 off = size
        expectError(.EINVAL) { _ = try d.readConfig(offset: 20, length: 8) }  // #46 crosses the end
        expectError(.EINVAL) { _ = try d.readConfig(offset: .max, length: .max) }
        expectError(.EINVAL) { try d.writeConfig(offset: 0, data: []) }
        expectError(.EINVAL) { try d.writeConfig(offset: 23, data: [1, 2]) }
        #expect(try d.readConfig(offset: 23, length: 1).count == 1)
        #expect(try device(.vdpasimBlock).readConfig(offset: 0, length: 96).count == 96)
    }

    @Test("R48 / edge #50: a config read right after open or reset, before SET_FEATURES, succeeds and changes nothing")
    func r48() throws {
        var d = try device()
        let before = d.driverFeatures
        #expect(try d.readConfig(offset: 0, length: 24).count == 24)
        #expect(d.driverFeatures == before && d.status == 0)
        d.reset()
        #expect(try d.readConfig(offset: 0, length: 8).count == 8)
        #expect(d.driverFeatures == 0 && d.status == 0)
    }

    @Test("R49 / edge #48: SET_CONFIG on vdpa_sim_net keeps every byte written, across a reset; mlx5 ignores writes")
    func r49() throws {
        var d = try device()
        try d.writeConfig(offset: 0, data: [0x02, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE])
        d.reset()
        #expect(try d.readConfig(offset: 0, length: 6) == [0x02, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE])
        try d.writeConfig(offset: 10, data: [0xDC, 0x05])  // mtu 1500 → 1500 written explicitly
        #expect(try d.readConfig(offset: 10, length: 2) == [0xDC, 0x05])
        var m = try device(.mlx5Net)
        let before = m.configBytes
        try m.writeConfig(offset: 0, data: [1, 2, 3, 4, 5, 6])
        #expect(m.configBytes == before)
    }

    @Test("R50: multi-byte config fields are little-endian")
    func r50() throws {
        var d = try VDPADevice(name: DeviceName(rawValue: "n")!, mgmtdev: .vdpasimNet, attributes: DeviceAttributes(mtu: 9000))
        try d.open(by: me)
        #expect(try d.readConfig(offset: 10, length: 2) == [0x28, 0x23])  // 9000 = 0x2328
        #expect(try device(.vdpasimBlock).readConfig(offset: 0, length: 8) == [0, 0, 4, 0, 0, 0, 0, 0])  // 0x40000
    }

    @Test("R51 / edge #47: vdpa_sim_net config: mac, LINK_UP regenerated on every read, max_virtqueue_pairs 0, mtu")
    func r51() throws {
        var d = try VDPADevice(
            name: DeviceName(rawValue: "n")!, mgmtdev: .vdpasimNet,
            attributes: DeviceAttributes(mac: "52:54:00:12:34:56"))
        try d.open(by: me)
        #expect(try d.readConfig(offset: 0, length: 12) == [0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 1, 0, 0, 0, 0xDC, 0x05])
        try d.writeConfig(offset: 6, data: [0, 0])  // #47: status written 0 …
        #expect(try d.readConfig(offset: 6, length: 2) == [1, 0])  // … reads back LINK_UP
        #expect(try d.readConfig(offset: 12, length: 12) == [UInt8](repeating: 0, count: 12))  // speed, duplex, rss: 0
        // mlx5 reports its queue pairs (it offers MQ).
        var m = try VDPADevice(name: DeviceName(rawValue: "m")!, mgmtdev: .mlx5Net, attributes: DeviceAttributes(maxVQP: 4))
        try m.open(by: me)
        #expect(try m.readConfig(offset: 8, length: 2) == [4, 0])
    }

    @Test("R52 / edge #49: vdpa_sim_blk rebuilds its config on every read; a write returns 0 and is lost")
    func r52() throws {
        var b = try device(.vdpasimBlock)
        let c = b.configBytes
        #expect(c.le(0, 8) == 0x40000 && c.le(8, 4) == 4096 && c.le(12, 4) == 32 && c.le(20, 4) == 512)
        #expect(c.le(26, 2) == 1 && c.le(28, 4) == 1 && c.le(34, 2) == 1 && c.le(36, 4) == 0xFFFF_FFFF)
        #expect(c.le(40, 4) == 1 && c.le(44, 4) == 512 && c.le(48, 4) == 0xFFFF_FFFF && c.le(52, 4) == 1)
        #expect(c.le(16, 4) == 0 && c.le(32, 1) == 0, "geometry and wce are 0")
        try b.writeConfig(offset: 0, data: [9, 9, 9, 9, 9, 9, 9, 9])
        #expect(b.configBytes == c)
    }

    @Test("link: set down clears VIRTIO_NET_S_LINK_UP and signals the config eventfd once per change; block devices have no link")
    func link() throws {
        var d = try device()
        d.setConfigCall(EventFD(40))
        try d.setLink(up: false)
        #expect(try d.readConfig(offset: 6, length: 2) == [0, 0])
        #expect(d.takeEventFDEffects().signal == [EventFD(40)])
        try d.setLink(up: false)
        #expect(d.takeEventFDEffects().isEmpty, "no change, no interrupt")
        try d.setLink(up: true)
        #expect(try d.readConfig(offset: 6, length: 2) == [1, 0])
        var b = try device(.vdpasimBlock)
        expectError(.EOPNOTSUPP) { try b.setLink(up: false) }
    }

    // MARK: B15 features

    @Test("R53: GET_FEATURES is the parent's offer (vdpa_sim_net 0x3_0883_0028, vdpa_sim_blk 0x3_0800_7646), whatever was negotiated")
    func r53() throws {
        var d = try device()
        #expect(d.offeredFeatures == 0x3_0883_0028)
        #expect(try device(.vdpasimBlock).offeredFeatures == 0x3_0800_7646)
        try d.setFeatures(accepted)
        #expect(d.offeredFeatures == 0x3_0883_0028 && d.driverFeatures == accepted)
        for bit in ["RING_PACKED", "RING_EVENT_IDX", "RING_INDIRECT_DESC", "MQ"] {
            #expect(d.offeredFeatures & features(bit) == 0, "\(bit) is not offered")
        }
        #expect(try device(.vdpasimNet, legacy: true).offeredFeatures == d.offeredFeatures, "a legacy parent offers the same virtio features")
    }

    @Test("R54 / edge #52, #54: SET_FEATURES: EBUSY with FEATURES_OK first; ACCESS_PLATFORM required; mlx5 refuses MQ without CTRL_VQ")
    func r54() throws {
        var d = try device()
        expectError(.EINVAL) { try d.setFeatures(features("VERSION_1", "MAC")) }  // #52
        var m = try device(.mlx5Net)
        expectError(.EINVAL) { try m.setFeatures(features("VERSION_1", "MAC")) }  // #52 on mlx5
        expectError(.EINVAL) { try m.setFeatures(accepted | features("MQ")) }
        try m.setFeatures(accepted | features("MQ", "CTRL_VQ"))
        try d.setFeatures(accepted)
        try d.setFeatures(accepted | features("MAC"))  // a repeat replaces
        #expect(d.driverFeatures == accepted | features("MAC"))
        try d.setStatus(0x07)  // DRIVER_OK without FEATURES_OK: still allowed
        try d.setFeatures(accepted)
        try d.setStatus(0x0F)
        expectError(.EBUSY) { try d.setFeatures(accepted) }  // #54
        expectError(.EBUSY) { try d.setFeatures(0) }  // EBUSY before anything about the value
    }

    @Test("edge #53: bits not offered are refused (deliberate, docs/protocol.md §7), with a note that the kernel drops them")
    func edge53() throws {
        var d = try device()
        do {
            try d.setFeatures(d.offeredFeatures | features("RING_PACKED", "RING_EVENT_IDX"))
            Issue.record("accepted")
        } catch {
            #expect(error.errno == .EINVAL && error.details.first?.0 == "note")
        }
        #expect(d.driverFeatures == 0)
    }

    @Test("R55: a reset makes the driver features 0 and clears FEATURES_OK, so SET_FEATURES works again")
    func r55() throws {
        var d = try device()
        try d.setFeatures(accepted)
        try d.setStatus(0x0B)
        d.reset()
        #expect(d.driverFeatures == 0 && d.status == 0)
        try d.setFeatures(accepted)
    }

    // MARK: B16 status

    @Test("R56 / edge #55, #56, #57: only 0 clears bits; the same value, added bits and no ordering are fine")
    func r56() throws {
        var d = try device()
        try d.setStatus(0x07)  // #57: DRIVER_OK without FEATURES_OK or SET_FEATURES
        d.reset()
        try d.setFeatures(accepted)
        try d.setStatus(0x0F)
        expectError(.EINVAL) { try d.setStatus(0x07) }  // #55
        try d.setStatus(0x0F)  // #56: the same again
        try d.setStatus(0x4F)  // #56: old | NEEDS_RESET
        try d.setStatus(0xCF)
        expectError(.EINVAL) { try d.setStatus(0x0F) }  // #55: 0x8F → 0x0F
        #expect(d.status == 0xCF)
        try d.setStatus(0)
        #expect(d.status == 0)
        expectError(.EINVAL) { try d.setStatus(0x100) }
    }

    @Test("R57: verdicts are read back: vdpa_sim stores anything; mlx5 leaves FEATURES_OK clear for unacceptable features")
    func r57() throws {
        var sim = try device()
        try sim.setStatus(0x0B)  // features never set: vdpa_sim stores it anyway
        #expect(sim.status == 0x0B)
        var m = try device(.mlx5Net)
        try m.setStatus(0x0B)  // no SET_FEATURES: no VERSION_1 / ACCESS_PLATFORM
        #expect(m.status == 0x03, "the call succeeds; GET_STATUS shows FEATURES_OK clear")
        try m.setFeatures(accepted)
        try m.setStatus(0x0B)
        #expect(m.status == 0x0B)
    }

    // MARK: B17 vrings

    @Test("R58 / edge #59, #60: num 0, not a power of two or over 0xFFFF is EINVAL; no bound from vq_num_max")
    func r58() throws {
        var d = try device()
        for bad: UInt64 in [0, 3, 65536] {
            expectError(.EINVAL) { try d.setVring(0, num: bad, desc: nil, driver: nil, device: nil, ready: nil) }
        }
        try d.setVring(0, num: 1024, desc: nil, driver: nil, device: nil, ready: nil)  // #60
        #expect(try d.vring(0).num == 1024)
    }

    @Test("R59 / edge #62: avail must be 2-aligned and used 4-aligned; desc is not checked")
    func r59() throws {
        var d = try device()
        expectError(.EINVAL) { try d.setVring(0, num: nil, desc: nil, driver: 0x1001, device: nil, ready: nil) }
        expectError(.EINVAL) { try d.setVring(0, num: nil, desc: nil, driver: nil, device: 0x1002, ready: nil) }
        try d.setVring(0, num: nil, desc: 1, driver: 0x1002, device: 0x1004, ready: nil)
        #expect(try d.vring(0).desc == 1)
    }

    @Test("edge #61: SET_VRING_ADDR flags other than LOG are EOPNOTSUPP, before alignment; a log address must be 4-aligned even without LOG")
    func edge61() throws {
        var d = try device()
        expectError(.EOPNOTSUPP) { try d.setVring(0, num: nil, desc: nil, driver: 1, device: nil, ready: nil, addressFlags: 2) }
        expectError(.EINVAL) { try d.setVring(0, num: nil, desc: nil, driver: nil, device: nil, ready: nil, addressFlags: 0, log: 2) }
        try d.setVring(0, num: nil, desc: 0x1000, driver: 0x2000, device: 0x3000, ready: nil, addressFlags: 1, log: 0x3000)
    }

    @Test("R60 / edge #65: a split ring's base above 0xFFFF is EINVAL, before the DRIVER_OK check")
    func r60() throws {
        var d = try device()
        try d.setFeatures(accepted)
        try d.setStatus(0x0F)
        expectError(.EINVAL) { try d.setVring(0, num: nil, desc: nil, driver: nil, device: nil, base: 0x10000, ready: nil) }
        try d.suspend()
        expectError(.EINVAL) { try d.setVring(0, num: nil, desc: nil, driver: nil, device: nil, base: 0x10000, ready: nil) }
        try d.setVring(0, num: nil, desc: nil, driver: nil, device: nil, base: 0xFFFF, ready: nil)
        #expect(try d.vring(0).base == 0xFFFF)
    }

    @Test("edge #63, #64: ADDR and BASE with DRIVER_OK and not suspended: 6.8 EINVAL, 6.7 (legacy) accepted; after SUSPEND accepted")
    func edge63() throws {
        var d = try device()
        try d.setFeatures(accepted)
        try d.setStatus(0x0F)
        expectError(.EINVAL) { try d.setVring(0, num: nil, desc: 0x1000, driver: nil, device: nil, ready: nil) }
        expectError(.EINVAL) { try d.setVring(0, num: nil, desc: nil, driver: nil, device: nil, base: 5, ready: nil) }
        try d.setVring(0, num: 256, desc: nil, driver: nil, device: nil, ready: true)  // NUM and ENABLE stay allowed
        try d.suspend()  // #64
        try d.setVring(0, num: nil, desc: 0x1000, driver: nil, device: nil, base: 5, ready: nil)
        var legacy = try device(.vdpasimNet, legacy: true)
        try legacy.setFeatures(accepted)
        try legacy.setStatus(0x0F)
        try legacy.setVring(0, num: nil, desc: 0x1000, driver: nil, device: nil, base: 7, ready: nil)
        #expect(try legacy.vring(0).base == 7)
    }

    @Test("R61 / edge #66, #67: GET_VRING_BASE is the last avail index; after a reset 0 on vdpa_sim, the saved index on mlx5")
    func r61() throws {
        var d = try device()
        try d.setVring(1, num: nil, desc: nil, driver: nil, device: nil, base: 42, ready: nil)
        try d.setFeatures(accepted)
        try d.setStatus(0x0F)
        #expect(try d.vring(1).base == 42, "#67: readable while running")
        d.reset()
        #expect(try d.vring(1).base == 0)  // #66
        var m = try device(.mlx5Net)
        try m.setVring(1, num: nil, desc: nil, driver: nil, device: nil, base: 42, ready: nil)
        m.reset()
        #expect(try m.vring(1).base == 42)  // #66 on mlx5
    }

    @Test("R62 / edge #72, #73: ENABLE needs neither DRIVER_OK nor a ring size")
    func r62() throws {
        var d = try device()
        try d.setVring(0, num: nil, desc: nil, driver: nil, device: nil, ready: true)  // #72, #73
        #expect(try d.vring(0).ready && d.vring(0).num == nil)
        try d.setVring(0, num: nil, desc: nil, driver: nil, device: nil, ready: false)
        #expect(try !d.vring(0).ready)
    }

    @Test(
        "R62: a vq's ring is built at each 0→1 enable only — not 1→1, 1→0, a base or an address — from what is set then, across resets and sessions"
    )
    func enabledRings() throws {
        var d = try device()
        func enable(_ on: Bool) throws { try d.setVring(0, num: nil, desc: nil, driver: nil, device: nil, ready: on) }
        func ring(_ g: UInt32, _ num: UInt32?, _ desc: UInt64, _ driver: UInt64, _ device: UInt64) -> EnabledRing {
            var r = EnabledRing()
            (r.generation, r.num, r.desc, r.driver, r.device) = (g, num, desc, driver, device)
            return r
        }
        #expect(d.enabledRings == Array(repeating: EnabledRing(), count: 3))
        try enable(true)  // no size yet (the open's reset zeroed the addresses, R69): ready with no ring
        try enable(true)  // 1→1: vdpa_sim does nothing
        try d.setVring(0, num: 64, desc: 0x1000, driver: 0x2000, device: 0x3000, base: 9, ready: nil)
        #expect(d.enabledRings[0] == ring(1, nil, 0, 0, 0), "a NUM or ADDR on an enabled vq waits for the next enable")
        try enable(false)
        #expect(d.enabledRings[0] == ring(1, nil, 0, 0, 0))
        try enable(true)
        #expect(d.enabledRings[0] == ring(2, 64, 0x1000, 0x2000, 0x3000))
        try d.setVring(1, num: 128, desc: 0x4000, driver: 0x5000, device: 0x6000, ready: true)  // one call: the enable is last
        #expect(d.enabledRings[1] == ring(1, 128, 0x4000, 0x5000, 0x6000))
        d.reset()  // not ready any more: the next enable builds the ring again, on the zeroed addresses (R69)
        try enable(true)
        #expect(d.enabledRings[0] == ring(3, 64, 0, 0, 0))
        d.release()
        try d.open(by: me)
        try enable(true)
        #expect(d.enabledRings[0] == ring(4, nil, 0, 0, 0), "a new session's enable is a new ring too (close forgot the size, R70)")
    }

    @Test("R62: a restored session's ready vqs walk the rings of their last enable — their settings, or those the image kept — the others none")
    func enabledRingsAfterRestore() throws {
        var d = try device()
        try d.setVring(0, num: 64, desc: 0x1000, driver: 0x2000, device: 0x3000, ready: true)
        try d.setVring(1, num: 64, desc: 0x4000, driver: 0x5000, device: 0x6000, ready: nil)
        try d.setVring(2, num: 32, desc: 0x7000, driver: 0x7400, device: 0x7800, ready: true)
        try d.setVring(2, num: 64, desc: 0x8000, driver: nil, device: nil, ready: nil)  // not the ring vq 2 walks (R62)
        #expect(d.sessionImage.ringsAtEnable.keys.sorted() == [2], "only a ring its settings no longer say")
        var restored = try VDPADevice(name: d.name, mgmtdev: d.mgmtdev, attributes: d.attributes)
        try restored.restore(d.sessionImage)
        #expect(restored.enabledRings[0].generation == 1 && restored.enabledRings[0].desc == 0x1000 && restored.enabledRings[0].num == 64)
        #expect(restored.enabledRings[1] == EnabledRing())
        var walked = try #require(d.ringInUse(2))
        walked.generation = 1  // the restore's enable is the restored device's first
        #expect(restored.ringInUse(2) == walked)
        #expect(try restored.ringInUse(2)?.desc == 0x7000 && restored.ringInUse(2)?.num == 32 && restored.vring(2).desc == 0x8000)
        #expect(restored.sessionImage == d.sessionImage, "the restored session images as the original")
    }

    @Test("R44 / edge #68: a vring index ≥ nvqs is ENOBUFS for every vring call (3 on net, 1 on blk)")
    func r44() throws {
        var d = try device()
        expectError(.ENOBUFS) { try d.setVring(3, num: 64, desc: nil, driver: nil, device: nil, ready: nil) }
        expectError(.ENOBUFS) { _ = try d.vring(3) }
        expectError(.ENOBUFS) { try d.setVringKick(3, EventFD(9)) }
        expectError(.ENOBUFS) { try d.setVringCall(3, EventFD(9)) }
        var b = try device(.vdpasimBlock)
        expectError(.ENOBUFS) { _ = try b.vring(1) }
        expectError(.ENOBUFS) { try b.setVringCall(1, nil) }
        #expect(d.takeEventFDEffects().isEmpty, "a refused call keeps nothing and closes nothing")
    }

    @Test("R63 / R64 / edge #69: KICK and CALL bind, replace (the old eventfd is closed) and unbind with nil (fd −1)")
    func r63r64() throws {
        var d = try device()
        try d.setVringKick(0, EventFD(10))
        try d.setVringCall(0, EventFD(11))
        #expect(try d.vring(0).kick == EventFD(10) && d.vring(0).call == EventFD(11))
        try d.setVringKick(0, EventFD(12))
        #expect(d.takeEventFDEffects().close == [EventFD(10)])
        try d.setVringKick(0, nil)  // #69
        try d.setVringCall(0, nil)
        #expect(try d.vring(0).kick == nil && d.vring(0).call == nil)
        #expect(d.takeEventFDEffects().close == [EventFD(12), EventFD(11)])
    }

    @Test("effects carried out in place are those taking them would give, and then none are left")
    func carryOutInPlace() throws {
        var d = try device()
        try d.setVringKick(0, EventFD(10))
        try d.setVringKick(0, EventFD(12))
        d.setConfigCall(EventFD(40))
        try d.setLink(up: false)
        var seen: [EventFDEffects] = []
        d.carryOutEventFDEffects { seen.append($0) }
        #expect(seen.count == 1 && seen[0].signal == [EventFD(40)] && seen[0].close == [EventFD(10)] && seen[0].kicksChanged)
        #expect(!d.hasEventFDEffects && d.takeEventFDEffects().isEmpty)
        try d.setLink(up: true)
        d.carryOutEventFDEffects { seen.append($0) }
        #expect(seen.count == 2 && seen[1].signal == [EventFD(40)] && seen[1].close.isEmpty && !seen[1].kicksChanged)
    }

    @Test("R65 / edge #71: SET_CONFIG_CALL replaces (closing the old one) and unbinds")
    func r65() throws {
        var d = try device()
        d.setConfigCall(EventFD(20))
        d.setConfigCall(EventFD(21))
        #expect(d.configCall == EventFD(21) && d.takeEventFDEffects().close == [EventFD(20)])
        d.setConfigCall(nil)
        #expect(d.configCall == nil && d.takeEventFDEffects().close == [EventFD(21)])
    }

    // MARK: B18 suspend / resume

    @Test("R66 / edge #74, #75 on 6.7 and 6.8: SUSPEND/RESUME need no acked bit, work before DRIVER_OK; a parent without the op is EOPNOTSUPP")
    func r66() throws {
        for kernel in [KernelVersion.v6_7, .v6_8] {
            var d = try device(.vdpasimNet, acked: [], kernel: kernel)
            try d.suspend()  // #74
            #expect(d.suspended)
            try d.resume()
            #expect(!d.suspended)
            var p = try device(.platformNet, kernel: kernel)
            expectError(.EOPNOTSUPP) { try p.suspend() }  // #75
            expectError(.EOPNOTSUPP) { try p.resume() }
        }
    }

    @Test("R66 / edge #74 on 6.9+ (6.12, the default): before DRIVER_OK SUSPEND and RESUME return 0 and do nothing, even without the op")
    func r66Since69() throws {
        var d = try device(.vdpasimNet, acked: [])
        #expect(d.kernel == .v6_12)
        try d.suspend()
        #expect(!d.suspended, "not marked: the parent was not called")
        // So a later SET_VRING_BASE with DRIVER_OK set is EINVAL (R60 step 3): the device is running, not suspended.
        try d.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", class: .net))
        try d.setStatus(0xF)
        expectError(.EINVAL) { try d.setVring(0, num: nil, desc: nil, driver: nil, device: nil, base: 5, ready: nil) }
        try d.suspend()
        #expect(d.suspended, "with DRIVER_OK the parent is called")
        try d.setVring(0, num: nil, desc: nil, driver: nil, device: nil, base: 5, ready: nil)
        var p = try device(.platformNet)
        try p.suspend()  // no op, no DRIVER_OK: 0
        try p.resume()
        try p.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", class: .net))
        try p.setStatus(0xF)
        expectError(.EOPNOTSUPP) { try p.suspend() }
    }

    @Test("R46 / edge #80: GET_VRING_SIZE is ENOTTY on 6.7/6.8 and EOPNOTSUPP from 6.9 (no parent has get_vq_size); ENOBUFS first")
    func r46() throws {
        for kernel in [KernelVersion.v6_7, .v6_8] {
            let d = try device(kernel: kernel)
            expectError(.ENOBUFS) { _ = try d.vringSize(3) }
            expectError(.ENOTTY) { _ = try d.vringSize(0) }
        }
        let d = try device()
        expectError(.ENOBUFS) { _ = try d.vringSize(3) }
        expectError(.EOPNOTSUPP) { _ = try d.vringSize(0) }
    }

    @Test("R59 / R60 / edge #63 by version: 6.7 accepts ring changes while running, 6.8 and 6.12 refuse them")
    func edge63ByVersion() throws {
        for (kernel, refused) in [(KernelVersion.v6_7, false), (.v6_8, true), (.v6_12, true)] {
            var d = try device(kernel: kernel)
            try d.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", class: .net))
            try d.setStatus(0xF)
            do {
                try d.setVring(0, num: nil, desc: 0x1000, driver: nil, device: nil, ready: nil)
                #expect(!refused, "\(kernel.rawValue)")
            } catch {
                #expect(refused && error.errno == .EINVAL, "\(kernel.rawValue)")
            }
        }
        #expect(try device(legacy: true).kernel == .v6_7, "a legacy device keeps 6.7's vhost-vdpa")
    }

    @Test("R60 step 4: on 6.7 mlx5 refuses a base while its hardware queue runs; disabled, suspended, the CVQ or vdpa_sim take it")
    func mlx5BaseWhileRunning() throws {
        let features = VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "CTRL_VQ", class: .net)
        func running(_ kind: ManagementDevice) throws -> VDPADevice {
            var d = try device(kind, kernel: .v6_7)
            try d.setFeatures(features)
            for vq in 0..<3 { try d.setVring(VirtqueueIndex(UInt64(vq)), num: 256, desc: nil, driver: nil, device: nil, ready: true) }
            try d.setStatus(0xF)
            return d
        }
        var m = try running(.mlx5Net)
        expectError(.EINVAL) { try m.setVring(1, num: nil, desc: nil, driver: nil, device: nil, base: 5, ready: nil) }
        #expect(try m.vring(1).base == 0, "a refused base changes nothing")
        try m.setVring(1, num: nil, desc: 0x1000, driver: nil, device: nil, ready: nil)  // addresses are only stored
        try m.setVring(2, num: nil, desc: nil, driver: nil, device: nil, base: 6, ready: nil)  // the CVQ is software
        try m.setVring(1, num: nil, desc: nil, driver: nil, device: nil, ready: false)  // a disable suspends the queue
        try m.setVring(1, num: nil, desc: nil, driver: nil, device: nil, base: 5, ready: true)  // base, then enable
        expectError(.EINVAL) { try m.setVring(1, num: nil, desc: nil, driver: nil, device: nil, base: 7, ready: nil) }
        try m.suspend()
        try m.setVring(1, num: nil, desc: nil, driver: nil, device: nil, base: 7, ready: nil)
        #expect(try (m.vring(1).base, m.vring(2).base) == (7, 6))
        try m.resume()
        m.reset()
        try m.setVring(1, num: nil, desc: nil, driver: nil, device: nil, base: 0, ready: nil)  // R69: no hardware queue
        var s = try running(.vdpasimNet)
        try s.setVring(1, num: nil, desc: nil, driver: nil, device: nil, base: 5, ready: nil)
        var m8 = try device(.mlx5Net, kernel: .v6_8)
        try m8.setFeatures(features)
        try m8.setVring(1, num: 256, desc: nil, driver: nil, device: nil, ready: true)
        try m8.setStatus(0xF)
        do {
            try m8.setVring(1, num: nil, desc: nil, driver: nil, device: nil, base: 5, ready: nil)
            Issue.record("6.8 took a base on a running device")
        } catch {
            #expect(error.errno == .EINVAL && error.message.contains("6.8+"), "6.8: vhost-vdpa's refusal comes first: \(error.message)")
        }
    }

    @Test(
        "R59 step 7, R60 step 4, R61, R62: mlx5 has its CVQ once CTRL_VQ is negotiated, every vq with MQ; before, ADDR, BASE and GET_VRING_BASE are EINVAL and ENABLE does nothing"
    )
    func mlx5QueuesByFeatures() throws {
        var m = try device(.mlx5Net)
        expectError(.EINVAL) { try m.setVring(2, num: nil, desc: 0x1000, driver: nil, device: nil, ready: nil) }
        expectError(.EINVAL) { try m.setVring(2, num: nil, desc: nil, driver: nil, device: nil, base: 3, ready: nil) }
        expectError(.EINVAL) { _ = try m.vringState(2) }
        try m.setVring(2, num: 64, desc: nil, driver: nil, device: nil, ready: true)  // returns 0: mlx5 ignores it
        #expect(try !m.vring(2).ready && m.vring(2).desc == nil, "not ready, no address taken")
        try m.setVring(0, num: 64, desc: 0x1000, driver: 0x2000, device: 0x3000, base: 1, ready: true)  // the first pair is there
        #expect(try m.vringState(0).ready && m.vringState(0).base == 1)
        try m.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "CTRL_VQ", class: .net))
        try m.setVring(2, num: nil, desc: 0x4000, driver: nil, device: nil, base: 3, ready: true)
        #expect(try m.vringState(2).base == 3 && m.vring(2).ready)
        m.reset()  // the features go with it: the CVQ is no queue again
        expectError(.EINVAL) { _ = try m.vringState(2) }
        // Four queue pairs: without MQ only the first pair and index 2; with MQ every vq, the CVQ last.
        var attributes = DeviceAttributes()
        attributes.maxVQP = 4
        var wide = try VDPADevice(name: DeviceName(rawValue: "wide")!, mgmtdev: .mlx5Net, attributes: attributes)
        try wide.open(by: me)
        try wide.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "CTRL_VQ", class: .net))
        expectError(.EINVAL) { try wide.setVring(3, num: nil, desc: 0x1000, driver: nil, device: nil, ready: nil) }
        wide.reset()
        try wide.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "CTRL_VQ", "MQ", class: .net))
        for vq in [3, 8] { try wide.setVring(VirtqueueIndex(UInt64(vq)), num: nil, desc: 0x1000, driver: nil, device: nil, ready: true) }
        #expect(try wide.vring(8).ready)
        // vdpa_sim has every vq from the start.
        var s = try device()
        try s.setVring(2, num: 64, desc: 0x1000, driver: nil, device: nil, base: 3, ready: true)
        #expect(try s.vringState(2).ready)
    }

    @Test(
        "R23, V2: mlx5_net's control queue is vq 2 unless MQ is negotiated (ctrl_vq_idx) — its group, descriptor group, ASID, service and vstats follow it; vdpa_sim_net's stays vq 2"
    )
    func mlx5ControlQueueMovesWithMQ() throws {
        var attributes = DeviceAttributes()
        attributes.maxVQP = 2
        var m = try VDPADevice(name: DeviceName(rawValue: "m2")!, mgmtdev: .mlx5Net, attributes: attributes)
        try m.open(by: me)
        let groups = { (d: VDPADevice) throws(VDPAError) -> [UInt64] in
            try (0..<5).map { vq throws(VDPAError) in try d.vringGroup(VirtqueueIndex(vq)).rawValue }
        }
        // Before SET_FEATURES (and after a reset) nothing says MQ: group 1 is vq 2's, as QEMU finds when it binds it.
        #expect(try groups(m) == [0, 0, 1, 0, 0])
        #expect(try m.vringDescriptorGroup(2).rawValue == 1 && m.vringDescriptorGroup(4).rawValue == 2)
        #expect(m.queueType(ofVirtqueue: 4) == .controlVQ, "named by the offered layout until a negotiation")
        // A guest without MQ (QEMU's virtio-net without mq=on) drives its CVQ at index 2, isolated in ASID 1.
        try m.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "CTRL_VQ", "MAC", class: .net))
        try m.setStatus(QueueStatsTests.featuresOK)
        try m.setGroupASID(group: 1, asid: 1)
        #expect(try groups(m) == [0, 0, 1, 0, 0])
        #expect(try m.asid(forVirtqueue: 2, area: .buffer) == 1 && m.asid(forVirtqueue: 0, area: .buffer) == 0)
        #expect(m.servedQueue(2) == .netControl && m.servedQueue(0) == .netPair(rx: 0, tx: 1))
        #expect(m.servedQueue(3) == nil && m.servedQueue(4) == nil, "no second pair, no vq 4: mlx5_vdpa_kick_vq ignores them")
        #expect((0..<3).map(m.queueType(ofVirtqueue:)) == [.rx, .tx, .controlVQ])
        #expect(try m.vendorStats(queue: 2) == QueueStats())
        expectError(.EINVAL) { _ = try m.vendorStats(queue: 4) }  // "virtqueue index is not valid"
        m.reset()
        #expect(m.queueType(ofVirtqueue: 2) == .controlVQ && m.queueType(ofVirtqueue: 4) == .rx, "named as last negotiated")
        m.release()
        var restarted = try VDPADevice(name: m.name, mgmtdev: m.mgmtdev, attributes: m.attributes)
        try restarted.restore(m.sessionImage)
        #expect((0..<5).map(restarted.queueType(ofVirtqueue:)) == (0..<5).map(m.queueType(ofVirtqueue:)), "a restarted daemon names them so too")
        #expect(restarted.queueType(ofVirtqueue: 2) == .controlVQ)
        try m.open(by: me)
        // With MQ the CVQ is the last vq again, and vq 2 the second pair's RX.
        try m.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "CTRL_VQ", "MQ", class: .net))
        try m.setStatus(QueueStatsTests.featuresOK)
        try m.setGroupASID(group: 1, asid: 1)
        #expect(try groups(m) == [0, 0, 0, 0, 1])
        #expect(try m.asid(forVirtqueue: 4, area: .buffer) == 1 && m.asid(forVirtqueue: 2, area: .buffer) == 0)
        #expect(m.servedQueue(4) == .netControl && m.servedQueue(2) == .netPair(rx: 2, tx: 3))
        #expect((0..<5).map(m.queueType(ofVirtqueue:)) == [.rx, .tx, .rx, .tx, .controlVQ])
        // vdpa_sim_net has one pair: its CVQ is vq 2 whatever the features.
        var s = try device()
        #expect(try s.vringGroup(2).rawValue == 1)
        try s.setFeatures(VirtioFeatures.mask("VERSION_1", "ACCESS_PLATFORM", "CTRL_VQ", class: .net))
        #expect(try s.vringGroup(2).rawValue == 1 && s.servedQueue(2) == .netControl)
    }

    @Test("R67: a reset ends a suspension (vdpa_sim 6.8: running := true)")
    func r67() throws {
        var d = try device()
        try d.suspend()
        d.reset()
        #expect(!d.suspended)
    }

    // MARK: B20 reset and close

    @Test("R69: a reset keeps num and kick, zeroes vdpa_sim's addresses and base, keeps mlx5's, drops call, keeps config and the config eventfd")
    func r69() throws {
        for kind in [ManagementDevice.vdpasimNet, .mlx5Net] {
            var d = try device(kind)
            try d.setVring(0, num: 256, desc: 0x1000, driver: 0x2000, device: 0x3000, base: 9, ready: true)
            try d.setVringKick(0, EventFD(30))
            try d.setVringCall(0, EventFD(31))
            d.setConfigCall(EventFD(32))
            try d.writeConfig(offset: 0, data: [2, 0, 0, 0, 0, 1])
            try d.setGroupASID(group: 1, asid: 1)
            d.reset()
            let r = try d.vring(0)
            #expect(r.num == 256 && !r.ready && r.kick == EventFD(30) && r.call == nil, "\(kind)")
            if kind == .mlx5Net {
                #expect(r.desc == 0x1000 && r.driver == 0x2000 && r.device == 0x3000 && r.base == 9)
            } else {
                // Zeroed, not unset: the device now walks a ring at IOVA 0, as vdpa_sim's would (docs/protocol.md §5.5).
                #expect(r.desc == 0 && r.driver == 0 && r.device == 0 && r.base == 0)
                #expect(try d.readConfig(offset: 0, length: 6) == [2, 0, 0, 0, 0, 1])
                let ring = try d.translate(.virtqueue(0, .desc), access: .read, iova: nil, size: nil)
                #expect(ring.map(\.iova) == [0] && ring.map(\.size) == [16 * 256], "the descriptor table at IOVA 0, 16·num bytes")
            }
            #expect(d.configCall == EventFD(32) && d.groupASID == [0, 0] || d.groupASID == [0, 0, 0])
            #expect(d.takeEventFDEffects().close == [EventFD(31)])
        }
    }

    @Test("R70: close releases every eventfd and puts the vrings back to their first state")
    func r70() throws {
        var d = try device()
        try d.setVring(2, num: 64, desc: 0x1000, driver: nil, device: nil, base: 3, ready: true)
        try d.setVringKick(0, EventFD(40))
        try d.setVringCall(1, EventFD(41))
        try d.setVringKick(2, EventFD(42))
        d.setConfigCall(EventFD(43))
        d.release()
        #expect(Set(d.takeEventFDEffects().close) == [EventFD(40), EventFD(41), EventFD(42), EventFD(43)])
        #expect(d.vrings.allSatisfy { $0 == Vring() } && d.configCall == nil && d.owner == nil)
    }
}
