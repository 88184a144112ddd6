// JournalReplay.swift — what a journal says, read back: per connection the
// cursor of its last commit, per device the committed images and table
// operations in the order the device saw them, and how to put them on a
// device.  Pure: the daemon hands it the journal's committed bytes.
import VDPACore

public struct JournalReplay: Sendable {
    /// What happened to one device, in order.
    public enum Step: Sendable {
        case image(SessionImage)
        case ops([SessionOp])
    }

    /// Connections that committed at least once and did not end, with where they stood.
    public private(set) var cursors: [UInt64: ConnectionCursor] = [:]
    /// Connections that ended.
    public private(set) var closed: Set<UInt64> = []
    public private(set) var devices: [String: [Step]] = [:]
    /// Records read, and those left out because their transaction never committed.
    public private(set) var records = 0
    public private(set) var uncommitted = 0
    /// Set when a record inside the committed length could not be read (the journal is not vdpad's, or
    /// another version's): everything from it on is ignored.
    public private(set) var damagedAt: Int?

    public init() {}

    /// Reads the framed records in `bytes` (a journal's committed length).
    public init(_ bytes: UnsafeRawBufferPointer, eventFD: (UInt32) -> EventFD?) {
        var parsed: [JournalRecord] = []
        var offset = 0
        var damaged: Int?
        while offset < bytes.count {
            guard bytes.count - offset >= 4 else {
                damaged = offset
                break
            }
            let n = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            guard n <= bytes.count - offset - 4 else {
                damaged = offset
                break
            }
            var r = JournalReader(UnsafeRawBufferPointer(rebasing: bytes[offset + 4..<offset + 4 + n]))
            guard let record = try? JournalRecord(from: &r, eventFD: eventFD) else {
                damaged = offset
                break
            }
            parsed.append(record)
            offset += 4 + n
        }
        self.init(parsed)
        damagedAt = damaged
    }

    /// Sorts `records` out (the order is the journal's).
    public init(_ records: [JournalRecord]) {
        var lastCommit: [UInt64: UInt64] = [:]
        for case .commit(let t, let cursor) in records {
            lastCommit[t.connection] = max(lastCommit[t.connection] ?? 0, t.sequence)
            cursors[t.connection] = cursor
        }
        func committed(_ t: Transaction) -> Bool {
            t.connection == 0 || (lastCommit[t.connection].map { t.sequence <= $0 } ?? false)
        }
        self.records = records.count
        for record in records {
            switch record {
            case .ops(let device, let t, let ops):
                guard committed(t) else {
                    uncommitted += 1
                    continue
                }
                devices[device, default: []].append(.ops(ops))
            case .image(let device, let t, let image):
                guard committed(t) else {
                    uncommitted += 1
                    continue
                }
                devices[device, default: []].append(.image(image))
            case .commit:
                break
            case .closed(let connection):
                closed.insert(connection)
                cursors[connection] = nil
            case .forget(let device):
                devices[device] = nil
            }
        }
    }

    /// Puts what the journal says of `device` on it (a device fresh from the state file).  Throws when a
    /// step does not apply: the journal does not describe this device, and the caller drops the session.
    public func apply(to device: inout VDPADevice) throws(VDPAError) {
        guard let steps = devices[device.name.rawValue] else { return }
        for step in steps {
            switch step {
            case .image(let image): try device.restore(image)
            case .ops(let ops): for op in ops { try device.replay(op) }
            }
        }
    }

    /// The records a compacted journal starts with: each device's image and tables as they are (every device:
    /// what outlives a session — a table kept by IOTLB_PERSIST, a MAC written, a link set down — is kept too),
    /// and each live connection's cursor (committed by the daemon's transaction).
    public static func snapshot(devices: [VDPADevice], cursors: [UInt64: ConnectionCursor]) -> [JournalRecord] {
        var records: [JournalRecord] = []
        for d in devices {
            records.append(.image(device: d.name.rawValue, transaction: .daemon, d.sessionImage))
            records.append(.ops(device: d.name.rawValue, transaction: .daemon, d.tableImage))
        }
        for (connection, cursor) in cursors.sorted(by: { $0.key < $1.key }) {
            records.append(.commit(Transaction(connection: connection, sequence: 0), cursor))
        }
        return records
    }
}
