// FDStore.swift — the descriptors a restart needs, each under a name
// (docs/restart.md): handed to the service manager's file descriptor store
// as they appear (FDSTORE=1, FDNAME=) and taken out when they go
// (FDSTOREREMOVE=1), so they come back through LISTEN_FDS / LISTEN_FDNAMES at
// the next start; and listed here too, for an upgrade in place (re-exec),
// which passes the same names the same way without the service manager.
//
// Names: `vdpad` the listening socket, `journal` the journal, `conn.ID`,
// `in.ID`, `out.ID` a connection's socket, inbox and outbox, `fd.N` an eventfd
// a device holds (N is the token its journal images name it by), `pass.ID.N`
// a copy of the N-th descriptor connection ID passed, until a committed
// request has taken it.
import Logging
import VDPARegistry
#if canImport(Glibc)
    import Glibc
#endif

final class FDStore: Sendable {
    /// What the daemon has stored, by name: this process's own descriptor for each.
    private let stored = Locked<[String: Int32]>([:])
    private let logger: Logger
    /// Whether a service manager takes descriptors (NOTIFY_SOCKET set at start).
    let supervised: Bool

    init(logger: Logger, supervised: Bool) {
        self.logger = logger
        self.supervised = supervised
    }

    /// Keeps `fd` under `name` (replacing what the store held under it).
    func store(_ fd: Int32, name: String) {
        let (previous, stale) = stored.withLock { table -> (Int32?, [String]) in
            // A name still on a number that now names this file was not taken out when its file was closed: it
            // would hand this file over under the wrong name at the next start.
            let stale = table.filter { $0.value == fd && $0.key != name }.map(\.key)
            for key in stale { table[key] = nil }
            defer { table[name] = fd }
            return (table[name], stale)
        }
        for key in stale { logger.error("a stored name outlived its descriptor", metadata: ["name": "\(key)", "now": "\(name)"]) }
        guard supervised else { return }
        for key in stale { send("FDSTOREREMOVE=1\nFDNAME=\(key)", []) }
        if previous != nil { send("FDSTOREREMOVE=1\nFDNAME=\(name)", []) }
        send("FDSTORE=1\nFDNAME=\(name)", [fd])
    }

    /// Keeps a copy of `fd` under `name`, for a descriptor another name will hold too (a passed one, which a device
    /// takes and the journal stores as `fd.N`): the copy is the store's own, closed when the name goes
    /// (`removeCopy`), so each name stays on a number of its own.
    func storeCopy(_ fd: Int32, name: String) {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else {
            logger.error("a descriptor cannot be copied for the store; a restart will not keep it", metadata: ["name": "\(name)"])
            return
        }
        store(copy, name: name)
    }

    /// Takes a name `storeCopy` made out of the store, and closes its copy.
    func removeCopy(_ name: String) {
        guard let fd = stored.withLock({ $0.removeValue(forKey: name) }) else { return }
        if supervised { send("FDSTOREREMOVE=1\nFDNAME=\(name)", []) }
        close(fd)
    }

    /// Takes `name` out of the store (its descriptor is closed or about to be).
    func remove(_ name: String) {
        guard stored.withLock({ $0.removeValue(forKey: name) }) != nil, supervised else { return }
        send("FDSTOREREMOVE=1\nFDNAME=\(name)", [])
    }

    /// Notes a descriptor that came back from the store at start (it is in the store already).
    func adopt(_ fd: Int32, name: String) { stored.withLock { $0[name] = fd } }

    /// Everything stored, by name (for an upgrade in place).
    var all: [(name: String, fd: Int32)] { stored.withLock { $0.map { ($0.key, $0.value) }.sorted { $0.name < $1.name } } }

    private func send(_ state: String, _ fds: [Int32]) {
        if case .failed(let errno) = Systemd.notify(state, descriptors: fds) {
            logger.error("the service manager did not take a descriptor", metadata: ["state": "\(state)", "errno": "\(errno)"])
        }
    }
}
