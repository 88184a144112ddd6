// Render.swift — results for humans (aligned tables, hex addresses, feature
// names) and for programs (-j: iproute2's shape, keyed by object and name).
import VDPAClient

extension JSON {
    var u64: UInt64? { if case .unsigned(let u) = self { u } else { nil } }
    var string: String? { if case .string(let s) = self { s } else { nil } }
    var items: [JSON] { if case .array(let a) = self { a } else { [] } }
    var members: [(String, JSON)] { if case .object(let m) = self { m } else { [] } }
    /// Scalars as a human reads them: strings bare, null as "-".
    var plain: String {
        switch self {
        case .string(let s): s
        case .null: "-"
        case .bool(let b): b ? "yes" : "no"
        default: text
        }
    }
}

func hex(_ v: JSON?) -> String { v?.u64.map { "0x" + String($0, radix: 16) } ?? "-" }

/// Columns padded to their widest cell.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { i, cell in i + 1 == row.count ? cell : cell + String(repeating: " ", count: widths[i] - cell.count) }
            .joined(separator: "  ")
    }.joined(separator: "\n")
}

enum Render {
    /// The text to print for a result; nil prints nothing (set commands, as iproute2).
    static func human(_ view: CLICommand.View, _ r: JSON, _ c: CLICommand) -> String? {
        switch view {
        case .silent: return nil
        case .raw: return r.text
        case .mgmtdevs:
            return table(
                ["MGMTDEV", "CLASS", "NVQS", "NGROUPS", "NAS", "DESC_GROUP", "RESET_MAP", "PERSIST", "MAP_OP"],
                r.items.map { m in
                    ["name", "class", "nvqs", "ngroups", "nas", "desc_group", "reset_map", "persist", "map_op"].map { m[$0]?.plain ?? "-" }
                })
        case .devices:
            return table(
                ["DEV", "MGMTDEV", "STATUS", "OWNER"],
                r.items.map { d in
                    [d["name"]?.plain ?? "", d["mgmtdev"]?.plain ?? "", hex(d["status"]), owner(d["owner"])]
                })
        case .device: return device(r)
        case .config:
            // Every field as "name value", in the layout's order (net or block); nested ones flattened.
            func fields(_ j: JSON, _ prefix: String = "") -> [String] {
                j.members.flatMap { k, v -> [String] in
                    if case .object = v { return fields(v, k + ".") }
                    return ["\(prefix)\(k) \(k == "status" ? hex(v) : v.plain)"]
                }
            }
            return "\(c.params?["device"]?.plain ?? ""): " + fields(r).joined(separator: " ")
        case .configBytes: return r["data"]?.plain ?? ""
        case .stats:
            let s = r["stats"] ?? .null
            return "\(r["name"]?.plain ?? ""):\n" + s.members.map { "  \($0.0) \($0.1.plain)" }.joined(separator: "\n")
        case .vqs:
            // vq_desc_groups is null for a parent without descriptor groups: no column of values then.
            let groups = r["vq_groups"]?.items ?? [], binding = r["group_asid"]?.items ?? []
            let desc = r["vq_desc_groups"].flatMap { $0 == .null ? nil : $0.items }
            func asid(_ g: JSON?) -> String { g?.u64.flatMap { Int($0) < binding.count ? binding[Int($0)].plain : nil } ?? "-" }
            let rings = r["vrings"]?.items ?? []
            return table(
                ["VQ", "GROUP", "DESC_GROUP", "RING_ASID", "BUFFER_ASID", "NUM", "BASE", "READY", "KICK", "CALL", "IN_USE"],
                groups.enumerated().map { i, g in
                    let d = desc.map { $0[i] }
                    let ring = i < rings.count ? rings[i] : .null
                    return [
                        "\(i)", g.plain, d?.plain ?? "-", asid(d ?? g), asid(g), ring["num"]?.plain ?? "-", ring["base"]?.plain ?? "-",
                        ring["ready"]?.plain ?? "-", ring["kick"]?.plain ?? "-", ring["call"]?.plain ?? "-", inUse(ring)
                    ]
                })
        case .iotlb:
            var out = "asid \(c.params?["asid"]?.plain ?? "") device_mapping \(r["device_mapping"]?.plain ?? "-")"
            if r["exists"] == false { out += " (no session table)" }
            let entries = r["entries"]?.items ?? []
            if !entries.isEmpty {
                out +=
                    "\n"
                    + table(
                        ["IOVA", "SIZE", "ADDR", "PERM"], entries.map { [hex($0["iova"]), hex($0["size"]), hex($0["addr"]), $0["perm"]?.plain ?? ""] }
                    )
            }
            if let next = r["next"], next != .null { out += "\nmore: first \(hex(next))" }
            return out
        case .backend:
            return "offered \(names(r["offered"]))\nacked   \(names(r["acked"]))"
        case .features: return "offered \(names(r))\ndriver  \(names(r["driver_features"]))"
        case .status: return hex(r["status"])
        case .translate:
            return table(["IOVA", "SIZE", "ADDR"], (r["segments"]?.items ?? []).map { [hex($0["iova"]), hex($0["size"]), hex($0["addr"])] })
        case .removed: return "removed \(r["removed"]?.plain ?? "0")"
        case .resetMap: return "removed \(r["removed"]?.plain ?? "0"), device mapping \(r["device_mapping"]?.plain ?? "-")"
        case .daemonStatus:
            return
                "vdpad: up \(r["uptime_s"]?.plain ?? "?")s, \(r["devices"]?.plain ?? "?") devices, \(r["connections"]?.plain ?? "?") connections, \(r["requests"]?.plain ?? "?") requests, \(r["errors"]?.plain ?? "?") errors"
                + (r["journal"]?["bytes"].map { ", journal \($0.plain) bytes (generation \(r["journal"]?["generation"]?.plain ?? "?"))" }
                    ?? ", sessions end with the process (keep_sessions = false)")
        case .version: return "vdpad \(r["version"]?.plain ?? "?") protocol \(r["protocol"]?.plain ?? "?") pid \(r["pid"]?.plain ?? "?")"
        case .methods: return r.items.map(\.plain).joined(separator: "\n")
        case .upgrade:
            return "vdpad \(r["version"]?.plain ?? "?") (pid \(r["pid"]?.plain ?? "?")) is re-executing its binary; sessions and connections go on"
        case .metrics:
            let text = r["text"]?.plain ?? ""
            return text.hasSuffix("\n") ? String(text.dropLast()) : text
        case .vstats:
            // iproute2's line: the device, then name-value pairs; vdpad adds bytes, drops and errors.
            let counters = ["received_desc", "completed_desc", "bytes", "drops", "errors"].map { "\($0) \(r[$0]?.plain ?? "0")" }
            return "\(r["device"]?.plain ?? ""):\n  queue_type \(r["queue_type"]?.plain ?? "-") queue_index \(r["qidx"]?.plain ?? "-") "
                + counters.joined(separator: " ")
        }
    }

    static func owner(_ o: JSON?) -> String {
        guard let o, o != .null else { return "-" }
        return "pid \(o["pid"]?.plain ?? "?") uid \(o["uid"]?.plain ?? "?")"
    }

    /// The ring the device walks (`in_use`): "-" while the vq is not ready, "as set" when it is the one set, else
    /// what differs — a size or an address set since the vq's enable, which vdpa_sim takes at the next (R62).
    static func inUse(_ ring: JSON) -> String {
        guard let used = ring["in_use"], used != .null else { return "-" }
        let fields = [("num", "num"), ("desc", "desc"), ("driver", "driver"), ("device_area", "device")]
        let differing = fields.compactMap { key, label -> String? in
            guard used[key] != ring[key] else { return nil }
            return "\(label) " + (key == "num" ? used[key]?.plain ?? "-" : hex(used[key]))
        }
        return differing.isEmpty ? "as set" : differing.joined(separator: ",")
    }

    static func names(_ f: JSON?) -> String {
        let list = f?["names"]?.items.map(\.plain) ?? []
        return (list.isEmpty ? "none" : list.joined(separator: " ")) + " (\(hex(f?["mask"])))"
    }

    static func device(_ d: JSON) -> String {
        let name = d["name"]?.plain ?? ""
        var lines = [
            "\(name): mgmtdev \(d["mgmtdev"]?.plain ?? "")\(d["legacy"] == true ? " legacy" : "") kernel \(d["kernel"]?.plain ?? "") nvqs \(d["nvqs"]?.plain ?? "") ngroups \(d["ngroups"]?.plain ?? "") nas \(d["nas"]?.plain ?? "") iova [\(hex(d["iova_first"])), \(hex(d["iova_last"]))]"
        ]
        lines.append("  status \(hex(d["status"])) owner \(owner(d["owner"]))\(d["suspended"] == true ? " suspended" : "")")
        lines.append("  backend offered \(names(d["backend_features"]?["offered"]))")
        lines.append("  backend acked   \(names(d["backend_features"]?["acked"]))")
        lines.append(
            "  device_id \(d["device_id"]?.plain ?? "-") vq_num_max \(d["vq_num_max"]?.plain ?? "-") config_size \(d["config_size"]?.plain ?? "-")\(d["link"].flatMap { $0 == .null ? nil : " link \($0.plain)" } ?? "")"
        )
        lines.append("  features offered \(names(d["offered_features"]))")
        lines.append("  features driver  \(names(d["features"]))")
        let binding = (d["group_asid"]?.items ?? []).enumerated().map { "\($0.offset)->\($0.element.plain)" }.joined(separator: " ")
        lines.append("  group->asid \(binding)")
        for a in d["asids"]?.items ?? [] {
            let session = a["session_entries"].flatMap { $0 == .null ? nil : $0.plain }.map { "\($0) entries" } ?? "none"
            lines.append(
                "  asid \(a["asid"]?.plain ?? ""): session \(session), device \(a["device_mapping"]?.plain ?? "") (\(a["device_entries"]?.plain ?? "0") entries)"
            )
        }
        return lines.joined(separator: "\n")
    }

    /// -j: iproute2's shape, `{"dev": {"vdpa0": {...}}}`, keys stable.
    static func json(_ view: CLICommand.View, _ r: JSON, _ c: CLICommand) -> JSON? {
        func keyed(_ object: String, _ items: [JSON]) -> JSON {
            [
                object: .object(
                    items.map { item in
                        (item["name"]?.plain ?? "", .object(item.members.filter { $0.0 != "name" }))
                    })
            ]
        }
        switch view {
        case .silent: return nil
        case .mgmtdevs: return keyed("mgmtdev", r.items)
        case .devices: return keyed("dev", r.items)
        case .device, .stats, .vqs: return keyed("dev", [r])
        case .config: return ["config": .object([(c.params?["device"]?.plain ?? "", r)])]
        case .vstats:
            let counters = r.members.filter { !["device", "qidx"].contains($0.0) }
            return ["vstats": .object([(r["device"]?.plain ?? "", .object([("queue_index", r["qidx"] ?? .null)] + counters))])]
        default: return r
        }
    }
}
