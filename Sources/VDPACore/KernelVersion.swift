// KernelVersion.swift — the Linux release whose vhost-vdpa and vdpa_sim rules
// a device follows.  The rules that changed between the releases vdpad
// models are named here, one property each, so the code that applies a rule
// asks for the rule and never compares versions itself
// (docs/kernel-rules.md, "By kernel version").

public enum KernelVersion: String, CaseIterable, Comparable, Sendable {
    /// The release of the reset_map/IOTLB_PERSIST and descriptor-group series.
    case v6_7 = "6.7"
    case v6_8 = "6.8"
    /// The longterm release Debian 13 and RHEL 10 ship: the default.
    case v6_12 = "6.12"

    /// What a device follows when its record names no version: a `legacy` device (a parent from before the
    /// 6.7 series) keeps 6.7's vhost-vdpa, as it always has; any other the default.
    public static func resolved(_ name: String?, legacy: Bool) -> KernelVersion? {
        guard let name else { return legacy ? .v6_7 : .v6_12 }
        return KernelVersion(rawValue: name)
    }

    private var order: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (a: KernelVersion, b: KernelVersion) -> Bool { a.order < b.order }

    /// SET_VRING_ADDR and SET_VRING_BASE are EINVAL while DRIVER_OK is set and the device is not suspended
    /// (R59 step 6, R60 step 3; since 6.8, which also added vhost-vdpa's `suspended` flag).
    public var refusesRingChangesWhileRunning: Bool { self >= .v6_8 }

    /// SUSPEND and RESUME without DRIVER_OK return 0 and do nothing: no parent call, no `suspended` flag,
    /// and no EOPNOTSUPP for a parent without the op (R66; since 6.9).
    public var suspendIsNoOpBeforeDriverOK: Bool { self >= .v6_12 }

    /// VHOST_VDPA_GET_VRING_SIZE exists (R46; since 6.9); before, it is an unknown command (R43).
    public var hasGetVringSize: Bool { self >= .v6_12 }
}
