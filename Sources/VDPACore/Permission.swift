// Permission.swift — the access rights of an IOTLB entry.

/// Access rights of a mapping, as `VHOST_ACCESS_*` / `VHOST_MAP_*` (same values).
public struct Permission: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `VHOST_ACCESS_RO` (1): the device may read.
    public static let read = Permission(rawValue: 1)
    /// `VHOST_ACCESS_WO` (2): the device may write.
    public static let write = Permission(rawValue: 2)
    /// `VHOST_ACCESS_RW` (3).
    public static let readWrite: Permission = [.read, .write]

    /// Parses the wire names `ro`, `wo`, `rw`.
    public init?(name: String) {
        switch name {
        case "ro": self = .read
        case "wo": self = .write
        case "rw": self = .readWrite
        default: return nil
        }
    }

    public var description: String {
        switch rawValue {
        case 1: "ro"
        case 2: "wo"
        case 3: "rw"
        default: "perm(\(rawValue))"
        }
    }
}

/// A device access, for `translate`.
public enum Access: String, Sendable {
    case read, write

    var required: Permission { self == .read ? .read : .write }
}
