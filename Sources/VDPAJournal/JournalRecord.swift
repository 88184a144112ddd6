// JournalRecord.swift — the records of vdpad's session journal
// (docs/restart.md) and how they are framed: a little-endian u32 length, then
// the record.  A journal is valid up to its committed length; a record cut by
// a crash lies beyond it and is never read.
//
// Why transactions: a connection's requests are applied as they are read and
// their table operations journaled at once, in the order the devices saw
// them, but a request only counts once its connection's `commit` — which
// carries how far the connection's input was answered and its output written
// — follows.  Replay skips the operations of a transaction no commit closed:
// the new process answers those requests again, from the input the old one
// had not yet committed as answered, so each is applied exactly once.
import VDPACore

/// A connection's round of requests; connection 0 is the daemon's own work (the data path's control queue,
/// a device's release when its owner left), committed as it is written.
public struct Transaction: Hashable, Sendable {
    public var connection: UInt64
    public var sequence: UInt64

    public init(connection: UInt64, sequence: UInt64) { (self.connection, self.sequence) = (connection, sequence) }

    public static let daemon = Transaction(connection: 0, sequence: 0)
}

/// How far a connection got, as of its last commit: the input answered (an offset in its inbox, in the inbox's
/// current epoch), the end of the replies written to its outbox, how many of the descriptors it passed
/// (numbered from 0 in arrival order, stored as `pass.CONNECTION.N`) requests have taken, and the events it
/// subscribed to (0: none; else bit 31 and one bit per type, in `EventType.allCases` order).
public struct ConnectionCursor: Equatable, Sendable {
    public var inboxEpoch: UInt64 = 0
    public var answered: UInt64 = 0
    public var outboxEpoch: UInt64 = 0
    public var outboxEnd: UInt64 = 0
    public var passedTaken: UInt64 = 0
    public var subscriptions: UInt32 = 0

    public init(
        inboxEpoch: UInt64 = 0, answered: UInt64 = 0, outboxEpoch: UInt64 = 0, outboxEnd: UInt64 = 0, passedTaken: UInt64 = 0,
        subscriptions: UInt32 = 0
    ) {
        (self.inboxEpoch, self.answered, self.outboxEpoch, self.outboxEnd) = (inboxEpoch, answered, outboxEpoch, outboxEnd)
        (self.passedTaken, self.subscriptions) = (passedTaken, subscriptions)
    }
}

public enum JournalRecord: Equatable, Sendable {
    /// Table operations a device carried out for `transaction`.
    case ops(device: String, transaction: Transaction, [SessionOp])
    /// A device's control state after an operation of `transaction` changed it.
    case image(device: String, transaction: Transaction, SessionImage)
    /// Everything `transaction` did counts; the connection stands at `cursor`.
    case commit(Transaction, ConnectionCursor)
    /// The connection ended (its devices' releases are journaled before this).
    case closed(connection: UInt64)
    /// A device of that name was added or removed: nothing journaled before is about the device it names now.
    case forget(device: String)

    /// Appends the framed record (length, then the record).
    /// - Parameter token: names an eventfd an image holds (see `SessionImage.encode`).
    public func encode(into w: inout JournalWriter, token: (EventFD) -> UInt32) {
        let lengthAt = w.count
        w.u32(0)
        switch self {
        case .ops(let device, let t, let ops):
            w.u8(1)
            w.string(device)
            Self.encode(t, into: &w)
            w.u32(UInt32(ops.count))
            for op in ops { op.encode(into: &w) }
        case .image(let device, let t, let image):
            w.u8(2)
            w.string(device)
            Self.encode(t, into: &w)
            image.encode(into: &w, token: token)
        case .commit(let t, let c):
            w.u8(3)
            Self.encode(t, into: &w)
            w.u64(c.inboxEpoch)
            w.u64(c.answered)
            w.u64(c.outboxEpoch)
            w.u64(c.outboxEnd)
            // Trailing and written only when set: a journal from before they were kept still reads.
            if c.passedTaken > 0 || c.subscriptions != 0 { w.u64(c.passedTaken) }
            if c.subscriptions != 0 { w.u32(c.subscriptions) }
        case .closed(let connection):
            w.u8(4)
            w.u64(connection)
        case .forget(let device):
            w.u8(5)
            w.string(device)
        }
        w.patchLength(at: lengthAt)
    }

    static func encode(_ t: Transaction, into w: inout JournalWriter) {
        w.u64(t.connection)
        w.u64(t.sequence)
    }

    static func transaction(_ r: inout JournalReader) throws(JournalReader.Truncated) -> Transaction {
        Transaction(connection: try r.u64(), sequence: try r.u64())
    }

    /// Reads one record's body (the framing is `JournalLog`'s).
    public init(from r: inout JournalReader, eventFD: (UInt32) -> EventFD?) throws(JournalReader.Truncated) {
        switch try r.u8() {
        case 1:
            let device = try r.string()
            let t = try Self.transaction(&r)
            let n = Int(try r.u32())
            var ops: [SessionOp] = []
            ops.reserveCapacity(min(n, 64))
            for _ in 0..<n { ops.append(try SessionOp(from: &r)) }
            self = .ops(device: device, transaction: t, ops)
        case 2:
            let device = try r.string()
            let t = try Self.transaction(&r)
            self = .image(device: device, transaction: t, try SessionImage(from: &r, eventFD: eventFD))
        case 3:
            let t = try Self.transaction(&r)
            var c = ConnectionCursor(inboxEpoch: try r.u64(), answered: try r.u64(), outboxEpoch: try r.u64(), outboxEnd: try r.u64())
            if !r.isAtEnd { c.passedTaken = try r.u64() }
            if !r.isAtEnd { c.subscriptions = try r.u32() }
            self = .commit(t, c)
        case 4: self = .closed(connection: try r.u64())
        case 5: self = .forget(device: try r.string())
        default: throw JournalReader.Truncated()
        }
        guard r.isAtEnd else { throw JournalReader.Truncated() }
    }
}

extension JournalWriter {
    /// Writes the byte count after the u32 at `offset` into it.
    mutating func patchLength(at offset: Int) { setU32(at: offset, UInt32(count - offset - 4)) }
}
