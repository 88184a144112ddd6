// ConnectionLog.swift — a connection's bytes kept where a crash cannot take
// them (docs/restart.md, "Exactly once").  Its input is received straight into
// an inbox memfd (recvmsg writes into the mapping: once the socket let a byte
// go, the byte is in the file), and its replies leave only through an outbox
// memfd by sendfile(2) without an offset, so the outbox's file position — kept
// by the kernel in the open file the store holds — is exactly what the client
// has been sent.  The journal's commit for a round of requests carries how far
// the inbox was answered and where the outbox ends; the replies are written
// before the commit and offered to the socket only after it.
//
// Header words: inbox [epoch, received], outbox [epoch, written].  An epoch
// moves when a file is emptied to start over (`rewind`): the journal says so
// first, so a restart that finds a file one epoch behind finishes the job.
import CVDPAShim
import UnixSocket
import VDPAJournal
#if canImport(Glibc)
    import Glibc
#endif

final class ConnectionLog: @unchecked Sendable {
    static func names(_ connection: UInt64) -> [String] { ["conn.\(connection)", "in.\(connection)", "out.\(connection)"] }

    /// A file is emptied once this much has gone through it and nothing is pending.
    static let rewindBytes = 1 << 20
    /// Room kept ahead of the inbox's end for one receive.
    static let receiveRoom = 256 << 10

    let inbox: MappedFile
    let outbox: MappedFile

    // The reader thread's.
    /// The journal's view: how far input is answered, where the output ends (last commit).
    private(set) var cursor: ConnectionCursor
    private(set) var received: Int
    /// Descriptors passed on the connection so far, numbered from 0 in arrival order: each is in the store as
    /// `pass.ID.N` from its receipt until a committed request has taken it; those below `passedRemoved` left it.
    var passedReceived: UInt64 = 0
    var passedRemoved: UInt64 = 0
    /// The connection's subscription mask as a commit last read it, with the registry's subscription generation
    /// it was read at: the next commit reads it again only when a subscription changed since.
    var subscriptions: (generation: UInt64, mask: UInt32)?

    static func passedName(_ connection: UInt64, _ n: UInt64) -> String { "pass.\(connection).\(n)" }

    // The connection lock's.
    /// Reply bytes in the outbox that the client may be sent, and those sent (the outbox's file position).
    private(set) var written: Int
    private(set) var sent: Int

    private init(inbox: MappedFile, outbox: MappedFile, cursor: ConnectionCursor, received: Int, written: Int, sent: Int) {
        (self.inbox, self.outbox, self.cursor) = (inbox, outbox, cursor)
        (self.received, self.written, self.sent) = (received, written, sent)
    }

    /// A new connection's log.
    static func create(connection: UInt64) throws(SystemCallError) -> ConnectionLog {
        let inbox = try MappedFile(creating: "vdpad-in.\(connection)")
        let outbox = try MappedFile(creating: "vdpad-out.\(connection)")
        guard lseek(outbox.fd, off_t(MappedFile.headerSize), SEEK_SET) >= 0 else { throw SystemCallError("lseek", Errno.current) }
        // sendfile reads the outbox: without this each reply would also stamp the file's access time.
        _ = fcntl(outbox.fd, F_SETFL, fcntl(outbox.fd, F_GETFL) | VDPAD_O_NOATIME)
        return ConnectionLog(inbox: inbox, outbox: outbox, cursor: ConnectionCursor(), received: 0, written: 0, sent: 0)
    }

    /// The log of a connection given back by a restart, made consistent with the journal's `cursor`: an emptying
    /// the journal announced is finished; the input received past the inbox's count (a crash right after a
    /// receive) is found by its bytes — JSON text has no zero byte, and an inbox reads zero past what it got.
    static func adopt(inbox inboxFD: Int32, outbox outboxFD: Int32, cursor: ConnectionCursor) throws(SystemCallError) -> ConnectionLog {
        let inbox = try MappedFile(adopting: inboxFD)
        let outbox = try MappedFile(adopting: outboxFD)
        if inbox.word(0) != cursor.inboxEpoch {
            try inbox.clearData()
            inbox.setWord(1, 0)
            inbox.setWord(0, cursor.inboxEpoch)
        }
        var received = Int(inbox.word(1))
        let available = inbox.size - MappedFile.headerSize
        var end = received
        for k in received..<available where inbox.data.load(fromByteOffset: k, as: UInt8.self) != 0 { end = k + 1 }
        received = max(received, end)
        inbox.setWord(1, UInt64(received))
        guard cursor.answered <= UInt64(received) else {
            // The journal says more was answered than the inbox holds: not this connection's inbox (a journal and
            // files that do not belong together).  Nothing is guessed: the caller closes the connection.
            throw SystemCallError("the inbox holds \(received) bytes, the journal says \(cursor.answered) were answered", .invalidArgument)
        }
        if outbox.word(0) != cursor.outboxEpoch {
            try outbox.clearData()
            guard lseek(outbox.fd, off_t(MappedFile.headerSize), SEEK_SET) >= 0 else { throw SystemCallError("lseek", Errno.current) }
            outbox.setWord(1, 0)
            outbox.setWord(0, cursor.outboxEpoch)
        }
        let written = max(Int(outbox.word(1)), Int(cursor.outboxEnd))
        outbox.setWord(1, UInt64(written))
        let position = lseek(outbox.fd, 0, SEEK_CUR)
        guard position >= 0 else { throw SystemCallError("lseek", Errno.current) }
        let sent = min(written, max(0, Int(position) - MappedFile.headerSize))
        return ConnectionLog(inbox: inbox, outbox: outbox, cursor: cursor, received: received, written: written, sent: sent)
    }

    // MARK: Input (the reader thread)

    /// Input received and not yet answered as of the last commit (what a restarted connection answers first).
    var unanswered: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: inbox.data + Int(cursor.answered), count: received - Int(cursor.answered))
    }

    /// Receives from `socket` into the inbox like a blocking recv(2) (waiting in poll(2) while the socket is
    /// non-blocking: a slow client's), with passed descriptors appended to `descriptors`.  The bytes are the
    /// inbox's before the count moves: returns recv's result, or -1 with EINTR once `stop` says so after a signal.
    func receive(_ socket: Int32, descriptors: inout [Int32], stop: () -> Bool = { false }) -> Int {
        do {
            try inbox.ensureData(received + Self.receiveRoom)
        } catch {
            errno = ENOMEM
            return -1
        }
        let room = UnsafeMutableRawBufferPointer(start: inbox.data + received, count: Self.receiveRoom)
        while true {
            let n = PassedDescriptors.receive(socket, into: room, descriptors: &descriptors, interruptible: true)
            if n < 0 && errno == EINTR {
                guard stop() else { continue }
                errno = EINTR  // as the receive left it (`stop` may have changed it)
                return -1
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if !waitReadable(socket) && stop() {
                    errno = EINTR
                    return -1
                }
                continue
            }
            if n > 0 {
                received += n
                inbox.setWord(1, UInt64(received))
            }
            return n
        }
    }

    /// False when a signal interrupted the wait.
    private func waitReadable(_ socket: Int32) -> Bool {
        var p = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, -1) >= 0
    }

    /// The bytes `receive` just added.
    func lastReceived(_ n: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: inbox.data + received - n, count: n) }

    // MARK: Output (the connection's lock)

    /// Copies replies in after what the client may be sent; they stay unsendable until `publish`.  Returns the
    /// end they reach (for the commit).
    func stage(_ bytes: [UInt8]) throws(SystemCallError) -> Int {
        guard !bytes.isEmpty else { return written }
        try outbox.ensureData(written + bytes.count)
        bytes.withUnsafeBytes { (outbox.data + written).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return written + bytes.count
    }

    /// The bytes up to `end` may be sent.
    func publish(_ end: Int) {
        written = end
        outbox.setWord(1, UInt64(end))
    }

    /// The reader committed `next` (input answered, output's end, descriptors taken, subscriptions).
    func committed(_ next: ConnectionCursor) { cursor = next }

    var unsent: Int { written - sent }

    /// sendfile(2) of what is unsent: bytes sent (>0), or the call's -1 with errno.
    func send(to socket: Int32) -> Int {
        let n = retryingOnEINTR { sendfile(socket, outbox.fd, nil, unsent) }
        if n > 0 { sent += n }
        return n
    }

    // MARK: Emptying

    /// Whether the inbox may start over (everything received answered, and enough of it to be worth it).
    var inboxMayRewind: Bool { Int(cursor.answered) == received && received >= Self.rewindBytes }
    var outboxMayRewind: Bool { sent == written && written >= Self.rewindBytes }

    /// The cursor after an emptying (commit it first, then `finishRewind`).
    func rewound(inbox rewindInbox: Bool, outbox rewindOutbox: Bool) -> ConnectionCursor {
        var c = cursor
        if rewindInbox { (c.inboxEpoch, c.answered) = (c.inboxEpoch + 1, 0) }
        if rewindOutbox { (c.outboxEpoch, c.outboxEnd) = (c.outboxEpoch + 1, 0) }
        return c
    }

    /// Empties the files the committed `next` cursor moved to a new epoch.
    /// Both keep their pages (truncating and faulting them in again cost more than the traffic): the inbox's
    /// input is zeroed, as a restart's scan past the count needs; the outbox's replies stay, past its end.
    func finishRewind(_ next: ConnectionCursor) throws(SystemCallError) {
        if next.inboxEpoch != cursor.inboxEpoch {
            inbox.data.initializeMemory(as: UInt8.self, repeating: 0, count: received)
            received = 0
            inbox.setWord(1, 0)
            inbox.setWord(0, next.inboxEpoch)
        }
        if next.outboxEpoch != cursor.outboxEpoch {
            guard lseek(outbox.fd, off_t(MappedFile.headerSize), SEEK_SET) >= 0 else { throw SystemCallError("lseek", Errno.current) }
            (written, sent) = (0, 0)
            outbox.setWord(1, 0)
            outbox.setWord(0, next.outboxEpoch)
        }
        cursor = next
    }
}
