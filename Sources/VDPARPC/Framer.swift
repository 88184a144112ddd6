// Framer.swift — splits a byte stream into JSON texts (docs/protocol.md §1):
// objects or arrays separated by optional whitespace, one per line, several
// per line, or one spread over many lines.  It finds boundaries with an
// incremental syntax check (JSONSyntax), so a text is refused at the first
// byte that no continuation could make valid; parsing happens afterwards on
// each complete text.
//
// The socket reads straight into the framer's buffer and each text is handed
// out in place, so a request is never copied between read(2) and its
// handler; a text that spans reads is scanned once, never from its start.
import VDPAJSON

public struct Framer: Sendable {
    /// What `push` returns: a copy of each complete text, or the failure that ends the stream.
    public enum Frame: Equatable, Sendable {
        /// A complete text, ready to parse.
        case text([UInt8])
        /// A text longer than the limit: answer -32600 and close.
        case tooLarge
        /// Bytes that cannot be (the start of) a JSON text: answer -32700 and close.
        case garbage
    }

    /// Why the stream cannot go on (after either, stop feeding).
    public enum Failure: Equatable, Sendable {
        case tooLarge
        case garbage
    }

    /// Where a read lands: at least this much free space is offered.
    public static let readSize = 1 << 16

    public let maxTextBytes: Int
    /// `storage[0..<end]` holds bytes received; `[start..<end]` is not handed out yet.
    private var storage: [UInt8] = []
    private var end = 0
    private var start = 0
    private var state = ScanState()
    /// Where and why the text that ended the stream with `.garbage` stopped being JSON.
    public private(set) var syntaxError: SyntaxError?

    /// The first byte of a text after which nothing can make it valid JSON.
    public struct SyntaxError: Equatable, Sendable {
        /// The byte's offset from the text's start.
        public var offset: Int
        public var reason: String
    }

    public init(maxTextBytes: Int) { self.maxTextBytes = maxTextBytes }

    /// Whether a text has started but not finished (for the idle timeout).
    public var hasPartialText: Bool { state.started }

    /// Lets `fill` write into the free end of the buffer (at least `readSize` bytes); `fill` returns how
    /// many bytes it wrote, or 0 or less for none, and that value is returned.
    public mutating func read(_ fill: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        makeRoom(Self.readSize)
        let end = self.end
        let n = storage.withUnsafeMutableBytes { fill(UnsafeMutableRawBufferPointer(rebasing: $0[end...])) }
        if n > 0 { self.end += n }
        return n
    }

    /// Appends bytes received some other way.
    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        makeRoom(bytes.count)
        let end = self.end
        storage.withUnsafeMutableBufferPointer { p in _ = UnsafeMutableBufferPointer(rebasing: p[end...]).initialize(from: bytes) }
        self.end += bytes.count
    }

    /// Calls `body` with each complete text, in order; the buffer is valid only during the call.  `body`
    /// returns false to stop early (the rest stays for the next call).  Returns the failure that ends
    /// the stream, if the bytes reached one (`syntaxError` then says where, for `.garbage`).
    public mutating func forEachText(_ body: (UnsafeBufferPointer<UInt8>) throws -> Bool) rethrows -> Failure? {
        var state = self.state
        var start = self.start
        let end = self.end
        let max = maxTextBytes
        defer {
            self.state = state
            self.start = start
        }
        return try storage.withUnsafeBufferPointer { p -> Failure? in
            while true {
                var scan = state.started ? state.scan : start
                if !state.started {
                    scan = skipJSONWhitespace(p, from: scan, to: end)
                    start = scan
                    guard scan < end else { return nil }
                    state = ScanState(started: true)
                }
                // Never past the limit: where a text fails must not depend on how the bytes were cut.
                let step = state.syntax.scan(p, &scan, end: Swift.min(end, start + max + 1))
                state.scan = scan
                switch step {
                case .needMore:
                    return scan - start > max ? .tooLarge : nil
                case .invalid(let offset, let reason):
                    syntaxError = SyntaxError(offset: offset - start, reason: reason)
                    return .garbage
                case .complete(let textEnd):
                    if textEnd - start > max { return .tooLarge }
                    state = ScanState()
                    let text = UnsafeBufferPointer(rebasing: p[start..<textEnd])
                    start = textEnd
                    guard try body(text) else { return nil }
                }
            }
        }
    }

    /// Adds bytes and returns a copy of every frame now complete.  After `.tooLarge` or `.garbage`, stop feeding.
    public mutating func push<C: Collection>(_ bytes: C) -> [Frame] where C.Element == UInt8 {
        append(bytes)
        var frames: [Frame] = []
        switch forEachText({
            frames.append(.text(Array($0))); return true
        }) {
        case .tooLarge?: frames.append(.tooLarge)
        case .garbage?: frames.append(.garbage)
        case nil: break
        }
        return frames
    }

    // MARK: Handing texts to someone else (the fast path)

    /// The bytes received but not handed out yet (for tests and the fuzzer's oracle).
    public var unhandledBytes: [UInt8] { Array(storage[start..<end]) }

    /// How many received bytes are not answered yet (a text begun, or texts not reached).
    public var unhandledCount: Int { end - start }

    /// Whether every byte received has been handed out.
    public var isEmpty: Bool { start == end }

    /// Skips whitespace between texts (only at a text boundary).
    mutating func skipWhitespace() {
        guard !state.started else { return }
        let end = self.end
        start = storage.withUnsafeBufferPointer { skipJSONWhitespace($0, from: start, to: end) }
    }

    /// The bytes not handed out yet, from a text boundary on (only when no text is partly scanned).
    func withUnhandled<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        storage.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[start..<end])) }
    }

    /// Marks the first `count` unhandled bytes as handed out (a whole text someone else framed).
    mutating func consume(_ count: Int) {
        precondition(!state.started && count <= end - start)
        start += count
    }

    // MARK: Buffer

    /// Ensures `count` free bytes after `end`, first by dropping what was handed out, then by growing.
    private mutating func makeRoom(_ count: Int) {
        if start == end && !state.started {
            start = 0
            end = 0
        }
        guard storage.count - end < count else { return }
        if start > 0 {
            // Only the unfinished text moves, and only when space runs out: a text is moved O(1) times per doubling.
            let (from, length) = (start, end - start)
            storage.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: $0.baseAddress! + from, byteCount: length) }
            if state.started { state.scan -= start }
            end -= start
            start = 0
        }
        if storage.count - end < count {
            storage += [UInt8](repeating: 0, count: Swift.max(storage.count, count - (storage.count - end)))
        }
    }

    // MARK: Scanning

    private struct ScanState: Sendable {
        var started = false
        var syntax = JSONSyntax()
        /// How far the current text has been scanned (kept across reads).
        var scan = 0
    }
}

/// The index of the first byte at or after `i` (below `end`) that is not JSON whitespace.  One compare
/// for the usual case: every JSON whitespace byte is ≤ 0x20, every token byte above.
@inline(__always)
func skipJSONWhitespace(_ p: UnsafeBufferPointer<UInt8>, from i: Int, to end: Int) -> Int {
    var i = i
    while i < end, p[i] <= 0x20, p[i] == 0x20 || p[i] == 0x0A || p[i] == 0x0D || p[i] == 0x09 { i += 1 }
    return i
}
