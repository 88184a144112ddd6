// RequestStream.swift — one connection's inbound side, free of I/O: bytes
// in (read straight into the framer's buffer), replies out.  Plain map/unmap
// requests and batches of them are parsed in place by the fast parser as
// they arrive (a request or a batch cut by the end of a read is resumed at
// the next) and never walked by the framer; everything else is framed and
// answered by the general path, and never offered to the fast parser twice.
import VDPAJSON
import VDPARegistry

public struct RequestStream {
    /// Why the connection must close after the replies written so far.
    public enum End: Equatable, Sendable {
        /// A text was not JSON (-32700 sent).
        case notJSON
        /// A text was longer than max_request_bytes (-32600 sent).
        case tooLarge
    }

    private let service: VDPAService
    private let caller: Caller
    private var framer: Framer
    /// Set while the fast parser owns the text at the framer's boundary.
    private var fast: FastTextParser?
    /// The device this connection used last.
    private var slots = SlotCache()
    /// Texts the fast parser answered (the daemon logs them when a connection ends).
    public private(set) var fastTexts = 0
    /// Times the stream handed the text at its boundary to the fast parser (logged with `fastTexts`: a text
    /// the fast parser declined is never scanned by it again, so scans exceed fast texts by the others).
    public private(set) var fastScans = 0
    /// Texts answered so far, by either path (a connection restarts its idle timer on progress).
    public private(set) var textsAnswered = 0

    public init(service: VDPAService, caller: Caller, maxTextBytes: Int) {
        self.service = service
        self.caller = caller
        framer = Framer(maxTextBytes: maxTextBytes)
    }

    /// Whether a text has started but not finished (for the idle timeout).
    public var hasPartialText: Bool { framer.hasPartialText || fast != nil }

    /// The bytes of a text that has started but not finished, nil when none has (the fuzzer's oracle
    /// checks that these can still become a valid text).
    public var partialText: [UInt8]? { hasPartialText ? framer.unhandledBytes : nil }

    /// Received bytes not answered yet: the input a restart must answer again (docs/restart.md).
    public var unansweredCount: Int { framer.unhandledCount }

    /// Lets `fill` write received bytes into the buffer; see `Framer.read`.
    public mutating func read(_ fill: (UnsafeMutableRawBufferPointer) -> Int) -> Int { framer.read(fill) }

    /// Adds bytes received some other way.
    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 { framer.append(bytes) }

    /// What `answer` stopped at.
    public enum Progress: Equatable, Sendable {
        /// Every complete text is answered; more bytes are needed.
        case needInput
        /// The replies reached the byte budget; complete texts remain (call again).
        case budgetReached
        /// The connection must close after the replies written so far.
        case end(End)
    }

    /// Answers every complete text received so far, in order, appending the replies (each ending in
    /// a newline) to `output`.  Returns why the connection must close, if it must.
    public mutating func answer(into output: inout [UInt8]) -> End? {
        if case .end(let end) = answer(into: &output, budget: .max) { return end }
        return nil
    }

    /// Answers complete texts in order until the replies in `output` reach `budget` bytes (checked
    /// between texts).  A connection sends what it has at each stop, so a client that pipelines
    /// gets its first replies (and tops its window up) while later requests are still being answered.
    public mutating func answer(into output: inout [UInt8], budget: Int) -> Progress {
        let useFast = service.useFastPath
        // Moved out for the whole call, not per text: the fast path borrows it while the framer's
        // buffer is borrowed too.
        var slots = self.slots
        self.slots = SlotCache()
        defer { self.slots = slots }
        while true {
            if output.count >= budget { return .budgetReached }
            if useFast && !framer.hasPartialText {
                framer.skipWhitespace()
                if framer.isEmpty { return .needInput }
                fastScans += 1
                switch answerFast(into: &output, budget: budget, slots: &slots) {
                case .complete(let length, let texts):
                    framer.consume(length)
                    fastTexts += texts
                    textsAnswered += texts
                    continue
                case .needMore:
                    return .needInput
                case .notFast:
                    break  // the framer takes this text
                }
            }
            var answered = false
            var mustClose = false
            let failure = framer.forEachText { text in
                answered = true
                textsAnswered += 1
                // The fast parser has seen this text and declined it (the framer takes nothing else):
                // the general path answers it without a second fast scan.
                mustClose = service.handleGeneral(text: text, caller: caller, into: &output)
                return false  // one text, then the fast parser may take the next
            }
            if let failure {
                output += service.framingError(
                    tooLarge: failure == .tooLarge, maxBytes: framer.maxTextBytes,
                    syntaxError: framer.syntaxError)
                output.append(0x0A)
                return .end(failure == .tooLarge ? .tooLarge : .notJSON)
            }
            if mustClose { return .end(.notJSON) }
            if !answered { return .needInput }
        }
    }

    private enum FastOutcome {
        /// `texts` texts, `length` bytes, were answered.
        case complete(length: Int, texts: Int)
        /// A plain batch continues past the bytes received.
        case needMore
        /// The framer and the general path take the text.
        case notFast
    }

    /// Offers the texts at the boundary to the fast parser, and answers those that are complete.
    private mutating func answerFast(into output: inout [UInt8], budget: Int, slots: inout SlotCache) -> FastOutcome {
        let maxBytes = framer.maxTextBytes
        let (service, caller) = (self.service, self.caller)  // locals: the closures below then capture no `self`
        if fast == nil {
            // The usual texts: single requests, whole in the buffer, parsed and answered in a row without
            // keeping parser state.  One cut by the end of the read, plain so far, goes on to the parser
            // below, which resumes it at the next read as it resumes a batch.
            let singles = framer.withUnhandled { text -> FastOutcome? in
                guard text[0] == UInt8(ascii: "{") else { return nil }
                let (length, texts, cut) = service.answerTexts(
                    text, maxTextBytes: maxBytes, budget: budget, caller: caller,
                    slots: &slots, into: &output)
                return texts > 0 ? .complete(length: length, texts: texts) : cut ? nil : .notFast
            }
            if let singles { return singles }
        }
        let maxBatch = service.limits.maxBatch
        var parser = fast ?? FastTextParser()
        fast = nil
        let outcome = framer.withUnhandled { text -> FastOutcome in
            switch parser.parse(text, maxBatch: maxBatch) {
            case .complete(let length) where length <= maxBytes:
                service.answer(parser, in: UnsafeBufferPointer(rebasing: text[..<length]), caller: caller, slots: &slots, into: &output)
                return .complete(length: length, texts: 1)
            case .needMore where text.count <= maxBytes:
                return .needMore
            default:
                return .notFast  // the framer reports a text over the limit
            }
        }
        if case .needMore = outcome { fast = parser }
        return outcome
    }
}
