// JSONSyntax.swift — an incremental JSON syntax check, byte by byte across
// reads, for the framer.
//
// The framer used to find a text's end by counting brackets, so a text that
// could never become valid (`[{"a":1},{"b"]`: a `]` closing an object) kept
// it waiting for bytes that would never help, and the connection hung until
// its idle timeout.  This scanner is a pushdown automaton over JSON's grammar
// with the same rules as `JSONParser` (nesting limit, strict numbers, escapes,
// surrogate pairs, UTF-8 in strings), so it reports the first byte after
// which no continuation can make the text valid: the connection gets -32700
// at once, exactly as for any other bytes that are not JSON.

public struct JSONSyntax: Sendable {
    public init() {}

    public enum Step: Equatable, Sendable {
        /// The text is valid so far and continues past the bytes given.
        case needMore
        /// The text is complete; it ends before this index (a top-level number ends at the byte after it).
        case complete(end: Int)
        /// The byte at `offset` makes the text invalid, whatever follows.
        case invalid(offset: Int, reason: String)
    }

    private enum State: UInt8 {
        case value, arrayFirst, objectFirst, key, colon, afterValue
        case string, escape, unicode, lowBackslash, lowU, utf8
        case literal
        case minus, zero, integer, dot, fraction, exponentMark, exponentSign, exponent
    }

    private var state = State.value
    /// Open containers; bit d of `objects` says whether the container at depth d is an object.
    private var depth = 0
    private var objects: (UInt64, UInt64) = (0, 0)
    /// Whether the string being scanned is an object's key (a colon follows it).
    private var inKey = false
    private var hexLeft = 0
    private var hexValue: UInt32 = 0
    private var wantLowSurrogate = false
    private var utf8Left = 0
    private var utf8Low: UInt8 = 0x80
    private var utf8High: UInt8 = 0xBF
    private var literalWord: StaticString = "true"
    private var literalIndex = 0

    /// `JSONParser.maxDepth`: a value inside this many open containers is refused by both.
    static let maxDepth = JSONGrammar.maxDepth

    private var insideObject: Bool {
        let d = depth - 1
        return d < 64 ? objects.0 & (1 << UInt64(d)) != 0 : objects.1 & (1 << UInt64(d - 64)) != 0
    }

    private mutating func push(object: Bool) {
        let d = depth
        if d < 64 {
            objects.0 = object ? objects.0 | (1 << UInt64(d)) : objects.0 & ~(1 << UInt64(d))
        } else {
            objects.1 = object ? objects.1 | (1 << UInt64(d - 64)) : objects.1 & ~(1 << UInt64(d - 64))
        }
        depth += 1
    }

    private static func isWhitespace(_ b: UInt8) -> Bool { JSONGrammar.isWhitespace(b) }
    private static func isDigit(_ b: UInt8) -> Bool { JSONGrammar.isDigit(b) }
    private static func hexDigit(_ b: UInt8) -> UInt32? { JSONGrammar.hexDigit(b) }

    /// Scans `p[i..<end]` from where the last call stopped; `i` is left after the last byte taken.
    /// The text's first byte must be the first byte of the first call.
    public mutating func scan(_ p: UnsafeBufferPointer<UInt8>, _ i: inout Int, end: Int) -> Step {
        while i < end {
            let b = p[i]
            switch state {
            case .string:
                // The common bytes first: plain ASCII inside a string.
                if b >= 0x20 && b < 0x80 && b != 0x22 && b != 0x5C { i += 1; continue }
                if b == 0x22 {
                    i += 1
                    if inKey {
                        state = .colon
                        continue
                    }
                    if let step = valueEnded(at: i) { return step }
                    continue
                }
                if b == 0x5C { state = .escape; i += 1; continue }
                if b < 0x20 { return .invalid(offset: i, reason: "control character in string") }
                guard startUTF8(b) else { return .invalid(offset: i, reason: "invalid UTF-8 in string") }
                i += 1
            case .utf8:
                guard b >= utf8Low && b <= utf8High else { return .invalid(offset: i, reason: "invalid UTF-8 in string") }
                (utf8Low, utf8High) = (0x80, 0xBF)
                utf8Left -= 1
                if utf8Left == 0 { state = .string }
                i += 1
            case .escape:
                if JSONGrammar.simpleEscape(b) != nil {
                    state = .string
                } else if b == UInt8(ascii: "u") {
                    (state, hexLeft, hexValue) = (.unicode, 4, 0)
                } else {
                    return .invalid(offset: i, reason: "invalid escape")
                }
                i += 1
            case .unicode:
                guard let digit = Self.hexDigit(b) else { return .invalid(offset: i, reason: "invalid \\u escape") }
                hexValue = hexValue << 4 | digit
                hexLeft -= 1
                i += 1
                guard hexLeft == 0 else { continue }
                if wantLowSurrogate {
                    guard JSONGrammar.lowSurrogates.contains(hexValue) else { return .invalid(offset: i - 4, reason: "bad surrogate pair") }
                    wantLowSurrogate = false
                    state = .string
                } else if JSONGrammar.highSurrogates.contains(hexValue) {
                    state = .lowBackslash
                } else if JSONGrammar.lowSurrogates.contains(hexValue) {
                    return .invalid(offset: i - 4, reason: "invalid unicode escape")
                } else {
                    state = .string
                }
            case .lowBackslash:
                guard b == 0x5C else { return .invalid(offset: i, reason: "lone surrogate") }
                state = .lowU
                i += 1
            case .lowU:
                guard b == UInt8(ascii: "u") else { return .invalid(offset: i, reason: "lone surrogate") }
                (state, hexLeft, hexValue, wantLowSurrogate) = (.unicode, 4, 0, true)
                i += 1
            case .value, .arrayFirst:
                if Self.isWhitespace(b) { i += 1; continue }
                if b == 0x5D && state == .arrayFirst {
                    i += 1
                    if let step = closeContainer(at: i) { return step }
                    continue
                }
                if let step = beginValue(b, at: i) { return step }
                i += 1
            case .objectFirst, .key:
                if Self.isWhitespace(b) { i += 1; continue }
                if b == 0x7D && state == .objectFirst {
                    i += 1
                    if let step = closeContainer(at: i) { return step }
                    continue
                }
                guard b == 0x22 else { return .invalid(offset: i, reason: "expected a string key") }
                (state, inKey) = (.string, true)
                i += 1
            case .colon:
                if Self.isWhitespace(b) { i += 1; continue }
                guard b == 0x3A else { return .invalid(offset: i, reason: "expected ':'") }
                state = .value
                i += 1
            case .afterValue:
                if Self.isWhitespace(b) { i += 1; continue }
                let object = insideObject
                if b == 0x2C {
                    state = object ? .key : .value
                    i += 1
                } else if b == (object ? 0x7D : 0x5D) {
                    i += 1
                    if let step = closeContainer(at: i) { return step }
                } else {
                    return .invalid(offset: i, reason: object ? "expected ',' or '}'" : "expected ',' or ']'")
                }
            case .literal:
                guard b == literalWord.utf8Start[literalIndex] else { return .invalid(offset: i, reason: "invalid literal") }
                literalIndex += 1
                i += 1
                if literalIndex == literalWord.utf8CodeUnitCount, let step = valueEnded(at: i) { return step }
            case .minus:
                guard Self.isDigit(b) else { return .invalid(offset: i, reason: "invalid value") }
                state = b == 0x30 ? .zero : .integer
                i += 1
            case .dot:
                guard Self.isDigit(b) else { return .invalid(offset: i, reason: "invalid fraction") }
                state = .fraction
                i += 1
            case .exponentMark, .exponentSign:
                if state == .exponentMark && (b == 0x2B || b == 0x2D) {
                    state = .exponentSign
                } else {
                    guard Self.isDigit(b) else { return .invalid(offset: i, reason: "invalid exponent") }
                    state = .exponent
                }
                i += 1
            case .zero, .integer, .fraction, .exponent:
                if Self.isDigit(b) && state != .zero {
                    i += 1
                } else if b == 0x2E && (state == .zero || state == .integer) {
                    state = .dot
                    i += 1
                } else if (b == 0x65 || b == 0x45) && state != .exponent {
                    state = .exponentMark
                    i += 1
                } else if depth == 0 {
                    // A top-level number ends where the next text or whitespace starts.
                    guard Self.isWhitespace(b) || b == 0x7B || b == 0x5B else { return .invalid(offset: i, reason: "invalid number") }
                    return .complete(end: i)
                } else {
                    state = .afterValue  // this byte is looked at again as what follows the number
                }
            }
        }
        return .needMore
    }

    /// Starts the value whose first byte is `b` at `i`; a step when that ends the scan.
    private mutating func beginValue(_ b: UInt8, at i: Int) -> Step? {
        guard depth < Self.maxDepth else { return .invalid(offset: i, reason: "nesting deeper than \(Self.maxDepth)") }
        switch b {
        case 0x7B: push(object: true); state = .objectFirst
        case 0x5B: push(object: false); state = .arrayFirst
        case 0x22: (state, inKey) = (.string, false)
        case UInt8(ascii: "t"): (state, literalWord, literalIndex) = (.literal, "true", 1)
        case UInt8(ascii: "f"): (state, literalWord, literalIndex) = (.literal, "false", 1)
        case UInt8(ascii: "n"): (state, literalWord, literalIndex) = (.literal, "null", 1)
        case 0x2D: state = .minus
        case 0x30: state = .zero
        case 0x31...0x39: state = .integer
        default: return .invalid(offset: i, reason: "invalid value")
        }
        return nil
    }

    private mutating func closeContainer(at end: Int) -> Step? {
        depth -= 1
        return valueEnded(at: end)
    }

    /// A value ended just before `end`: the text is complete at depth 0, else a separator follows.
    private mutating func valueEnded(at end: Int) -> Step? {
        if depth == 0 { return .complete(end: end) }
        state = .afterValue
        return nil
    }

    /// Takes a UTF-8 lead byte (≥ 0x80) and sets up its continuation bytes; false if it cannot lead.
    private mutating func startUTF8(_ b: UInt8) -> Bool {
        switch b {
        case 0xC2...0xDF: (utf8Left, utf8Low, utf8High) = (1, 0x80, 0xBF)
        case 0xE0: (utf8Left, utf8Low, utf8High) = (2, 0xA0, 0xBF)
        case 0xE1...0xEC, 0xEE...0xEF: (utf8Left, utf8Low, utf8High) = (2, 0x80, 0xBF)
        case 0xED: (utf8Left, utf8Low, utf8High) = (2, 0x80, 0x9F)  // no UTF-16 surrogates
        case 0xF0: (utf8Left, utf8Low, utf8High) = (3, 0x90, 0xBF)
        case 0xF1...0xF3: (utf8Left, utf8Low, utf8High) = (3, 0x80, 0xBF)
        case 0xF4: (utf8Left, utf8Low, utf8High) = (3, 0x80, 0x8F)  // nothing above U+10FFFF
        default: return false
        }
        state = .utf8
        return true
    }
}
