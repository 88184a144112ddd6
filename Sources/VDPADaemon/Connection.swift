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
// same reason as the devices (Service.swift): it is touched once per read,
// synchronously, and `queue.sync` cost a block allocation and ~225 ns each
// time; the connection's queue only runs its Dispatch write source and timers,
// whose handlers take the lock like everyone else.
import Dispatch
import Logging
import UnixSocket
import VDPAJSON
import VDPARPC
import VDPARegistry
#if canImport(Glibc)
import Glibc
#endif

final class Connection: NotificationSink, @unchecked Sendable {
    let id: UInt64
    let fd: Int32
    let caller: Caller
    /// Runs the write source and the timers (their handlers take `lock`).
    let queue: DispatchQueue
    /// Guards everything below marked "locked": output, write source state, timers, state flags.
    private let lock = Locked<Void>(())
    private let service: VDPAService
    private let limits: ConnectionLimits
    private let logger: Logger
    private let onClose: @Sendable (UInt64) -> Void

    // locked
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var writeSource: DispatchSourceWrite?
    private var writeSuspended = true
    private var closed = false
    /// SIGTERM: answer what has arrived, then close with an orderly EOF.
    private var stopping = false
    /// Stopping, and the reader has answered everything that arrived: close once it is all sent.
    private var inputAnswered = false
    /// The reader waits on `drained` while more than this many reply bytes wait for the client.
    private var pauseThreshold: Int { max(4096, limits.maxOutputBytes / 4) }
    private var readerWaiting = false
    private var stallTimer: DispatchSourceTimer?
    private var idleTimer: DispatchSourceTimer?

    /// Reader thread only: notifications this connection's own requests caused, sent after their reply.
    private var ownEvents: [UInt8] = []
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

    /// Signalled (locked) when a waiting reader may go on: output drained, or the connection closed.
    private let drained = DispatchSemaphore(value: 0)
    /// Signalled once, by `close`.
    private let closedSignal = DispatchSemaphore(value: 0)
    /// Signalled by the write source's cancel handler: only then may the fd be closed.
    private let writeSourceGone = DispatchSemaphore(value: 0)

    struct ConnectionLimits {
        var maxRequestBytes: Int
        var maxOutputBytes: Int
        var idleTimeoutSeconds: Int
    }

    init(id: UInt64, fd: Int32, caller: Caller, service: VDPAService, limits: ConnectionLimits, logger: Logger,
         onClose: @escaping @Sendable (UInt64) -> Void) {
        self.id = id
        self.fd = fd
        self.caller = caller
        self.service = service
        self.limits = limits
        self.logger = logger
        self.onClose = onClose
        queue = DispatchQueue(label: "vdpad.connection.\(id)")
    }

    /// Runs `body` holding the connection's lock.
    private func locked<T>(_ body: () -> T) -> T { lock.withLock { _ in body() } }

    /// Starts serving; false if no thread could be started (the caller closes the fd).
    func start() -> Bool {
        service.connectionOpened(id, sink: self)
        let write = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
        write.setEventHandler { [weak self] in self?.locked { self?.flush() } }
        write.setCancelHandler { [writeSourceGone] in writeSourceGone.signal() }
        writeSource = write
        guard DetachedThread.start({ [self] in serve() }) else {
            logger.error("cannot start a thread for a connection", metadata: ["pid": "\(caller.pid)"])
            locked { close(reason: nil) }
            service.connectionClosed(id)
            writeSourceGone.wait()
            return false
        }
        return true
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
                    _ = locked { deliver(&refusal, partial: .none, failure: "too many passed descriptors") }
                    break
                }
            }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                let reason = n == 0 ? nil : "read failed: \(String(cString: strerror(errno)))"
                locked { peerDone(reason: reason) }
                break
            }
            answering: while true {
                let answeredBefore = stream.textsAnswered
                let progress = stream.answer(into: &replies, budget: Self.replyBatchBytes)
                if !ownEvents.isEmpty {
                    replies += ownEvents
                    ownEvents.removeAll(keepingCapacity: true)
                }
                let failure: String? = switch progress {
                case .end(.tooLarge): "request over max_request_bytes"
                case .end(.notJSON): "input is not JSON"
                case .needInput, .budgetReached: nil
                }
                // The idle clock runs from the last text answered: a client streaming requests whose
                // reads end mid-text keeps its connection.
                let partial: PartialText = !stream.hasPartialText ? .none
                    : stream.textsAnswered == answeredBefore ? .continuing : .started
                switch locked({ deliver(&replies, partial: partial, failure: failure) }) {
                case .read: break
                case .waitForDrain: drained.wait()
                case .finish: break reading
                }
                if progress != .budgetReached { break answering }
            }
        }
        // Whatever ended the loop, the connection is closed, or closes once a graceful stop's flush is done.
        closedSignal.wait()
        service.connectionClosed(id)
        writeSourceGone.wait()
        Glibc.close(fd)
        onClose(id)
    }

    private enum NextStep { case read, waitForDrain, finish }

    /// Where the input stands after a read: between texts, in the same text as before, or in a text
    /// that began after the last one answered.
    private enum PartialText { case none, continuing, started }

    /// locked: queues the replies of one read and sends what the socket takes.
    private func deliver(_ replies: inout [UInt8], partial: PartialText, failure: String?) -> NextStep {
        guard !closed else { return .finish }
        if output.count == outputOffset {
            swap(&output, &replies)  // the usual case: nothing pending, no copy
            outputOffset = 0
        } else {
            output += replies
        }
        replies.removeAll(keepingCapacity: true)
        if output.count - outputOffset > limits.maxOutputBytes {
            close(reason: "client is not reading: unread output over max_output_bytes \(limits.maxOutputBytes)")
            return .finish
        }
        flush()
        if let failure {
            close(reason: failure)
            return .finish
        }
        guard !closed else { return .finish }
        armIdleTimer(partial: partial)
        guard output.count - outputOffset > pauseThreshold else { return .read }
        readerWaiting = true
        // A client that leaves its replies unread for idle_timeout_s is disconnected (its devices released).
        stallTimer = closeAfterIdleTimeout(reason: "client left its replies unread")
        return .waitForDrain
    }

    /// locked: the peer closed its end (or the read failed).
    private func peerDone(reason: String?) {
        guard !closed else { return }
        if stopping {
            inputAnswered = true
            flush()  // closes once everything is sent
        } else {
            close(reason: reason)
        }
    }

    // MARK: Output (locked)

    /// A text that stays half-sent idle_timeout_s after the last text answered (or the connection
    /// opened) closes the connection.  Re-armed only when a new text began, not on every read.
    private func armIdleTimer(partial: PartialText) {
        switch partial {
        case .none:
            idleTimer?.cancel()
            idleTimer = nil
        case .started:
            idleTimer?.cancel()
            idleTimer = closeAfterIdleTimeout(reason: "a request stayed incomplete")
        case .continuing:
            if idleTimer == nil { idleTimer = closeAfterIdleTimeout(reason: "a request stayed incomplete") }
        }
    }

    /// A timer that closes the connection once idle_timeout_s has passed, unless cancelled first.
    private func closeAfterIdleTimeout(reason: String) -> DispatchSourceTimer {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        let seconds = limits.idleTimeoutSeconds
        timer.schedule(deadline: .now() + .seconds(seconds))
        timer.setEventHandler { [weak self] in self?.locked { self?.close(reason: "\(reason) for idle_timeout_s \(seconds)") } }
        timer.resume()
        return timer
    }

    /// NotificationSink: events arrive from any queue.
    func send(_ notification: JSON) {
        var bytes = notification.encoded()
        bytes.append(0x0A)
        if pthread_getspecific(Self.readerKey) == Unmanaged.passUnretained(self).toOpaque() {
            ownEvents += bytes  // caused by the request being answered on this thread: after its reply
            return
        }
        // Another connection's request (or a device release) caused it: handed to this connection's
        // queue, so the emitter never waits for this connection's lock.
        queue.async { [weak self, bytes] in self?.locked { self?.enqueueNotification(bytes) } }
    }

    /// locked
    private func enqueueNotification(_ bytes: [UInt8]) {
        guard !closed else { return }
        output += bytes
        if output.count - outputOffset > limits.maxOutputBytes {
            close(reason: "client is not reading: unread output over max_output_bytes \(limits.maxOutputBytes)")
            return
        }
        flush()
    }

    /// locked
    private func flush() {
        while !closed && outputOffset < output.count {
            let n = output.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + outputOffset, output.count - outputOffset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n > 0 {
                outputOffset += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if writeSuspended { writeSuspended = false; writeSource?.resume() }
                wakeReaderIfDrained()
                return
            }
            close(reason: nil)  // the peer went away
            return
        }
        guard !closed else { return }
        output.removeAll(keepingCapacity: output.count < 1 << 20)
        outputOffset = 0
        if !writeSuspended { writeSuspended = true; writeSource?.suspend() }
        wakeReaderIfDrained()
        if inputAnswered {
            // Everything received is answered and sent: EOF first, so the peer reads every reply
            // (closing with unread input would make the kernel reset the connection instead).
            Glibc.shutdown(fd, Int32(SHUT_WR))
            close(reason: nil)
        }
    }

    private func wakeReaderIfDrained() {
        guard readerWaiting, output.count - outputOffset <= pauseThreshold else { return }
        readerWaiting = false
        stallTimer?.cancel()
        stallTimer = nil
        drained.signal()
    }

    /// Answers every request already received, sends the replies, then closes (SIGTERM).
    func shutdown() {
        locked {
            guard !closed else { return }
            stopping = true
            // The reader gets what is queued, then end of stream: it answers that and `peerDone` flushes.
            Glibc.shutdown(fd, Int32(SHUT_RD))
        }
    }

    /// Ends the connection: no more output; the reader thread wakes (its recv returns at once) and
    /// finishes the teardown.
    private func close(reason: String?) {
        guard !closed else { return }
        closed = true
        if let reason { logger.warning("closing connection", metadata: ["connection": "\(id)", "pid": "\(caller.pid)", "reason": "\(reason)"]) }
        idleTimer?.cancel()
        stallTimer?.cancel()
        if writeSuspended { writeSource?.resume() }  // a suspended source never runs its cancel handler
        writeSource?.cancel()
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
        readerWaiting = false
        drained.signal()
        closedSignal.signal()
    }
}

