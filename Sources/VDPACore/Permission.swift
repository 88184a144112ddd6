// Permission.swift — the access rights of an IOTLB entry.

/// Access rights of a mapping, as `VHOST_ACCESS_*` / `VHOST_MAP_*` (same values).
public struct Permission: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    // Computed and inlinable rather than `static let`: a stored global costs other modules an
    // addressor call (with its once-check) on every use, and the fast path names these per map.
    /// `VHOST_ACCESS_RO` (1): the device may read.
    @inlinable public static var read: Permission { Permission(rawValue: 1) }
    /// `VHOST_ACCESS_WO` (2): the device may write.
    @inlinable public static var write: Permission { Permission(rawValue: 2) }
    /// `VHOST_ACCESS_RW` (3).
    @inlinable public static var readWrite: Permission { Permission(rawValue: 3) }

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
public enum Access: String, Sendable, CaseIterable {
    case read, write

    var required: Permission { self == .read ? .read : .write }
}
