// ConnectionPolicyTests.swift — the daemon's connection policies that are
// decided from the machine rather than from requests.
import Testing
@testable import VDPADaemon

@Suite("Connection policy")
struct ConnectionPolicyTests {
    @Test("the CPUs a process may use are counted from its Cpus_allowed mask (one CPU: replies go out once per read)")
    func allowedCPUs() {
        #expect(Connection.allowedCPUCount(status: "Name:\tvdpad\nCpus_allowed:\t1\nCpus_allowed_list:\t0\n") == 1)
        #expect(Connection.allowedCPUCount(status: "Cpus_allowed:\t3\n") == 2)
        #expect(Connection.allowedCPUCount(status: "Cpus_allowed:\tff,ffffffff\n") == 40)
        #expect(Connection.allowedCPUCount(status: "Cpus_allowed:\t00000000,00000004\n") == 1)
        #expect(Connection.allowedCPUCount(status: "Name:\tx\n") == nil)
        #expect(Connection.allowedCPUCount() >= 1, "this process's own mask")
        #expect(Connection.replyBatchBytes == (Connection.allowedCPUCount() > 1 ? 1024 : Int.max))
    }
}
