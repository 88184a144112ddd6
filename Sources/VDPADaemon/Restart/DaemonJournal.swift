// DaemonJournal.swift — the session journal as the daemon keeps it
// (docs/restart.md): the records the devices hand over (SessionJournal) go
// into a memfd in the service manager's store, each under the transaction of
// the connection whose request caused it; a connection's commit says its
// requests count.  Eventfds an image names are stored as `fd.N` and written as
// N.  When the journal has grown past its bound it is rewritten from the
// devices as they are (a new generation, stored before the old one goes).
import CVDPAShim
import Logging
import UnixSocket
import VDPACore
import VDPAJournal
import VDPARegistry
#if canImport(Glibc)
    import Glibc
#endif

final class DaemonJournal: SessionJournal, @unchecked Sendable {
    private struct State {
        var file: JournalFile
        var tokens: [Int32: UInt32] = [:]
        var nextToken: UInt32 = 1
        /// Tokens of eventfds closed since the last commit: taken out of the store once an image without them counts.
        var removals: [UInt32] = []
        var cursors: [UInt64: ConnectionCursor] = [:]
        var writer = JournalWriter()
        /// While a compaction reads the devices: the records written meanwhile, for the new journal too.
        var duringCompaction: [UInt8]?
        var failure: String?
        /// RAM disks kept across restarts, by device (`disk.NAME` in the store).
        var disks: [String: Int32] = [:]
    }

    private let state: Locked<State>
    let store: FDStore
    private let logger: Logger
    /// Held shared by a connection for each round of requests (and by a release), exclusively by a compaction, so a
    /// compaction never sees a device changed by a request whose transaction has not committed.
    private let gate = ReadWriteLock()
    /// A compaction starts once the journal holds this many bytes more than its last snapshot.
    let compactionSlack: Int
    private let snapshotBytes = Locked(0)
    /// Set by the commit that asked for a compaction, cleared when it is done: one at a time.
    private let compactionAsked = Locked(false)

    /// A journal of generation `generation`, stored at once.  `complete`: false when a restart's sessions are still
    /// to be put back — until the compaction that follows, the journal before it is the one a crash would read.
    init(store: FDStore, logger: Logger, generation: UInt64 = 1, complete: Bool = true, compactionSlack: Int = 64 << 20) throws(SystemCallError) {
        self.store = store
        self.logger = logger
        self.compactionSlack = compactionSlack
        let file = try JournalFile(generation: generation)
        if complete { file.markComplete() }
        state = Locked(State(file: file))
        store.store(file.file.fd, name: Self.name(generation))
    }

    /// Each generation has its own name: the new one is in the store before the old one leaves it.
    static func name(_ generation: UInt64) -> String { "journal.\(generation)" }

    // MARK: Transactions

    private static let transactionKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Runs `body` as `transaction` on this thread: what the devices record meanwhile is the transaction's.
    func transaction<T>(_ transaction: Transaction, _ body: () -> T) -> T {
        gate.withReadLock {
            var t = transaction
            return withUnsafeMutablePointer(to: &t) { p in
                pthread_setspecific(Self.transactionKey, p)
                defer { pthread_setspecific(Self.transactionKey, nil) }
                return body()
            }
        }
    }

    private var currentTransaction: Transaction {
        pthread_getspecific(Self.transactionKey)?.assumingMemoryBound(to: Transaction.self).pointee ?? .daemon
    }

    // MARK: SessionJournal

    func record(device: String, ops: [SessionOp], image: SessionImage?) {
        let t = currentTransaction
        state.withLock { s in
            var w = JournalWriter()
            swap(&w, &s.writer)  // its buffer, without a second reference to it
            w.removeAll()
            if !ops.isEmpty { JournalRecord.ops(device: device, transaction: t, ops).encode(into: &w) { _ in 0 } }
            if let image { encode(.image(device: device, transaction: t, image), into: &w, &s) }
            swap(&w, &s.writer)
            write(&s)
        }
    }

    /// Encodes `record`, each eventfd as its token: one that has none gets the next, and goes into the store as
    /// `fd.TOKEN` before any record names it.
    private func encode(_ record: JournalRecord, into w: inout JournalWriter, _ s: inout State) {
        var (tokens, next) = (s.tokens, s.nextToken)
        record.encode(into: &w) { fd in
            if let token = tokens[fd.descriptor] { return token }
            defer { next += 1 }
            tokens[fd.descriptor] = next
            store.store(fd.descriptor, name: "fd.\(next)")
            return next
        }
        (s.tokens, s.nextToken) = (tokens, next)
    }

    func forget(device: String) {
        append(.forget(device: device))
        if let fd = state.withLock({ $0.disks.removeValue(forKey: device) }) {
            store.remove("disk.\(device)")
            close(fd)
        }
    }

    func diskFile(device: String, bytes: Int) -> Int32? {
        state.withLock { s -> Int32? in
            if let fd = s.disks[device] { return dup(fd) }
            let fd = vdpad_memfd("vdpad-disk.\(device)")
            guard fd >= 0 else { return nil }
            guard ftruncate(fd, off_t(bytes)) == 0 else {
                close(fd)
                return nil
            }
            s.disks[device] = fd
            store.store(fd, name: "disk.\(device)")
            return dup(fd)
        }
    }

    /// Keeps a RAM disk's file that came back from the store.
    func adoptDisk(_ fd: Int32, device: String) { state.withLock { $0.disks[device] = fd } }

    func closing(_ fds: [EventFD]) {
        state.withLock { s in
            for fd in fds { if let token = s.tokens.removeValue(forKey: fd.descriptor) { s.removals.append(token) } }
        }
    }

    // MARK: Connections

    /// The requests of `transaction` count; its connection stands at `cursor`.  Returns whether the journal has
    /// grown enough to be compacted (the caller does it outside its own locks: `compact`).
    @discardableResult
    func commit(_ transaction: Transaction, _ cursor: ConnectionCursor) -> Bool {
        let (removals, size) = state.withLock { s -> ([UInt32], Int) in
            s.cursors[transaction.connection] = cursor
            s.writer.removeAll()
            JournalRecord.commit(transaction, cursor).encode(into: &s.writer) { _ in 0 }
            write(&s)
            defer { s.removals.removeAll() }
            return (s.removals, s.file.committed)
        }
        for token in removals { store.remove("fd.\(token)") }
        guard size > snapshotBytes.withLock({ $0 }) + compactionSlack else { return false }
        return compactionAsked.withLock { asked in
            defer { asked = true }
            return !asked
        }
    }

    /// A connection ended: its cursor goes, and its descriptors leave the store.
    func closed(connection: UInt64) {
        state.withLock { $0.cursors[connection] = nil }
        append(.closed(connection: connection))
        for name in ConnectionLog.names(connection) { store.remove(name) }
    }

    /// Runs `body` with no round of requests in flight and none starting (an upgrade in place: every connection
    /// stands at a commit).
    func quiesced<T>(_ body: () -> T) -> T { gate.withWriteLock(body) }

    /// Runs `body` (a connection's end, which releases its devices) where no compaction can see half of it.
    func outsideCompaction<T>(_ body: () -> T) -> T { gate.withReadLock(body) }

    private func append(_ record: JournalRecord) {
        state.withLock { s in
            s.writer.removeAll()
            record.encode(into: &s.writer) { _ in 0 }
            write(&s)
        }
    }

    private func write(_ s: inout State) {
        let file = s.file
        let failure = s.writer.withBytes { bytes -> SystemCallError? in
            do throws(SystemCallError) { try file.append(bytes) } catch { return error }
            return nil
        }
        if failure == nil, s.duringCompaction != nil { s.duringCompaction! += s.writer.bytes }
        if let error = failure {
            // Sessions go on; what a restart could give back is now incomplete: said once, loudly.
            if s.failure == nil {
                s.failure = "\(error)"
                logger.error("the session journal cannot grow; a restart will lose sessions", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: Restore and compaction

    /// Notes an eventfd that came back from the store as `fd.TOKEN` and that a restored device holds.
    func adoptEventFD(_ fd: Int32, token: UInt32) {
        state.withLock { s in
            s.tokens[fd] = token
            s.nextToken = max(s.nextToken, token + 1)
        }
    }

    /// Starts the cursors of connections given back by a restart.
    func adoptCursor(_ cursor: ConnectionCursor, connection: UInt64) { state.withLock { $0.cursors[connection] = cursor } }

    /// Rewrites the journal from the devices as they are now (`read` gives each device's value), in a new memfd
    /// stored before the old one leaves the store: a crash at any point leaves one complete journal.  Returns
    /// whether it did (false: the old journal is kept, and said why in the log).
    @discardableResult
    func compact(_ devices: () -> [VDPADevice]) -> Bool {
        defer { compactionAsked.withLock { $0 = false } }
        return gate.withWriteLock { () -> Bool in
            state.withLock { $0.duringCompaction = [] }
            let values = devices()
            let (old, fresh) = state.withLock { s -> (JournalFile, JournalFile?) in
                let old = s.file
                defer { s.duringCompaction = nil }
                guard let fresh = try? JournalFile(generation: old.generation + 1) else { return (old, nil) }
                var w = JournalWriter()
                for record in JournalReplay.snapshot(devices: values, cursors: s.cursors) { encode(record, into: &w, &s) }
                do {
                    try fresh.append(w.bytes + (s.duringCompaction ?? []))
                } catch {
                    logger.error("journal compaction failed; keeping the old journal", metadata: ["error": "\(error)"])
                    return (old, nil)
                }
                fresh.markComplete()
                s.file = fresh
                return (old, fresh)
            }
            guard let fresh else { return false }
            snapshotBytes.withLock { $0 = fresh.committed }
            store.store(fresh.file.fd, name: Self.name(fresh.generation))
            store.remove(Self.name(old.generation))
            logger.info("journal compacted", metadata: ["generation": "\(fresh.generation)", "bytes": "\(fresh.committed)"])
            return true
        }
    }

    /// Bytes in the journal now (metrics, the restart figures).
    var bytes: Int { state.withLock { $0.file.committed } }
    var generation: UInt64 { state.withLock { $0.file.generation } }
}

/// A pthread read-write lock (readers are the connections' rounds; the writer is a compaction).
final class ReadWriteLock: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

    init() { pthread_rwlock_init(lock, nil) }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func withReadLock<T>(_ body: () -> T) -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return body()
    }

    func withWriteLock<T>(_ body: () -> T) -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return body()
    }
}
