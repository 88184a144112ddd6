// Identifiers.swift — the numbers a VMM names things by, as types: an ASID,
// a virtqueue index and a virtqueue group are all u32/u64 on the wire and in
// the kernel's ioctls, and nothing stops one being passed for another there.
// Values are as sent (a range check belongs to the rule that names it: R6
// for an ASID, R22/R44 for a vq, R23 for a group), so any value is one; a
// value that passed its check is an `Int` index into the device's arrays.
// Each prints as its bare number, as messages and the wire show it.

/// A number of one kind; `Kind` only keeps the kinds apart (it has no values).
public struct Identifier<Kind>: RawRepresentable, Hashable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt64) { rawValue = value }
    @inlinable public init(integerLiteral value: UInt64) { rawValue = value }
    public var description: String { "\(rawValue)" }
}

public enum AddressSpaceKind {}
public enum VirtqueueKind {}
public enum VirtqueueGroupKind {}

/// An address space id (vhost_msg_v2.asid, VHOST_VDPA_SET_GROUP_ASID's num).
public typealias ASID = Identifier<AddressSpaceKind>
/// A virtqueue index (vhost_vring_state.index).
public typealias VirtqueueIndex = Identifier<VirtqueueKind>
/// A virtqueue group (VHOST_VDPA_GET_VRING_GROUP's answer, SET_GROUP_ASID's index).
public typealias GroupIndex = Identifier<VirtqueueGroupKind>
