// ProtocolDocumentTests.swift — docs/protocol.md is the contract: every
// method the daemon serves is in its §5 tables, and every method there is
// served.  A method added to one and not the other fails here.
import Foundation
import Testing
import VDPACore
import VDPAJSON
@testable import VDPARPC
@testable import VDPARegistry
import _VDPATestSupport

@Suite("Protocol document")
struct ProtocolDocumentTests {
    static var document: String {
        get throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            return try String(contentsOf: root.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
        }
    }

    /// The method names in the first column of the method tables in §5 (`a` / `b` rows name two).
    static func documentedMethods(_ text: String) -> Set<String> {
        guard let start = text.range(of: "\n## 5. Methods"), let end = text.range(of: "\n## 6.", range: start.upperBound..<text.endIndex) else {
            return []
        }
        var names: Set<String> = []
        var inMethodTable = false  // the tables headed "| method |" (not the mgmtdev table)
        for line in text[start.upperBound..<end.lowerBound].split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("| method ") { inMethodTable = true }
            if !line.hasPrefix("|") { inMethodTable = false }
            guard inMethodTable, line.hasPrefix("| `") else { continue }
            let cell = line.dropFirst(2).prefix { $0 != "|" }
            for part in cell.split(separator: "/") {
                let name = part.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "`"))
                if !name.isEmpty { names.insert(name) }
            }
        }
        return names
    }

    @Test("docs/protocol.md §5 and the method table name the same methods")
    func methodsMatch() throws {
        let documented = Self.documentedMethods(try Self.document)
        let served = Set(VDPAService.methodNames)
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
    }
}

@Suite("Protocol document: answers to the questions an independent model asked")
struct ProtocolAnswerTests {
    /// The rows of §5.2's offer table: mgmtdev → documented mask.
    static func documentedOffers(_ text: String) -> [String: UInt64] {
        var offers: [String: UInt64] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `") && line.hasSuffix("` |") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count == 3, let mask = cells.last, mask.hasPrefix("`0x") else { continue }
            offers[cells[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))] =
                UInt64(mask.dropFirst(3).dropLast(), radix: 16)
        }
        return offers
    }

    @Test("§5.2 writes down every parent's virtio offer, and it is the code's")
    func offersDocumented() throws {
        let offers = Self.documentedOffers(try ProtocolDocumentTests.document)
        #expect(Set(offers.keys) == Set(ManagementDevice.allCases.map(\.name)))
        for m in ManagementDevice.allCases {
            #expect(offers[m.name] == m.offeredFeatures, "\(m.name): documented \(offers[m.name].map { String($0, radix: 16) } ?? "-")")
        }
    }

    /// The top-level keys of a `{…}` list in a table cell, skipping what nested brackets and parentheses hold.
    static func topLevelKeys(_ cell: Substring) -> Set<String> {
        var keys: Set<String> = [], depth = 0, word = ""
        for ch in cell.drop(while: { $0 != "{" }).dropFirst() {
            switch ch {
            case "{", "[", "(": depth += 1
            case "}", "]", ")": depth -= 1
            default: break
            }
            if depth < 0 { break }
            if depth == 0 && (ch == "," || ch == ":") {
                if !word.isEmpty { keys.insert(word) }
                word = ""
            } else if depth == 0, ch.isLetter || ch.isNumber || ch == "_" {
                word.append(ch)
            } else if depth == 0, ch == " ", !word.isEmpty, ch != "," {
                // a note after a key, e.g. "features (negotiated)": the key is the first word
                if !keys.contains(word) { keys.insert(word) }
                word = ""
            }
        }
        if !word.isEmpty { keys.insert(word) }
        return keys
    }

    @Test("§5.2's get_device names exactly the keys get_device returns (store_agent and queues among them)")
    func getDeviceKeys() throws {
        let text = try ProtocolDocumentTests.document
        guard let row = text.split(separator: "\n").first(where: { $0.hasPrefix("| `get_device` |") }) else {
            Issue.record("no get_device row")
            return
        }
        let cells = row.split(separator: "|")
        let documented = Self.topLevelKeys(cells[2])
        let s = FastPathTests.service(fast: false)
        let reply = try JSON.parse(_VDPATestSupport.call(s, #"{"jsonrpc":"2.0","id":1,"method":"get_device","params":{"device":"vdpa0"}}"#))
        guard case .object(let members)? = reply["result"] else {
            Issue.record("no result: \(reply.text)")
            return
        }
        let served = Set(members.map(\.0))
        #expect(served.subtracting(documented).isEmpty, "returned, not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented, not returned: \(documented.subtracting(served).sorted())")
    }
}
