// JSONGrammar.swift — the rules of RFC 8259 that both readers of JSON here
// apply: the parser that builds a JSON tree and the incremental syntax check
// that refuses a text at its first impossible byte (JSONSyntax).  One
// definition of the nesting limit, whitespace, digits, hex digits, escapes
// and surrogates, so the two cannot disagree on what a text is.
enum JSONGrammar {
    /// A value inside this many open containers is refused (by the parser and the syntax check alike).
    static let maxDepth = 128

    @inline(__always)
    static func isWhitespace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }

    @inline(__always)
    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    /// The value of a hex digit of a `\u` escape, or nil.
    @inline(__always)
    static func hexDigit(_ b: UInt8) -> UInt32? {
        switch b {
        case 0x30...0x39: UInt32(b - 0x30)
        case 0x41...0x46: UInt32(b - 0x41 + 10)
        case 0x61...0x66: UInt32(b - 0x61 + 10)
        default: nil
        }
    }

    /// The byte a one-letter escape stands for (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`), or nil
    /// (`\u` is read apart; anything else is an invalid escape).
    @inline(__always)
    static func simpleEscape(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x22: 0x22
        case 0x5C: 0x5C
        case 0x2F: 0x2F
        case UInt8(ascii: "b"): 0x08
        case UInt8(ascii: "f"): 0x0C
        case UInt8(ascii: "n"): 0x0A
        case UInt8(ascii: "r"): 0x0D
        case UInt8(ascii: "t"): 0x09
        default: nil
        }
    }

    static let highSurrogates: Range<UInt32> = 0xD800..<0xDC00
    static let lowSurrogates: Range<UInt32> = 0xDC00..<0xE000
}
