// Grammar.swift — the iproute2-style words (`dev add name vdpa1 mgmtdev
// vdpasim_net`) turned into one JSON-RPC call and a way to show its result.
// The same parser serves the command line and every line of a `-b` file.
import VDPAClient

/// A usage error: exit status 2.
struct UsageError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// One parsed command: what to call and how to show the result.
struct CLICommand {
    var method: String
    var params: JSON?
    var view: View

    enum View {
        case mgmtdevs, devices, device, config, configBytes, stats, iotlb, vqs, backend, features, status, translate, daemonStatus,
            version, methods, raw, removed, resetMap, silent, vstats, metrics, upgrade
    }
}

/// The words after the object and command, consumed left to right.
struct Words {
    var items: [String]
    let usage: String

    mutating func next(_ what: String) throws(UsageError) -> String {
        guard !items.isEmpty else { throw UsageError("missing \(what)\nusage: \(usage)") }
        return items.removeFirst()
    }

    /// `key VALUE` pairs in any order, plus bare flags.
    mutating func keywords(values: Set<String>, flags: Set<String> = []) throws(UsageError) -> [String: String] {
        var found: [String: String] = [:]
        while !items.isEmpty {
            let key = items.removeFirst()
            if flags.contains(key) {
                found[key] = "true"
            } else if values.contains(key) {
                guard !items.isEmpty else { throw UsageError("\(key) needs a value\nusage: \(usage)") }
                found[key] = items.removeFirst()
            } else {
                throw UsageError("unknown argument \"\(key)\"\nusage: \(usage)")
            }
        }
        return found
    }

    func done() throws(UsageError) {
        if let extra = items.first { throw UsageError("unexpected argument \"\(extra)\"\nusage: \(usage)") }
    }
}

/// A number word: decimal or 0x-hex, sent exactly.
func number(_ word: String, _ what: String) throws(UsageError) -> JSON {
    if let n = UInt64(word) { return .unsigned(n) }
    let lower = word.lowercased()
    if lower.hasPrefix("0x"), UInt64(lower.dropFirst(2), radix: 16) != nil { return .string(lower) }
    throw UsageError("\(what) \"\(word)\" is not a number (decimal or 0x hex)")
}

enum Grammar {
    /// Usage lines, also the help text.
    static let commands: [(String, String)] = [
        ("mgmtdev show", "list the device kinds vdpad can create"),
        ("dev show [NAME]", "list devices, or show one in detail"),
        (
            "dev add name NAME mgmtdev MGMTDEV [mac MAC] [mtu N] [max_vqp N] [legacy] [kernel 6.7|6.8|6.12] [iova_first X] [iova_last X] [users UID,..] [groups GID,..] [backing FILE]",
            "create a device (admin)"
        ),
        ("dev del NAME [force]", "delete a device; force closes its session first (admin)"),
        ("dev config show NAME", "the config space decoded: net mac, link, mtu, queue pairs; block capacity, sizes"),
        ("dev config read NAME offset X length N", "config space bytes, in hex"),
        ("dev config write NAME offset X data HEX", "write config space bytes (the owner, in a -b session)"),
        ("dev set NAME link up|down", "set a net device's link; the config eventfd is signalled (admin)"),
        ("dev stats show NAME", "what the device's flows cost: maps, commits, copies, resets"),
        ("dev vstats show NAME qidx N", "one queue's counters, as iproute2's vdpa dev vstats (admin; net devices after FEATURES_OK)"),
        ("dev vq show NAME", "per virtqueue: group, descriptor group, their ASIDs, size, base, ready, kick, call, and the ring the device walks"),
        ("dev iotlb show NAME asid A [layer session|device] [first X] [last X] [limit N]", "dump one ASID's mappings"),
        ("dev open NAME", "own the device for this connection (a -b session)"),
        ("dev close NAME", "release it: reset, reset_map every ASID"),
        ("dev backend show NAME", "offered and acked backend features"),
        ("dev backend set NAME FEATURE... | MASK", "ack backend features (replaces the acked set)"),
        ("dev features show NAME", "offered and negotiated virtio features"),
        ("dev features set NAME FEATURE... | MASK", "set virtio driver features"),
        ("dev status show NAME", "the virtio status byte"),
        ("dev status set NAME VALUE", "set the status byte; 0 resets"),
        ("dev reset NAME", "device reset (clean map unless IOTLB_PERSIST is acked)"),
        ("dev map NAME [asid A] iova X size X addr X perm ro|wo|rw", "add an IOTLB mapping"),
        ("dev unmap NAME [asid A] iova X size X", "remove every mapping the range touches"),
        ("dev batch begin|end NAME [asid A]", "open or commit an IOTLB batch"),
        ("dev reset_map NAME asid A", "drop an ASID's table and restore its default mapping"),
        ("dev group_asid NAME group G asid A", "bind a virtqueue group to an ASID"),
        ("dev vring set NAME vq Q [num N] [desc X] [driver X] [device X] [base N] [ready on|off]", "ring size, addresses, last avail index"),
        (
            "dev translate NAME access read|write (asid A | vq Q area desc|driver|device|buffer) [iova X] [size X]",
            "a device DMA through the device mapping"
        ),
        ("dev suspend NAME / dev resume NAME", "suspend or resume the device"),
        ("daemon status|version|methods", "the daemon itself"),
        ("daemon upgrade", "re-execute the daemon's binary in place; sessions and connections go on (admin; docs/restart.md)"),
        ("metrics", "every device's and queue's counters in the Prometheus text format (docs/operations.md)"),
        ("monitor [EVENT...]", "print events until interrupted"),
        (
            "replay FILE (--device NAME | --mgmtdev KIND [--legacy]) [--trace-device NAME]",
            "play a recorded VMM trace (vdpad-run --record) again: differences and cost"
        ),
        (
            "replay SOURCE_FILE --destination FILE [--guest-gib N,...]",
            "a migration recorded on both sides: the device's window, priced at 39 and 128 GiB (or N) with and without IOTLB_PERSIST, DESC_ASID"
        ),
        ("call METHOD [JSON]", "any method, raw JSON params, JSON result")
    ]

    /// One example per command, shown by `vdpad-cli OBJECT COMMAND --help`.
    static let examples: [String: String] = [
        "mgmtdev show": "vdpad-cli mgmtdev show",
        "dev show": "vdpad-cli dev show vdpa0",
        "dev add": "vdpad-cli dev add name vdpa1 mgmtdev mlx5_net max_vqp 4 users 1000",
        "dev del": "vdpad-cli dev del vdpa1 force",
        "dev config": "vdpad-cli dev config read vdpa0 offset 0 length 6",
        "dev set": "vdpad-cli dev set vdpa0 link down",
        "dev stats": "vdpad-cli dev stats show vdpa0",
        "dev vq": "vdpad-cli dev vq show vdpa1",
        "dev vstats": "vdpad-cli -j dev vstats show vdpa0 qidx 2",
        "metrics": "vdpad-cli metrics > vdpad.prom",
        "dev iotlb": "vdpad-cli dev iotlb show vdpa0 asid 0 layer device limit 100",
        "dev open": "vdpad-cli -b session.txt   (dev open only lasts as long as its connection)",
        "dev close": "dev close vdpa0   (in a -b file)",
        "dev backend": "dev backend set vdpa0 IOTLB_MSG_V2 IOTLB_BATCH IOTLB_ASID IOTLB_PERSIST",
        "dev features": "dev features set vdpa0 VERSION_1 ACCESS_PLATFORM MAC",
        "dev status": "dev status set vdpa0 15",
        "dev reset": "dev reset vdpa0",
        "dev map": "dev map vdpa0 asid 1 iova 0x100000 size 0x10000 addr 0x7f0000000000 perm rw",
        "dev unmap": "dev unmap vdpa0 iova 0x100000 size 0x1000",
        "dev batch": "dev batch begin vdpa0 asid 0",
        "dev reset_map": "dev reset_map vdpa0 asid 1",
        "dev group_asid": "dev group_asid vdpa0 group 1 asid 1",
        "dev vring": "dev vring set vdpa0 vq 0 num 256 desc 0x20000 driver 0x21000 device 0x22000 ready on",
        "dev translate": "dev translate vdpa1 access read vq 0 area desc",
        "dev suspend": "dev suspend vdpa0",
        "dev resume": "dev resume vdpa0",
        "daemon": "vdpad-cli daemon status",
        "monitor": "vdpad-cli monitor device_added device_removed",
        "replay": "vdpad-cli replay qemu.jsonl --mgmtdev mlx5_net",
        "call": #"vdpad-cli call get_device '{"device":"vdpa0"}'"#
    ]

    /// The command list of `--help`: each usage, then what it does, wrapped to fit 80 columns with their indent
    /// kept (ArgumentParser wraps a longer line at the terminal's width, back to the left margin).
    static var commandList: String {
        commands.map { usage, what in
            wrap(usage, first: "  ", rest: "    ") + "\n" + wrap(what, first: "        ", rest: "        ")
        }.joined(separator: "\n")
    }

    /// `text` in lines of at most 79 columns, the first after `first`, the others after `rest`.
    static func wrap(_ text: String, first: String, rest: String) -> String {
        var lines: [String] = []
        var line = first
        for word in text.split(separator: " ") {
            let indent = lines.isEmpty ? first : rest
            if line.count > indent.count && line.count + 1 + word.count > 79 {
                lines.append(line)
                line = rest
            }
            line += (line.count > (lines.isEmpty ? first : rest).count ? " " : "") + word
        }
        lines.append(line)
        return lines.joined(separator: "\n")
    }

    /// Help for the commands that start with `words` (e.g. ["dev", "map"]): usage, what it does, an example.
    static func help(_ words: [String]) -> String {
        var prefix = words.joined(separator: " ")
        var matches = commands.filter { $0.0.hasPrefix(prefix + " ") || $0.0 == prefix }
        while matches.isEmpty, prefix.contains(" ") {
            prefix = String(prefix[..<prefix.lastIndex(of: " ")!])
            matches = commands.filter { $0.0.hasPrefix(prefix + " ") || $0.0 == prefix }
        }
        guard !matches.isEmpty else { return "no such command: \(words.joined(separator: " ")); see vdpad-cli --help" }
        return matches.map { usage, what in
            let key = usage.split(separator: " ").prefix(usage.hasPrefix("dev ") ? 2 : 1).joined(separator: " ")
            let example = examples[key].map { "\n  example: \($0)" } ?? ""
            return "usage: vdpad-cli \(usage)\n  \(what)\(example)"
        }.joined(separator: "\n")
    }

    static func usage(_ prefix: String) -> String {
        commands.map(\.0).filter { $0.hasPrefix(prefix) }.joined(separator: "\n       ")
    }

    /// Parses one command line (without the global options).
    static func parse(_ words: [String]) throws(UsageError) -> CLICommand {
        guard let object = words.first else { throw UsageError("missing object: mgmtdev, dev, daemon, metrics, monitor or call") }
        let rest = Array(words.dropFirst())
        switch object {
        case "mgmtdev":
            guard rest == ["show"] || rest.isEmpty else { throw UsageError("usage: \(usage("mgmtdev"))") }
            return CLICommand(method: "list_mgmtdevs", view: .mgmtdevs)
        case "dev": return try device(rest)
        case "daemon":
            switch rest.first {
            case "status"?, nil: return CLICommand(method: "get_stats", view: .daemonStatus)
            case "version"?: return CLICommand(method: "get_version", view: .version)
            case "upgrade"?: return CLICommand(method: "daemon_upgrade", view: .upgrade)
            case "methods"?: return CLICommand(method: "rpc_get_methods", view: .methods)
            default: throw UsageError("usage: \(usage("daemon"))")
            }
        case "metrics":
            guard rest.isEmpty else { throw UsageError("usage: \(usage("metrics"))") }
            return CLICommand(method: "metrics", view: .metrics)
        case "call":
            guard let method = rest.first, rest.count <= 2 else { throw UsageError("usage: \(usage("call"))") }
            var params: JSON?
            if rest.count == 2 {
                do { params = try JSON.parse(rest[1]) } catch { throw UsageError("params are not JSON: \(error)") }
            }
            return CLICommand(method: method, params: params, view: .raw)
        default:
            throw UsageError("unknown object \"\(object)\": use mgmtdev, dev, daemon, metrics, monitor or call")
        }
    }

    static func device(_ words: [String]) throws(UsageError) -> CLICommand {
        guard let command = words.first else { throw UsageError("usage: \(usage("dev"))") }
        var w = Words(items: Array(words.dropFirst()), usage: usage("dev \(command)").isEmpty ? usage("dev") : usage("dev \(command)"))
        func named(_ method: String, _ view: CLICommand.View) throws(UsageError) -> CLICommand {
            let name = try w.next("NAME")
            try w.done()
            return CLICommand(method: method, params: ["device": .string(name)], view: view)
        }
        /// "show NAME" / "set NAME …" sub-commands.
        func subcommand() throws(UsageError) -> String { try w.next("show or set") }
        func asid(_ kw: [String: String]) throws(UsageError) -> [(String, JSON)] {
            guard let a = kw["asid"] else { return [] }
            return [("asid", try number(a, "asid"))]
        }
        func features() throws(UsageError) -> JSON {
            guard !w.items.isEmpty else { throw UsageError("name at least one feature, or a mask\nusage: \(w.usage)") }
            if w.items.count == 1, let mask = try? number(w.items[0], "mask") { return mask }
            return .array(w.items.map { .string($0) })
        }
        switch command {
        case "show":
            if w.items.isEmpty { return CLICommand(method: "list_devices", view: .devices) }
            return try named("get_device", .device)
        case "add":
            let kw = try w.keywords(
                values: ["name", "mgmtdev", "mac", "mtu", "max_vqp", "iova_first", "iova_last", "users", "groups", "backing", "kernel"],
                flags: ["legacy"])
            guard let name = kw["name"], let mgmtdev = kw["mgmtdev"] else { throw UsageError("name and mgmtdev are required\nusage: \(w.usage)") }
            var p: [(String, JSON)] = [("name", .string(name)), ("mgmtdev", .string(mgmtdev))]
            if let mac = kw["mac"] { p.append(("mac", .string(mac))) }
            if let backing = kw["backing"] { p.append(("backing", .string(backing))) }
            if let kernel = kw["kernel"] { p.append(("kernel", .string(kernel))) }
            for key in ["mtu", "max_vqp", "iova_first", "iova_last"] { if let v = kw[key] { p.append((key, try number(v, key))) } }
            for key in ["users", "groups"] {
                if let v = kw[key] {
                    var ids: [JSON] = []
                    for id in v.split(separator: ",") { ids.append(try number(String(id), key)) }
                    p.append((key, .array(ids)))
                }
            }
            if kw["legacy"] != nil { p.append(("legacy", true)) }
            return CLICommand(method: "add_device", params: .object(p), view: .device)
        case "del":
            let name = try w.next("NAME")
            let kw = try w.keywords(values: [], flags: ["force"])
            return CLICommand(method: "del_device", params: ["name": .string(name), "force": .bool(kw["force"] != nil)], view: .silent)
        case "config" where ["read", "write"].contains(w.items.first ?? ""):
            let sub = try subcommand()
            let name = try w.next("NAME")
            let kw = try w.keywords(values: sub == "read" ? ["offset", "length"] : ["offset", "data"])
            guard let offset = kw["offset"] else { throw UsageError("offset is required\nusage: \(w.usage)") }
            if sub == "read" {
                guard let length = kw["length"] else { throw UsageError("length is required\nusage: \(w.usage)") }
                return CLICommand(
                    method: "read_config",
                    params: [
                        "device": .string(name), "offset": try number(offset, "offset"),
                        "length": try number(length, "length")
                    ], view: .configBytes)
            }
            guard let data = kw["data"] else { throw UsageError("data is required\nusage: \(w.usage)") }
            let bare = data.lowercased().hasPrefix("0x") ? String(data.dropFirst(2)) : data
            return CLICommand(
                method: "write_config",
                params: [
                    "device": .string(name), "offset": try number(offset, "offset"),
                    "data": .string(String(bare.filter { $0 != ":" }))
                ], view: .silent)
        case "set":
            let name = try w.next("NAME")
            let kw = try w.keywords(values: ["link"])
            guard let link = kw["link"] else { throw UsageError("link up|down is required\nusage: \(w.usage)") }
            guard link == "up" || link == "down" else { throw UsageError("link is up or down, got \"\(link)\"") }
            return CLICommand(method: "set_link", params: ["device": .string(name), "link": .string(link)], view: .silent)
        case "config", "stats", "vq":
            guard try subcommand() == "show" else { throw UsageError("usage: \(w.usage)") }
            let view: CLICommand.View = command == "config" ? .config : command == "stats" ? .stats : .vqs
            return try named(command == "config" ? "get_config" : "get_device", view)
        case "vstats":
            guard try subcommand() == "show" else { throw UsageError("usage: \(w.usage)") }
            let name = try w.next("NAME")
            let kw = try w.keywords(values: ["qidx"])
            guard let qidx = kw["qidx"] else { throw UsageError("qidx is required\nusage: \(w.usage)") }
            return CLICommand(method: "get_vstats", params: ["device": .string(name), "qidx": try number(qidx, "qidx")], view: .vstats)
        case "iotlb":
            guard try subcommand() == "show" else { throw UsageError("usage: \(w.usage)") }
            let name = try w.next("NAME")
            let kw = try w.keywords(values: ["asid", "layer", "first", "last", "limit"])
            guard let a = kw["asid"] else { throw UsageError("asid is required\nusage: \(w.usage)") }
            var p: [(String, JSON)] = [("device", .string(name)), ("asid", try number(a, "asid"))]
            if let layer = kw["layer"] { p.append(("layer", .string(layer))) }
            for key in ["first", "last", "limit"] { if let v = kw[key] { p.append((key, try number(v, key))) } }
            return CLICommand(method: "dump_iotlb", params: .object(p), view: .iotlb)
        case "open": return try named("open", .silent)
        case "close": return try named("close", .silent)
        case "reset": return try named("reset", .silent)
        case "suspend": return try named("suspend", .silent)
        case "resume": return try named("resume", .silent)
        case "backend", "features":
            let sub = try subcommand()
            let getter = command == "backend" ? "get_backend_features" : "get_features"
            let view: CLICommand.View = command == "backend" ? .backend : .features
            if sub == "show" { return try named(getter, view) }
            guard sub == "set" else { throw UsageError("usage: \(w.usage)") }
            let name = try w.next("NAME")
            let f = try features()
            return CLICommand(
                method: command == "backend" ? "set_backend_features" : "set_features",
                params: ["device": .string(name), "features": f], view: .silent)
        case "status":
            let sub = try subcommand()
            if sub == "show" { return try named("get_status", .status) }
            guard sub == "set" else { throw UsageError("usage: \(w.usage)") }
            let name = try w.next("NAME")
            let value = try number(try w.next("VALUE"), "status")
            try w.done()
            return CLICommand(method: "set_status", params: ["device": .string(name), "status": value], view: .silent)
        case "map", "unmap":
            let name = try w.next("NAME")
            let required = command == "map" ? ["iova", "size", "addr", "perm"] : ["iova", "size"]
            let kw = try w.keywords(values: Set(required + ["asid"]))
            var p: [(String, JSON)] = [("device", .string(name))] + (try asid(kw))
            for key in required {
                guard let v = kw[key] else { throw UsageError("\(key) is required\nusage: \(w.usage)") }
                p.append((key, key == "perm" ? .string(v) : try number(v, key)))
            }
            return CLICommand(method: command, params: .object(p), view: command == "map" ? .silent : .removed)
        case "batch":
            let sub = try w.next("begin or end")
            guard sub == "begin" || sub == "end" else { throw UsageError("usage: \(w.usage)") }
            let name = try w.next("NAME")
            let kw = try w.keywords(values: ["asid"])
            return CLICommand(method: "batch_\(sub)", params: .object([("device", .string(name))] + (try asid(kw))), view: .silent)
        case "reset_map":
            let name = try w.next("NAME")
            let kw = try w.keywords(values: ["asid"])
            guard kw["asid"] != nil else { throw UsageError("asid is required\nusage: \(w.usage)") }
            return CLICommand(method: "reset_map", params: .object([("device", .string(name))] + (try asid(kw))), view: .resetMap)
        case "group_asid":
            let name = try w.next("NAME")
            let kw = try w.keywords(values: ["group", "asid"])
            guard let g = kw["group"], let a = kw["asid"] else { throw UsageError("group and asid are required\nusage: \(w.usage)") }
            return CLICommand(
                method: "set_group_asid", params: ["device": .string(name), "group": try number(g, "group"), "asid": try number(a, "asid")],
                view: .silent)
        case "vring":
            guard try subcommand() == "set" else { throw UsageError("usage: \(w.usage)") }
            let name = try w.next("NAME")
            let kw = try w.keywords(values: ["vq", "num", "desc", "driver", "device", "base", "ready"])
            guard let vq = kw["vq"] else { throw UsageError("vq is required\nusage: \(w.usage)") }
            var p: [(String, JSON)] = [("device", .string(name)), ("vq", try number(vq, "vq"))]
            for key in ["num", "desc", "driver", "base"] { if let v = kw[key] { p.append((key, try number(v, key))) } }
            if let v = kw["device"] { p.append(("device_area", try number(v, "device"))) }
            if let r = kw["ready"] {
                guard r == "on" || r == "off" else { throw UsageError("ready is on or off") }
                p.append(("ready", .bool(r == "on")))
            }
            return CLICommand(method: "set_vring", params: .object(p), view: .silent)
        case "translate":
            let name = try w.next("NAME")
            let kw = try w.keywords(values: ["access", "asid", "vq", "area", "iova", "size"])
            guard let access = kw["access"] else { throw UsageError("access read|write is required\nusage: \(w.usage)") }
            var p: [(String, JSON)] = [("device", .string(name)), ("access", .string(access))]
            for key in ["asid", "vq", "iova", "size"] { if let v = kw[key] { p.append((key, try number(v, key))) } }
            if let area = kw["area"] { p.append(("area", .string(area))) }
            return CLICommand(method: "translate", params: .object(p), view: .translate)
        default:
            throw UsageError("unknown dev command \"\(command)\"\nusage: \(usage("dev"))")
        }
    }
}
