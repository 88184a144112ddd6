// VirtioDevice.swift — what a virtio driver reads from the parent once:
// the device id, the queue-size limit, the config-space size and layout
// (docs/kernel-rules.md R45–R52), and the eventfd handles vhost passes to the parent
// (B17).  Values mirror vdpa_sim_net, vdpa_sim_blk and mlx5_vdpa.

/// Virtio device ids (VHOST_VDPA_GET_DEVICE_ID, R45).
public enum VirtioDeviceID: UInt32, Sendable {
    case net = 1
    case block = 2
}

extension DeviceClass {
    public var deviceID: VirtioDeviceID { self == .net ? .net : .block }
}

extension ManagementDevice {
    /// VHOST_VDPA_GET_VRING_NUM: the parent's largest queue (R45: 256 for vdpa_sim and mlx5).  Not a bound
    /// on SET_VRING_NUM (R58, edge #60).
    public var virtqueueSizeMax: Int { 256 }
}

/// An eventfd handed to a device (SET_VRING_KICK / SET_VRING_CALL / SET_CONFIG_CALL).  The core never
/// reads or writes it: it records which ones to signal and which to close (`EventFDEffects`), and the
/// layer that owns descriptors carries that out while it still holds the device.
public struct EventFD: Hashable, Sendable {
    public let descriptor: Int32
    public init(_ descriptor: Int32) { self.descriptor = descriptor }
}

/// What the last operations asked of the eventfds they touched, in order: signal first, then close; and
/// whether the data path must look again (a kick bound or unbound, a resume that replays kicks).
public struct EventFDEffects: Equatable, Sendable {
    public var signal: [EventFD] = []
    public var close: [EventFD] = []
    /// The set of kick eventfds changed: the data-path worker re-reads it.
    public var kicksChanged = false
    /// The device resumed: kicks that came while it was suspended are served now (edge D2).
    public var resumed = false
    public var isEmpty: Bool { signal.isEmpty && close.isEmpty && !kicksChanged && !resumed }
    public init() {}
}

/// The bytes of a device's config space, in the virtio layouts (little-endian, R50).
enum ConfigLayout {
    /// `struct virtio_net_config` as a parent fills it at creation: mac @0, status @6,
    /// max_virtqueue_pairs @8, mtu @10; speed, duplex and the rss fields 0 (R51).
    static func net(mac: String, mtu: Int, maxVirtqueuePairs: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 24)
        for (k, octet) in mac.split(separator: ":").enumerated() { bytes[k] = UInt8(octet, radix: 16) ?? 0 }
        put16(&bytes, 8, UInt16(maxVirtqueuePairs))
        put16(&bytes, 10, UInt16(mtu))
        return bytes
    }

    /// `struct virtio_blk_config` as vdpa_sim_blk rebuilds it on every read (R52): 128 MiB.
    static let block: [UInt8] = {
        var b = [UInt8](repeating: 0, count: 96)
        put64(&b, 0, 0x40000)  // capacity, 512-byte sectors
        put32(&b, 8, 4096)  // size_max
        put32(&b, 12, 32)  // seg_max
        put32(&b, 20, 512)  // blk_size
        put16(&b, 26, 1)  // min_io_size
        put32(&b, 28, 1)  // opt_io_size
        put16(&b, 34, 1)  // num_queues
        put32(&b, 36, 0xFFFF_FFFF)  // max_discard_sectors
        put32(&b, 40, 1)  // max_discard_seg
        put32(&b, 44, 512)  // discard_sector_alignment
        put32(&b, 48, 0xFFFF_FFFF)  // max_write_zeroes_sectors
        put32(&b, 52, 1)  // max_write_zeroes_seg
        return b
    }()

    /// VIRTIO_NET_S_LINK_UP in the net config's status field.
    static let linkUp: UInt16 = 1

    static func put16(_ b: inout [UInt8], _ at: Int, _ v: UInt16) { for k in 0..<2 { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
    static func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) { for k in 0..<4 { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
    static func put64(_ b: inout [UInt8], _ at: Int, _ v: UInt64) { for k in 0..<8 { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
}

/// Little-endian reads of config bytes, for the decoded views.
extension Array where Element == UInt8 {
    public func le(_ at: Int, _ size: Int) -> UInt64 {
        (0..<size).reduce(0) { $0 | UInt64(self[at + $1]) << (8 * UInt64($1)) }
    }
}
