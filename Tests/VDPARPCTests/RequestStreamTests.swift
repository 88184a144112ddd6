// RequestStreamTests.swift — a connection's byte stream, cut anywhere,
// must be answered exactly as the general path answers each whole text:
// the fast parser takes plain texts (batches element by element across
// reads) and must hand everything else, and every limit, to the framer.
import Testing
import VDPAJSON
@testable import VDPARPC
@testable import VDPARegistry
import _VDPATestSupport

@Suite("Request stream")
struct RequestStreamTests {
    typealias Rng = FastPathTests.Rng

    /// A plain batch of `count` maps of fresh pages, big enough to span many reads.
    static func bigBatch(_ count: Int, base: Int) -> String {
        "["
            + (0..<count).map { k in
                #"{"jsonrpc":"2.0","id":\#(base + k),"method":"map","params":{"device":"vdpa0","iova":\#((base + k) * 4096 + (1 << 40)),"size":4096,"addr":7,"perm":"rw"}}"#
            }.joined(separator: ", \n") + "]"
    }

    /// Feeds `input` in pieces of random size, answering after each; returns the output and the end.
    static func feed(_ input: [UInt8], to service: VDPAService, maxTextBytes: Int, rng: inout Rng) -> ([UInt8], RequestStream.End?) {
        var ignored = 0
        return feed(input, to: service, maxTextBytes: maxTextBytes, rng: &rng, fastTexts: &ignored)
    }

    static func feed(
        _ input: [UInt8], to service: VDPAService, maxTextBytes: Int, rng: inout Rng,
        fastTexts: inout Int
    ) -> ([UInt8], RequestStream.End?) {
        var stream = RequestStream(service: service, caller: admin, maxTextBytes: maxTextBytes)
        defer { fastTexts = stream.fastTexts }
        var output: [UInt8] = []
        var offset = 0
        while offset < input.count {
            let n = min(input.count - offset, rng.pick([1, 2, 7, 64, 155, 1000, 5000]))
            stream.append(input[offset..<(offset + n)])
            offset += n
            if let end = stream.answer(into: &output) { return (output, end) }
        }
        #expect(!stream.hasPartialText, "every text was complete")
        return (output, nil)
    }

    @Test("random texts cut at random places: fast and general paths answer byte for byte alike")
    func chunkedDifferential() {
        var rng = Rng(state: 7)
        for round in 0..<40 {
            var texts: [String] = []
            for k in 0..<(20 + rng.next(40)) {
                let id = round * 10_000 + k * 10
                switch rng.next(10) {
                case 0: texts.append(Self.bigBatch(50 + rng.next(300), base: id * 1000))
                case 1, 2:
                    texts.append(
                        "[" + (0..<(1 + rng.next(6))).map { FastPathTests.request(&rng, id: id + $0) }.joined(separator: rng.pick([",", " ,\n"]))
                            + "]")
                case 3: texts.append(#"{"jsonrpc":"2.0","id":\#(id),"method":"ping"}"#)
                default: texts.append(FastPathTests.request(&rng, id: id))
                }
                // Texts that are not JSON (the generator makes some: "007") would end the stream early; the
                // last test covers that ending.
                if (try? JSON.parse(texts.last!)) == nil { texts.removeLast() }
            }
            let input = Array(texts.map { $0 + rng.pick(["\n", "", " ", "\r\n\t"]) }.joined().utf8)
            let fast = FastPathTests.service(fast: true), slow = FastPathTests.service(fast: false)
            var cuts = rng
            var fastTexts = 0
            let (a, endA) = Self.feed(input, to: fast, maxTextBytes: 1 << 20, rng: &cuts, fastTexts: &fastTexts)
            let bigBatches = texts.filter { $0.count > 5000 }.count
            #expect(fastTexts >= bigBatches, "the fast parser took the plain batches, however they were cut")
            var otherCuts = Rng(state: UInt64(round) &* 31 &+ 5)
            let (b, endB) = Self.feed(input, to: slow, maxTextBytes: 1 << 20, rng: &otherCuts)
            #expect(endA == nil && endB == nil)
            guard a == b else {
                let k = zip(a, b).prefix { $0 == $1 }.count
                Issue.record(
                    "round \(round): outputs differ at byte \(k): fast …\(String(decoding: a[max(0, k - 80)..<min(a.count, k + 80)], as: UTF8.self))… general …\(String(decoding: b[max(0, k - 80)..<min(b.count, k + 80)], as: UTF8.self))…"
                )
                return
            }
            let dump = Array(#"{"jsonrpc":"2.0","id":9,"method":"dump_iotlb","params":{"device":"vdpa0","asid":0,"limit":65536}}"#.utf8)
            #expect(fast.handle(text: dump, caller: admin).bytes == slow.handle(text: dump, caller: admin).bytes)
        }
    }

    @Test("a text the fast parser declined is not scanned by it again; a plain one cut by a read is resumed by it")
    func declinedOnce() {
        let s = FastPathTests.service(fast: true)
        var stream = RequestStream(service: s, caller: admin, maxTextBytes: 1 << 20)
        stream.append(Array(#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.utf8) + [0x0A])
        var output: [UInt8] = []
        #expect(stream.answer(into: &output) == nil)
        #expect(String(decoding: output, as: UTF8.self) == #"{"jsonrpc":"2.0","id":1,"result":"pong"}"# + "\n")
        #expect(stream.fastScans == 1 && stream.fastTexts == 0)
        // A map cut by the end of a read is plain so far: the fast parser keeps it and resumes it at the
        // next read, as it resumes a batch; the framer never sees it.
        let map = Array(#"{"jsonrpc":"2.0","id":2,"method":"map","params":{"device":"vdpa0","iova":0,"size":4096,"addr":7,"perm":"rw"}}"#.utf8)
        stream.append(map[..<20])
        #expect(stream.answer(into: &output) == nil)
        #expect(stream.hasPartialText && stream.fastTexts == 0)
        stream.append(map[20...])
        #expect(stream.answer(into: &output) == nil)
        #expect(String(decoding: output, as: UTF8.self).hasSuffix(#"{"jsonrpc":"2.0","id":2,"result":{}}"# + "\n"))
        #expect(stream.fastTexts == 1 && !stream.hasPartialText)
        // A text that stops being plain after a cut goes to the general path whole, answered as it would be.
        let bad = Array(#"{"jsonrpc":"2.0","id":3,"method":"map","params":{"device":"vdpa0","iova":0,"size":4096,"addr":7,"perm":"rx"}}"#.utf8)
        stream.append(bad[..<40])
        #expect(stream.answer(into: &output) == nil)
        stream.append(bad[40...] + [0x0A])
        #expect(stream.answer(into: &output) == nil)
        #expect(String(decoding: output, as: UTF8.self).contains(#"{"jsonrpc":"2.0","id":3,"error":{"code":-22,"message":"EINVAL: perm \"rx\""#))
        #expect(stream.fastTexts == 1 && !stream.hasPartialText)
    }

    @Test("a plain batch over max_request_bytes is refused whole (-32600, close), however it arrives")
    func fastBatchOverLimit() {
        let input = Array((#"{"jsonrpc":"2.0","id":1,"method":"ping"}"# + Self.bigBatch(200, base: 0) + "\n").utf8)
        for seed in 0..<20 {
            var rng = Rng(state: UInt64(seed))
            let service = FastPathTests.service(fast: true)
            let (output, end) = Self.feed(input, to: service, maxTextBytes: 4096, rng: &rng)
            #expect(end == .tooLarge)
            let lines = output.split(separator: 10).map { String(decoding: $0, as: UTF8.self) }
            #expect(
                lines.count == 2 && lines[0].contains(#""result":"pong""#) && lines[1].contains("-32600")
                    && lines[1].contains("max_request_bytes 4096"),
                "\(lines)")
            let dump = Array(#"{"jsonrpc":"2.0","id":9,"method":"dump_iotlb","params":{"device":"vdpa0","asid":0}}"#.utf8)
            #expect(
                String(decoding: service.handle(text: dump, caller: admin).bytes ?? [], as: UTF8.self).contains(#""entries":[]"#),
                "no map of the refused batch ran")
        }
    }

    /// Plain single requests in docs/protocol.md's layout: maps and unmaps on vdpa0, some on vdpa1 (not
    /// opened: EPERM) and on a device that does not exist, so runs switch devices and fail midway.
    static func singles(_ count: Int) -> [String] {
        (0..<count).map { k in
            let device = k % 7 == 3 ? "vdpa1" : k % 11 == 5 ? "nope" : "vdpa0"
            return k % 2 == 0
                ? #"{"jsonrpc":"2.0","id":\#(k),"method":"map","params":{"device":"\#(device)","asid":0,"iova":\#(k * 4096),"size":4096,"addr":1,"perm":"rw"}}"#
                : #"{"jsonrpc":"2.0","id":\#(k),"method":"unmap","params":{"device":"\#(device)","asid":0,"iova":\#((k - 1) * 4096),"size":4096}}"#
        }
    }

    @Test("a run of single requests in one read stops at the reply budget between texts and resumes where it stopped")
    func runStopsAtBudget() {
        let input = Array((Self.singles(60).joined(separator: "\n") + "\n").utf8)
        let fast = FastPathTests.service(fast: true), slow = FastPathTests.service(fast: false)
        var stream = RequestStream(service: fast, caller: admin, maxTextBytes: 1 << 20)
        stream.append(input)
        var answered: [UInt8] = []
        var calls = 0
        while true {
            var output: [UInt8] = []
            let progress = stream.answer(into: &output, budget: 300)
            calls += 1
            // The budget is checked between texts: one reply (under 200 bytes here) may pass it.
            #expect(output.count < 300 + 200, "a call stops soon after the budget")
            answered += output
            if progress == .needInput { break }
            #expect(progress == .budgetReached)
            #expect(calls < 100)
            if calls >= 100 { return }
        }
        #expect(calls > 5, "the budget split the read's answers (\(calls) calls)")
        #expect(stream.fastTexts == 60, "the fast path answered every text")
        var general = RequestStream(service: slow, caller: admin, maxTextBytes: 1 << 20)
        general.append(input)
        var expected: [UInt8] = []
        #expect(general.answer(into: &expected) == nil)
        #expect(answered == expected, "the same replies, in order, as the general path's")
    }

    @Test("a single request over max_request_bytes inside a run is refused (-32600, close) after the ones before it are answered")
    func runStopsAtOverLimitText() {
        var texts = Self.singles(6)
        // Plain, but longer than the limit: its id is a 300-byte string.
        let longID = String(repeating: "x", count: 300)
        texts.insert(
            #"{"jsonrpc":"2.0","id":"\#(longID)","method":"map","params":{"device":"vdpa0","asid":0,"iova":0,"size":4096,"addr":1,"perm":"rw"}}"#,
            at: 3)
        let input = Array((texts.joined(separator: "\n") + "\n").utf8)
        var rng = Rng(state: 9)
        let fast = FastPathTests.service(fast: true), slow = FastPathTests.service(fast: false)
        let (a, endA) = Self.feed(input, to: fast, maxTextBytes: 256, rng: &rng)
        var other = Rng(state: 10)
        let (b, endB) = Self.feed(input, to: slow, maxTextBytes: 256, rng: &other)
        #expect(endA == .tooLarge && endB == .tooLarge)
        #expect(a == b)
        let lines = a.split(separator: 10).map { String(decoding: $0, as: UTF8.self) }
        #expect(lines.count == 4 && lines[3].contains("-32600"), "\(lines)")
    }

    @Test("a batch whose last element is not plain goes to the general path whole; garbage after it closes")
    func batchFallsBackLate() {
        let batch =
            "["
            + (0..<100).map { k in
                #"{"jsonrpc":"2.0","id":\#(k),"method":"map","params":{"device":"vdpa0","iova":\#(k * 4096),"size":4096,"addr":0,"perm":"rw"}}"#
            }.joined(separator: ",") + #",{"jsonrpc":"2.0","id":"last","method":"ping"}]"# + "\n@"
        let input = Array(batch.utf8)
        var rng = Rng(state: 3)
        let fast = FastPathTests.service(fast: true), slow = FastPathTests.service(fast: false)
        let (a, endA) = Self.feed(input, to: fast, maxTextBytes: 1 << 20, rng: &rng)
        let (b, endB) = Self.feed(input, to: slow, maxTextBytes: 1 << 20, rng: &rng)
        #expect(a == b && endA == .notJSON && endB == .notJSON)
        #expect(String(decoding: a, as: UTF8.self).contains(#"{"jsonrpc":"2.0","id":"last","result":"pong"}]"#))
    }
}
