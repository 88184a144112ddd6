// DeviceRecordTests.swift — one decoder for a device record, whatever carries
// it: add_device's params, a state-file entry, a config [[devices]] table.
import Testing
import VDPACore
@testable import VDPADaemon
import VDPAJSON
import VDPARPC
import VDPARegistry

@Suite("Device records: one decoder")
struct DeviceRecordTests {
    @Test("a state-file id past 32 bits is a corrupt file, not a truncated id (it was silently truncated)")
    func stateFileIDsNotTruncated() {
        let text = #"{"version":1,"devices":[{"name":"a","mgmtdev":"vdpasim_net","users":[4294967297]}]}"#
        do {
            _ = try StateStore.decode(Array(text.utf8))
            Issue.record("an id past 32 bits was accepted")
        } catch {
            #expect(error.description == "devices[0]: EINVAL: users: id 4294967297 does not fit in 32 bits")
        }
    }

    @Test("a state-file value of the wrong type is refused with add_device's message")
    func stateFileTypes() {
        let text = #"{"version":1,"devices":[{"name":"a","mgmtdev":"vdpasim_net","mtu":"1500"}]}"#
        do {
            _ = try StateStore.decode(Array(text.utf8))
            Issue.record("a string mtu was accepted")
        } catch {
            #expect(error.description.contains("devices[0]:") && error.description.contains("mtu"))
        }
    }

    @Test("state file round trip: what encode writes, decode reads back the same")
    func stateRoundTrip() throws {
        var a = DeviceAttributes(mac: "52:54:00:00:00:01", mtu: 9000, maxVQP: 2, legacy: false, users: [1000, 4_294_967_295], groups: [7])
        a.iovaRange = IOVARange(first: 0x1000, last: .max)
        let records = [DeviceRecord(name: "n0", mgmtdev: "mlx5_net", attributes: a)]
        #expect(try StateStore.decode(StateStore.encode(records)) == records)
    }

    @Test("config [[devices]]: the same decoder — hex strings for 64-bit values, negative ids refused as on the wire")
    func configUsesTheSameDecoder() throws {
        let ok = try DaemonConfig.parse(
            """
            [[devices]]
            name = "n0"
            mgmtdev = "vdpasim_net"
            iova_last = "0xffffffffffffffff"
            users = [0, 1000]
            """)
        #expect(ok.devices.first?.attributes.iovaRange.last == .max && ok.devices.first?.attributes.users == [0, 1000])
        #expect(throws: ConfigError.self) {
            _ = try DaemonConfig.parse("[[devices]]\nname = \"n0\"\nmgmtdev = \"vdpasim_net\"\nusers = [-1]\n")
        }
        do {
            _ = try DaemonConfig.parse("[[devices]]\nname = \"n0\"\n")
            Issue.record("a device without mgmtdev was accepted")
        } catch {
            #expect(error.description == "devices[0]: invalid params: mgmtdev is required")
        }
        do {
            _ = try DaemonConfig.parse("[[devices]]\nname = \"n0\"\nmgmtdev = \"vdpasim_net\"\nmtus = 1\n")
            Issue.record("an unknown key was accepted")
        } catch {
            #expect(error.description.hasPrefix("unknown key devices[0].mtus"))
        }
    }

    @Test("add_device's params decode to the same record as the state file's entry")
    func paramsAndStateAgree() throws {
        let fields: JSON = ["name": "b0", "mgmtdev": "vdpasim_blk", "iova_first": "0x1000", "groups": [.unsigned(5)]]
        let record = try DeviceRecord(fields: fields)
        #expect(record.attributes.iovaRange.first == 0x1000 && record.attributes.groups == [5])
        #expect(try StateStore.decode(StateStore.encode([record])) == [record])
    }
}
