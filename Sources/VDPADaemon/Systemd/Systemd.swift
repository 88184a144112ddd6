// Systemd.swift — the only file that imports libsystemd.  sd_* functions
// return a negative errno on failure, 0 for "not under systemd", positive
// when done; that meaning is kept.
import CSystemd
#if canImport(Glibc)
    import Glibc
#endif

public enum Systemd {
    public enum NotifyResult: Equatable {
        case sent, notSupervised
        /// sd_notify's negative errno, kept (a full or vanished NOTIFY_SOCKET is worth a log line).
        case failed(errno: Int32)
    }

    @discardableResult
    public static func notify(_ state: String) -> NotifyResult {
        let r = sd_notify(0, state)
        return r > 0 ? .sent : r == 0 ? .notSupervised : .failed(errno: -r)
    }

    /// `notify` with descriptors attached (FDSTORE=1 hands them to the service manager's store).
    @discardableResult
    public static func notify(_ state: String, descriptors: [Int32]) -> NotifyResult {
        let r = descriptors.withUnsafeBufferPointer { sd_pid_notify_with_fds(0, 0, state, $0.baseAddress, UInt32($0.count)) }
        return r > 0 ? .sent : r == 0 ? .notSupervised : .failed(errno: -r)
    }

    /// Sockets passed by socket activation (fds 3…) with their FileDescriptorName=, or [] when none.
    public static func listenFDs() -> [(fd: Int32, name: String)] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let n = sd_listen_fds_with_names(1, &names)  // unset LISTEN_* so children do not inherit them
        guard n > 0 else { return [] }
        defer {
            if let names {
                for i in 0..<Int(n) { free(names[i]) }
                free(names)
            }
        }
        return (0..<n).map { i in
            (SD_LISTEN_FDS_START + i, names?[Int(i)].map { String(cString: $0) } ?? "unknown")
        }
    }

    /// The watchdog interval in microseconds, when the service manager asked for one.
    public static func watchdogInterval() -> UInt64? {
        var usec: UInt64 = 0
        return sd_watchdog_enabled(0, &usec) > 0 ? usec : nil
    }

    public static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }
}
