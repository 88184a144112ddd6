// FastScanner.swift — reading a plain `map`/`unmap` request (and a batch of
// them, across reads) straight from bytes into a FastRequest: the parsing
// half of the fast path (FastPath.swift runs what it reads).  Each piece
// here was chosen by measurement (README, Performance): names compared as
// words, digits eight at a time, the compact layout as literals.  Those
// word compares assume a little-endian host: VDPAService turns the fast path
// off elsewhere (`fastPathAvailable`), and the general path answers alone.
import VDPACore
import VDPAJSON
#if canImport(Glibc)
    import Glibc
#endif

/// A `map` or `unmap` request in its plain form; the id and device stay in the text (ranges, no copies).
struct FastRequest: Equatable {
    enum Method { case map, unmap }

    var method: Method
    /// The id exactly as sent (an unsigned integer or a string without escapes).
    var id: Range<Int> = 0..<0
    /// The device name, without its quotes.
    var device: Range<Int> = 0..<0
    /// nil when not sent (ASID 0; the log then names no asid, as the general path's does).
    var asid: UInt64?
    var iova: UInt64?
    var size: UInt64?
    var addr: UInt64?
    var perm: Permission?
}

extension FastRequest {
    /// Every field the method needs is present (a missing one is -32602 on the general path).
    var isComplete: Bool {
        iova != nil && size != nil && (method == .unmap || (addr != nil && perm != nil))
    }
}

/// Reads the plain shape of a map/unmap request.  Every method leaves `i` at the end of the bytes when
/// it failed only because the bytes ran out, so a caller can tell "not plain" from "not here yet".
struct FastScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var i: Int

    /// The member names the fast path knows.
    enum Key: UInt16 {
        case jsonrpc = 1, method = 2, id = 4, params = 8, device = 16, asid = 32, iova = 64, size = 128, addr = 256, perm = 512
    }

    @inline(__always)
    mutating func skipWhitespace() { i = skipJSONWhitespace(bytes, from: i, to: bytes.count) }

    @inline(__always)
    mutating func expect(_ c: UInt8) -> Bool {
        skipWhitespace()
        guard i < bytes.count, bytes[i] == c else { return false }
        i += 1
        return true
    }

    /// Matches `literal` here and moves past it.  A partial match at the end of the bytes moves `i`
    /// to the end (the rest has not arrived).
    @inline(__always)
    mutating func take(_ literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        let available = bytes.count - i
        if available >= n {
            guard Self.same(bytes.baseAddress! + i, literal.utf8Start, n) else { return false }
            i += n
            return true
        }
        if available == 0 || memcmp(bytes.baseAddress! + i, literal.utf8Start, available) == 0 { i = bytes.count }
        return false
    }

    /// `n` bytes compared a word at a time (the names and literals here are 3 to 9 bytes long; a call
    /// to memcmp cost more than the compare).
    @inline(__always)
    static func same(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        var k = 0
        while n - k >= 4 {
            if UnsafeRawPointer(a + k).loadUnaligned(as: UInt32.self) != UnsafeRawPointer(b + k).loadUnaligned(as: UInt32.self) { return false }
            k += 4
        }
        while k < n {
            if a[k] != b[k] { return false }
            k += 1
        }
        return true
    }

    /// A string without escapes or control characters; returns its byte range.
    mutating func plainString() -> Range<Int>? {
        guard expect(UInt8(ascii: "\"")) else { return nil }
        let start = i
        // Eight bytes per step: the first byte that needs a look (quote, backslash, control or
        // non-ASCII) is found with word arithmetic; only that byte is then read.
        while bytes.count - i >= 8 {
            let w = UnsafeRawPointer(bytes.baseAddress! + i).loadUnaligned(as: UInt64.self)
            let stop = Self.firstSpecial(w)
            i += stop
            if stop < 8 { break }
        }
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                i += 1
                return start..<(i - 1)
            }
            if b == UInt8(ascii: "\\") || b < 0x20 || b >= 0x80 { return nil }
            i += 1
        }
        return nil
    }

    /// How many of a little-endian word's bytes, from the first, can stay in a plain string as they
    /// are (0…8): not a quote, a backslash, a control character or a non-ASCII byte.  Each test
    /// flags its bytes exactly up to the first flagged one (a borrow only runs upward from a flagged
    /// byte), which is all the count needs.
    @inline(__always)
    static func firstSpecial(_ w: UInt64) -> Int {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        let quote = w ^ (ones &* 0x22), backslash = w ^ (ones &* 0x5C)
        let flagged = ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | ((w &- ones &* 0x20) & ~w) | w
        return (flagged & highs).trailingZeroBitCount / 8
    }

    /// An id the fast path answers: an unsigned integer or a plain string; its bytes as sent (quotes
    /// included), to be copied into the reply.
    @inline(__always)
    mutating func idValue() -> Range<Int>? {
        skipWhitespace()
        let start = i
        if i < bytes.count, bytes[i] == UInt8(ascii: "\"") {
            guard plainString() != nil else { return nil }
        } else {
            guard unsigned() != nil else { return nil }
        }
        return start..<i
    }

    /// An unsigned integer that fits in 64 bits (no sign, fraction or exponent, no leading zero).
    @inline(always)
    mutating func unsigned() -> UInt64? {
        // The usual case without a loop (and inlined): up to 15 digits and the byte after them inside
        // the next 16 bytes, read as two words.  Whitespace first, longer numbers and the end of the
        // bytes go by parts.
        if bytes.count - i >= 16 {
            let p = UnsafeRawPointer(bytes.baseAddress! + i)
            let low = p.loadUnaligned(as: UInt64.self)
            let n = Self.leadingDigits(low)
            if n == 0 { return unsignedByParts() }
            if n < 8 {
                guard n == 1 || low & 0xFF != 0x30, Self.endsInteger(low, after: n) else { return nil }
                i += n
                return Self.digitsValue(low, count: n)
            }
            let high = p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            let m = Self.leadingDigits(high)
            if m < 8 {
                guard low & 0xFF != 0x30, Self.endsInteger(high, after: m) else { return nil }
                i += 8 + m
                let top = Self.digitsValue(low, count: 8)
                return m == 0 ? top : top &* Self.powerOf10(m) &+ Self.digitsValue(high, count: m)
            }
        }
        return unsignedByParts()
    }

    /// Whether the byte after the first `count` (0…7) bytes of a little-endian word, digits, ends a
    /// JSON integer rather than going on as a fraction or an exponent.
    @inline(__always)
    static func endsInteger(_ w: UInt64, after count: Int) -> Bool {
        let next = UInt8(truncatingIfNeeded: w &>> UInt64(8 * count))
        return next != UInt8(ascii: ".") && next | 0x20 != UInt8(ascii: "e")
    }

    /// `unsigned()` for any length and wherever the bytes end: eight digits per step while eight bytes
    /// are at hand, then one at a time.
    private mutating func unsignedByParts() -> UInt64? {
        skipWhitespace()
        let start = i
        var value: UInt64 = 0
        // (16 digits, below 10^16, cannot overflow) ...
        while bytes.count - i >= 8 {
            let word = UnsafeRawPointer(bytes.baseAddress! + i).loadUnaligned(as: UInt64.self)
            let count = Self.leadingDigits(word)
            guard count > 0, i - start + count <= 16 else { break }
            value = value &* Self.powerOf10(count) &+ Self.digitsValue(word, count: count)
            i += count
            if count < 8 { break }
        }
        // ... up to 19 digits cannot overflow; only a 20th needs the checked arithmetic.
        let unchecked = min(bytes.count, start + 19)
        while i < unchecked {
            let d = bytes[i] &- 48
            if d > 9 { break }
            value = value &* 10 &+ UInt64(d)
            i += 1
        }
        if i == start + 19, i < bytes.count, bytes[i] &- 48 <= 9 {
            let (t, o1) = value.multipliedReportingOverflow(by: 10)
            let (v, o2) = t.addingReportingOverflow(UInt64(bytes[i] &- 48))
            if o1 || o2 { return nil }
            value = v
            i += 1
            if i < bytes.count, bytes[i] &- 48 <= 9 { return nil }
        }
        guard i > start else { return nil }
        if bytes[start] == 48 && i - start > 1 {
            // JSON forbids leading zeros.  Fail at the second digit, not past the last one: a failure at
            // the end of the bytes reads as "not arrived yet", and the fast parser would wait for bytes
            // that cannot help (found by the fuzzer's differential oracle).
            i = start + 1
            return nil
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            return nil
        }
        return value
    }

    /// How many of a little-endian word's bytes, from the first, are ASCII digits (0…8).  A byte is a
    /// digit when its high nibble is 3 both as it is and plus 6; bytes past the first non-digit may
    /// carry into each other, but never into one before it.
    @inline(__always)
    static func leadingDigits(_ w: UInt64) -> Int {
        let high: UInt64 = 0xF0F0_F0F0_F0F0_F0F0, threes: UInt64 = 0x3030_3030_3030_3030
        let notDigit = ((w & high) ^ threes) | (((w &+ 0x0606_0606_0606_0606) & high) ^ threes)
        return notDigit.trailingZeroBitCount / 8  // 64 / 8 = 8 when all are digits
    }

    /// The value of the first `count` (1…8) bytes of a little-endian word, all ASCII digits: moved to
    /// the top of the word (the bytes below become leading zeros), then combined in pairs, fours and
    /// eights with three multiplies.
    @inline(__always)
    static func digitsValue(_ w: UInt64, count: Int) -> UInt64 {
        var v = (w &- 0x3030_3030_3030_3030) << UInt64(8 * (8 - count))
        v = v &* 10 &+ (v >> 8)
        let mask: UInt64 = 0x0000_00FF_0000_00FF
        return ((v & mask) &* 0x000F_4240_0000_0064 &+ ((v >> 16) & mask) &* 0x0000_2710_0000_0001) >> 32
    }

    @inline(__always)
    static func powerOf10(_ n: Int) -> UInt64 {
        switch n {  // a constant table once compiled
        case 1: 10
        case 2: 100
        case 3: 1000
        case 4: 10000
        case 5: 100_000
        case 6: 1_000_000
        case 7: 10_000_000
        default: 100_000_000
        }
    }

    func equals(_ a: Range<Int>, _ b: Range<Int>) -> Bool {
        a.count == b.count && (a.isEmpty || memcmp(bytes.baseAddress! + a.lowerBound, bytes.baseAddress! + b.lowerBound, a.count) == 0)
    }

    /// `"name":` for a name the fast path knows.  With nine bytes at hand, the name and its closing
    /// quote are compared as one masked word chosen by the first letter; near the end of the bytes
    /// the literal compare (which can tell "not here yet" apart) does it.
    mutating func key() -> Key? {
        guard expect(UInt8(ascii: "\"")) else { return nil }
        guard bytes.count - i >= 8 else { return slowKey() }
        let w = UnsafeRawPointer(bytes.baseAddress! + i).loadUnaligned(as: UInt64.self)
        let key: Key, length: Int
        switch UInt8(truncatingIfNeeded: w) {
        case UInt8(ascii: "j") where w == Names.jsonrpc: (key, length) = (.jsonrpc, 8)
        case UInt8(ascii: "m") where w & Names.mask7 == Names.method: (key, length) = (.method, 7)
        case UInt8(ascii: "i") where w & Names.mask3 == Names.id: (key, length) = (.id, 3)
        case UInt8(ascii: "i") where w & Names.mask5 == Names.iova: (key, length) = (.iova, 5)
        case UInt8(ascii: "p") where w & Names.mask7 == Names.params: (key, length) = (.params, 7)
        case UInt8(ascii: "p") where w & Names.mask5 == Names.perm: (key, length) = (.perm, 5)
        case UInt8(ascii: "d") where w & Names.mask7 == Names.device: (key, length) = (.device, 7)
        case UInt8(ascii: "a") where w & Names.mask5 == Names.asid: (key, length) = (.asid, 5)
        case UInt8(ascii: "a") where w & Names.mask5 == Names.addr: (key, length) = (.addr, 5)
        case UInt8(ascii: "s") where w & Names.mask5 == Names.size: (key, length) = (.size, 5)
        default: return nil
        }
        i += length
        return expect(UInt8(ascii: ":")) ? key : nil
    }

    /// The known names with their closing quote, as little-endian words (literals: a `static let`
    /// would cost a once-check per use; a test holds them to `word(_:)`).
    enum Names {
        static var mask3: UInt64 { 0xFF_FFFF }
        static var mask5: UInt64 { 0xFF_FFFF_FFFF }
        static var mask7: UInt64 { 0xFF_FFFF_FFFF_FFFF }
        static var jsonrpc: UInt64 { 0x2263_7072_6E6F_736A }
        static var method: UInt64 { 0x22_646F_6874_656D }
        static var id: UInt64 { 0x22_6469 }
        static var iova: UInt64 { 0x22_6176_6F69 }
        static var params: UInt64 { 0x22_736D_6172_6170 }
        static var perm: UInt64 { 0x22_6D72_6570 }
        static var device: UInt64 { 0x22_6563_6976_6564 }
        static var asid: UInt64 { 0x22_6469_7361 }
        static var addr: UInt64 { 0x22_7264_6461 }
        static var size: UInt64 { 0x22_657A_6973 }
        static var commaIova: UInt64 { 0x3A22_6176_6F69_222C }
        static var commaSize: UInt64 { 0x3A22_657A_6973_222C }
        static var commaAddr: UInt64 { 0x3A22_7264_6461_222C }
        static var commaAsid: UInt64 { 0x3A22_6469_7361_222C }
        static var commaPerm: UInt64 { 0x3A22_6D72_6570_222C }
        static var rw: UInt32 { 0x2277_7222 }
        static var ro: UInt32 { 0x226F_7222 }
        static var wo: UInt32 { 0x226F_7722 }

        /// A name of up to eight bytes as the word `key()` compares.
        static func word(_ s: StaticString) -> UInt64 {
            var w: UInt64 = 0
            for k in 0..<s.utf8CodeUnitCount { w |= UInt64(s.utf8Start[k]) << (8 * UInt64(k)) }
            return w
        }
    }

    /// `key()` near the end of the bytes, one literal at a time.
    private mutating func slowKey() -> Key? {
        guard i < bytes.count else { return nil }
        let key: Key?
        switch bytes[i] {
        case UInt8(ascii: "j"): key = take(#"jsonrpc""#) ? .jsonrpc : nil
        case UInt8(ascii: "m"): key = take(#"method""#) ? .method : nil
        case UInt8(ascii: "i"): key = take(#"id""#) ? .id : take(#"iova""#) ? .iova : nil
        case UInt8(ascii: "p"): key = take(#"params""#) ? .params : take(#"perm""#) ? .perm : nil
        case UInt8(ascii: "d"): key = take(#"device""#) ? .device : nil
        case UInt8(ascii: "a"): key = take(#"asid""#) ? .asid : take(#"addr""#) ? .addr : nil
        case UInt8(ascii: "s"): key = take(#"size""#) ? .size : nil
        default: key = nil
        }
        guard let key, expect(UInt8(ascii: ":")) else { return nil }
        return key
    }

    /// A value given as a fixed string literal, e.g. `"2.0"`.
    @inline(__always)
    mutating func literal(_ text: StaticString) -> Bool {
        skipWhitespace()
        return take(text)
    }

    /// Reads the next text, after whitespace, into `r` if it is a whole plain map/unmap request of at
    /// most `maxBytes` bytes; otherwise returns false, with nothing consumed, and sets `cut` when the
    /// text was plain as far as the bytes went (the resumable parser takes it over).
    mutating func plainText(maxBytes: Int, into r: inout FastRequest, cut: inout Bool) -> Bool {
        let before = i
        skipWhitespace()
        let start = i
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else {
            i = before
            return false
        }
        guard request(into: &r) else {
            cut = i >= bytes.count && i - start <= maxBytes
            i = before
            return false
        }
        guard r.isComplete, i - start <= maxBytes else {
            i = before
            return false
        }
        return true
    }

    /// `{ ... }` of a plain map/unmap request, or nil.  A member given twice is not plain (which of
    /// the two counts is the general path's business).
    mutating func request() -> FastRequest? {
        var r = FastRequest(method: .map)
        return request(into: &r) ? r : nil
    }

    /// `request()` written into `r` (whatever it held), so that a request is not copied out through
    /// each level of the scanner: on the hot path those copies cost as much as the reading.  On false,
    /// `r` holds no meaning.
    mutating func request(into r: inout FastRequest) -> Bool {
        let start = i
        r = FastRequest(method: .map)
        if canonicalRequest(into: &r) { return true }
        i = start
        r = FastRequest(method: .map)
        return anyOrderRequest(into: &r)
    }

    /// The layout vdpad-cli, the anchors and most JSON-RPC libraries write, compact and in the order
    /// jsonrpc, id, method, params: matched as three literals around the id, with no name lookups.
    /// Anything else (whitespace, another order, the end of the bytes) returns false and `request()`
    /// starts over member by member.
    private mutating func canonicalRequest(into r: inout FastRequest) -> Bool {
        guard take(#"{"jsonrpc":"2.0","id":"#), let id = idValue() else { return false }
        r.id = id
        guard take(#","method":""#) else { return false }
        if take(#"map","params":{"#) { r.method = .map } else if take(#"unmap","params":{"#) { r.method = .unmap } else { return false }
        let paramsStart = i
        if !compactParams(into: &r) {
            i = paramsStart
            let (method, id) = (r.method, r.id)
            r = FastRequest(method: method, id: id)
            guard paramsMembers(into: &r) else { return false }
        }
        guard i < bytes.count, bytes[i] == UInt8(ascii: "}") else { return false }
        i += 1
        return true
    }

    /// The members of `params` in docs/protocol.md's order, compact — `"device":"…"`, `"asid":N` (may be
    /// left out), `"iova":N`, `"size":N`, and for map `"addr":N`, `"perm":"rw"` — through the `}`: the
    /// layout of the anchors' client and of vdpad-cli, read with no name lookups.  Anything else
    /// returns false, and the caller reads the members one by one from the start.
    private mutating func compactParams(into r: inout FastRequest) -> Bool {
        guard take(#""device":"#), let device = plainString() else { return false }
        r.device = device
        if word(Names.commaAsid) {
            guard let asid = unsigned() else { return false }
            r.asid = asid
        }
        guard word(Names.commaIova), let iova = unsigned(), word(Names.commaSize), let size = unsigned() else { return false }
        r.iova = iova
        r.size = size
        if r.method == .map {
            guard word(Names.commaAddr), let addr = unsigned(), word(Names.commaPerm), bytes.count - i >= 4 else { return false }
            switch UnsafeRawPointer(bytes.baseAddress! + i).loadUnaligned(as: UInt32.self) {
            case Names.rw: r.perm = .readWrite
            case Names.ro: r.perm = .read
            case Names.wo: r.perm = .write
            default: return false
            }
            i += 4
            r.addr = addr
        }
        guard i < bytes.count, bytes[i] == UInt8(ascii: "}") else { return false }
        i += 1
        return true
    }

    /// Eight bytes that are `w` (a little-endian word), taken; nothing taken otherwise.
    @inline(__always)
    mutating func word(_ w: UInt64) -> Bool {
        guard bytes.count - i >= 8, UnsafeRawPointer(bytes.baseAddress! + i).loadUnaligned(as: UInt64.self) == w else { return false }
        i += 8
        return true
    }

    mutating func anyOrderRequest() -> FastRequest? {
        var r = FastRequest(method: .map)
        return anyOrderRequest(into: &r) ? r : nil
    }

    /// Member by member, in any order; `r` starts fresh.
    mutating func anyOrderRequest(into r: inout FastRequest) -> Bool {
        guard expect(UInt8(ascii: "{")) else { return false }
        var seen: UInt16 = 0
        repeat {
            guard let key = key(), seen & key.rawValue == 0 else { return false }
            seen |= key.rawValue
            switch key {
            case .jsonrpc:
                guard literal(#""2.0""#) else { return false }
            case .method:
                if literal(#""map""#) { r.method = .map } else if take(#""unmap""#) { r.method = .unmap } else { return false }
            case .id:
                guard let id = idValue() else { return false }
                r.id = id
            case .params:
                guard expect(UInt8(ascii: "{")), paramsMembers(into: &r) else { return false }
            default:
                return false
            }
            skipWhitespace()
        } while expect(UInt8(ascii: ","))
        // The members first, then the brace: a complete text that is not plain must fail before its last
        // byte, so that "failed at the end of the bytes" keeps meaning "ran out" (a text ending exactly at a
        // read's end would otherwise wait for bytes it does not need).
        let required = Key.jsonrpc.rawValue | Key.method.rawValue | Key.id.rawValue | Key.params.rawValue
        return seen == required && expect(UInt8(ascii: "}"))
    }

    /// The members of `params` after its `{`, through its `}`, into `r` (which holds none yet).
    mutating func paramsMembers(into r: inout FastRequest) -> Bool {
        var seen: UInt16 = 0
        var next = key()
        while true {
            guard let key = next, seen & key.rawValue == 0 else { return false }
            seen |= key.rawValue
            switch key {
            case .device:
                guard let d = plainString() else { return false }
                r.device = d
            case .perm:
                if literal(#""rw""#) {
                    r.perm = .readWrite
                } else if take(#""ro""#) {
                    r.perm = .read
                } else if take(#""wo""#) {
                    r.perm = .write
                } else {
                    return false
                }
            case .iova: guard let v = unsigned() else { return false }; r.iova = v
            case .size: guard let v = unsigned() else { return false }; r.size = v
            case .addr: guard let v = unsigned() else { return false }; r.addr = v
            case .asid: guard let v = unsigned() else { return false }; r.asid = v
            default: return false
            }
            if let key = commaNumberKey() {
                next = key
            } else if expect(UInt8(ascii: ",")) {
                next = self.key()
            } else {
                break
            }
        }
        return seen & Key.device.rawValue != 0 && expect(UInt8(ascii: "}"))  // members first, as in anyOrderRequest
    }

    /// `,"iova":`, `,"size":`, `,"addr":`, `,"asid":` or `,"perm":` written compactly: eight bytes, one
    /// compare (the separator, quotes and colon included).  Consumes nothing otherwise.
    @inline(__always)
    mutating func commaNumberKey() -> Key? {
        guard bytes.count - i >= 8 else { return nil }
        let w = UnsafeRawPointer(bytes.baseAddress! + i).loadUnaligned(as: UInt64.self)
        let key: Key
        switch w {
        case Names.commaIova: key = .iova
        case Names.commaSize: key = .size
        case Names.commaAddr: key = .addr
        case Names.commaAsid: key = .asid
        case Names.commaPerm: key = .perm
        default: return nil
        }
        i += 8
        return key
    }
}

/// Parses one text that is a plain map/unmap request or a batch made only of them, possibly over
/// several reads: a batch is parsed element by element as its bytes arrive, and nothing runs before
/// its closing bracket (a batch that turns out not to be plain goes to the general path whole).
/// Offsets are relative to the text's first byte, so the buffer may move between calls.
struct FastTextParser {
    enum Outcome: Equatable {
        /// The text is complete and plain; it is this many bytes long.
        case complete(length: Int)
        /// Plain so far; the text continues past the bytes received.
        case needMore
        /// Not for the fast path: the general path answers it.
        case notFast
    }

    private(set) var single: FastRequest?
    private(set) var batch: [FastRequest] = []
    private(set) var isBatch = false
    private var started = false
    private var expectingElement = true
    /// Where parsing resumes: a request's start, or the place after one.
    private var resume = 0

    /// `text` starts at the text's first byte and runs to the end of the bytes received.
    mutating func parse(_ text: UnsafeBufferPointer<UInt8>, maxBatch: Int) -> Outcome {
        var s = FastScanner(bytes: text, i: resume)
        if !started {
            s.skipWhitespace()
            guard s.i < text.count else { return .needMore }
            started = true
            if text[s.i] == UInt8(ascii: "[") {
                isBatch = true
                s.i += 1
            }
            resume = s.i
        }
        if !isBatch {
            guard let request = s.request() else { return s.i >= text.count ? .needMore : .notFast }
            guard request.isComplete else { return .notFast }
            single = request
            return .complete(length: s.i)
        }
        while true {
            if expectingElement {
                var element = s
                var request = FastRequest(method: .map)
                guard element.request(into: &request) else { return element.i >= text.count ? .needMore : .notFast }
                guard request.isComplete, batch.count < maxBatch else { return .notFast }
                batch.append(request)
                s = element
                expectingElement = false
                resume = s.i
            }
            s.skipWhitespace()
            guard s.i < text.count else { return .needMore }
            switch text[s.i] {
            case UInt8(ascii: ","):
                s.i += 1
                expectingElement = true
                resume = s.i
            case UInt8(ascii: "]"):
                return .complete(length: s.i + 1)
            default:
                return .notFast
            }
        }
    }
}
