// DiscoveryTests.swift — rpc.discover (OpenRPC) is generated from
// MethodSpecs; these tests keep the specs equal to what the handlers accept,
// and docs/openrpc.json equal to the document.
import Foundation
import Testing
import VDPAJSON
@testable import VDPARPC
@testable import VDPARegistry
import _VDPATestSupport

@Suite("OpenRPC discovery")
struct DiscoveryTests {
    /// A well-typed value for a param of `schema` (the checks after the types may still refuse it).
    static func sample(_ p: ParamSpec) -> JSON {
        switch p.name {
        case "device", "name": return "vdpa0"
        case "perm": return "rw"
        case "data": return "00"
        case "features", "users", "groups", "events": return .array([])
        default: break
        }
        if case .string(let t)? = p.schema["type"] {
            switch t {
            case "boolean": return false
            case "string":
                if case .array(let values)? = p.schema["enum"], let first = values.first { return first }
                return "x"
            default: break
            }
        }
        return 0
    }

    /// The params every call of `spec` starts from: its required ones, and for translate a complete target.
    static func base(_ spec: MethodSpec, routeVia vq: Bool = false) -> [(String, JSON)] {
        var params = spec.params.filter(\.required).map { ($0.name, sample($0)) }
        if spec.name == "translate" {
            params += vq ? [("vq", 0), ("area", "buffer"), ("iova", 0), ("size", 1)] : [("asid", 0), ("iova", 0), ("size", 1)]
        }
        return params
    }

    static func call(_ method: String, _ params: [(String, JSON)]) -> JSON {
        let s = FastPathTests.service(fast: false)
        let request: JSON = ["jsonrpc": "2.0", "id": 1, "method": .string(method), "params": .object(params)]
        return (try? JSON.parse(_VDPATestSupport.call(s, request.text))) ?? .null
    }

    @Test("the specs name exactly the methods served")
    func sameMethods() {
        #expect(Set(VDPAService.specs.map(\.name)) == Set(VDPAService.methodNames))
        #expect(VDPAService.specs.count == Set(VDPAService.specs.map(\.name)).count, "no method twice")
    }

    @Test("every method accepts its documented params: the required ones alone raise no -32602")
    func requiredParamsSuffice() {
        for spec in VDPAService.specs {
            let reply = Self.call(spec.name, Self.base(spec))
            #expect(reply["error"]?["code"] != .number("-32602"), "\(spec.name): \(reply.text)")
        }
    }

    @Test("every required param, left out, is -32602 naming it")
    func requiredParamsAreRequired() {
        for spec in VDPAService.specs {
            for p in spec.params where p.required {
                let reply = Self.call(spec.name, Self.base(spec).filter { $0.0 != p.name })
                #expect(reply["error"]?["data"]?["field"] == .string(p.name), "\(spec.name) without \(p.name): \(reply.text)")
            }
        }
    }

    @Test("every documented param is read: a value of the wrong type is -32602 naming it")
    func everyParamIsRead() {
        for spec in VDPAService.specs {
            for p in spec.params {
                let viaVQ = spec.name == "translate" && (p.name == "vq" || p.name == "area")
                let wrong: (String, JSON) = (p.name, ["wrong": "type"])
                let params: [(String, JSON)] = Self.base(spec, routeVia: viaVQ).filter { $0.0 != p.name } + [wrong]
                let reply = Self.call(spec.name, params)
                #expect(reply["error"]?["data"]?["field"] == .string(p.name), "\(spec.name).\(p.name): \(reply.text)")
            }
        }
    }

    @Test("several params wrong at once: -32602 names the first in the document's order (docs/protocol.md §3)")
    func firstWrongParamIsNamed() {
        for spec in VDPAService.specs where !spec.params.isEmpty {
            let ordered = VDPAService.documentOrder(spec)
            // Nothing sent: the first required param; a method whose params are all optional has nothing missing.
            if let first = ordered.first(where: \.required) {
                let reply = Self.call(spec.name, [])
                #expect(reply["error"]?["data"]?["field"] == .string(first.name), "\(spec.name) with no params: \(reply.text)")
            }
            // Every param of the wrong type, sent in reverse order: still the first in the document's order.
            let allWrong: [(String, JSON)] = ordered.reversed().map { ($0.name, ["wrong": "type"]) }
            let reply = Self.call(spec.name, allWrong)
            #expect(reply["error"]?["data"]?["field"] == .string(ordered[0].name), "\(spec.name) all wrong: \(reply.text)")
            // The first param right and every later one wrong: the second.
            if ordered.count >= 2 {
                let params = [(ordered[0].name, Self.sample(ordered[0]))] + allWrong.filter { $0.0 != ordered[0].name }
                let reply = Self.call(spec.name, params)
                #expect(reply["error"]?["data"]?["field"] == .string(ordered[1].name), "\(spec.name) second wrong: \(reply.text)")
            }
        }
        // The examples of docs/protocol.md §3.
        #expect(Self.call("map", [("iova", "x"), ("size", true)])["error"]?["data"]?["field"] == "device")
        #expect(Self.call("map", [("device", "vdpa0"), ("iova", "x"), ("size", true)])["error"]?["data"]?["field"] == "iova")
    }

    @Test("docs/openrpc.json is the document rpc.discover answers (regenerate: vdpad --openrpc > docs/openrpc.json)")
    func documentIsCurrent() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let file = try JSON.parse(Array(try Data(contentsOf: root.appendingPathComponent("docs/openrpc.json"))))
        guard case .string(let version)? = file["info"]?["version"] else { Issue.record("no info.version"); return }
        #expect(file == VDPAService.discoveryDocument(version: version))
        let served = Self.call("rpc.discover", [])["result"]
        #expect(served?["methods"] == file["methods"])
    }
}
