// ReplayTests.swift — a recorded QEMU 7.2 boot / guest reset / restart trace
// (Tests/Fixtures, recorded by tests/qemu/record_trace.py through
// vdpad-run --record) replayed with vdpad-cli against every mgmtdev, legacy
// and not: every call is played, differences from the recording are named,
// and the flow's cost is reported.
import Foundation
import Testing
import VDPAClient

@Suite("vdpad-cli replay", .serialized)
struct ReplayTests {
    let scratch = TempDirectory()
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/qemu-7.2-boot-reset-restart.jsonl").path

    func replay(_ d: Daemon, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
        try runCommand(product("vdpad-cli"), ["-s", d.socketPath, "replay", Self.fixture] + args, in: scratch.path)
    }

    @Test("against the kind it was recorded on, every answer is as recorded, and the cost is QEMU 7.2's: a full re-map per start")
    func sameKind() throws {
        let d = try Daemon()
        let r = try replay(d, ["--mgmtdev", "vdpasim_net"])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("replayed 101 calls of vdpa0") && r.out.contains("every answer as recorded"))
        // Two starts of six UPDATEs each, two stops of six INVALIDATEs: 7.2 never acks IOTLB_PERSIST.
        #expect(
            r.out.contains(
                "cost: map_calls 12, unmap_calls 12, device_commits 4, entries_copied 12, default_restores 2, resets_clean 2, resets_persist 0"))
        // The cost model prices the flow: two device starts, 256 MiB pinned cold once, then resident.
        #expect(r.out.contains("modelled on an mlx5-like parent: ") && r.out.contains("(2 device starts, 0 suspends, pinning 16.9 ms"), "\(r.out)")
        #expect(
            try d.client().call("list_devices")
                == .array([.object([("name", "vdpa0"), ("mgmtdev", "vdpasim_net"), ("owner", .null), ("status", 0)])]),
            "the temporary device is gone")
    }

    @Test("against every other kind, legacy or not, the whole trace is played and the differences are named")
    func otherKinds() throws {
        let d = try Daemon()
        for (kind, legacy, expected) in [
            ("mlx5_net", false, "get_vring"), ("vdpasim_net", true, "get_backend_features"),
            ("mlx5_net", true, "get_vring"), ("platform_net", false, "get_backend_features"),
            ("platform_net", true, "get_backend_features"), ("vdpasim_blk", false, "ENOBUFS"),
            ("vdpasim_blk", true, "ENOBUFS")
        ] {
            let r = try replay(d, ["--mgmtdev", kind] + (legacy ? ["--legacy"] : []))
            #expect(r.status == 1, "\(kind) legacy \(legacy): \(r.out)\(r.err)")
            #expect(
                r.out.contains("replayed 101 calls of vdpa0") && r.out.contains("answers differ") && r.out.contains(expected),
                "\(kind) legacy \(legacy): \(r.out)")
        }
        // R69 made visible: mlx5 keeps the ring addresses across a reset where vdpa_sim zeroes them.
        let mlx5 = try replay(d, ["--mgmtdev", "mlx5_net"])
        #expect(mlx5.out.contains(#"line 98 get_vring {"vq":0}: recorded {"vq":0,"num":256,"desc":0,"#))
    }

    /// QEMU 10.0's real migration, recorded on both sides by tests/qemu/test_migration.py (anonymised).
    static func migration(_ side: String) -> String {
        URL(fileURLWithPath: fixture).deletingLastPathComponent().appendingPathComponent("qemu-10.0-migration-\(side).jsonl").path
    }

    @Test("QEMU 10.0's migration, source and destination, replays whole on every kind; on its own kind only what the guest did differs")
    func migrationTraces() throws {
        let d = try Daemon()
        for (side, calls) in [("source", 184), ("destination", 73)] {
            for kind in ["vdpasim_net", "mlx5_net", "platform_net", "vdpasim_blk"] {
                let r = try runCommand(
                    product("vdpad-cli"), ["-s", d.socketPath, "replay", Self.migration(side), "--mgmtdev", kind], in: scratch.path)
                #expect(r.out.contains("replayed \(calls) calls of m0"), "\(side) on \(kind): \(r.out)\(r.err)")
                #expect(r.status == 1 && r.out.contains("answers differ"), "\(side) on \(kind): \(r.out)")
            }
            // On vdpasim_net, what it was recorded on: the MAC QEMU read (the recording device's, set by its test)
            // and, at the source, the bases GET_VRING_BASE read after SUSPEND — the frames the guest had sent.
            let same = try runCommand(
                product("vdpad-cli"), ["-s", d.socketPath, "replay", Self.migration(side), "--mgmtdev", "vdpasim_net"], in: scratch.path)
            #expect(same.out.contains(side == "source" ? "3 answers differ" : "1 answers differ"), "\(same.out)")
            #expect(same.out.contains("read_config"))
            if side == "source" { #expect(same.out.contains(#"get_vring {"vq":0}"#) && same.out.contains(#""base":0"#)) }
        }
    }

    @Test("replay SOURCE --destination DEST: the device's window from the records, priced at 39 and 128 GiB and as asked")
    func migrationPricing() throws {
        let (source, destination) = (Self.migration("source"), Self.migration("destination"))
        let r = try runCommand(product("vdpad-cli"), ["replay", source, "--destination", destination], in: scratch.path)
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("recorded migration: the device's window ") && r.out.contains("guest memory 256.3 MiB as recorded"))
        #expect(r.out.contains("  39.0 GiB: downtime 47") && r.out.contains("  128.0 GiB: downtime 145"), "\(r.out)")
        #expect(r.out.contains("with IOTLB_PERSIST") && r.out.contains("with DESC_ASID"))
        let one = try runCommand(product("vdpad-cli"), ["replay", source, "--destination", destination, "--guest-gib", "4"], in: scratch.path)
        #expect(one.out.contains("  4.0 GiB: downtime") && !one.out.contains("39.0 GiB"), "\(one.out)")
        for bad in [["--guest-gib", "0"], ["--guest-gib", "x"], ["--mgmtdev", "vdpasim_net"]] {
            let e = try runCommand(product("vdpad-cli"), ["replay", source, "--destination", destination] + bad, in: scratch.path)
            #expect(e.status == 2, "\(bad): \(e.out)\(e.err)")
        }
        let swapped = try runCommand(product("vdpad-cli"), ["replay", destination, "--destination", destination], in: scratch.path)
        #expect(swapped.status == 2 && swapped.err.contains("no SUSPEND"), "\(swapped.err)")
    }

    @Test("on an existing device, and the usage errors")
    func existingDeviceAndUsage() throws {
        let d = try Daemon()
        #expect(try replay(d, ["--device", "vdpa0"]).status == 0)
        #expect(try replay(d, []).status == 2)
        #expect(try replay(d, ["--device", "vdpa0", "--mgmtdev", "mlx5_net"]).status == 2)
        #expect(try replay(d, ["--device", "vdpa0", "--legacy"]).status == 2)
        let missing = try runCommand(
            product("vdpad-cli"), ["-s", d.socketPath, "replay", "/nonexistent.jsonl", "--device", "vdpa0"], in: scratch.path)
        #expect(missing.status == 2 && missing.err.contains("cannot read /nonexistent.jsonl"))
    }
}
