// EventFDTests.swift — eventfds passed to the service (as a connection does
// with SCM_RIGHTS) and the methods that take them: R63–R65 with real
// descriptors, the pairing rule that keeps pipelining safe, the limit, and
// who may read device state (R41 as vdpad's transport maps it).
import Glibc
import Testing
import VDPAJSON
@testable import VDPARPC
@testable import VDPARegistry
import _VDPATestSupport

@Suite("Eventfds and device reads")
struct EventFDTests {
    /// eventfd(2) through dlsym: <sys/eventfd.h> is not part of Swift's Glibc module.
    static func newEventFD() -> Int32 {
        typealias EventFDFunction = @convention(c) (UInt32, Int32) -> Int32
        let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "eventfd")!  // RTLD_DEFAULT
        return unsafeBitCast(symbol, to: EventFDFunction.self)(0, O_CLOEXEC)
    }
    static func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) != -1 }
    static func counter(_ fd: Int32) -> UInt64 {
        var value: UInt64 = 0
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        let n = read(fd, &value, 8)
        return n == 8 ? value : 0
    }

    static func call(_ s: VDPAService, _ method: String, _ params: String, as caller: Caller = admin) -> String {
        _VDPATestSupport.call(s, #"{"jsonrpc":"2.0","id":1,"method":"\#(method)","params":{\#(params)}}"#, as: caller)
    }

    @Test("set_vring_kick / set_vring_call take the passed eventfd; a replaced one is closed; unset unbinds")
    func bindReplaceUnbind() {
        let s = FastPathTests.service(fast: false)
        let (a, b) = (Self.newEventFD(), Self.newEventFD())
        #expect(s.descriptorsReceived([a, b], on: admin.connection))
        #expect(Self.call(s, "set_vring_kick", #""device":"vdpa0","vq":0"#).contains(#""result":{}"#))
        #expect(Self.call(s, "get_vring", #""device":"vdpa0","vq":0"#).contains(#""kick":true,"call":false"#))
        #expect(Self.call(s, "set_vring_kick", #""device":"vdpa0","vq":0"#).contains(#""result":{}"#))
        #expect(!Self.isOpen(a) && Self.isOpen(b), "the replaced eventfd is closed")
        #expect(Self.call(s, "set_vring_kick", #""device":"vdpa0","vq":0,"unset":true"#).contains(#""result":{}"#))
        #expect(!Self.isOpen(b))
    }

    @Test("R63, R64 / edge #70: a pipe is EINVAL, a closed descriptor EBADF; the old binding is kept and the refused descriptor closed")
    func notAnEventFD() {
        let s = FastPathTests.service(fast: false)
        let good = Self.newEventFD()
        _ = s.descriptorsReceived([good], on: admin.connection)
        _ = Self.call(s, "set_vring_call", #""device":"vdpa0","vq":1"#)
        var fds: [Int32] = [0, 0]
        _ = pipe(&fds)
        _ = s.descriptorsReceived([fds[0]], on: admin.connection)
        #expect(Self.call(s, "set_vring_call", #""device":"vdpa0","vq":1"#).contains(#""errno":"EINVAL""#))
        #expect(!Self.isOpen(fds[0]), "the refused descriptor is closed")
        close(fds[1])
        // A number no descriptor has: the service closes what it refuses, and an eventfd closed here first would be
        // a number another test running meanwhile may have been handed since (its socket closed under it).
        let closed = Int32.max
        _ = s.descriptorsReceived([closed], on: admin.connection)
        #expect(Self.call(s, "set_vring_call", #""device":"vdpa0","vq":1"#).contains(#""errno":"EBADF""#))
        #expect(Self.call(s, "get_vring", #""device":"vdpa0","vq":1"#).contains(#""call":true"#), "the old binding is kept")
        #expect(Self.isOpen(good))
    }

    @Test("del_device force closes the eventfds of the session it ends; a reset closes the call eventfds only")
    func deleteAndReset() {
        let s = FastPathTests.service(fast: false)
        let (kick, call, config) = (Self.newEventFD(), Self.newEventFD(), Self.newEventFD())
        _ = s.descriptorsReceived([kick, call, config], on: admin.connection)
        _ = Self.call(s, "set_vring_kick", #""device":"vdpa0","vq":0"#)
        _ = Self.call(s, "set_vring_call", #""device":"vdpa0","vq":0"#)
        _ = Self.call(s, "set_config_call", #""device":"vdpa0""#)
        _ = Self.call(s, "reset", #""device":"vdpa0""#)
        #expect(Self.isOpen(kick) && !Self.isOpen(call) && Self.isOpen(config), "R69")
        #expect(Self.call(s, "del_device", #""name":"vdpa0","force":true"#).contains(#""result":{}"#))
        #expect(!Self.isOpen(kick) && !Self.isOpen(config), "R70 at del_device")
    }

    @Test("set_store_agent takes a socket and refuses an eventfd; the agent is closed with the session")
    func storeAgent() {
        let s = FastPathTests.service(fast: false)
        let wrong = Self.newEventFD()
        _ = s.descriptorsReceived([wrong], on: admin.connection)
        #expect(Self.call(s, "set_store_agent", #""device":"vdpa0""#).contains(#""errno":"EINVAL""#))
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &pair) == 0)
        _ = s.descriptorsReceived([pair[1]], on: admin.connection)
        #expect(Self.call(s, "set_store_agent", #""device":"vdpa0""#).contains(#""result":{}"#))
        #expect(Self.call(s, "get_device", #""device":"vdpa0""#).contains(#""store_agent":true"#))
        #expect(Self.call(s, "close", #""device":"vdpa0""#).contains(#""result":{}"#))
        var byte: UInt8 = 0
        #expect(recv(pair[0], &byte, 1, 0) == 0, "vdpad's end was closed when the session ended: the agent sees EOF")
        close(pair[0])
    }

    @Test("a request that needs a descriptor and finds none is EBADF and says how to pass one")
    func noneQueued() {
        let s = FastPathTests.service(fast: false)
        let reply = Self.call(s, "set_vring_kick", #""device":"vdpa0","vq":0"#)
        #expect(reply.contains(#""errno":"EBADF""#) && reply.contains("SCM_RIGHTS"))
    }

    @Test("pairing: the n-th request that takes a descriptor takes the n-th passed, even when an earlier one fails")
    func pairing() {
        let s = FastPathTests.service(fast: false)
        let fds = (0..<3).map { _ in Self.newEventFD() }
        _ = s.descriptorsReceived(fds, on: admin.connection)
        // Each check right after its request: once a kick is bound, the data-path worker dups it, and a dup
        // may reuse a number closed before.
        #expect(Self.call(s, "set_vring_call", #""device":"vdpa0","vq":9"#).contains(#""errno":"ENOBUFS""#))  // takes fds[0]
        #expect(!Self.isOpen(fds[0]))
        #expect(Self.call(s, "set_vring_call", #""device":"nosuch","vq":0"#).contains(#""errno":"ENODEV""#))  // takes fds[1]
        #expect(!Self.isOpen(fds[1]))
        #expect(Self.call(s, "set_vring_call", #""device":"vdpa0","vq":0"#).contains(#""result":{}"#))  // takes fds[2]
        #expect(Self.isOpen(fds[2]))
        #expect(s.registry.takeDescriptor(for: admin) == nil)
    }

    @Test("a connection holds at most 64 passed descriptors; those never taken are closed with it")
    func limitAndClose() {
        let s = FastPathTests.service(fast: false)
        let fds = (0..<64).map { _ in Self.newEventFD() }
        #expect(s.descriptorsReceived(fds, on: 7))
        let extra = Self.newEventFD()
        #expect(!s.descriptorsReceived([extra], on: 7))
        #expect(!Self.isOpen(extra), "refused descriptors are closed at once")
        s.connectionClosed(7)
        #expect(fds.allSatisfy { !Self.isOpen($0) })
        #expect(
            s.descriptorLimitError() == Array(
                #"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: more than 64 descriptors passed (SCM_RIGHTS) and not taken by a request"}}"#
                    .utf8) + [0x0A])
    }

    @Test("set_link signals the config eventfd; R65 / edge #71: a failing set_config_call leaves no config eventfd")
    func configEventFD() {
        let s = FastPathTests.service(fast: false)
        let fd = Self.newEventFD()
        _ = s.descriptorsReceived([fd], on: admin.connection)
        #expect(Self.call(s, "set_config_call", #""device":"vdpa0""#).contains(#""result":{}"#))
        #expect(Self.call(s, "set_link", #""device":"vdpa0","link":"down""#).contains(#""result":{}"#))
        #expect(Self.counter(fd) == 1)
        #expect(Self.call(s, "get_config", #""device":"vdpa0""#).contains(#""status":0,"link":"down""#))
        #expect(Self.call(s, "set_link", #""device":"vdpa0","link":"sideways""#).contains(#""errno":"EINVAL""#))
        #expect(Self.call(s, "set_link", #""device":"vdpa0","link":"up""#, as: user).contains(#""errno":"EPERM""#))
        var p: [Int32] = [0, 0]
        _ = pipe(&p)
        _ = s.descriptorsReceived([p[0]], on: admin.connection)
        #expect(Self.call(s, "set_config_call", #""device":"vdpa0""#).contains(#""errno":"EINVAL""#))
        #expect(!Self.isOpen(fd), "#71: the old config eventfd was dropped")
        #expect(Self.call(s, "get_device", #""device":"vdpa0""#).contains(#""config_call":false"#))
        close(p[1])
    }

    @Test("R41 as vdpad maps it: device reads are the owner's or an admin's; changes only the owner's")
    func whoMayRead() {
        let s = FastPathTests.service(fast: false)
        // vdpa0 is owned by admin's connection 1; another admin connection may read, not change.
        let otherAdmin = Caller(connection: 9, pid: 9, uid: 0, gid: 0, isAdmin: true)
        for (method, params) in [
            ("get_vring", #""vq":0"#), ("get_features", ""), ("get_status", ""), ("read_config", #""offset":0,"length":6"#),
            ("get_config", ""), ("get_device", ""), ("dump_iotlb", #""asid":0"#)
        ] {
            let reply = Self.call(s, method, #""device":"vdpa0""# + (params.isEmpty ? "" : "," + params), as: otherAdmin)
            #expect(reply.contains(#""result""#), "\(method): \(reply)")
            let stranger = Self.call(s, method, #""device":"vdpa0""# + (params.isEmpty ? "" : "," + params), as: user)
            #expect(stranger.contains(#""result""#) == ["get_config", "get_device"].contains(method), "\(method) by a user: \(stranger)")
        }
        for (method, params) in [("write_config", #""offset":0,"data":"02""#), ("set_status", #""status":1"#), ("set_vring", #""vq":0,"num":8"#)] {
            #expect(Self.call(s, method, #""device":"vdpa0",\#(params)"#, as: otherAdmin).contains(#""errno":"EPERM""#), "\(method)")
        }
    }

    @Test("read_config / write_config on the wire: hex both ways; -32602 for bad hex; EINVAL for ranges (R47)")
    func configOverRPC() {
        let s = FastPathTests.service(fast: false)
        #expect(Self.call(s, "write_config", #""device":"vdpa0","offset":0,"data":"02AABBCCDDEE""#).contains(#""result":{}"#))
        #expect(Self.call(s, "read_config", #""device":"vdpa0","offset":0,"length":8"#).contains(#""data":"02aabbccddee0100""#))
        #expect(Self.call(s, "get_config", #""device":"vdpa0""#).contains(#""mac":"02:aa:bb:cc:dd:ee""#))
        for bad in [#""abc""#, #""zz""#, #""+1""#, "12"] {
            let reply = Self.call(s, "write_config", #""device":"vdpa0","offset":0,"data":\#(bad)"#)
            #expect(reply.contains(#""code":-32602"#) && reply.contains(#""field":"data""#), "\(bad): \(reply)")
        }
        #expect(Self.call(s, "write_config", #""device":"vdpa0","offset":0,"data":"""#).contains(#""errno":"EINVAL""#))
        #expect(Self.call(s, "read_config", #""device":"vdpa0","offset":20,"length":8"#).contains(#""errno":"EINVAL""#))
    }

    @Test("open and get_device report device_id, vq_num_max, config_size; get_features the offer and what was negotiated")
    func identity() {
        let s = FastPathTests.service(fast: false)
        _ = Self.call(s, "add_device", #""name":"b0","mgmtdev":"vdpasim_blk""#)
        let opened = Self.call(s, "open", #""device":"b0""#)
        #expect(opened.contains(#""device_id":2,"vq_num_max":256,"config_size":96"#), "\(opened)")
        #expect(Self.call(s, "get_device", #""device":"vdpa0""#).contains(#""device_id":1,"vq_num_max":256,"config_size":24"#))
        #expect(Self.call(s, "get_features", #""device":"b0""#).contains(#""mask":13019149894,"driver_features":{"names":[],"mask":0}"#))
        #expect(Self.call(s, "get_config", #""device":"b0""#).contains(#""capacity":262144,"size_max":4096,"seg_max":32"#))
    }

    @Test(
        "R62 made visible: get_vring's in_use is the ring the device walks — vdpa_sim's from the last enable, mlx5's as set now; null when not ready"
    )
    func ringInUse() throws {
        let s = FastPathTests.service(fast: false)
        _ = Self.call(s, "add_device", #""name":"m0","mgmtdev":"mlx5_net""#)
        _ = Self.call(s, "open", #""device":"m0""#)
        func inUse(_ device: String) throws -> (desc: JSON?, inUse: JSON?) {
            let r = try JSON.parse(Self.call(s, "get_vring", #""device":"\#(device)","vq":0"#))["result"]
            return (r?["desc"], r?["in_use"])
        }
        let ring: JSON = ["num": .unsigned(64), "desc": .unsigned(0x1000), "driver": .unsigned(0x2000), "device_area": .unsigned(0x3000)]
        for device in ["vdpa0", "m0"] {
            #expect(try inUse(device).inUse == .null, "\(device): not ready, nothing walked")
            _ = Self.call(s, "set_vring", #""device":"\#(device)","vq":0,"num":64,"desc":4096,"driver":8192,"device_area":12288,"ready":true"#)
            #expect(try inUse(device).inUse == ring, "\(device)")
            #expect(Self.call(s, "set_vring", #""device":"\#(device)","vq":0,"desc":16384"#).contains(#""result":{}"#))
        }
        // vdpa_sim goes on with the ring of the enable until the next one; mlx5 takes the new addresses.
        #expect(try inUse("vdpa0").desc == .unsigned(0x4000) && inUse("vdpa0").inUse?["desc"] == .unsigned(0x1000))
        #expect(try inUse("m0").inUse?["desc"] == .unsigned(0x4000))
        _ = Self.call(s, "set_vring", #""device":"vdpa0","vq":0,"ready":false"#)
        _ = Self.call(s, "set_vring", #""device":"vdpa0","vq":0,"ready":true"#)
        #expect(try inUse("vdpa0").inUse?["desc"] == .unsigned(0x4000))
        let device = try JSON.parse(Self.call(s, "get_device", #""device":"vdpa0""#))["result"]
        guard case .array(let vrings)? = device?["vrings"] else {
            Issue.record("get_device without vrings")
            return
        }
        #expect(vrings.first?["in_use"]?["desc"] == JSON.unsigned(0x4000), "get_device's vrings say it too")
    }
}
