// ProtocolDocumentTests.swift — docs/protocol.md is the contract: every
// method the daemon serves is in its §5 tables, and every method there is
// served.  A method added to one and not the other fails here.
import Foundation
import Testing
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
