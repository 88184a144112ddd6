// DaemonSignals.swift — the signals the daemon acts on (SIGTERM, SIGINT,
// SIGHUP, SIGUSR2) are blocked in every thread from the first instruction of
// `Daemon.run` and taken one at a time by the main thread with sigwaitinfo(2),
// which acts on each before it takes the next — an upgrade in place included:
// the exec happens there, so no signal is ever taken and left unacted on by
// the image that goes away.  (With a Dispatch signal source, or a hand-off to
// a queue, a SIGTERM taken while an upgrade was under way waited behind it and
// died with the old image: the daemon never stopped.)  A blocked signal stays
// pending across execve(2): one that arrives during an upgrade is the new
// process's to act on, instead of killing it between the two images.
import Dispatch
#if canImport(Glibc)
    import Glibc
#endif

enum DaemonSignals {
    static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR2]

    private static var set: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for sig in handled { sigaddset(&set, sig) }
        return set
    }

    /// Blocks the handled signals in the calling thread and in every thread it starts from now on (they inherit
    /// its mask; Dispatch's own threads block every signal).  Sent meanwhile, a signal waits, pending.
    static func block() {
        var set = set
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Takes the handled signals one at a time on this thread, forever, and runs `handle` for each on `queue`
    /// (waiting for it: the next signal is taken only after).
    static func serve(on queue: DispatchQueue, _ handle: (Int32) -> Void) -> Never {
        var set = set
        while true {
            let sig = sigwaitinfo(&set, nil)
            if sig > 0 { queue.sync { handle(sig) } }
        }
    }

    /// Asks the signal thread for `sig`'s action (the daemon signals itself: an RPC's upgrade runs where a SIGUSR2's
    /// does).
    static func raise(_ sig: Int32) { kill(getpid(), sig) }
}
