// Connection.swift — one client.  A reader thread of its own blocks in
// recv(2), frames JSON texts in place and answers them on the spot; replies
// and event notifications meet in one output buffer behind the connection's
// lock, sent without blocking and, when the client does not keep up,
// with backpressure (its requests are not read) and a bound (past
// max_output_bytes, or replies left unread for idle_timeout_s, the client is
// disconnected and its devices released), so a stalled client never blocks
// anyone else.
//
// Why a thread and not a Dispatch read source: a source wakes the manager
// thread's epoll_wait, which then wakes a worker to run the handler — two
// wake-ups per request, and on this kind of machine a wake-up is most of a
// round trip.  A thread blocked in recv(2) is woken once, as a plain socket
// server is (`vdpad-bench rpc`: sequential p50 57 → 24 µs, README).  Device
// work runs on the reader thread holding that device's lock.  The output
// state is guarded by a mutex rather than owned by a serial queue for the
// same reason as the devices (DeviceSlot.swift): it is touched once per read,
// synchronously, and `queue.sync` cost a block allocation and ~225 ns each
// time; the connection's queue only runs its Dispatch write source and timers,
// whose handlers take the lock like everyone else.
// Dispatch's source types are not marked Sendable on Linux (Darwin's are); they are safe to share, and
// here they are only touched holding the connection's lock.
@preconcurrency import Dispatch
import Logging
import UnixSocket
import VDPAJSON
import VDPAJournal
import VDPARPC
import VDPARegistry
#if canImport(Glibc)
    import Glibc
#endif

final class Connection: NotificationSink, Sendable {
    let id: UInt64
    let fd: Int32
    let caller: Caller
    /// Runs the write source and the timers (their handlers take the lock).
    let queue: DispatchQueue
    private let service: VDPAService
    private let limits: ConnectionLimits
    private let logger: Logger
    private let onClose: @Sendable (UInt64) -> Void
    /// With a journal (docs/restart.md): the connection's inbox and outbox files, and the journal its rounds of
    /// requests commit to.  Nil: replies go out of `State.output` and a restart ends the connection.
    private let log: ConnectionLog?
    private let journal: DaemonJournal?
    /// Everything about the connection that changes, behind its one lock.
    private let state = Locked(State())

    private struct State: Sendable {
        var output: [UInt8] = []
        var outputOffset = 0
        var writeSource: (any DispatchSourceWrite)?
        var writeSuspended = true
        var closed = false
        /// SIGTERM: answer what has arrived, then close with an orderly EOF.
        var stopping = false
        /// Stopping, and the reader has answered everything that arrived: close once it is all sent.
        var inputAnswered = false
        var readerWaiting = false
        var stallTimer: (any DispatchSourceTimer)?
        var idleTimer: (any DispatchSourceTimer)?
        /// Notifications this connection's own requests caused, sent after their reply (the reader thread
        /// adds and takes them).
        var ownEvents: [UInt8] = []

        /// The outbox holds the output instead of `output` (a journaled connection).
        var log: ConnectionLog?
        /// A journaled connection's socket is non-blocking only while its client leaves replies unread.
        var nonBlocking = false

        var unsent: Int { log?.unsent ?? (output.count - outputOffset) }
    }

    /// The reader waits on `drained` while more than this many reply bytes wait for the client.
    private var pauseThreshold: Int { max(4096, limits.maxOutputBytes / 4) }

    /// Marks the reader thread of a connection, so `send` can tell its own requests' events apart.
    private static let readerKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Replies are sent whenever this many bytes are ready, not only once a whole read is answered:
    /// a client with 64 requests in flight gets its first replies, and sends more, while the rest
    /// are answered (`vdpad-bench rpc`, pipe: ~0.4× → ~0.5× the raw socket; README).  That overlap
    /// needs a second CPU: when the daemon may run on one CPU only, an early send just wakes the
    /// client to preempt the daemon, so replies go out once per read (pinned pipe: 0.25× → 0.36×).
    static let replyBatchBytes = allowedCPUCount() > 1 ? 1024 : Int.max

    /// How many CPUs this process may run on (its affinity mask, as `taskset` sets it), from
    /// /proc/self/status (Glibc's module does not export sched_getaffinity); 2 when unreadable.
    static func allowedCPUCount() -> Int {
        guard let status = try? readFile("/proc/self/status") else { return 2 }
        return allowedCPUCount(status: String(decoding: status, as: UTF8.self)) ?? 2
    }

    /// The bits set in the `Cpus_allowed:` line of a /proc status text ("Cpus_allowed:\tff,ffffffff",
    /// a hex mask in comma-separated groups); nil without one.
    static func allowedCPUCount(status: String) -> Int? {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") }) else { return nil }
        return line.dropFirst("Cpus_allowed:".count).reduce(0) { $0 + ($1.hexDigitValue?.nonzeroBitCount ?? 0) }
    }

    /// Stops a journaled connection's reader between rounds (an upgrade in place, a stop that keeps the sessions).
    let park = ReaderPark()
    /// Signalled (locked) when a waiting reader may go on: output drained, or the connection closed.
    private let drained = DispatchSemaphore(value: 0)
    /// Signalled once, by `close`.
    private let closedSignal = DispatchSemaphore(value: 0)
    /// Signalled by the write source's cancel handler: only then may the fd be closed.
    private let writeSourceGone = DispatchSemaphore(value: 0)

    struct ConnectionLimits: Sendable {
        var maxRequestBytes: Int
        var maxOutputBytes: Int
        var idleTimeoutSeconds: Int
    }

    init(
        id: UInt64, fd: Int32, caller: Caller, service: VDPAService, limits: ConnectionLimits, logger: Logger,
        journaled: (log: ConnectionLog, journal: DaemonJournal)? = nil,
        onClose: @escaping @Sendable (UInt64) -> Void
    ) {
        log = journaled?.log
        journal = journaled?.journal
        if let log { state.withLock { $0.log = log } }
        self.id = id
        self.fd = fd
        self.caller = caller
        self.service = service
        self.limits = limits
        self.logger = logger
        self.onClose = onClose
        queue = DispatchQueue(label: "vdpad.connection.\(id)")
    }

    /// Starts serving; false if no thread could be started (the caller closes the fd).
    func start() -> Bool {
        service.connectionOpened(id, sink: self)
        // A connection a restart gave back is subscribed as its last commit left it, before it answers anything.
        if let log { service.registry.restoreSubscription(id, mask: log.cursor.subscriptions) }
        let write = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
        write.setEventHandler { [weak self] in self?.withState { $1.flush(&$0) } }
        write.setCancelHandler { [writeSourceGone] in writeSourceGone.signal() }
        state.withLock { $0.writeSource = write }
        // A journaled connection's replies leave by sendfile(2), which has no MSG_DONTWAIT.  The socket blocks (its
        // reader waits in recvmsg, one system call a round), and a send waits at most `sendWait` for room: a
        // client that stops reading makes the socket non-blocking until it has read everything (`flushOutbox`).
        if log != nil {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            var wait = Self.sendWait
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        }
        guard DetachedThread.start({ [self] in log != nil ? serveJournaled() : serve() }) else {
            logger.error("cannot start a thread for a connection", metadata: ["pid": "\(caller.pid)"])
            withState { $1.close(&$0, reason: nil) }
            service.connectionClosed(id)
            writeSourceGone.wait()
            return false
        }
        return true
    }

    /// Runs `body` holding the lock, with the state and the connection (whose methods below take the state
    /// `inout`: they run only here, so the compiler sees that nothing reaches the state without the lock).
    private func withState<T>(_ body: (inout State, Connection) -> T) -> T {
        state.withLock { body(&$0, self) }
    }

    // MARK: Reader thread

    /// Reads, answers and hands replies over until the peer leaves or the connection is closed; then
    /// releases the connection's devices and closes the fd (only this thread ever blocks on it).
    private func serve() {
        pthread_setspecific(Self.readerKey, Unmanaged.passUnretained(self).toOpaque())
        var stream = RequestStream(service: service, caller: caller, maxTextBytes: limits.maxRequestBytes)
        var replies: [UInt8] = []
        var passed: [Int32] = []
        reading: while true {
            // recvmsg, not recv: eventfds for set_vring_kick/call and set_config_call come with the bytes.
            let n = stream.read { PassedDescriptors.receive(fd, into: $0, descriptors: &passed) }
            if !passed.isEmpty {
                // Queued before the bytes they came with are answered, so the request that takes one finds it.
                let kept = service.descriptorsReceived(passed, on: id)
                passed.removeAll(keepingCapacity: true)
                if !kept {
                    // The error line goes after the replies to everything sent before, then the close.
                    var refusal = service.descriptorLimitError()
                    _ = withState { $1.deliver(&$0, &refusal, partial: .none, failure: "too many passed descriptors") }
                    break
                }
            }
            if n <= 0 {
                let reason = n == 0 ? nil : "read failed: \(Errno.current)"
                withState { $1.peerDone(&$0, reason: reason) }
                break
            }
            answering: while true {
                let (progress, next) = answerRound(&stream, &replies) { s, replies, round in
                    deliver(&s, &replies, partial: round.partial, failure: round.failure)
                }
                switch next {
                case .read: break
                case .waitForDrain: drained.wait()
                case .finish: break reading
                }
                if progress != .budgetReached { break answering }
            }
        }
        // Whatever ended the loop, the connection is closed, or closes once a graceful stop's flush is done.
        closedSignal.wait()
        // How the connection's texts were answered: a VMM whose maps miss the fast path shows here.
        logger.debug(
            "connection ended",
            metadata: [
                "connection": "\(id)", "pid": "\(caller.pid)", "texts": "\(stream.textsAnswered)",
                "fast_texts": "\(stream.fastTexts)", "fast_scans": "\(stream.fastScans)"
            ])
        endSession()
    }

    /// Releases the connection's devices, closes its fd, tells the daemon.
    private func endSession() {
        guard let journal else {
            service.connectionClosed(id)
            writeSourceGone.wait()
            Glibc.close(fd)
            onClose(id)
            return
        }
        // Under the journal (shared): an upgrade in place, which holds it exclusively while it hands the stored
        // descriptors over, never hands over one this closes.
        journal.outsideCompaction {
            service.connectionClosed(id)
            if let log { releasePassed(log, journal, upTo: log.passedReceived) }
            journal.closed(connection: id)
            writeSourceGone.wait()
            Glibc.close(fd)
        }
        onClose(id)
    }

    // MARK: Reader thread, journaled

    /// `serve` for a journaled connection (docs/restart.md): input is received into the inbox, each round of
    /// requests is a transaction whose commit carries the input answered and the output's end, and replies are
    /// offered to the socket only after that commit.  A connection a restart gave back first answers the input
    /// its predecessor received and did not commit, and sends what the client was not sent.
    private func serveJournaled() {
        guard let log, let journal else { return }
        pthread_setspecific(Self.readerKey, Unmanaged.passUnretained(self).toOpaque())
        var stream = RequestStream(service: service, caller: caller, maxTextBytes: limits.maxRequestBytes)
        var replies: [UInt8] = []
        var passed: [Int32] = []
        var sequence: UInt64 = 0
        var pending = log.unanswered  // what the previous process received and did not commit as answered
        withState { $1.flush(&$0) }  // replies committed and not sent before a restart
        park.readerStarted()
        reading: while true {
            var n = pending.count
            if n > 0 {
                feed(&stream, pending)
                pending = UnsafeRawBufferPointer(start: nil, count: 0)
            } else {
                n = park.receiving { log.receive(fd, descriptors: &passed) { park.requested } }
                if n < 0 && errno == EINTR { continue reading }  // asked to park, nothing received
                if n > 0 { feed(&stream, log.lastReceived(n)) }
            }
            if !passed.isEmpty {
                // Into the store before a request can take one: a restart before the taking request commits puts
                // them back in the queue for the request answered again.
                for (k, fd) in passed.enumerated() { journal.store.storeCopy(fd, name: ConnectionLog.passedName(id, log.passedReceived + UInt64(k))) }
                log.passedReceived += UInt64(passed.count)
                let kept = service.descriptorsReceived(passed, on: id)
                passed.removeAll(keepingCapacity: true)
                if !kept {
                    var refusal = service.descriptorLimitError()
                    _ = withState {
                        $1.deliverJournaled(&$0, &refusal, answered: nil, sequence: sequence, partial: .none, failure: "too many passed descriptors")
                    }
                    break
                }
            }
            if n <= 0 {
                let reason = n == 0 ? nil : "read failed: \(Errno.current)"
                withState { $1.peerDone(&$0, reason: reason) }
                break
            }
            answering: while true {
                sequence += 1
                // The round and its commit in one transaction: a compaction or an upgrade in place (which take the
                // journal exclusively) never sees a round applied and not committed.
                let (progress, next) = journal.transaction(Transaction(connection: id, sequence: sequence)) {
                    answerRound(&stream, &replies) { s, replies, round in
                        deliverJournaled(
                            &s, &replies, answered: log.received - round.unanswered, sequence: sequence, partial: round.partial,
                            failure: round.failure)
                    }
                }
                switch next {
                case .read: break
                case .waitForDrain:
                    park.setIdle(true)  // waiting for its client, the reader holds nothing a restart could lose
                    drained.wait()
                    park.setIdle(false)
                case .finish: break reading
                }
                if progress != .budgetReached { break answering }
            }
        }
        park.setIdle(true)
        closedSignal.wait()
        logger.debug(
            "connection ended",
            metadata: ["connection": "\(id)", "pid": "\(caller.pid)", "texts": "\(stream.textsAnswered)", "journaled": "true"])
        endSession()
    }

    /// Copies received bytes into the stream's buffer.
    private func feed(_ stream: inout RequestStream, _ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let n = stream.read { room in
                let n = min(room.count, bytes.count - offset)
                room.baseAddress!.copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
                return n
            }
            offset += n
        }
    }

    /// The connection's subscription as its commit journals it: read from the registry only when a subscription
    /// changed since the last read.
    private func subscriptionMask(_ log: ConnectionLog) -> UInt32 {
        let generation = service.registry.subscriptionGeneration
        if let seen = log.subscriptions, seen.generation == generation { return seen.mask }
        let mask = service.registry.subscriptionMask(id)
        log.subscriptions = (generation, mask)
        return mask
    }

    /// `deliver` for a journaled connection: the replies go into the outbox, the round commits (input answered up
    /// to `answered`, output to the replies' end), and only then may they be sent.  `answered` nil: nothing of
    /// the input counts as answered (a refusal that closes the connection).
    private func deliverJournaled(
        _ s: inout State, _ replies: inout [UInt8], answered: Int?, sequence: UInt64, partial: PartialText, failure: String?
    ) -> NextStep {
        guard let log, let journal, !s.closed else { return .finish }
        let end: Int
        do {
            end = try log.stage(replies)
        } catch {
            close(&s, reason: "the outbox cannot grow: \(error)")
            return .finish
        }
        replies.removeAll(keepingCapacity: true)
        let input = answered ?? Int(log.cursor.answered)
        var cursor = log.cursor
        (cursor.answered, cursor.outboxEnd) = (UInt64(input), UInt64(end))
        // Every descriptor received was taken at the last commit and none came since: none can be pending now (the
        // registry's lock is not taken for it in the rounds that pass none).
        if log.passedReceived != cursor.passedTaken {
            cursor.passedTaken = log.passedReceived - UInt64(service.registry.pendingDescriptors(on: id))
        }
        cursor.subscriptions = subscriptionMask(log)
        let compact = journal.commit(Transaction(connection: id, sequence: sequence), cursor)
        log.committed(cursor)
        // Taken and committed: the devices hold what they kept (as `fd.N`), the store's copies go.
        releasePassed(log, journal, upTo: cursor.passedTaken)
        log.publish(end)
        if s.unsent > limits.maxOutputBytes {
            close(&s, reason: "client is not reading: unread output over max_output_bytes \(limits.maxOutputBytes)")
            return .finish
        }
        flush(&s)
        rewindIfDone(&s, sequence: sequence)
        if compact { compactLater() }
        if let failure {
            close(&s, reason: failure)
            return .finish
        }
        guard !s.closed else { return .finish }
        armIdleTimer(&s, partial: partial)
        guard s.unsent > pauseThreshold else { return .read }
        s.readerWaiting = true
        s.stallTimer = closeAfterIdleTimeout(reason: "client left its replies unread")
        return .waitForDrain
    }

    /// Takes the store's copies of the descriptors this connection passed, up to the `end`-th, out of the store.
    private func releasePassed(_ log: ConnectionLog, _ journal: DaemonJournal, upTo end: UInt64) {
        while log.passedRemoved < end {
            journal.store.removeCopy(ConnectionLog.passedName(id, log.passedRemoved))
            log.passedRemoved += 1
        }
    }

    /// Empties the inbox or the outbox once everything that went through it is answered or sent (the journal
    /// hears of it first: a restart between the two finishes the job).
    private func rewindIfDone(_ s: inout State, sequence: UInt64) {
        guard let log, let journal, log.inboxMayRewind || log.outboxMayRewind else { return }
        let next = log.rewound(inbox: log.inboxMayRewind, outbox: log.outboxMayRewind)
        journal.commit(Transaction(connection: id, sequence: sequence), next)
        do {
            try log.finishRewind(next)
        } catch {
            close(&s, reason: "cannot empty the connection's files: \(error)")
        }
    }

    /// A compaction reads every device and waits for every round in flight: off this connection's lock and thread.
    private func compactLater() {
        guard let journal else { return }
        let service = service
        DispatchQueue.global().async { journal.compact { service.registry.allSlots().map { $0.read { $0 } } } }
    }

    private enum NextStep { case read, waitForDrain, finish }

    /// What a round of answers leaves for its delivery: why the connection must close (if it must), where the
    /// input stands, and how many received bytes are still unanswered.
    private struct Round {
        var failure: String?
        var partial: PartialText
        var unanswered: Int
    }

    /// Answers the complete texts received (up to the reply budget), then hands the replies — with the events
    /// the round's own requests caused after them — to `deliver` holding the connection's lock.
    private func answerRound(
        _ stream: inout RequestStream, _ replies: inout [UInt8], deliver: (inout State, inout [UInt8], Round) -> NextStep
    ) -> (RequestStream.Progress, NextStep) {
        let answeredBefore = stream.textsAnswered
        let progress = stream.answer(into: &replies, budget: Self.replyBatchBytes)
        let failure: String? =
            switch progress {
            case .end(.tooLarge): "request over max_request_bytes"
            case .end(.notJSON): "input is not JSON"
            case .needInput, .budgetReached: nil
            }
        // The idle clock runs from the last text answered: a client streaming requests whose
        // reads end mid-text keeps its connection.
        let partial: PartialText =
            !stream.hasPartialText
            ? .none
            : stream.textsAnswered == answeredBefore ? .continuing : .started
        let round = Round(failure: failure, partial: partial, unanswered: stream.unansweredCount)
        let next = withState { (s, _) -> NextStep in
            if !s.ownEvents.isEmpty {
                replies += s.ownEvents
                s.ownEvents.removeAll(keepingCapacity: true)
            }
            return deliver(&s, &replies, round)
        }
        return (progress, next)
    }

    /// Where the input stands after a read: between texts, in the same text as before, or in a text
    /// that began after the last one answered.
    private enum PartialText { case none, continuing, started }

    /// Queues the replies of one read and sends what the socket takes.
    private func deliver(_ s: inout State, _ replies: inout [UInt8], partial: PartialText, failure: String?) -> NextStep {
        guard !s.closed else { return .finish }
        if s.unsent == 0 {
            swap(&s.output, &replies)  // the usual case: nothing pending, no copy
            s.outputOffset = 0
        } else {
            s.output += replies
        }
        replies.removeAll(keepingCapacity: true)
        if s.unsent > limits.maxOutputBytes {
            close(&s, reason: "client is not reading: unread output over max_output_bytes \(limits.maxOutputBytes)")
            return .finish
        }
        flush(&s)
        if let failure {
            close(&s, reason: failure)
            return .finish
        }
        guard !s.closed else { return .finish }
        armIdleTimer(&s, partial: partial)
        guard s.unsent > pauseThreshold else { return .read }
        s.readerWaiting = true
        // A client that leaves its replies unread for idle_timeout_s is disconnected (its devices released).
        s.stallTimer = closeAfterIdleTimeout(reason: "client left its replies unread")
        return .waitForDrain
    }

    /// The peer closed its end (or the read failed).
    private func peerDone(_ s: inout State, reason: String?) {
        guard !s.closed else { return }
        if s.stopping {
            s.inputAnswered = true
            flush(&s)  // closes once everything is sent
        } else {
            close(&s, reason: reason)
        }
    }

    // MARK: Output

    /// A text that stays half-sent idle_timeout_s after the last text answered (or the connection
    /// opened) closes the connection.  Re-armed only when a new text began, not on every read.
    private func armIdleTimer(_ s: inout State, partial: PartialText) {
        switch partial {
        case .none:
            s.idleTimer?.cancel()
            s.idleTimer = nil
        case .started:
            s.idleTimer?.cancel()
            s.idleTimer = closeAfterIdleTimeout(reason: "a request stayed incomplete")
        case .continuing:
            if s.idleTimer == nil { s.idleTimer = closeAfterIdleTimeout(reason: "a request stayed incomplete") }
        }
    }

    /// A timer that closes the connection once idle_timeout_s has passed, unless cancelled first.
    private func closeAfterIdleTimeout(reason: String) -> any DispatchSourceTimer {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        let seconds = limits.idleTimeoutSeconds
        timer.schedule(deadline: .now() + .seconds(seconds))
        timer.setEventHandler { [weak self] in self?.withState { $1.close(&$0, reason: "\(reason) for idle_timeout_s \(seconds)") } }
        timer.resume()
        return timer
    }

    /// NotificationSink: the client closed its end (its process died, or closed the socket) — POLLHUP, both
    /// directions shut.  A client that only shut down its writing (POLLRDHUP alone) is still answered what it
    /// sent: its sessions end when the reader comes to the end, as they always have.
    var peerHungUp: Bool {
        state.withLock { s in
            if s.closed { return true }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            return poll(&p, 1, 0) == 1 && p.revents & Int16(POLLHUP) != 0
        }
    }

    /// NotificationSink: events arrive from any queue.
    func send(_ notification: JSON) {
        var bytes = notification.encoded()
        bytes.append(0x0A)
        if pthread_getspecific(Self.readerKey) == Unmanaged.passUnretained(self).toOpaque() {
            // Caused by the request being answered on this thread: sent after its reply.
            state.withLock { $0.ownEvents += bytes }
            return
        }
        // Another connection's request (or a device release) caused it: handed to this connection's
        // queue, so the emitter never waits for this connection's lock.
        queue.async { [weak self, bytes] in self?.withState { $1.enqueueNotification(&$0, bytes) } }
    }

    private func enqueueNotification(_ s: inout State, _ bytes: [UInt8]) {
        guard !s.closed else { return }
        if let log = s.log {
            // After every reply published so far; a restart sends it unless it was sent (it is past no commit,
            // but nothing answers it again).
            guard let end = try? log.stage(bytes) else {
                close(&s, reason: "the outbox cannot grow")
                return
            }
            log.publish(end)
        } else {
            s.output += bytes
        }
        if s.unsent > limits.maxOutputBytes {
            close(&s, reason: "client is not reading: unread output over max_output_bytes \(limits.maxOutputBytes)")
            return
        }
        flush(&s)
    }

    private func flush(_ s: inout State) {
        if let log = s.log {
            flushOutbox(&s, log)
            return
        }
        while !s.closed && s.unsent > 0 {
            let n = s.output.withUnsafeBytes { [offset = s.outputOffset] bytes in
                retryingOnEINTR { Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            }
            if n > 0 {
                s.outputOffset += n
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if s.writeSuspended { s.writeSuspended = false; s.writeSource?.resume() }
                wakeReaderIfDrained(&s)
                return
            }
            close(&s, reason: nil)  // the peer went away
            return
        }
        guard !s.closed else { return }
        s.output.removeAll(keepingCapacity: s.output.count < 1 << 20)
        s.outputOffset = 0
        if !s.writeSuspended { s.writeSuspended = true; s.writeSource?.suspend() }
        wakeReaderIfDrained(&s)
        if s.inputAnswered {
            // Everything received is answered and sent: EOF first, so the peer reads every reply
            // (closing with unread input would make the kernel reset the connection instead).
            Glibc.shutdown(fd, Int32(SHUT_WR))
            close(&s, reason: nil)
        }
    }

    /// How long a journaled connection's send waits for room in the socket before the client counts as slow.
    static let sendWait = timeval(tv_sec: 0, tv_usec: 1000)

    /// `flush` for a journaled connection: sendfile(2) from the outbox, whose file position is what was sent.
    private func flushOutbox(_ s: inout State, _ log: ConnectionLog) {
        while !s.closed && log.unsent > 0 {
            let asked = log.unsent
            let n = log.send(to: fd)
            if n == asked { continue }
            if n > 0 || errno == EAGAIN || errno == EWOULDBLOCK {
                // The socket is full (a blocking send ran out of `sendWait`, or a non-blocking one took what fit):
                // from now on nothing waits for this client; the write source says when it has read.
                setNonBlocking(&s, true)
                if s.writeSuspended { s.writeSuspended = false; s.writeSource?.resume() }
                wakeReaderIfDrained(&s)
                return
            }
            close(&s, reason: nil)  // the peer went away
            return
        }
        guard !s.closed else { return }
        setNonBlocking(&s, false)
        if !s.writeSuspended { s.writeSuspended = true; s.writeSource?.suspend() }
        wakeReaderIfDrained(&s)
        if s.inputAnswered {
            Glibc.shutdown(fd, Int32(SHUT_WR))
            close(&s, reason: nil)
        }
    }

    private func setNonBlocking(_ s: inout State, _ on: Bool) {
        guard s.nonBlocking != on else { return }
        s.nonBlocking = on
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK)
    }

    private func wakeReaderIfDrained(_ s: inout State) {
        guard s.readerWaiting, s.unsent <= pauseThreshold else { return }
        s.readerWaiting = false
        s.stallTimer?.cancel()
        s.stallTimer = nil
        drained.signal()
    }

    /// Offers what is unsent to the socket once, without waiting (a daemon about to exit with its sessions kept).
    func sendPending() { withState { $1.flush(&$0) } }

    /// Answers every request already received, sends the replies, then closes (SIGTERM).
    func shutdown() {
        withState { s, _ in
            guard !s.closed else { return }
            s.stopping = true
            // The reader gets what is queued, then end of stream: it answers that and `peerDone` flushes.
            Glibc.shutdown(fd, Int32(SHUT_RD))
        }
    }

    /// Ends the connection: no more output; the reader thread wakes (its recv returns at once) and
    /// finishes the teardown.
    private func close(_ s: inout State, reason: String?) {
        guard !s.closed else { return }
        s.closed = true
        if let reason { logger.warning("closing connection", metadata: ["connection": "\(id)", "pid": "\(caller.pid)", "reason": "\(reason)"]) }
        s.idleTimer?.cancel()
        s.stallTimer?.cancel()
        if s.writeSuspended { s.writeSource?.resume() }  // a suspended source never runs its cancel handler
        s.writeSource?.cancel()
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
        s.readerWaiting = false
        drained.signal()
        closedSignal.signal()
    }
}
