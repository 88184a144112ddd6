// Connection.swift — one client: a non-blocking socket read on its own
// serial queue, framed into JSON texts, answered in order, written with
// backpressure.  Output the client does not read is bounded: past
// max_output_bytes the client is disconnected and its devices released, so a
// stalled client never blocks anyone else.
import Dispatch
import Logging
import VDPARPC
#if canImport(Glibc)
import Glibc
#endif

final class Connection: NotificationSink, @unchecked Sendable {
    let id: UInt64
    let fd: Int32
    let caller: Caller
    let queue: DispatchQueue
    private let service: VDPAService
    private let limits: ConnectionLimits
    private let logger: Logger
    private var framer: Framer
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private var writeSuspended = true
    private var closed = false
    /// SIGTERM: answer what has arrived, then close with an orderly EOF.
    private var stopping = false
    /// Backpressure: while this many reply bytes wait for the client, its requests are not read,
    /// so a client that stops reading stops costing CPU (and others' latency).
    private var pauseThreshold: Int { max(4096, limits.maxOutputBytes / 4) }
    private var readPaused = false
    private var stallTimer: DispatchSourceTimer?
    private var idleTimer: DispatchSourceTimer?
    /// Reused for every read: allocating and zeroing 64 KiB per wake-up showed in profiles.
    private var readBuffer = [UInt8](repeating: 0, count: 65536)
    private let onClose: @Sendable (UInt64) -> Void

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
        framer = Framer(maxTextBytes: limits.maxRequestBytes)
        queue = DispatchQueue(label: "vdpad.connection.\(id)")
    }

    func start() {
        service.connectionOpened(id, sink: self)
        let read = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        read.setEventHandler { [weak self] in self?.readAvailable() }
        readSource = read
        let write = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
        write.setEventHandler { [weak self] in self?.flush() }
        // The fd is closed only once both sources are gone, so no source ever watches a reused fd.
        let fd = self.fd
        read.setCancelHandler { Glibc.close(fd) }
        write.setCancelHandler { read.cancel() }
        writeSource = write
        read.resume()
    }

    private func readAvailable() {
        while !closed && !readPaused {
            let n = readBuffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n > 0 {
                consume(readBuffer[0..<n])
                if output.count - outputOffset > pauseThreshold { flush() }
                pauseIfBackedUp()
                if n < readBuffer.count && !stopping { break }
                continue
            }
            if n == 0 {  // orderly shutdown by the peer
                close(reason: nil)
                return
            }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { break }
            close(reason: "read failed: \(String(cString: strerror(errno)))")
            return
        }
        armIdleTimer()
        flush()
        pauseIfBackedUp()
    }

    private func pauseIfBackedUp() {
        guard !closed, !readPaused, output.count - outputOffset > pauseThreshold else { return }
        readPaused = true
        readSource?.suspend()
        // A client that leaves its replies unread for idle_timeout_s is disconnected (its devices released).
        stallTimer = closeAfterIdleTimeout(reason: "client left its replies unread")
    }

    /// A timer that closes the connection once idle_timeout_s has passed, unless cancelled first.
    private func closeAfterIdleTimeout(reason: String) -> DispatchSourceTimer {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        let seconds = limits.idleTimeoutSeconds
        timer.schedule(deadline: .now() + .seconds(seconds))
        timer.setEventHandler { [weak self] in self?.close(reason: "\(reason) for idle_timeout_s \(seconds)") }
        timer.resume()
        return timer
    }

    private func resumeIfDrained() {
        guard !closed, readPaused, output.count - outputOffset <= pauseThreshold else { return }
        readPaused = false
        stallTimer?.cancel()
        stallTimer = nil
        readSource?.resume()
    }

    private func consume(_ bytes: ArraySlice<UInt8>) {
        for frame in framer.push(bytes) {
            switch frame {
            case .text(let text):
                let reply = service.handle(text: text, caller: caller)
                if let bytes = reply.bytes { enqueue(bytes) }
                if reply.closeConnection {
                    flush()
                    close(reason: "input is not JSON")
                    return
                }
            case .tooLarge, .garbage:
                enqueue(service.framingError(tooLarge: frame == .tooLarge, maxBytes: limits.maxRequestBytes))
                flush()
                close(reason: frame == .tooLarge ? "request over max_request_bytes" : "input is not JSON")
                return
            }
        }
    }

    /// A text that stays half-sent past the idle timeout closes the connection.
    private func armIdleTimer() {
        idleTimer?.cancel()
        idleTimer = nil
        guard !closed, framer.hasPartialText else { return }
        idleTimer = closeAfterIdleTimeout(reason: "a request stayed incomplete")
    }

    private func enqueue(_ reply: [UInt8]) {
        output.append(contentsOf: reply)
        output.append(0x0A)
        if output.count - outputOffset > limits.maxOutputBytes {
            close(reason: "client is not reading: unread output over max_output_bytes \(limits.maxOutputBytes)")
        }
    }

    /// NotificationSink: events arrive from any queue.
    func send(_ notification: JSON) {
        let bytes = notification.encoded()
        queue.async { [weak self] in
            guard let self, !self.closed else { return }
            self.enqueue(bytes)
            self.flush()
        }
    }

    private func flush() {
        guard !closed else { return }
        while !closed && outputOffset < output.count {
            let n = output.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + outputOffset, output.count - outputOffset, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                outputOffset += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if writeSuspended { writeSuspended = false; writeSource?.resume() }
                resumeIfDrained()
                return
            }
            close(reason: nil)  // the peer went away
            return
        }
        guard !closed else { return }
        output.removeAll(keepingCapacity: output.count < 1 << 20)
        outputOffset = 0
        if !writeSuspended { writeSuspended = true; writeSource?.suspend() }
        resumeIfDrained()
        if stopping {
            // Everything received is answered and sent: EOF first, so the peer reads every reply
            // (closing with unread input would make the kernel reset the connection instead).
            Glibc.shutdown(fd, Int32(SHUT_WR))
            close(reason: nil)
        }
    }

    /// Answers every request already received, sends the replies, then closes (SIGTERM).
    func shutdown() {
        queue.async { [weak self] in
            guard let self, !self.closed else { return }
            self.stopping = true
            self.readAvailable()  // reads to EAGAIN while stopping, answers, flushes
        }
    }

    private func close(reason: String?) {
        guard !closed else { return }
        closed = true
        if let reason { logger.warning("closing connection", metadata: ["connection": "\(id)", "pid": "\(caller.pid)", "reason": "\(reason)"]) }
        idleTimer?.cancel()
        stallTimer?.cancel()
        if readPaused { readSource?.resume() }  // a suspended source never runs its cancel handler
        if writeSuspended { writeSource?.resume() }
        writeSource?.cancel()
        service.connectionClosed(id)
        onClose(id)
    }
}
