// DefectTests.swift — issue 11's defects, each with the test that would
// have caught it: texts that can never become JSON (the connection must not
// wait for them), the kernel errno of the IOTLB methods, and the order in
// which every method checks its params (docs/protocol.md §3).
import Testing
import VDPAJSON
@testable import VDPARPC
@testable import VDPARegistry
import _VDPATestSupport

@Suite("Issue 11 defects")
struct DefectTests {
    typealias Rng = FastPathTests.Rng

    /// Feeds `input` in pieces of `chunk` bytes to a fresh stream; returns the output, the end and the partial text.
    static func run(_ input: String, fast: Bool, chunk: Int) -> (String, RequestStream.End?, [UInt8]?) {
        let service = FastPathTests.service(fast: fast)
        var stream = RequestStream(service: service, caller: admin, maxTextBytes: 1 << 16)
        var output: [UInt8] = []
        let bytes = Array(input.utf8)
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + chunk, bytes.count)
            stream.append(bytes[offset..<end])
            offset = end
            if let stop = stream.answer(into: &output) { return (String(decoding: output, as: UTF8.self), stop, stream.partialText) }
        }
        return (String(decoding: output, as: UTF8.self), nil, stream.partialText)
    }

    /// Texts after whose last byte nothing can make them valid JSON, whatever follows.
    static let neverValid = [
        // The JSON-RPC 2.0 spec's own invalid batch, and the issue's second example.
        #"[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"]"#,
        #"[{"jsonrpc":"2.0","method":"ping","id":1},{"jsonrpc":"2.0","method":1]"#,
        // A plain map batch (the fast parser's) broken after its first element.
        #"[{"jsonrpc":"2.0","id":1,"method":"map","params":{"device":"vdpa0","iova":0,"size":4096,"addr":7,"perm":"rw"}},{"a"]"#,
        #"{"a":[1,2}"#, #"[1 2"#, #"{"a" 1"#, #"{1:2"#, #"[1,]"#, #"{"a":1,}"#, #"[01"#, #"[-"# + "\n",
        #"[1.e"#, #"[tru "#, #"["\x"]"#, #"["\u12g4"]"#, #"["\ud800x"]"#, #"["\udc00"]"#, "[\"a\nb\"]",
        "[\"\u{7f}\u{01}\"]", #"[nul]"#, String(repeating: "[", count: 129)
    ]

    @Test("a text that can never become JSON gets one -32700 error object and the close, in any chunking, on both paths")
    func neverValidTextsEnd() {
        for text in Self.neverValid {
            for fast in [true, false] {
                for chunk in [1, 3, 17, 4096] {
                    let (output, end, _) = Self.run(text + "\n" + #"{"jsonrpc":"2.0","method":"ping","id":9}"# + "\n", fast: fast, chunk: chunk)
                    #expect(end == .notJSON, "\(text) fast=\(fast) chunk=\(chunk)")
                    let lines = output.split(separator: "\n")
                    #expect(
                        lines.count == 1 && lines[0].hasPrefix(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"#),
                        "\(text): \(output)")
                }
            }
        }
    }

    @Test("the spec's invalid batch names the byte where it stopped being JSON")
    func specExampleMessage() {
        let (output, _, _) = Self.run(Self.neverValid[0] + "\n", fast: true, chunk: 4096)
        #expect(output == #"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: expected ':' at byte 94"}}"# + "\n")
    }

    @Test("a byte that is invalid only in a control character or bad UTF-8 is refused too")
    func invalidBytes() {
        for bytes: [UInt8] in [[0x5B, 0x22, 0xC0, 0x80, 0x22, 0x5D], [0x5B, 0x22, 0xED, 0xA0, 0x80, 0x22, 0x5D], [0x5B, 0xFF]] {
            var stream = RequestStream(service: FastPathTests.service(fast: true), caller: admin, maxTextBytes: 4096)
            var output: [UInt8] = []
            stream.append(bytes)
            #expect(stream.answer(into: &output) == .notJSON)
        }
    }

    @Test("a valid prefix waits for more, on both paths, and its completion is answered (a newline inside a string or token would not be valid)")
    func validPrefixesWait() {
        for prefix in [
            #"[{"jsonrpc":"2.0","method":"ping","id":1},{"jsonrpc""#, #"{"a":[1,2,{"b":"\u00"#, #"[-1.5e"#,
            #"["\ud800\u"#, #"{"a":tr"#, String(repeating: "[", count: 128)
        ] {
            for fast in [true, false] {
                let (output, end, partial) = Self.run(prefix, fast: fast, chunk: 5)
                #expect(end == nil && output.isEmpty, "\(prefix)")
                #expect(partial != nil, "\(prefix) is held as a partial text")
            }
        }
        let (output, end, partial) = Self.run(
            #"[{"jsonrpc":"2.0","method":"ping","id":1},{"jsonrpc""# + "\n" + #":"2.0","method":"ping","id":2}]"#,
            fast: true, chunk: 7)
        #expect(end == nil && partial == nil)
        #expect(output == #"[{"jsonrpc":"2.0","id":1,"result":"pong"},{"jsonrpc":"2.0","id":2,"result":"pong"}]"# + "\n")
    }

    @Test("random valid texts cut anywhere are never refused by the syntax check")
    func validTextsPass() throws {
        var rng = Rng(state: 11)
        for k in 0..<300 {
            let text = FastPathTests.request(&rng, id: k)
            guard (try? JSON.parse(text)) != nil else { continue }
            let (_, end, partial) = Self.run(text + "\n", fast: false, chunk: 1 + rng.next(20))
            #expect(end == nil && partial == nil, "\(text)")
        }
    }

    // MARK: 2. kernel_errno of the IOTLB methods

    @Test("R3, R5, edge #5: map, unmap and batch_* by a connection that does not own the device carry kernel_errno EFAULT, on both paths")
    func ownershipErrorsSayEFAULT() {
        for fast in [true, false] {
            let s = FastPathTests.service(fast: fast)
            for (method, params) in [
                ("map", #""iova":0,"size":4096,"addr":7,"perm":"rw""#), ("unmap", #""iova":0,"size":4096"#),
                ("batch_begin", #""asid":0"#), ("batch_end", #""asid":0"#)
            ] {
                for device in ["vdpa0", "vdpa1"] {  // owned by another connection; not open at all
                    let reply = call(s, #"{"jsonrpc":"2.0","id":1,"method":"\#(method)","params":{"device":"\#(device)",\#(params)}}"#, as: user)
                    #expect(
                        reply.contains(#""code":-1,"#) && reply.contains(#""data":{"errno":"EPERM","kernel_errno":"EFAULT"}"#),
                        "\(method) \(device): \(reply)")
                }
            }
            // Not an IOTLB write: the kernel's ioctl says EPERM itself.
            let reply = call(s, #"{"jsonrpc":"2.0","id":1,"method":"get_status","params":{"device":"vdpa0"}}"#, as: user)
            #expect(reply.contains(#""data":{"errno":"EPERM"}"#), "\(reply)")
        }
    }

    // MARK: 3. Parameter handling

    static func error(_ s: VDPAService, _ method: String, _ params: String, as caller: Caller = admin) -> String {
        call(s, #"{"jsonrpc":"2.0","id":1,"method":"\#(method)","params":{\#(params)}}"#, as: caller)
    }

    @Test("perm as a hex string or past 255 is EINVAL (§2, §7), on both paths; 0 and 4…255 are stored as given (edge #14)")
    func permHexIsEINVAL() {
        for fast in [true, false] {
            let s = FastPathTests.service(fast: fast)
            for perm in [#""0x3""#, #""0X1""#, #""RW""#, "256"] {
                let reply = Self.error(s, "map", #""device":"vdpa0","iova":0,"size":4096,"addr":7,"perm":\#(perm)"#)
                #expect(reply.contains(#""code":-22"#), "\(perm): \(reply)")
            }
            #expect(Self.error(s, "dump_iotlb", #""device":"vdpa0","asid":0"#).contains(#""entries":[]"#), "nothing was mapped")
            for (k, perm) in ["0", "7"].enumerated() {
                let reply = Self.error(s, "map", #""device":"vdpa0","iova":\#(k * 4096),"size":4096,"addr":7,"perm":\#(perm)"#)
                #expect(reply.contains(#""result":{}"#), "\(perm): \(reply)")
            }
            let dump = Self.error(s, "dump_iotlb", #""device":"vdpa0","asid":0"#)
            #expect(dump.contains(#""perm":0}"#) && dump.contains(#""perm":7}"#), "stored as given, shown as numbers: \(dump)")
        }
    }

    @Test("hex strings: leading zeros are fine within 0…2^64−1; more significant digits, signs and junk are -32602")
    func hexStrings() {
        let s = FastPathTests.service(fast: false)
        #expect(
            Self.error(s, "map", #""device":"vdpa0","iova":"0x00000000000000001000","size":"0x0000000000000000001000","addr":"0X7","perm":"rw""#)
                == #"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        for bad in [#""0x10000000000000000""#, #""0x+1""#, #""0x""#, #""0x-1""#, #""0x1g""#, #""12""#, #""0x 1""#] {
            let reply = Self.error(s, "unmap", #""device":"vdpa0","iova":\#(bad),"size":4096"#)
            #expect(reply.contains(#""code":-32602"#) && reply.contains(#""field":"iova""#), "\(bad): \(reply)")
        }
    }

    @Test("translate without iova or size (by asid, or area buffer) is -32602 naming the field")
    func translateMissingFields() {
        let s = FastPathTests.service(fast: false)
        for (params, field) in [
            (#""access":"read","asid":0,"size":1"#, "iova"), (#""access":"read","asid":0,"iova":1"#, "size"),
            (#""access":"read","vq":0,"area":"buffer","size":1"#, "iova"), (#""asid":0,"iova":0,"size":1"#, "access")
        ] {
            let reply = Self.error(s, "translate", #""device":"vdpa0",\#(params)"#)
            #expect(reply.contains(#""code":-32602"#) && reply.contains(#""field":"\#(field)""#), "\(params): \(reply)")
        }
    }

    @Test("an unknown enum value is EINVAL (a well-typed value breaking a rule, §2); a wrong type stays -32602")
    func unknownEnumValues() {
        let s = FastPathTests.service(fast: false)
        for (method, params) in [
            ("translate", #""access":"rw","asid":0,"iova":0,"size":1"#),
            ("translate", #""access":"read","vq":0,"area":"used""#),
            ("dump_iotlb", #""asid":0,"layer":"both""#)
        ] {
            let reply = Self.error(s, method, #""device":"vdpa0",\#(params)"#)
            #expect(reply.contains(#""code":-22"#), "\(params): \(reply)")
        }
        #expect(Self.error(s, "dump_iotlb", #""device":"vdpa0","asid":0,"layer":1"#).contains(#""field":"layer""#))
    }

    @Test("one order everywhere: -32602, then ENODEV, then EPERM, then ranges")
    func checkOrder() {
        let s = FastPathTests.service(fast: false)
        #expect(Self.error(s, "dump_iotlb", #""device":"nosuch","asid":0,"limit":65537"#).contains(#""errno":"ENODEV""#))
        #expect(Self.error(s, "dump_iotlb", #""device":"vdpa0","asid":0,"limit":65537"#).contains(#""errno":"EINVAL""#))
        #expect(Self.error(s, "map", #""device":"vdpa0","iova":0,"size":4096,"addr":7,"perm":"xx""#, as: user).contains(#""errno":"EPERM""#))
        #expect(Self.error(s, "map", #""device":5,"iova":0,"size":4096,"addr":7,"perm":4"#).contains(#""field":"device""#))
        #expect(Self.error(s, "translate", #""device":"nosuch","access":"rw","asid":0,"iova":0,"size":1"#).contains(#""errno":"ENODEV""#))
        #expect(Self.error(s, "del_device", #""name":7"#, as: user).contains(#""field":"name""#))
    }
}

@Suite("Fuzzer findings")
struct FuzzerFindingTests {
    /// The fuzzer's harness: the same chunks to both paths, replies compared after every chunk.
    static func lockstep(_ input: String, chunk: Int, maxTextBytes: Int = 4096) -> [String] {
        let bytes = Array(input.utf8)
        var fast = RequestStream(service: FastPathTests.service(fast: true), caller: admin, maxTextBytes: maxTextBytes)
        var general = RequestStream(service: FastPathTests.service(fast: false), caller: admin, maxTextBytes: maxTextBytes)
        var problems: [String] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + chunk, bytes.count)
            fast.append(bytes[offset..<end])
            general.append(bytes[offset..<end])
            offset = end
            var a: [UInt8] = [], b: [UInt8] = []
            let stopA = fast.answer(into: &a), stopB = general.answer(into: &b)
            if a != b || stopA != stopB {
                problems.append(
                    "after \(offset) bytes: fast \(String(decoding: a, as: UTF8.self)) \(String(describing: stopA)), general \(String(decoding: b, as: UTF8.self)) \(String(describing: stopB))"
                )
            }
            if stopA != nil || stopB != nil { break }
        }
        return problems
    }

    @Test("differential oracle, run 111,547: a plain batch element's integer with a leading zero, the read ending after its second digit")
    func leadingZeroAtTheEndOfARead() {
        let text = #"[{"jsonrpc":"2.0","id":2,"method":"map","params":{"device":"vdpa0","iova":0096,"size":4096,"addr":0,"perm":"rw"}}]"#
        let cut = text.utf8.count - text.drop { $0 != "9" }.utf8.count  // the read ends after "00"
        for chunk in [cut, 1, 2, 27, 4096] {
            #expect(Self.lockstep(text + "\n", chunk: chunk) == [], "chunk \(chunk)")
        }
        #expect(DefectTests.run(String(text.prefix(cut)), fast: true, chunk: 4096).1 == .notJSON, "refused without more bytes")
    }
}

extension DefectTests {
    @Test("the order holds for add_device, del_device and set_features too")
    func checkOrderManagement() {
        let s = FastPathTests.service(fast: false)
        // A type error before the role; the role before a value out of range.
        #expect(Self.error(s, "add_device", #""name":"x","mgmtdev":"vdpasim_net","mtu":"big""#, as: user).contains(#""field":"mtu""#))
        #expect(Self.error(s, "add_device", #""name":"x","mgmtdev":"vdpasim_net","mtu":4294967296"#, as: user).contains(#""errno":"EPERM""#))
        #expect(Self.error(s, "add_device", #""name":"x","mgmtdev":"vdpasim_net","mtu":4294967296"#).contains(#""errno":"EINVAL""#))
        #expect(Self.error(s, "set_features", #""device":"nosuch","features":["NO_SUCH_FEATURE"]"#).contains(#""field":"features""#))
        #expect(Self.error(s, "set_features", #""device":"nosuch","features":["VERSION_1"]"#).contains(#""errno":"ENODEV""#))
    }
}

extension FuzzerFindingTests {
    @Test("differential oracle, run 155,403: a batch element's id with leading zeros, the read ending inside it")
    func leadingZeroID() {
        let text = #"[{"jsonrpc":"2.0","id":0000000073547605,"method":"map","params":{"device":"vdpa0","iova":0,"size":1,"addr":0,"perm":"rw"}}]"#
        for chunk in 1...40 {
            #expect(Self.lockstep(text + "\n", chunk: chunk) == [], "chunk \(chunk)")
        }
        // The fuzzer's input, in its reads of 11 bytes.
        let found =
            "\n[\n]\r[\n]\r\r\r\t\r\r[{\"jsonrpc\":\"2.0\",\"id\":0000000073547605,\"method\":ev\n]\r\r\r\t[{\"jsonrpc\":\"2.0\",\"id\":1,\"metho\r\t"
        #expect(Self.lockstep(found, chunk: 11) == [])
    }
}

extension FuzzerFindingTests {
    @Test(
        "differential oracle, 2026-11-30 run 99,355: a single text cut by one read and ending exactly at the next read's end, complete but not plain, is answered at once"
    )
    func completeButNotPlainAtTheReadEnd() {
        // The fast parser took the text over when the first read ended inside it; the second read ends at its
        // closing brace.  It waited for a third read (a client that sends no newline would wait forever).
        for text in [
            #"{"params":{"device":"vdpa0"}}"#,
            #"{"jsonrpc":"2.0","method":"map","params":{"device":"vdpa0","iova":0,"size":1,"addr":0,"perm":"rw"}}"#,
            #"{"jsonrpc":"2.0","id":7,"method":"map","params":{"device":"vdpa0","iova":0,"size":1}}"#
        ] {
            for cut in 1..<text.utf8.count {
                #expect(Self.lockstep(text, chunk: cut) == [], "cut after \(cut) bytes")
            }
            var stream = RequestStream(service: FastPathTests.service(fast: true), caller: admin, maxTextBytes: 4096)
            var output: [UInt8] = []
            stream.append(Array(text.utf8)[..<10])
            _ = stream.answer(into: &output)
            stream.append(Array(text.utf8)[10...])
            _ = stream.answer(into: &output)
            #expect(!stream.hasPartialText, "nothing is held back: \(text)")
        }
        // The fuzzer's input, in its reads of 27 bytes.
        let found =
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"open\",\"params\":{\"device\":\"vdpa0\"}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"set_backend_features\",\"params\":{\"device\":\"vdpa1\",\"features\":[\"IOTLB_M5555555555555555555555555555555555555555555SG_V2\",\"IOTLB_BATCH\",\"IOTLB_ASID\",\"IOTLB_PERSIST\"]}}\n{\"params\":{\"device\":\"vdpa0\"}}\n"
        #expect(Self.lockstep(found, chunk: 27) == [])
    }
}
