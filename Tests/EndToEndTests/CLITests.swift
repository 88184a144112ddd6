// CLITests.swift — the built vdpad-cli against a real daemon: golden human
// and JSON output, exit codes, and a -b file that drives a whole session.
import Foundation
import Testing
import VDPAClient

@Suite("vdpad-cli", .serialized)
struct CLITests {
    let scratch = TempDirectory()

    func cli(_ d: Daemon?, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let r = try runCommand(product("vdpad-cli"), (d.map { ["-s", $0.socketPath] } ?? []) + args, in: scratch.path)
        return (r.status, r.out, r.err)
    }

    @Test("mgmtdev show and dev show print aligned tables; -j -p prints iproute2's shape")
    func golden() throws {
        let d = try Daemon()
        #expect(
            try cli(d, ["mgmtdev", "show"]).out == """
                MGMTDEV       CLASS  NVQS  NGROUPS  NAS  DESC_GROUP  RESET_MAP  PERSIST  MAP_OP
                vdpasim_net   net    3     2        2    no          yes        yes      set_map
                mlx5_net      net    3     3        2    yes         yes        yes      set_map
                vdpasim_blk   block  1     1        1    no          yes        yes      set_map
                platform_net  net    3     1        1    no          no         yes      none

                """)
        _ = try cli(d, ["dev", "add", "name", "m1", "mgmtdev", "mlx5_net", "max_vqp", "2", "mac", "02:00:00:00:00:02"])
        #expect(
            try cli(d, ["dev", "show"]).out == "DEV    MGMTDEV      STATUS  OWNER\nm1     mlx5_net     0x0     -\nvdpa0  vdpasim_net  0x0     -\n")
        // Nothing negotiated: mlx5's CVQ is vq 2 until a driver takes MQ (ctrl_vq_idx), so group 1 is vq 2's.
        #expect(
            try cli(d, ["dev", "vq", "show", "m1"]).out == """
                VQ  GROUP  DESC_GROUP  RING_ASID  BUFFER_ASID  NUM  BASE  READY  KICK  CALL  IN_USE
                0   0      2           0          0            -    0     no     no    no    -
                1   0      2           0          0            -    0     no     no    no    -
                2   1      1           0          0            -    0     no     no    no    -
                3   0      2           0          0            -    0     no     no    no    -
                4   0      2           0          0            -    0     no     no    no    -

                """)
        // A parent without descriptor groups (vq_desc_groups null) once crashed this table.
        #expect(
            try cli(d, ["dev", "vq", "show", "vdpa0"]).out == """
                VQ  GROUP  DESC_GROUP  RING_ASID  BUFFER_ASID  NUM  BASE  READY  KICK  CALL  IN_USE
                0   0      -           0          0            -    0     no     no    no    -
                1   0      -           0          0            -    0     no     no    no    -
                2   1      -           0          0            -    0     no     no    no    -

                """)
        #expect(
            try cli(d, ["dev", "config", "show", "m1"]).out
                == "m1: mac 02:00:00:00:00:02 status 0x1 link up max_vq_pairs 2 mtu 1500 speed 0 duplex 0\n")
        #expect(
            try cli(d, ["-j", "dev", "config", "show", "m1"]).out
                == #"{"config":{"m1":{"mac":"02:00:00:00:00:02","status":1,"link":"up","max_vq_pairs":2,"mtu":1500,"speed":0,"duplex":0}}}"# + "\n")
        #expect(try cli(d, ["dev", "config", "read", "m1", "offset", "0", "length", "8"]).out == "020000000002" + "0100\n")
        _ = try cli(d, ["dev", "set", "m1", "link", "down"])
        #expect(try cli(d, ["dev", "config", "read", "m1", "offset", "6", "length", "2"]).out == "0000\n", "the link-status field follows the link")
        _ = try cli(d, ["dev", "set", "m1", "link", "up"])
        let json = try JSON.parse(try cli(d, ["-j", "-p", "dev", "show"]).out)
        #expect(json["dev"]?["vdpa0"]?["mgmtdev"] == "vdpasim_net" && json["dev"]?["m1"]?["owner"] == .null)
        let detail = try cli(d, ["dev", "show", "vdpa0"]).out
        #expect(
            detail.hasPrefix("vdpa0: mgmtdev vdpasim_net kernel 6.12 nvqs 3 ngroups 2 nas 2 iova [0x0, 0xffffffffffffffff]\n  status 0x0 owner -\n"))
        #expect(detail.contains("  asid 1: session none, device passthrough (0 entries)"))
    }

    @Test("exit codes: 1 with the daemon's message, 2 for usage, 1 naming the socket when nobody answers")
    func exitCodes() throws {
        let d = try Daemon()
        let dup = try cli(d, ["dev", "add", "name", "vdpa0", "mgmtdev", "vdpasim_net"])
        #expect(dup.status == 1 && dup.err == "vdpad-cli: EEXIST: a device named vdpa0 already exists\n")
        #expect(try cli(d, ["dev", "frob"]).status == 2)
        #expect(try cli(d, ["dev", "map", "vdpa0", "iova", "zz", "size", "1", "addr", "0", "perm", "rw"]).status == 2)
        #expect(try cli(d, []).status == 2)
        let absent = try cli(nil, ["-s", scratch.path + "/none.sock", "daemon", "status"])
        #expect(absent.status == 1 && absent.err.contains("no vdpad answers on \(scratch.path)/none.sock"))
        #expect(try cli(d, ["call", "ping"]) == (0, "\"pong\"\n", ""))
        #expect(try cli(d, ["dev", "help"]).out.contains("usage: vdpad-cli dev reset_map NAME asid A"))
        #expect(
            try cli(d, ["dev", "map", "--help"]).out == """
                usage: vdpad-cli dev map NAME [asid A] iova X size X addr X perm ro|wo|rw
                  add an IOTLB mapping
                  example: dev map vdpa0 asid 1 iova 0x100000 size 0x10000 addr 0x7f0000000000 perm rw

                """)
        let help = try cli(d, ["--help"])
        #expect(help.status == 0 && help.out.contains("Examples:"))
        // The command list fits an 80-column terminal with its indents (ArgumentParser would wrap a longer line back
        // to the left margin), and every usage is in it.
        let list = help.out.split(separator: "\n").drop { $0 != "Commands:" }.prefix { $0 != "Examples:" }
        #expect(list.count > 40 && list.allSatisfy { $0.count <= 79 && ($0.isEmpty || $0.hasPrefix("  ") || $0 == "Commands:") })
        #expect(list.contains("  dev add name NAME mgmtdev MGMTDEV [mac MAC] [mtu N] [max_vqp N] [legacy]"))
        #expect(list.contains("        create a device (admin)"))
    }

    @Test("-b drives a whole session over one connection, stops at the first error with its line, -force goes on")
    func batchSession() throws {
        let d = try Daemon()
        let script = scratch.path + "/session.txt"
        try """
        # a VMM-like session
        dev open vdpa0
        dev backend set vdpa0 IOTLB_MSG_V2 IOTLB_BATCH IOTLB_ASID IOTLB_PERSIST
        dev batch begin vdpa0
        dev map vdpa0 iova 0x100000 size 0x10000 addr 0x7f0000000000 perm rw
        dev batch end vdpa0
        dev reset vdpa0
        dev translate vdpa0 access read asid 0 iova 0x100ff0 size 0x20
        dev group_asid vdpa0 group 1 asid 1
        dev iotlb show vdpa0 asid 0 layer device
        dev reset_map vdpa0 asid 0
        dev map vdpa0 iova 0 size 0 addr 0 perm rw
        dev close vdpa0
        """.write(toFile: script, atomically: true, encoding: .utf8)
        let r = try cli(d, ["-b", script])
        #expect(r.status == 1)
        #expect(r.err == "vdpad-cli: line 12: EINVAL: map of size 0 at 0x0 (R2)\n")
        #expect(
            r.out == """
                IOVA      SIZE  ADDR
                0x100ff0  0x20  0x7f0000000ff0
                asid 0 device_mapping table
                IOVA      SIZE     ADDR            PERM
                0x100000  0x10000  0x7f0000000000  rw
                removed 1, device mapping passthrough

                """)
        // The batch connection is gone, so the device was released (§6).
        #expect(try d.client().call("get_device", ["device": "vdpa0"])["owner"] == .null)
        let forced = try cli(d, ["-b", script, "-force"])
        #expect(forced.status == 1 && forced.out.hasSuffix("removed 1, device mapping passthrough\n"))
    }

    @Test("dev vq show's IN_USE: the ring the device walks, and what was set since its enable (R62)")
    func ringInUse() throws {
        let d = try Daemon()
        let script = scratch.path + "/rings.txt"
        try """
        dev open vdpa0
        dev vring set vdpa0 vq 0 num 64 desc 0x10000 driver 0x11000 device 0x12000 ready on
        dev vq show vdpa0
        dev vring set vdpa0 vq 0 num 128 desc 0x20000
        dev vq show vdpa0
        dev vring set vdpa0 vq 0 ready off
        dev vring set vdpa0 vq 0 ready on
        dev vq show vdpa0
        """.write(toFile: script, atomically: true, encoding: .utf8)
        let r = try cli(d, ["-b", script])
        #expect(r.status == 0, "\(r.err)")
        let vq0 = r.out.split(separator: "\n").filter { $0.hasPrefix("0 ") }.map { String($0.split(separator: "  ").last ?? "") }
        #expect(vq0 == ["as set", "num 64,desc 0x10000", "as set"], "vdpa_sim walks the ring of the last enable until the next")
    }

    @Test("monitor prints events as they come")
    func monitor() throws {
        let d = try Daemon()
        let m = try Child(product("vdpad-cli"), ["-s", d.socketPath, "monitor"], outputIn: scratch.path)
        defer { kill(m.pid, SIGTERM); m.wait(seconds: 5) }
        let probe = try d.client()
        #expect(try eventually { try probe.call("get_stats")["connections"] == 2 }, "the monitor is connected")
        usleep(200_000)  // and has subscribed (its first call after connecting)
        try d.client().call("add_device", ["name": "b1", "mgmtdev": "vdpasim_blk"])
        var out = ""
        for _ in 0..<200 where !out.contains("device_added") {
            usleep(20_000)
            out = m.standardOutput
        }
        #expect(out == "[device_added] b1 mgmtdev vdpasim_blk\n")
    }
}
