// DumpIOTLBTests.swift — dump_iotlb's range and page checks (docs/protocol.md
// §5.3): limit first, then a range whose first is above its last.
import Testing
import VDPACore
import _VDPATestSupport

@Suite("dump_iotlb")
struct DumpIOTLBTests {
    @Test("first > last is EINVAL, after the limit's check; first == last is a one-address range")
    func firstAboveLast() throws {
        var d = try device()
        try d.map(iova: 0x1000, size: 0x1000, address: 0x9000, permission: .readWrite)
        expectError(.EINVAL) { _ = try d.dumpIOTLB(asid: 0, layer: .session, first: 0x2000, last: 0x1fff, limit: 10) }
        do {
            _ = try d.dumpIOTLB(asid: 0, layer: .session, first: 0x2000, last: 0x1000, limit: 0)
            Issue.record("limit 0 accepted")
        } catch {
            #expect(error.message.contains("limit"), "the limit is checked first: \(error.message)")
        }
        let one = try d.dumpIOTLB(asid: 0, layer: .session, first: 0x1800, last: 0x1800, limit: 10)
        #expect(one.entries.map(\.first) == [0x1000])
    }
}
