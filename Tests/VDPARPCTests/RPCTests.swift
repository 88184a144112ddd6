// RPCTests.swift — the RPC layer in-process, no sockets: JSON exactness,
// framing, and golden request/response texts through the method table.
import Foundation
import Testing
import VDPAJSON
@testable import VDPARPC
@testable import VDPARegistry
import _VDPATestSupport

@Suite("JSON and framing")
struct JSONTests {
    @Test("integers are exact over 0…2^64−1; negatives, fractions and bigger values stay numbers")
    func exactIntegers() throws {
        #expect(try JSON.parse("18446744073709551615") == .unsigned(.max))
        #expect(try JSON.parse("18446744073709551616") == .number("18446744073709551616"))
        #expect(try JSON.parse("-1") == .number("-1"))
        #expect(try JSON.parse("1.0") == .number("1.0"))
        #expect(JSON.unsigned(.max).text == "18446744073709551615")
        #expect(try JSON.parse(#"{"a":"\u00e9\n","b":[true,null]}"#).text == "{\"a\":\"é\\n\",\"b\":[true,null]}")
        #expect(throws: JSONParseError.self) { try JSON.parse("{\"a\":}") }
    }

    @Test("the framer splits texts on any whitespace layout and flags oversize and garbage")
    func framer() {
        var f = Framer(maxTextBytes: 64)
        #expect(f.push(Array("{\"a\":\"}\"} [1,\n2]\n{".utf8)) == [.text(Array("{\"a\":\"}\"}".utf8)), .text(Array("[1,\n2]".utf8))])
        #expect(f.hasPartialText)
        #expect(f.push(Array("}".utf8)) == [.text(Array("{}".utf8))])
        #expect(f.push([UInt8](repeating: 91, count: 100)).last == .tooLarge)
        var g = Framer(maxTextBytes: 64)
        #expect(g.push(Array("@".utf8)) == [.garbage])
    }

    @Test("escapes inside strings hide quotes and brackets wherever the reads split them")
    func framerEscapes() {
        // A backslash escapes the next byte whatever it is; the scan skips plain bytes in bulk, so an
        // escape before a plain byte (\n) must not leak onto the next quote.
        let texts = [#"{"a":"x\n\"}]\\","b":["\\\""]}"#, #"["\u005d",{"c":"\\"}]"#, #""lone \" scalar""#, "{}"]
        let stream = Array((texts.joined(separator: " ") + " ").utf8)
        let expected = texts.map { Framer.Frame.text(Array($0.utf8)) }
        var whole = Framer(maxTextBytes: 1024)
        #expect(whole.push(stream) == expected)
        var bytewise = Framer(maxTextBytes: 1024)
        #expect(stream.flatMap { bytewise.push([$0]) } == expected)
        for text in texts { #expect((try? JSON.parse(text)) != nil, "the sample \(text) is JSON") }
    }
}

@Suite("Method table")
struct MethodTableTests {
    @Test("golden: ping, unknown method, a notification, an invalid params error with data.field")
    func golden() {
        let s = VDPAService(version: "t", pid: 1)
        #expect(call(s, #"{"jsonrpc":"2.0","id":7,"method":"ping"}"#) == #"{"jsonrpc":"2.0","id":7,"result":"pong"}"#)
        #expect(call(s, #"{"jsonrpc":"2.0","method":"ping"}"#) == "")
        #expect(
            call(s, #"{"jsonrpc":"2.0","id":"x","method":"nope"}"#)
                == #"{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"method not found: nope","data":{"method":"nope"}}}"#)
        #expect(
            call(s, #"{"jsonrpc":"2.0","id":1,"method":"get_device","params":{"device":1}}"#)
                == #"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"invalid params: device must be a string, got number","data":{"field":"device"}}}"#
        )
    }

    @Test("roles: add_device needs an admin (EPERM); open needs users/groups; a domain error maps to −errno")
    func roles() {
        let s = VDPAService(version: "t", pid: 1)
        #expect(
            call(s, #"{"jsonrpc":"2.0","id":1,"method":"add_device","params":{"name":"d","mgmtdev":"vdpasim_net"}}"#, as: user).contains(
                #""code":-1,"#))
        #expect(
            call(s, #"{"jsonrpc":"2.0","id":1,"method":"add_device","params":{"name":"d","mgmtdev":"vdpasim_net","users":[1000]}}"#).contains(
                #""result":{"name":"d""#))
        #expect(call(s, #"{"jsonrpc":"2.0","id":2,"method":"open","params":{"device":"d"}}"#, as: user).contains(#""result""#))
        #expect(
            call(s, #"{"jsonrpc":"2.0","id":3,"method":"map","params":{"device":"d","iova":0,"size":0,"addr":0,"perm":"rw"}}"#, as: user)
                == #"{"jsonrpc":"2.0","id":3,"error":{"code":-22,"message":"EINVAL: map of size 0 at 0x0 (R2)","data":{"errno":"EINVAL"}}}"#)
        #expect(call(s, #"{"jsonrpc":"2.0","id":4,"method":"reset","params":{"device":"d"}}"#, as: admin).contains(#""errno":"EPERM""#))
    }

    @Test("the JSON-RPC 2.0 specification's error examples, as golden texts")
    func specificationExamples() {
        let s = VDPAService(version: "t", pid: 1)
        #expect(
            call(s, #"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#)
                == #"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: method must be a string"}}"#)
        #expect(
            call(s, #"[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"]"#)
                .hasPrefix(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"#))
        #expect(call(s, "[1]") == #"[{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: a request must be an object"}}]"#)
        let three = call(s, "[1,2,3]")
        #expect(three.components(separatedBy: "-32600").count == 4)
        #expect(
            call(s, #"{"jsonrpc":"2.0","method":"ping","params":[1],"id":3}"#)
                == #"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"invalid params: params must be an object (by-name params)","data":{"field":"params"}}}"#
        )
    }
}
