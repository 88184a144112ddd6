// Events.swift — what the registry reports to subscribers and keeps for
// get_events (docs/protocol.md §5.4), as typed values: the RPC layer encodes
// them, so an event's fields are decided here once.
#if canImport(Glibc)
    import Glibc
#endif
import VDPACore

/// The events a connection can subscribe to.
public enum EventType: String, CaseIterable, Sendable {
    case deviceAdded = "device_added", deviceRemoved = "device_removed", statusChanged = "status_changed"
    case ownerChanged = "owner_changed", sessionClosed = "session_closed"
}

/// One event, numbered in the order the registry emitted it.
public struct Event: Equatable, Sendable {
    public var seq: UInt64
    /// Seconds since the epoch.
    public var time: UInt64
    public var device: String
    public var kind: Kind

    public enum Kind: Equatable, Sendable {
        case deviceAdded(mgmtdev: String)
        case deviceRemoved
        case statusChanged(status: UInt8, previous: UInt8)
        /// `owner` nil: the session ended, for `reason`.
        case ownerChanged(owner: Owner?, reason: SessionEnd?)
        case sessionClosed(reason: SessionEnd)
    }

    /// Why a session ended.
    public enum SessionEnd: String, Sendable {
        case close, disconnect
        case deviceDeleted = "device deleted"
    }

    public var type: EventType {
        switch kind {
        case .deviceAdded: .deviceAdded
        case .deviceRemoved: .deviceRemoved
        case .statusChanged: .statusChanged
        case .ownerChanged: .ownerChanged
        case .sessionClosed: .sessionClosed
        }
    }
}

/// Where a connection's events go (the RPC layer encodes them for its socket).
public protocol EventSubscriber: AnyObject, Sendable {
    func deliver(_ event: Event)
    /// Whether the client on the other end is gone (its process died or closed the socket) even though the
    /// connection's end has not been read yet: `open` then releases what it owned at once, as the kernel's
    /// file is released before its process is reaped.
    var peerHungUp: Bool { get }
}

extension EventSubscriber {
    public var peerHungUp: Bool { false }
}

/// A bounded buffer of events with increasing sequence numbers.
final class EventLog: Sendable {
    private let state: Locked<(seq: UInt64, items: [Event])>
    private let capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 1024)
        state = Locked((0, []))
    }

    func append(_ kind: Event.Kind, device: String) -> Event {
        let time = UInt64(max(0, Glibc.time(nil)))
        return state.withLock { s in
            s.seq += 1
            let event = Event(seq: s.seq, time: time, device: device, kind: kind)
            s.items.append(event)
            if s.items.count > capacity { s.items.removeFirst(s.items.count - capacity) }
            return event
        }
    }

    var latest: UInt64 { state.withLock { $0.seq } }

    /// The next event is numbered above `seq` (and above every number given so far).
    func advance(to seq: UInt64) { state.withLock { $0.seq = max($0.seq, seq) } }

    func since(_ seq: UInt64) -> (events: [Event], next: UInt64) {
        state.withLock { s in
            // The buffer holds consecutive seqs ending at s.seq, so the answer is a suffix.
            let wanted = s.seq > seq ? Int(min(s.seq - seq, UInt64(s.items.count))) : 0
            return (Array(s.items.suffix(wanted)), s.seq)
        }
    }
}
