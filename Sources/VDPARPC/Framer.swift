// Framer.swift — splits a byte stream into JSON texts (PROTOCOL.md §1):
// objects or arrays separated by optional whitespace, one per line, several
// per line, or one spread over many lines.  It only finds boundaries (depth,
// strings, escapes); parsing happens afterwards on each complete text.

public struct Framer: Sendable {
    public enum Frame: Equatable, Sendable {
        /// A complete text, ready to parse.
        case text([UInt8])
        /// A text longer than the limit: answer -32600 and close.
        case tooLarge
        /// Bytes that cannot start a JSON object or array: answer -32700 and close.
        case garbage
    }

    public let maxTextBytes: Int
    private var buffer: [UInt8] = []
    private var start = 0
    private var scan = 0
    private var depth = 0
    private var inString = false
    private var escaped = false
    private var started = false
    private var scalar = false

    public init(maxTextBytes: Int) { self.maxTextBytes = maxTextBytes }

    /// Whether a text has started but not finished (for the idle timeout).
    public var hasPartialText: Bool { started }

    /// Adds bytes and returns every frame now complete.  After `.tooLarge` or `.garbage`, stop feeding.
    public mutating func push<C: Collection>(_ bytes: C) -> [Frame] where C.Element == UInt8 {
        buffer.append(contentsOf: bytes)
        var frames: [Frame] = []
        while scan < buffer.count {
            let b = buffer[scan]
            if !started {
                if b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 {
                    scan += 1
                    start = scan
                    continue
                }
                started = true
                start = scan
                scalar = b != UInt8(ascii: "{") && b != UInt8(ascii: "[")
                if scalar && b != UInt8(ascii: "\"") && !(b == UInt8(ascii: "-") || (48...57).contains(b) || b == UInt8(ascii: "t") || b == UInt8(ascii: "f") || b == UInt8(ascii: "n")) {
                    return frames + [.garbage]
                }
            }
            if inString {
                if escaped { escaped = false } else if b == 92 { escaped = true } else if b == 34 { inString = false }
            } else if b == 34 {
                inString = true
            } else if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") {
                depth += 1
            } else if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") {
                depth -= 1
            }
            scan += 1
            var complete = false
            if scalar {
                // A bare scalar ends at whitespace or at a structural character after it.
                if !inString && scan < buffer.count {
                    let n = buffer[scan]
                    complete = n == 0x20 || n == 0x0A || n == 0x0D || n == 0x09 || n == UInt8(ascii: "{") || n == UInt8(ascii: "[")
                        || (b == 34 && scan - start > 1)
                }
            } else {
                complete = depth == 0 && !inString
            }
            if complete && scan - start > maxTextBytes {
                return frames + [.tooLarge]
            } else if complete {
                frames.append(.text(Array(buffer[start..<scan])))
                reset()
            } else if scan - start > maxTextBytes {
                return frames + [.tooLarge]
            }
        }
        if !started {
            buffer.removeAll(keepingCapacity: true)
            scan = 0
            start = 0
        }
        return frames
    }

    private mutating func reset() {
        started = false
        depth = 0
        inString = false
        escaped = false
        scalar = false
        if scan == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            scan = 0
        } else if scan > 65536 {
            buffer.removeFirst(scan)
            scan = 0
        }
        start = scan
    }
}
