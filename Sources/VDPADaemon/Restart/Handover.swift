// Handover.swift — what a start got back from the service manager's store or
// from the process it replaced (LISTEN_FDS / LISTEN_FDNAMES, names in
// FDStore.swift), sorted by what each descriptor is.
import VDPAJournal
#if canImport(Glibc)
    import Glibc
#endif

struct Handover {
    /// The listening socket: socket activation's (`vdpad`, or the first unnamed one), or one this daemon created
    /// at its socket path and handed to itself in an upgrade (`vdpad-owned`: it still unlinks the path at stop).
    var listener: Int32?
    var ownsListener = false
    var journals: [(generation: UInt64, file: JournalFile, name: String)] = []
    var connections: [UInt64: (socket: Int32?, inbox: Int32?, outbox: Int32?)] = [:]
    var eventFDs: [UInt32: Int32] = [:]
    /// Descriptors with a name nothing here knows (closed, and taken out of the store, once the start is done).
    var unknown: [(name: String, fd: Int32)] = []
    /// Journals that are not complete or not vdpad's: left out, taken out of the store.
    var discardedJournals: [(name: String, fd: Int32)] = []

    init(_ passed: [(fd: Int32, name: String)]) {
        for (fd, name) in passed {
            let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
            let number = parts.count == 2 ? UInt64(parts[1]) : nil
            switch (parts[0], number) {
            case ("vdpad", nil) where parts.count == 1: listener = fd
            case ("vdpad-owned", nil) where parts.count == 1:
                listener = fd
                ownsListener = true
            case ("journal", let generation?):
                if let file = JournalFile(adopting: fd), file.generation == generation, file.isComplete {
                    journals.append((generation, file, name))
                } else {
                    discardedJournals.append((name, fd))
                }
            case ("conn", let id?): connections[id, default: (nil, nil, nil)].socket = fd
            case ("in", let id?): connections[id, default: (nil, nil, nil)].inbox = fd
            case ("out", let id?): connections[id, default: (nil, nil, nil)].outbox = fd
            case ("fd", let token?) where token <= UInt64(UInt32.max): eventFDs[UInt32(token)] = fd
            default: unknown.append((name, fd))
            }
        }
        // Socket activation without FileDescriptorName=: the first descriptor nothing else claims.
        if listener == nil, let first = unknown.first {
            listener = first.fd
            unknown.removeFirst()
        }
        journals.sort { $0.generation < $1.generation }
    }

    /// The newest complete journal (a compaction stores its new journal before the old one goes).
    var journal: JournalFile? { journals.last?.file }
    var nextGeneration: UInt64 { (journals.map(\.generation).max() ?? 0) + 1 }
}
