// JSONComparison.swift — `vdpad-bench json`: what Foundation offers for
// decoding a `map` request, beside vdpad's own JSON parser, on the same
// texts the RPC benchmark sends.  Foundation is imported here only; the
// daemon does not link it.  (The package mirror holds no other JSON library.)
import Foundation
import VDPAClient
import VDPARPC

enum JSONComparison {
    struct Params: Codable {
        var device: String
        var asid: UInt64?
        var iova: UInt64
        var size: UInt64
        var addr: UInt64?
        var perm: String?
    }

    struct Request: Codable {
        var jsonrpc: String
        var id: UInt64
        var method: String
        var params: Params
    }

    /// A request whose integers need all 64 bits: a parser that goes through Double gets them wrong.
    static let edge = #"{"jsonrpc":"2.0","id":18446744073709551615,"method":"unmap","params":{"device":"d","iova":18446744073709551614,"size":1}}"#

    struct Outcome {
        var name: String
        var nanosPerRequest: Double
        /// Whether 2^64−1 and 2^64−2 came back exactly.
        var exact: Bool
    }

    static func run(requests: Int) throws -> [Outcome] {
        let texts = MapUnmapMix(device: "bench0").requests.map { Array($0.dropLast()) }  // without the newline
        let data = texts.map { Data($0) }
        let edgeData = Data(edge.utf8)
        func time(_ body: (Int) throws -> Void) rethrows -> Double {
            let start = nowNanos()
            for k in 0..<requests { try body(k % texts.count) }
            return Double(nowNanos() - start) / Double(requests)
        }
        var outcomes: [Outcome] = []

        let decoder = JSONDecoder()
        let decoderExact: Bool
        do {
            let r = try decoder.decode(Request.self, from: edgeData)
            decoderExact = r.id == .max && r.params.iova == .max - 1
        } catch {
            print("json impl=foundation_jsondecoder edge_error=\"\(error)\"")
            decoderExact = false
        }
        let decoderTime = try time { k in _ = try decoder.decode(Request.self, from: data[k]) }
        outcomes.append(Outcome(name: "foundation_jsondecoder", nanosPerRequest: decoderTime, exact: decoderExact))

        let serializationExact: Bool = {
            guard let object = try? JSONSerialization.jsonObject(with: edgeData) as? [String: Any],
                let id = object["id"] as? NSNumber, let params = object["params"] as? [String: Any],
                let iova = params["iova"] as? NSNumber
            else { return false }
            return id.uint64Value == .max && iova.uint64Value == .max - 1 && "\(id)" == "18446744073709551615"
        }()
        let serializationTime = try time { k in _ = try JSONSerialization.jsonObject(with: data[k]) }
        outcomes.append(Outcome(name: "foundation_jsonserialization", nanosPerRequest: serializationTime, exact: serializationExact))

        let ownExact = (try? JSON.parse(edge)).map { $0["id"] == .unsigned(.max) && $0["params"]?["iova"] == .unsigned(.max - 1) } ?? false
        let ownTime = try time { k in _ = try JSON.parse(texts[k]) }
        outcomes.append(Outcome(name: "vdpad_json_tree", nanosPerRequest: ownTime, exact: ownExact))
        return outcomes
    }
}
