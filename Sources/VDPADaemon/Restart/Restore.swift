// Restore.swift — a start that finds a previous process's descriptors
// (docs/restart.md): the journal is read back onto the devices the state file
// made, each session is checked against the descriptors that came back, and
// what cannot be proven is dropped and logged; then a new journal is written
// from the result, the data path looks at every ring once, and each
// connection goes on where its last commit left it — the same socket, never
// reopened by the client.
import Logging
import UnixSocket
import VDPACore
import VDPAJournal
import VDPARegistry
#if canImport(Glibc)
    import Glibc
#endif

extension Daemon {
    /// Puts back what the handover holds (a no-op at a first start).
    func restoreSessions() {
        guard
            let h = handover.withLock({ h -> Handover? in
                defer { h = nil }
                return h
            })
        else { return }
        for problem in h.problems { logger.error("a journal the store gave back is left out", metadata: ["problem": "\(problem)"]) }
        defer {
            for (name, fd) in h.unknown + h.discardedJournals {
                logger.warning("dropping a descriptor the store gave back", metadata: ["name": "\(name)"])
                drop(fd, name: name)
            }
        }
        let hasSessions = !h.journals.isEmpty || !h.connections.isEmpty || !h.eventFDs.isEmpty || !h.disks.isEmpty || !h.passed.isEmpty
        guard let journal, hasSessions else {
            if hasSessions {
                logger.warning("keep_sessions is off: the previous process's sessions are dropped")
                dropAll(h)
            }
            return
        }
        let started = Systemd.monotonicMicroseconds()
        // Event numbers go on increasing for a client that asks `events` since one it saw: the previous process
        // numbered from 0 or from its own start's microseconds, and gave far fewer numbers than a microsecond each.
        service.registry.continueEvents(above: started)
        let replay = h.journal.map { file in JournalReplay(file.records) { token in h.eventFDs[token].map(EventFD.init) } } ?? JournalReplay()
        if let damaged = replay.damagedAt {
            logger.error("the journal is damaged; what follows the damage is dropped", metadata: ["offset": "\(damaged)"])
        }
        // Connections that come back: socket, inbox and outbox all there, and not ended.
        var live: [UInt64: (socket: Int32, inbox: Int32, outbox: Int32)] = [:]
        for (id, c) in h.connections {
            if let socket = c.socket, let inbox = c.inbox, let outbox = c.outbox, !replay.closed.contains(id) {
                live[id] = (socket, inbox, outbox)
            } else {
                for (name, fd) in zip(ConnectionLog.names(id), [c.socket, c.inbox, c.outbox]) { if let fd { drop(fd, name: name) } }
            }
        }
        for (id, list) in h.passed where live[id] == nil {
            for (n, fd) in list { drop(fd, name: ConnectionLog.passedName(id, n)) }
        }
        // Sessions onto the devices; one whose owner did not come back is ended as its disconnect would have.
        var restored = 0
        var remapped = 0
        var held = Set<Int32>()
        var ended: [(slot: DeviceSlot, name: String)] = []
        for slot in service.registry.allSlots() {
            slot.adopt { (d: inout VDPADevice) in
                do throws(VDPAError) {
                    try replay.apply(to: &d)
                } catch {
                    logger.error("a journaled session does not apply; it is dropped", metadata: ["device": "\(d.name)", "error": "\(error)"])
                    d.release()
                    _ = d.takeEventFDEffects()
                }
                if let owner = d.owner {
                    if live[owner.connection] == nil { ended.append((slot, d.name.rawValue)) } else { restored += 1 }
                }
                remapped += remapSharedMemory(&d, live: live.keys.contains)
                for fd in d.sessionImage.eventFDs { held.insert(fd.descriptor) }
            }
        }
        // Every eventfd a device holds is the journal's again under its token; the others are closed.
        for (token, fd) in h.eventFDs {
            if held.contains(fd) {
                fdStore.adopt(fd, name: "fd.\(token)")
                journal.adoptEventFD(fd, token: token)
            } else {
                drop(fd, name: "fd.\(token)")
            }
        }
        // RAM disks go back to their devices' data paths (read at the first request); a deleted device's goes.
        let names = Set(service.registry.deviceRecords().map(\.name))
        for (device, fd) in h.disks {
            if names.contains(device) {
                fdStore.adopt(fd, name: "disk.\(device)")
                journal.adoptDisk(fd, device: device)
            } else {
                drop(fd, name: "disk.\(device)")
            }
        }
        // A session whose connection did not come back ends as its disconnect would have (its eventfds closed once,
        // by the release, and taken out of the store).
        for (slot, name) in ended {
            logger.warning("a session's connection did not come back; the session is released", metadata: ["device": "\(name)"])
            slot.sync { $0.release() }
        }
        // The connections, each at its last commit.
        var adopted: [Connection] = []
        var unanswered = 0
        var unsent = 0
        var requeued = 0
        for (id, c) in live.sorted(by: { $0.key < $1.key }) {
            let cursor = replay.cursors[id] ?? ConnectionCursor()
            for (name, fd) in zip(ConnectionLog.names(id), [c.socket, c.inbox, c.outbox]) { fdStore.adopt(fd, name: name) }
            do {
                let log = try ConnectionLog.adopt(inbox: c.inbox, outbox: c.outbox, cursor: cursor)
                requeued += requeuePassed(h.passed[id] ?? [], connection: id, log: log)
                journal.adoptCursor(cursor, connection: id)
                unanswered += log.unanswered.count
                unsent += log.unsent
                guard let connection = makeConnection(id: id, fd: c.socket, log: log) else { continue }
                adopted.append(connection)
            } catch {
                logger.error("a connection's files cannot be read; it is closed", metadata: ["connection": "\(id)", "error": "\(error)"])
                journal.closed(connection: id)
                close(c.socket)
            }
        }
        runtime.withLock { $0.nextConnection = max($0.nextConnection, live.keys.max() ?? 0) }
        // A new journal from the result, before the old ones leave the store.
        if journal.compact({ service.registry.allSlots().map { $0.read { $0 } } }) {
            for old in h.journals { fdStore.remove(old.name) }
        } else {
            // The journal read stays the one a crash would read; this process's records go to a journal that is
            // not complete, so the next start reads the old one (and answers again what came after it).
            logger.error("the restored sessions could not be written to a new journal; the old one is kept")
        }
        for slot in service.registry.allSlots() where slot.read({ d in d.vrings.contains { $0.kick != nil } }) {
            slot.resumeAfterRestart()
        }
        for connection in adopted where !connection.start() {
            connections.withLock { _ = $0.removeValue(forKey: connection.id) }
            close(connection.fd)
        }
        logger.notice(
            "sessions restored",
            metadata: [
                "sessions": "\(restored)", "connections": "\(adopted.count)", "shared_regions": "\(remapped)",
                "journal_records": "\(replay.records)",
                "uncommitted_records": "\(replay.uncommitted)", "unanswered_bytes": "\(unanswered)", "unsent_bytes": "\(unsent)",
                "passed_descriptors": "\(requeued)",
                "ms": "\((Systemd.monotonicMicroseconds() - started) / 1000)"
            ])
    }

    /// Maps again the shared regions of `d`'s restored session from the files that came back with them, after the
    /// same check as share_memory's (the VMM may have changed its mappings meanwhile): a region left out is
    /// logged, and its file, no longer held, is closed with the descriptors nothing holds (the data path reaches
    /// that memory through process_vm_readv/writev).  Returns how many came back.
    private func remapSharedMemory(_ d: inout VDPADevice, live: (UInt64) -> Bool) -> Int {
        let files = d.takeSharedFilesToMap()
        guard let owner = d.owner, live(owner.connection) else { return 0 }  // the session is about to end
        var mapped = 0
        for f in files {
            let copy = dup(f.file.descriptor)  // mapShared takes what it is given; the region keeps the stored one
            switch service.registry.io.mapShared(copy, address: f.start, size: f.size, offset: f.offset, pid: owner.pid) {
            case .success(let mapping):
                close(copy)
                do throws(VDPAError) {
                    try d.shareMemory(SharedRegion(start: f.start, size: f.size, mapping: mapping, file: f.file, offset: f.offset))
                    mapped += 1
                } catch {
                    logger.warning(
                        "a shared region does not fit the restored table; left out", metadata: ["device": "\(d.name)", "error": "\(error)"])
                }
            case .failure(let error):
                logger.warning(
                    "a shared region cannot be mapped again; the data path reaches it through process_vm",
                    metadata: ["device": "\(d.name)", "addr": "\(f.start)", "error": "\(error.message)"])
            }
        }
        return mapped
    }

    /// The descriptors a connection passed that no committed request took go back in its queue, in the order they
    /// came, for the requests answered again; those a committed request took leave the store (the devices hold
    /// what they kept).
    private func requeuePassed(_ list: [(n: UInt64, fd: Int32)], connection id: UInt64, log: ConnectionLog) -> Int {
        let taken = log.cursor.passedTaken
        var waiting: [Int32] = []
        var broken = false  // a copy could not be made: the later ones would pair with the wrong requests
        for (n, fd) in list.sorted(by: { $0.n < $1.n }) {
            let queued = n < taken || broken ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 0)
            guard queued >= 0 else {
                if n >= taken && !broken {
                    broken = true
                    logger.error("a passed descriptor cannot be copied; it and those after it are dropped", metadata: ["connection": "\(id)"])
                }
                drop(fd, name: ConnectionLog.passedName(id, n))
                continue
            }
            fdStore.adopt(fd, name: ConnectionLog.passedName(id, n))  // the store's copy; the queue gets its own
            waiting.append(queued)
        }
        log.passedRemoved = taken
        log.passedReceived = max(taken, list.map { $0.n + 1 }.max() ?? 0)
        logger.debug(
            "passed descriptors",
            metadata: ["connection": "\(id)", "stored": "\(list.map(\.n).sorted())", "taken": "\(taken)", "queued": "\(waiting.count)"])
        if !waiting.isEmpty && !service.registry.descriptorsReceived(waiting, on: id) {
            logger.error("a connection's passed descriptors do not fit its queue; they are dropped", metadata: ["connection": "\(id)"])
            return 0
        }
        return waiting.count
    }

    /// Takes a descriptor the store gave back out of it, and closes it.
    private func drop(_ fd: Int32, name: String) {
        fdStore.adopt(fd, name: name)
        fdStore.remove(name)
        close(fd)
    }

    /// keep_sessions is off: everything of the previous process's sessions is closed and leaves the store.
    private func dropAll(_ h: Handover) {
        for journal in h.journals {  // out of the store; a journal's file closes its own descriptor
            fdStore.adopt(journal.file.file.fd, name: journal.name)
            fdStore.remove(journal.name)
        }
        var named: [(String, Int32)] = []
        for (id, c) in h.connections {
            for (name, fd) in zip(ConnectionLog.names(id), [c.socket, c.inbox, c.outbox]) { if let fd { named.append((name, fd)) } }
        }
        for (token, fd) in h.eventFDs { named.append(("fd.\(token)", fd)) }
        for (id, list) in h.passed { for (n, fd) in list { named.append((ConnectionLog.passedName(id, n), fd)) } }
        for (device, fd) in h.disks { named.append(("disk.\(device)", fd)) }
        for (name, fd) in named { drop(fd, name: name) }
    }
}
