// ReaderPark.swift — stopping a journaled connection's reader where it holds
// nothing the next process could not get back (docs/restart.md): between
// rounds, before its next receive.  A receive can take descriptors with the
// bytes, and the few instructions between the receive returning and their copy
// reaching the store are the one place an exit or an exec would lose them;
// parked readers are never there.  An upgrade in place and a SIGTERM that
// keeps the sessions park every reader first.  A reader blocked in recvmsg is
// woken by `ReaderPark.interruptSignal` (a handler that does nothing, without
// SA_RESTART, so the receive returns EINTR having taken nothing).
import Dispatch
import VDPARegistry

#if canImport(Glibc)
    import Glibc
#endif

final class ReaderPark: @unchecked Sendable {
    /// The signal that interrupts a reader's receive (SIGURG: nothing else in the daemon uses out-of-band data).
    static let interruptSignal = SIGURG

    /// Installs the do-nothing handler once, before any reader starts.
    static func install() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = 0  // no SA_RESTART: the receive returns EINTR
        sigemptyset(&action.sa_mask)
        sigaction(interruptSignal, &action, nil)
    }

    private struct State {
        var thread: pthread_t?
        var requested = false
        var parked = false
        /// In its receive: the only place the interrupt is sent to (elsewhere a signal could cut short a system
        /// call that does not expect one).
        var receiving = false
        /// The reader holds nothing a restart could lose without being parked: it waits for its client to drain
        /// its replies, or it has ended.
        var idle = false
    }

    private let state = Locked(State())
    private let resume = DispatchSemaphore(value: 0)

    /// The reader thread, as it starts.  It may have inherited a mask that blocks every signal (a thread started from
    /// a Dispatch queue does): the interrupt must reach it.
    func readerStarted() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, Self.interruptSignal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        state.withLock { $0.thread = pthread_self() }
    }

    /// The reader, while it waits for something that is not a receive (a drain), or for good once it ended.
    func setIdle(_ idle: Bool) { state.withLock { $0.idle = idle } }

    /// Whether the reader must stop before its next receive (asked in a receive interrupted by EINTR, too).
    var requested: Bool { state.withLock { $0.requested } }

    /// The reader, around its receive: parks first while an upgrade or a stop wants it parked.
    func receiving<T>(_ body: () -> T) -> T {
        let park = state.withLock { s -> Bool in
            s.parked = s.requested
            s.receiving = !s.requested
            return s.requested
        }
        if park {
            resume.wait()
            state.withLock { $0.receiving = true }
        }
        defer { state.withLock { $0.receiving = false } }
        return body()
    }

    /// Asks the reader to park at its next receive (then `settle` until it has).
    func request() { state.withLock { $0.requested = true } }

    /// True once the reader is parked (or idle, or gone); else interrupts its receive and returns false.  Called
    /// again until true: a signal that came just before the reader entered its receive did not stop it.
    func settle() -> Bool {
        let (done, thread) = state.withLock { s in (s.parked || s.idle, s.receiving ? s.thread : nil) }
        if !done, let thread { pthread_kill(thread, Self.interruptSignal) }
        return done
    }

    /// Parks the readers of `parks` and returns once every one is parked (or idle, or gone).
    static func parkAll(_ parks: [ReaderPark]) {
        for p in parks { p.request() }
        var waiting = parks
        while true {
            waiting = waiting.filter { !$0.settle() }
            if waiting.isEmpty { return }
            usleep(1000)
        }
    }

    /// Lets a parked reader go on (an upgrade that could not exec).
    func unpark() {
        let wasParked = state.withLock { s -> Bool in
            defer { (s.requested, s.parked) = (false, false) }
            return s.parked
        }
        if wasParked { resume.signal() }
    }
}
