// SharedFiles.swift — share_memory's I/O (docs/datapath.md "Shared guest
// memory"): a file the VMM passed with SCM_RIGHTS is mapped in vdpad only
// after /proc/PID/maps shows that the VMM's addresses are a shared mapping
// of that very file (device and inode) at the offset claimed.  A memfd or a
// file that backs other addresses, a private mapping, a hole or a wrong
// offset is refused: vdpad never writes where the VMM would not see it.
import SystemPackage
import VDPACore

#if canImport(Glibc)
    import Glibc
#endif

/// vdpad's mapping of a shared file: unmapped when the last table that names it (the device's, or the
/// snapshot a data-path run holds) lets it go.
final class FileMapping: SharedMapping, @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let size: Int

    init(base: UnsafeMutableRawPointer, size: Int) { (self.base, self.size) = (base, size) }

    deinit { munmap(base, size) }
}

/// The lines of /proc/PID/maps, and the check that a file backs a range of them.
enum ProcMaps {
    struct Line: Equatable {
        var start: UInt64, end: UInt64
        var shared: Bool
        var offset: UInt64
        var major: UInt32, minor: UInt32
        var inode: UInt64
    }

    /// `start-end perms offset major:minor inode [path]`, numbers in hex but the inode; malformed lines are skipped.
    static func parse(_ text: Substring) -> [Line] {
        text.split(separator: "\n").compactMap { row in
            let f = row.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard f.count >= 5 else { return nil }
            let range = f[0].split(separator: "-"), device = f[3].split(separator: ":")
            guard range.count == 2, device.count == 2, f[1].count == 4,
                let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16),
                let offset = UInt64(f[2], radix: 16), let major = UInt32(device[0], radix: 16),
                let minor = UInt32(device[1], radix: 16), let inode = UInt64(f[4])
            else { return nil }
            return Line(start: start, end: end, shared: f[1].last == "s", offset: offset, major: major, minor: minor, inode: inode)
        }
    }

    /// Nil when [address, address+size) is covered, without a gap, by shared mappings of the file
    /// (major:minor, inode) at `offset` onwards; else why not.
    static func mismatch(
        _ lines: [Line], address: UInt64, size: UInt64, offset: UInt64, major: UInt32, minor: UInt32, inode: UInt64
    ) -> String? {
        var next = address
        let end = address + size
        for line in lines where line.end > next && line.start <= next {
            guard line.shared else { return "the VMM's mapping at \(hex(next)) is private (MAP_PRIVATE), not shared" }
            guard line.major == major, line.minor == minor, line.inode == inode else {
                return "the VMM's mapping at \(hex(next)) is of another file (\(line.major):\(line.minor) inode \(line.inode))"
            }
            guard line.offset + (next - line.start) == offset + (next - address) else {
                return "the VMM's mapping at \(hex(next)) is of the file's offset \(hex(line.offset + (next - line.start))), "
                    + "not \(hex(offset + (next - address)))"
            }
            next = min(line.end, end)
            if next == end { return nil }
        }
        return "the VMM has nothing mapped at \(hex(next))"
    }

    private static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
}

enum SharedFiles {
    /// Maps `fd` (which it closes in every case) as the owner `pid`'s [address, address+size) at the file's
    /// `offset`, once /proc/PID/maps has shown that the file backs exactly those addresses.
    static func map(_ fd: Int32, address: UInt64, size: UInt64, offset: UInt64, pid: Int32) -> Result<any SharedMapping, VDPAError> {
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(VDPAError(.EBADF, "descriptor \(fd) is not open")) }
        guard st.st_mode & S_IFMT == S_IFREG else {
            return .failure(VDPAError(.EINVAL, "the descriptor passed is not a file (a memfd or a regular file) that can be mapped"))
        }
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        guard size > 0, address % page == 0, offset % page == 0, size % page == 0, size <= UInt64.max - address,
            size <= UInt64(Int.max), offset <= UInt64(st.st_size), size <= UInt64(st.st_size) - offset
        else {
            return .failure(
                VDPAError(
                    .EINVAL,
                    "a shared region is page-aligned (address, offset, size), non-empty, and inside the file (\(st.st_size) bytes)"))
        }
        guard let text = try? String(contentsOfProcFile: "/proc/\(pid)/maps") else {
            return .failure(VDPAError(.EINVAL, "cannot read /proc/\(pid)/maps to check the file against the owner's mappings"))
        }
        // glibc's gnu_dev_major/minor are macros Swift cannot see: the same bit layout, spelled out.
        let dev = UInt64(st.st_dev)
        let major = UInt32(truncatingIfNeeded: (dev >> 8) & 0xFFF | (dev >> 32) & ~0xFFF)
        let minor = UInt32(truncatingIfNeeded: dev & 0xFF | (dev >> 12) & ~0xFF)
        if let reason = ProcMaps.mismatch(
            ProcMaps.parse(text[...]), address: address, size: size, offset: offset, major: major, minor: minor, inode: UInt64(st.st_ino))
        {
            return .failure(VDPAError(.EINVAL, "the file passed does not back [0x\(String(address, radix: 16)), +\(size)): \(reason)"))
        }
        guard let base = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(offset)), base != MAP_FAILED else {
            let e = errno
            return .failure(VDPAError(e == EACCES ? .EINVAL : .ENOSPC, "mmap of the shared file failed: \(String(cString: strerror(e)))"))
        }
        return .success(FileMapping(base: base, size: Int(size)))
    }
}

extension String {
    /// A /proc file's text (its size is 0 to stat, so it is read until EOF).
    init(contentsOfProcFile path: String) throws {
        let file = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        defer { try? file.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try file.read(into: $0) }
            if n == 0 { break }
            bytes += chunk[..<n]
        }
        self = String(decoding: bytes, as: UTF8.self)
    }
}
