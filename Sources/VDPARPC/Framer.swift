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
            if !started {
                let b = buffer[scan]
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
            let complete = scalar ? scanScalar() : scanStructure()
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

    /// Scans an object or array to its end (or the end of the buffer); true when complete.
    private mutating func scanStructure() -> Bool {
        var depth = self.depth, inString = self.inString, escaped = self.escaped
        var i = scan
        let complete: Bool = buffer.withUnsafeBufferPointer { p in
            let n = p.count
            while i < n {
                let b = p[i]
                i += 1
                if inString {
                    if escaped { escaped = false } else if b == 92 { escaped = true } else if b == 34 { inString = false }
                } else if b == 34 {
                    inString = true
                } else if b == 0x7B || b == 0x5B {
                    depth += 1
                } else if b == 0x7D || b == 0x5D {
                    depth -= 1
                    if depth == 0 { return true }
                }
            }
            return false
        }
        scan = i
        self.depth = depth
        self.inString = inString
        self.escaped = escaped
        return complete
    }

    /// A bare scalar ends at whitespace or at a structural character after it.
    private mutating func scanScalar() -> Bool {
        let b = buffer[scan]
        if inString {
            if escaped { escaped = false } else if b == 92 { escaped = true } else if b == 34 { inString = false }
        } else if b == 34 {
            inString = true
        }
        scan += 1
        guard !inString && scan < buffer.count else { return false }
        let n = buffer[scan]
        return n == 0x20 || n == 0x0A || n == 0x0D || n == 0x09 || n == UInt8(ascii: "{") || n == UInt8(ascii: "[")
            || (b == 34 && scan - start > 1)
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
