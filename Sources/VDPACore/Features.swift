// Features.swift — backend features (VHOST_BACKEND_F_*) and virtio device
// features, with the names the wire protocol uses.
//
// The kernel macros are bit numbers, not masks (vhost_types.h); confusing the
// two is the classic bug, so both sets are OptionSets built from bit numbers.

/// vhost backend features (`VHOST_BACKEND_F_*`).
public struct BackendFeatures: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// `VHOST_BACKEND_F_IOTLB_MSG_V2` (bit 1).
    public static let iotlbMessageV2 = BackendFeatures(rawValue: 1 << 1)
    /// `VHOST_BACKEND_F_IOTLB_BATCH` (bit 2).
    public static let iotlbBatch = BackendFeatures(rawValue: 1 << 2)
    /// `VHOST_BACKEND_F_IOTLB_ASID` (bit 3): the v2 message's asid is honoured.
    public static let iotlbASID = BackendFeatures(rawValue: 1 << 3)
    /// `VHOST_BACKEND_F_SUSPEND` (bit 4).
    public static let suspend = BackendFeatures(rawValue: 1 << 4)
    /// `VHOST_BACKEND_F_RESUME` (bit 5).
    public static let resume = BackendFeatures(rawValue: 1 << 5)
    /// `VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK` (bit 6).
    public static let enableAfterDriverOK = BackendFeatures(rawValue: 1 << 6)
    /// `VHOST_BACKEND_F_DESC_ASID` (bit 7, Linux 6.7): rings may live in another ASID.
    public static let descASID = BackendFeatures(rawValue: 1 << 7)
    /// `VHOST_BACKEND_F_IOTLB_PERSIST` (bit 8, Linux 6.7): mappings survive a device reset.
    public static let iotlbPersist = BackendFeatures(rawValue: 1 << 8)

    /// Every bit SET_BACKEND_FEATURES knows (R28).
    public static let known: BackendFeatures = BackendFeatures(rawValue: 0x1FE)

    public static let names: [(String, BackendFeatures)] = [
        ("IOTLB_MSG_V2", .iotlbMessageV2), ("IOTLB_BATCH", .iotlbBatch), ("IOTLB_ASID", .iotlbASID),
        ("SUSPEND", .suspend), ("RESUME", .resume), ("ENABLE_AFTER_DRIVER_OK", .enableAfterDriverOK),
        ("DESC_ASID", .descASID), ("IOTLB_PERSIST", .iotlbPersist)
    ]

    public init?(name: String) {
        guard let hit = Self.names.first(where: { $0.0 == name }) else { return nil }
        self = hit.1
    }

    /// Names of the known bits that are set, in bit order.
    public var names: [String] { Self.names.filter { contains($0.1) }.map(\.0) }
}

/// Virtio device feature bits by name, per device class (virtio spec names without `VIRTIO_*_F_`).
public enum VirtioFeatures {
    static let common: [(String, Int)] = [
        ("NOTIFY_ON_EMPTY", 24), ("ANY_LAYOUT", 27), ("RING_INDIRECT_DESC", 28), ("RING_EVENT_IDX", 29),
        ("VERSION_1", 32), ("ACCESS_PLATFORM", 33), ("RING_PACKED", 34), ("IN_ORDER", 35),
        ("ORDER_PLATFORM", 36), ("SR_IOV", 37), ("NOTIFICATION_DATA", 38), ("RING_RESET", 40)
    ]
    static let net: [(String, Int)] = [
        ("CSUM", 0), ("GUEST_CSUM", 1), ("CTRL_GUEST_OFFLOADS", 2), ("MTU", 3), ("MAC", 5),
        ("GUEST_TSO4", 7), ("GUEST_TSO6", 8), ("GUEST_ECN", 9), ("GUEST_UFO", 10), ("HOST_TSO4", 11),
        ("HOST_TSO6", 12), ("HOST_ECN", 13), ("HOST_UFO", 14), ("MRG_RXBUF", 15), ("STATUS", 16),
        ("CTRL_VQ", 17), ("CTRL_RX", 18), ("CTRL_VLAN", 19), ("GUEST_ANNOUNCE", 21), ("MQ", 22),
        ("CTRL_MAC_ADDR", 23)
    ]
    static let block: [(String, Int)] = [
        ("SIZE_MAX", 1), ("SEG_MAX", 2), ("GEOMETRY", 4), ("RO", 5), ("BLK_SIZE", 6), ("FLUSH", 9),
        ("TOPOLOGY", 10), ("CONFIG_WCE", 11), ("MQ", 12), ("DISCARD", 13), ("WRITE_ZEROES", 14)
    ]

    static func table(for deviceClass: DeviceClass) -> [(String, Int)] {
        (deviceClass == .net ? net : block) + common
    }

    /// The mask for a name, or nil if the class has no such feature.
    public static func bit(named name: String, class deviceClass: DeviceClass) -> UInt64? {
        table(for: deviceClass).first { $0.0 == name }.map { 1 << UInt64($0.1) }
    }

    /// Names of the set bits the class knows, in bit order; unknown bits are named `bitN`.
    public static func names(of mask: UInt64, class deviceClass: DeviceClass) -> [String] {
        let table = table(for: deviceClass)
        return (0..<64).compactMap { bit -> String? in
            guard mask & (1 << UInt64(bit)) != 0 else { return nil }
            return table.first { $0.1 == bit }?.0 ?? "bit\(bit)"
        }
    }

    public static func mask(_ names: String..., class deviceClass: DeviceClass) -> UInt64 {
        names.reduce(0) { $0 | bit(named: $1, class: deviceClass)! }
    }
}

/// Virtio device status bits (virtio spec 2.1).
public enum VirtioStatus {
    public static let acknowledge: UInt8 = 1
    public static let driver: UInt8 = 2
    public static let driverOK: UInt8 = 4
    public static let featuresOK: UInt8 = 8
    public static let needsReset: UInt8 = 64
    public static let failed: UInt8 = 128
}
