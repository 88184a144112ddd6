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
    /// RAM disks' files, by device.
    var disks: [String: Int32] = [:]
    /// Descriptors passed on a connection and not yet taken by a committed request (`pass.ID.N`), by connection.
    var passed: [UInt64: [(n: UInt64, fd: Int32)]] = [:]
    /// Descriptors with a name nothing here knows (closed, and taken out of the store, once the start is done).
    var unknown: [(name: String, fd: Int32)] = []
    /// Journals that are not complete or not vdpad's: left out, taken out of the store (with why).
    var discardedJournals: [(name: String, fd: Int32)] = []
    var problems: [String] = []

    init(_ passed: [(fd: Int32, name: String)]) {
        for (fd, name) in passed {
            if name.hasPrefix("disk."), name.count > 5 {  // a device name may hold dots: the rest is the name
                disks[String(name.dropFirst(5))] = fd
                continue
            }
            if name.hasPrefix("pass.") {
                let numbers = name.dropFirst(5).split(separator: ".").compactMap { UInt64($0) }
                if numbers.count == 2 {
                    self.passed[numbers[0], default: []].append((numbers[1], fd))
                } else {
                    unknown.append((name, fd))
                }
                continue
            }
            let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
            let number = parts.count == 2 ? UInt64(parts[1]) : nil
            switch (parts[0], number) {
            case ("vdpad", nil) where parts.count == 1: listener = fd
            case ("vdpad-owned", nil) where parts.count == 1:
                listener = fd
                ownsListener = true
            case ("journal", let generation?):
                switch JournalFile.adopt(dup(fd)) {
                case .success(let file) where file.generation == generation && file.isComplete:
                    journals.append((generation, file, name))
                    close(fd)
                    continue
                case .success(let file):
                    problems.append("\(name): generation \(file.generation), \(file.isComplete ? "complete" : "not complete")")
                case .failure(let why):
                    problems.append("\(name): \(why)")
                }
                discardedJournals.append((name, fd))
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

    /// An upgrade in place (Daemon.upgrade) names the descriptors it leaves open here: `FD:NAME,…`.
    static let environmentKey = "VDPAD_HANDOVER"

    static func encode(_ entries: [(name: String, fd: Int32)]) -> String {
        entries.map { "\($0.fd):\($0.name)" }.joined(separator: ",")
    }

    /// The descriptors the process this one replaced left open (each checked open, close-on-exec set again);
    /// the variable is removed, so nothing this process starts inherits it.
    static func inherited() -> [(fd: Int32, name: String)] {
        guard let value = getenv(environmentKey).map({ String(cString: $0) }) else { return [] }
        unsetenv(environmentKey)
        return value.split(separator: ",").compactMap { item -> (fd: Int32, name: String)? in
            let parts = item.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let fd = Int32(parts[0]), fd > 2, fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else { return nil }
            return (fd, String(parts[1]))
        }
    }

    /// The newest complete journal (a compaction stores its new journal before the old one goes).
    var journal: JournalFile? { journals.last?.file }
    var nextGeneration: UInt64 { (journals.map(\.generation).max() ?? 0) + 1 }
}
