// FastPathTests.swift — the map/unmap fast path must answer byte for byte
// what the general JSON-tree path answers, for valid and invalid input alike.
import InMemoryLogging
import Logging
import Testing
import VDPACore
import VDPAJSON
@testable import VDPARPC
@testable import VDPARegistry
import _VDPATestSupport

extension SplitMix64 {
    /// A number in [0, n) (modulo: the slight bias does not matter to these tests).
    mutating func next(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func pick<T>(_ items: [T]) -> T { items[next(items.count)] }
}

@Suite("Fast path")
struct FastPathTests {
    typealias Rng = SplitMix64

    static func request(_ r: inout Rng, id: Int) -> String {
        var params: [String] = []
        params.append(#""device":"# + r.pick([#""vdpa0""#, #""vdpa0""#, #""vdpa0""#, #""vdpa1""#, #""nope""#, "7"]))
        if r.next(3) == 0 { params.append(#""asid":"# + r.pick(["0", "1", "5", #""0x1""#, "-1"])) }
        if r.next(12) > 0 {
            params.append(#""iova":"# + r.pick(["0", "4096", "8192", "\(r.next(64) * 4096)", "18446744073709551615", #""0x2000""#, "1.5", "007"]))
        }
        if r.next(12) > 0 { params.append(#""size":"# + r.pick(["4096", "1", "0", "18446744073709551615", "8192"])) }
        if r.next(12) > 0 { params.append(#""addr":"# + r.pick(["0", "140737488355328", "18446744073709551615"])) }
        if r.next(12) > 0 { params.append(#""perm":"# + r.pick([#""rw""#, #""ro""#, #""wo""#, "3", #""rx""#, "0"])) }
        if r.next(20) == 0 { params.append(#""extra":1"#) }
        // A third in the compact layout with docs/protocol.md's member order (the anchors' and vdpad-cli's),
        // the rest shuffled and spaced.
        let compact = r.next(3) == 0
        if !compact {
            for k in stride(from: params.count - 1, to: 0, by: -1) { params.swapAt(k, r.next(k + 1)) }
        }
        let ws = compact ? "" : r.pick(["", " ", "\n  "])
        var members = [
            #""jsonrpc":"# + r.pick([#""2.0""#, #""2.0""#, #""2.0""#, #""1.0""#]),
            // Now and then a close or an open of vdpa0: both change who may map, and both emit events.
            #""method":"# + (r.next(60) == 0 ? r.pick([#""close""#, #""open""#]) : r.pick([#""map""#, #""unmap""#, #""unmap""#, #""ping""#])),
            #""params":{"# + params.joined(separator: "," + ws) + "}"
        ]
        switch r.next(4) {
        case 0: members.append(#""id":"vm-\#(id)""#)
        case 1: break  // a notification
        default: members.append(#""id":\#(id)"#)
        }
        if compact {
            if members.count == 4 { members = [members[0], members[3], members[1], members[2]] }  // jsonrpc, id, method, params
        } else {
            for k in stride(from: members.count - 1, to: 0, by: -1) { members.swapAt(k, r.next(k + 1)) }
        }
        return "{" + ws + members.joined(separator: "," + ws) + ws + "}"
    }

    /// The notifications a service sent one connection, in order.
    final class Notifications: NotificationSink {
        let received = Locked<[JSON]>([])
        func send(_ notification: JSON) { received.withLock { $0.append(notification) } }
        /// The events without their `time`, which two services may stamp a second apart.
        var events: [JSON] {
            received.withLock { $0 }.map { n in
                guard case .object(let members)? = n["params"] else { return n }
                return .object(members.filter { $0.0 != "time" })
            }
        }
    }

    static func service(fast: Bool, log: InMemoryLogHandler = InMemoryLogHandler(), events: Notifications? = nil) -> VDPAService {
        var handler = log
        handler.logLevel = .trace
        let s = VDPAService(
            limits: ServiceLimits(), version: "t", pid: 1,
            logger: .init(label: "t", factory: { _ in handler }), persist: { _ in }, useFastPath: fast)
        if let events {
            s.connectionOpened(admin.connection, sink: events)
            _ = s.handle(text: Array(#"{"jsonrpc":"2.0","id":0,"method":"subscribe","params":{}}"#.utf8), caller: admin)
        }
        // vdpa1 exists but nobody opened it: its maps fail inside a batch's run (EPERM-style ownership errors).
        for text in [
            #"{"jsonrpc":"2.0","id":1,"method":"add_device","params":{"name":"vdpa0","mgmtdev":"vdpasim_net"}}"#,
            #"{"jsonrpc":"2.0","id":1,"method":"add_device","params":{"name":"vdpa1","mgmtdev":"vdpasim_net"}}"#,
            #"{"jsonrpc":"2.0","id":2,"method":"open","params":{"device":"vdpa0"}}"#,
            #"{"jsonrpc":"2.0","id":3,"method":"set_backend_features","params":{"device":"vdpa0","features":["IOTLB_ASID"]}}"#
        ] {
            _ = s.handle(text: Array(text.utf8), caller: admin)
        }
        return s
    }

    @Test("the fast path is on exactly where its little-endian word compares hold")
    func endianGuard() {
        let littleEndian = UInt16(1).littleEndian == 1
        #expect(VDPAService.fastPathAvailable == littleEndian)
        #expect(Self.service(fast: true).useFastPath == littleEndian)
        #expect(!Self.service(fast: false).useFastPath)
    }

    @Test("5,000 random requests and batches get identical bytes, log entries and events from both paths")
    func differential() {
        let (fastLog, slowLog) = (InMemoryLogHandler(), InMemoryLogHandler())
        let (fastEvents, slowEvents) = (Notifications(), Notifications())
        let fast = Self.service(fast: true, log: fastLog, events: fastEvents)
        let slow = Self.service(fast: false, log: slowLog, events: slowEvents)
        var rng = Rng(state: 42)
        var fastAnswered = 0
        for k in 0..<5000 {
            let text: String
            if rng.next(4) == 0 {
                text = "[" + (0..<(1 + rng.next(5))).map { Self.request(&rng, id: k * 10 + $0) }.joined(separator: ",") + "]"
            } else {
                text = Self.request(&rng, id: k)
            }
            let bytes = Array(text.utf8)
            if bytes.first == UInt8(ascii: "{"),
                bytes.withUnsafeBufferPointer({ b in
                    var scanner = FastScanner(bytes: b, i: 0)
                    return scanner.request()?.isComplete == true
                })
            {
                fastAnswered += 1
            }
            let a = fast.handle(text: bytes, caller: admin), b = slow.handle(text: bytes, caller: admin)
            let dump = Array(#"{"jsonrpc":"2.0","id":9,"method":"dump_iotlb","params":{"device":"vdpa0","asid":0,"limit":65536}}"#.utf8)
            let da = fast.handle(text: dump, caller: admin).bytes, db = slow.handle(text: dump, caller: admin).bytes
            guard a.bytes == b.bytes, a.closeConnection == b.closeConnection, da == db else {
                Issue.record(
                    "differs for \(text):\nfast \(a.bytes.map { String(decoding: $0, as: UTF8.self) } ?? "nil")\nslow \(b.bytes.map { String(decoding: $0, as: UTF8.self) } ?? "nil")"
                )
                return
            }
            guard fastLog.entries == slowLog.entries else {
                Issue.record(
                    "the logs differ after \(text):\nfast \(fastLog.entries.last.map { "\($0)" } ?? "-")\nslow \(slowLog.entries.last.map { "\($0)" } ?? "-")"
                )
                return
            }
            guard fastEvents.events == slowEvents.events else {
                Issue.record("the events differ after \(text)")
                return
            }
        }
        #expect(fastAnswered > 200, "the fast path handled a fair share of the single requests (\(fastAnswered))")
        #expect(fastLog.entries.count > 500, "failures were logged, and compared (\(fastLog.entries.count))")
        #expect(fastEvents.events.count > 20, "sessions ended and began, and their events were compared (\(fastEvents.events.count))")
        let dumpText = Array(#"{"jsonrpc":"2.0","id":9,"method":"dump_iotlb","params":{"device":"vdpa0","asid":0,"limit":65536}}"#.utf8)
        #expect(
            fast.handle(text: dumpText, caller: admin).bytes == slow.handle(text: dumpText, caller: admin).bytes,
            "both services hold the same mappings afterwards")
    }
}

@Suite("Fast scanner pieces")
struct FastScannerTests {
    static func scan(_ text: String) -> (UInt64?, Int) {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBufferPointer { p in
            var s = FastScanner(bytes: p, i: 0)
            return (s.unsigned(), s.i)
        }
    }

    @Test("integers of every length 1…20 digits, 2^64−1 and past it, leading zeros, fractions; eight digits at a time agree with one at a time")
    func unsignedIntegers() {
        var value: UInt64 = 0
        for digits in 1...20 {
            value = value * 10 + UInt64(digits % 10)
            #expect(Self.scan("\(value),").0 == value, "\(value)")
            #expect(Self.scan("\(value)").0 == value, "\(value) at the end of the bytes")
        }
        #expect(Self.scan("18446744073709551615}").0 == .max)
        #expect(Self.scan("18446744073709551616}").0 == nil, "2^64 does not fit")
        #expect(Self.scan("99999999999999999999}").0 == nil)
        #expect(Self.scan("123456789012345678901}").0 == nil, "21 digits")
        #expect(Self.scan("0}").0 == 0)
        #expect(Self.scan("007}").0 == nil && Self.scan("01234567890}").0 == nil, "leading zeros are not JSON")
        #expect(Self.scan("12345678.5}").0 == nil && Self.scan("1234567812345678e3}").0 == nil)
        #expect(Self.scan("1234567:12345678").0 == 1_234_567 && Self.scan("1234567:12345678").1 == 7, "a colon ends the digits")
        #expect(Self.scan("12345678/").0 == 12_345_678, "'/' and ':' border the digits in ASCII")
        #expect(Self.scan("-1}").0 == nil && Self.scan("}").0 == nil)
    }

    /// What JSON makes of the digits at the start of `text` as an unsigned 64-bit integer.
    static func reference(_ text: [UInt8]) -> (UInt64?, Int) {
        let digits = text.prefix { $0 >= 48 && $0 <= 57 }
        guard !digits.isEmpty, digits.count == 1 || digits.first != 48 else { return (nil, 0) }
        if digits.count < text.count, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(text[digits.count]) {
            return (nil, 0)
        }
        return (UInt64(String(decoding: digits, as: UTF8.self)), digits.count)
    }

    @Test("integers read two words at a time (16 bytes at hand) agree with JSON, and with the bytes ending anywhere")
    func unsignedAgainstReference() {
        var rng = FastPathTests.Rng(state: 7)
        let ends = Array(",}] .eE:/x\"".utf8)
        for _ in 0..<20_000 {
            var text = (0..<(1 + rng.next(22))).map { _ in UInt8(48 + rng.next(10)) }
            if rng.next(3) == 0 { text[0] = 48 }  // leading zeros
            if rng.next(10) == 0 { text = [] }
            let tail = [rng.pick(ends)] + Array(#""pad":1234567890123}"#.utf8).prefix(rng.next(20))
            let padded = text + tail
            let expected = Self.reference(padded)
            let got = padded.withUnsafeBufferPointer { p -> (UInt64?, Int) in
                var s = FastScanner(bytes: p, i: 0)
                let v = s.unsigned()
                return (v, s.i)
            }
            #expect(got.0 == expected.0, "\(String(decoding: padded, as: UTF8.self))")
            if let v = expected.0 {
                #expect(got.1 == expected.1, "\(v) ends where its digits end")
            }
            if got.0 != expected.0 { return }
        }
    }

    @Test("plain strings read eight bytes at a time stop at the quote and refuse escapes, control and non-ASCII bytes")
    func plainStrings() {
        var rng = FastPathTests.Rng(state: 11)
        let alphabet: [UInt8] = Array("abcXYZ09-_. /".utf8) + [0x22, 0x5C, 0x1F, 0x00, 0x7F, 0x80, 0xC3, 0xFF, 0x20, 0x21, 0x23]
        for _ in 0..<20_000 {
            let body = (0..<rng.next(30)).map { _ in rng.next(4) == 0 ? rng.pick(alphabet) : rng.pick(Array("vdpa0123".utf8)) }
            let text = [0x22] + body + Array(#"","asid":0}"#.utf8).prefix(rng.next(12))
            let expected: Range<Int>? = {
                var k = 1
                while k < text.count {
                    let b = text[k]
                    if b == 0x22 { return 1..<k }
                    if b == 0x5C || b < 0x20 || b >= 0x80 { return nil }
                    k += 1
                }
                return nil
            }()
            let got = text.withUnsafeBufferPointer { p -> Range<Int>? in
                var s = FastScanner(bytes: p, i: 0)
                return s.plainString()
            }
            #expect(got == expected, "\(text)")
            if got != expected { return }
        }
    }

    @Test("member names compare as words exactly as their literals spell them")
    func nameWords() {
        typealias N = FastScanner.Names
        #expect(N.jsonrpc == N.word(#"jsonrpc""#) && N.method == N.word(#"method""#) && N.id == N.word(#"id""#))
        #expect(N.iova == N.word(#"iova""#) && N.params == N.word(#"params""#) && N.perm == N.word(#"perm""#))
        #expect(N.device == N.word(#"device""#) && N.asid == N.word(#"asid""#) && N.addr == N.word(#"addr""#) && N.size == N.word(#"size""#))
        #expect(N.commaIova == N.word(#","iova":"#) && N.commaSize == N.word(#","size":"#) && N.commaAddr == N.word(#","addr":"#))
        #expect(N.commaAsid == N.word(#","asid":"#) && N.commaPerm == N.word(#","perm":"#))
        #expect(UInt64(N.rw) == N.word(#""rw""#) && UInt64(N.ro) == N.word(#""ro""#) && UInt64(N.wo) == N.word(#""wo""#))
        // A name that only starts like a known one is not taken for it, wherever the bytes end.
        for text in [#""idx":1"#, #""iovas":1"#, #""device2":"x""#, #""jsonrpc2":1"#, #""i""#] {
            let bytes = Array(text.utf8)
            let key = bytes.withUnsafeBufferPointer { p -> FastScanner.Key? in
                var s = FastScanner(bytes: p, i: 0)
                return s.key()
            }
            #expect(key == nil, "\(text)")
        }
    }
}

@Suite("Fast scanner layouts")
struct FastLayoutTests {
    static func parse(_ text: String, canonicalFirst: Bool) -> (FastRequest?, Int) {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBufferPointer { p in
            var s = FastScanner(bytes: p, i: 0)
            return (canonicalFirst ? s.request() : s.anyOrderRequest(), s.i)
        }
    }

    @Test("the compact jsonrpc-id-method-params layout reads exactly as member-by-member reading does")
    func canonicalMatchesGeneral() {
        let texts = [
            #"{"jsonrpc":"2.0","id":7,"method":"map","params":{"device":"vdpa0","asid":0,"iova":4096,"size":4096,"addr":140737488355328,"perm":"rw"}}"#,
            #"{"jsonrpc":"2.0","id":"vm-1","method":"unmap","params":{"device":"vdpa0","iova":0,"size":18446744073709551615}}"#,
            #"{"jsonrpc":"2.0","id":0,"method":"map","params":{"perm":"ro","addr":1,"size":2,"iova":3,"device":"d"}}"#,
            #"{"jsonrpc":"2.0","id":12345678901234567890,"method":"unmap","params":{"asid":1,"device":"x","size":1,"iova":2}}"#,
            // docs/protocol.md's member order: read without name lookups, asid optional.
            #"{"jsonrpc":"2.0","id":8,"method":"map","params":{"device":"vdpa0","iova":4096,"size":4096,"addr":1,"perm":"wo"}}"#,
            #"{"jsonrpc":"2.0","id":9,"method":"map","params":{"device":"a-long-device-name","asid":1,"iova":18446744073709551615,"size":1,"addr":0,"perm":"ro"}}"#,
            #"{"jsonrpc":"2.0","id":10,"method":"unmap","params":{"device":"vdpa0","asid":0,"iova":4096,"size":4096}}"#,
            #"{"jsonrpc":"2.0","id":12,"method":"unmap","params":{"device":"vdpa0","asid":0,"iova":4096,"size":4096,"perm":"rw"}}"#,
            // Not the layout (whitespace, order): the general reading takes them, with the same result.
            #"{ "jsonrpc":"2.0","id":7,"method":"map","params":{"device":"v","iova":1,"size":1,"addr":1,"perm":"wo"}}"#,
            #"{"id":7,"jsonrpc":"2.0","method":"unmap","params":{"device":"v","iova":1,"size":1}}"#,
            #"{"jsonrpc":"2.0","method":"unmap","id":7,"params":{"device":"v","iova":1,"size":1}}"#
        ]
        for text in texts {
            let (fast, end) = Self.parse(text, canonicalFirst: true)
            let (general, generalEnd) = Self.parse(text, canonicalFirst: false)
            #expect(fast != nil && fast == general && end == generalEnd && end == text.utf8.count, "\(text)")
        }
        // Cut anywhere, the layout is never taken for complete, and never for "not plain" before its end.
        let text = texts[0]
        for cut in 1..<text.utf8.count {
            let (request, end) = Self.parse(String(text.utf8.prefix(cut))!, canonicalFirst: true)
            #expect(request == nil && end == cut, "cut at \(cut): the scanner must report that it ran out")
        }
        // A different method or a duplicate member is not plain under either reading.
        for text in [
            #"{"jsonrpc":"2.0","id":1,"method":"mapx","params":{"device":"v"}}"#,
            #"{"jsonrpc":"2.0","id":1,"method":"map","params":{"device":"v","iova":1,"iova":2,"size":1,"addr":1,"perm":"rw"}}"#,
            #"{"jsonrpc":"2.0","id":1,"method":"map","params":{"device":"v","iova":1,"size":1,"addr":1,"perm":"rw"},"id":2}"#,
            #"{"jsonrpc":"2.0","id":1,"method":"map","params":{"device":"v","asid":0,"iova":1,"size":1,"addr":1,"perm":"rw","asid":0}}"#
        ] {
            #expect(Self.parse(text, canonicalFirst: true).0 == nil, "\(text)")
        }
    }
}
