// EventFDEndToEndTests.swift — eventfds passed to the built vdpad over its
// socket with SCM_RIGHTS, as a VMM (or the preload library) passes them:
// bound per vq, signalled on a config change, and released when the owner
// disconnects without closing anything.
import Glibc
import Testing
import VDPAClient

@Suite("Eventfds over the socket")
struct EventFDEndToEndTests {
    static func newEventFD() -> Int32 {
        typealias EventFDFunction = @convention(c) (UInt32, Int32) -> Int32
        let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "eventfd")!  // <sys/eventfd.h> is not in Swift's Glibc
        return unsafeBitCast(symbol, to: EventFDFunction.self)(0, O_CLOEXEC)
    }

    /// Waits up to a second for the eventfd's counter; 0 if nothing came.
    static func waitForSignal(_ fd: Int32) -> UInt64 {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 1000) == 1 else { return 0 }
        var value: UInt64 = 0
        return read(fd, &value, 8) == 8 ? value : 0
    }

    @Test("kick and call eventfds travel with their requests; set_link signals the config eventfd; a pipelined pair stays paired")
    func passedOverTheSocket() throws {
        let d = try Daemon()
        let vmm = try d.client(), admin = try d.client()
        try vmm.call("open", ["device": "vdpa0"])
        let (kick, call, config) = (Self.newEventFD(), Self.newEventFD(), Self.newEventFD())
        try vmm.call("set_vring_kick", ["device": "vdpa0", "vq": 0], passing: [kick])
        try vmm.call("set_vring_call", ["device": "vdpa0", "vq": 0], passing: [call])
        try vmm.call("set_config_call", ["device": "vdpa0"], passing: [config])
        let ring = try admin.call("get_vring", ["device": "vdpa0", "vq": 0])
        #expect(ring["kick"] == true && ring["call"] == true, "an admin sees the VMM's bindings")
        try admin.call("set_link", ["device": "vdpa0", "link": "down"])
        #expect(Self.waitForSignal(config) == 1, "the daemon's copy of the eventfd was signalled")
        #expect(try admin.call("get_config", ["device": "vdpa0"])["link"] == "down")
        // Two requests and their two descriptors in one write each, pipelined before any reply is read.
        let (k1, k2) = (Self.newEventFD(), Self.newEventFD())
        try vmm.send(vmm.request("set_vring_kick", ["device": "vdpa0", "vq": 7]), passing: [k1])  // ENOBUFS, takes k1
        try vmm.send(vmm.request("set_vring_kick", ["device": "vdpa0", "vq": 1]), passing: [k2])
        #expect(try vmm.readMessage()?["error"]?["data"]?["errno"] == "ENOBUFS")
        #expect(try vmm.readMessage()?["result"] == [:])
        #expect(try admin.call("get_vring", ["device": "vdpa0", "vq": 1])["kick"] == true)
        // A request that needs a descriptor and has none.
        #expect(throws: RemoteError.self) { try vmm.call("set_vring_call", ["device": "vdpa0", "vq": 1]) }
        [kick, call, config, k1, k2].forEach { _ = close($0) }
    }

    @Test("a VMM that exits without close: its device is released and its eventfds with it (R70)")
    func releasedOnDisconnect() throws {
        let d = try Daemon()
        let admin = try d.client()
        let kick = Self.newEventFD()
        do {
            let vmm = try d.client()
            try vmm.call("open", ["device": "vdpa0"])
            try vmm.call("set_vring_kick", ["device": "vdpa0", "vq": 2], passing: [kick])
        }  // the client's deinit closes the socket
        #expect(try eventually { try admin.call("get_device", ["device": "vdpa0"])["owner"] == .null })
        guard case .array(let rings)? = try admin.call("get_device", ["device": "vdpa0"])["vrings"] else { Issue.record("vrings"); return }
        #expect(rings[2]["kick"] == false)
        close(kick)
    }
}
