// DeviceAttributes.swift — what `add_device` fixes for a device's lifetime,
// validated once so the device itself never holds a bad value.

/// A closed IOVA range, `first...last` (so the whole 64-bit space fits).
public struct IOVARange: Equatable, Hashable, Sendable {
    public var first: UInt64
    public var last: UInt64
    public init(first: UInt64, last: UInt64) {
        self.first = first
        self.last = last
    }
    public static let full = IOVARange(first: 0, last: .max)
}

/// Creation-time attributes of a device.
public struct DeviceAttributes: Equatable, Sendable {
    public var mac: String?
    public var mtu: Int?
    public var maxVQP: Int?
    public var iovaRange: IOVARange
    public var legacy: Bool
    /// Uids and gids besides admins that may `open` the device.
    public var users: [UInt32]
    public var groups: [UInt32]
    /// A block device's backing file (an absolute path): its disk is read from it at the first request and
    /// written through to it, so the data outlives the daemon.  Nil: a RAM disk only.
    public var backing: String?
    /// The kernel release whose rules the device follows ("6.7", "6.8", "6.12"; nil: the default,
    /// `KernelVersion.resolved`).  Any other value is EINVAL when the device is made.
    public var kernel: String?

    public init(
        mac: String? = nil, mtu: Int? = nil, maxVQP: Int? = nil, iovaRange: IOVARange = .full,
        legacy: Bool = false, users: [UInt32] = [], groups: [UInt32] = [], backing: String? = nil
    ) {
        self.backing = backing
        self.mac = mac
        self.mtu = mtu
        self.maxVQP = maxVQP
        self.iovaRange = iovaRange
        self.legacy = legacy
        self.users = users
        self.groups = groups
    }
}

/// A valid device name: `[A-Za-z0-9_.-]{1,32}`.
public struct DeviceName: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: String

    public init?(rawValue: String) {
        let ok =
            (1...32).contains(rawValue.utf8.count)
            && rawValue.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                    || c == 0x5F || c == 0x2E || c == 0x2D
            }
        guard ok else { return nil }
        self.rawValue = rawValue
    }

    public var description: String { rawValue }
    public static func < (a: DeviceName, b: DeviceName) -> Bool { a.rawValue < b.rawValue }
}

extension DeviceAttributes {
    /// Checks the attributes against the parent and fills in defaults (the parent's own rules, Parents/).
    /// - Throws: `EINVAL` naming the bad attribute.
    func validated(for mgmtdev: ManagementDevice, name: DeviceName) throws(VDPAError) -> DeviceAttributes {
        guard KernelVersion.resolved(kernel, legacy: legacy) != nil else {
            throw VDPAError(
                .EINVAL,
                "\(name): kernel \"\(kernel ?? "")\" is not one vdpad models (\(KernelVersion.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return try mgmtdev.driver.validate(self, name: name)
    }

    static func isValidMAC(_ s: String) -> Bool {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 6 && parts.allSatisfy { $0.count == 2 && UInt8($0, radix: 16) != nil }
    }

    /// A locally administered address derived from the name, stable across restarts.
    static func defaultMAC(for name: DeviceName) -> String {
        var h: UInt32 = 2_166_136_261
        for b in name.rawValue.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        let octets = [0x52, 0x54, 0x00, Int((h >> 16) & 0xFF), Int((h >> 8) & 0xFF), Int(h & 0xFF)]
        return octets.map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: ":")
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
