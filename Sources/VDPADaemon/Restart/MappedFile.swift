// MappedFile.swift — the memfds a restart keeps (docs/restart.md): the
// journal, and each connection's inbox and outbox.  Each is a memfd the
// service manager holds in its file descriptor store, mapped here once over a
// large reserve of address space (MAP_NORESERVE) and grown with ftruncate as
// it fills, so a write is a memory copy.  Memory written to a shared mapping
// of a memfd is the file's: it outlives this process whatever kills it.
import CVDPAShim
import UnixSocket
#if canImport(Glibc)
    import Glibc
#endif

/// A memfd mapped whole: a 4 KiB header of u64 words, then data.
final class MappedFile: @unchecked Sendable {
    static let headerSize = 4096
    /// Address space reserved per file; the file grows inside it.
    static let reserve = 1 << 34
    private static let growth = 8 << 20
    /// Bytes past the end written so far that are kept faulted in ahead of the writer (0: none, pages are
    /// faulted one by one as they are first written).  The journal sets it: a `map` that is the first write to a
    /// page of it would otherwise pay the fault and the page's zeroing (~2 µs, every ~30 maps).
    var populateAhead = 0
    /// Data bytes [0, populated) are faulted in.
    private var populated = 0
    /// Pages faulted in per step: each step is a stall of this many pages' zeroing for the write that takes it.
    private static let populateStep = 256 << 10

    let fd: Int32
    let base: UnsafeMutableRawPointer
    /// The file's size (header included); only the file's one writer grows it.
    private(set) var size: Int

    /// A new memfd named `name` (the name shows in /proc/PID/fd, nothing more).
    convenience init(creating name: String) throws(SystemCallError) {
        let fd = vdpad_memfd(name)
        guard fd >= 0 else { throw SystemCallError("memfd_create \(name)", Errno.current) }
        do throws(SystemCallError) {
            try self.init(adopting: fd)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Maps `fd` (a memfd this process made or got back from the store); the file is kept at least a header.
    init(adopting fd: Int32) throws(SystemCallError) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemCallError("fstat", Errno.current) }
        var size = Int(st.st_size)
        if size < Self.headerSize {
            guard ftruncate(fd, off_t(Self.headerSize)) == 0 else { throw SystemCallError("ftruncate", Errno.current) }
            size = Self.headerSize
        }
        guard let p = mmap(nil, Self.reserve, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0), p != MAP_FAILED else {
            throw SystemCallError("mmap", Errno.current)
        }
        self.fd = fd
        base = p
        self.size = size
    }

    deinit {
        munmap(base, Self.reserve)
        close(fd)
    }

    var data: UnsafeMutableRawPointer { base + Self.headerSize }

    /// Header word `index` (u64), read with acquire order.
    func word(_ index: Int) -> UInt64 { UInt64(vdpad_load_acquire_u64(base + 8 * index)) }

    /// Stores header word `index` with release order (after everything it covers).
    func setWord(_ index: Int, _ value: UInt64) { vdpad_store_release_u64(base + 8 * index, value) }

    /// Makes data bytes [0, count) writable: grows the file (in 8 MiB steps) when it is shorter.
    func ensureData(_ count: Int) throws(SystemCallError) {
        let needed = Self.headerSize + count
        if needed > size {
            guard needed <= Self.reserve else { throw SystemCallError("grow", .noSpace) }
            let target = min(Self.reserve, (needed + Self.growth - 1) / Self.growth * Self.growth)
            guard ftruncate(fd, off_t(target)) == 0 else { throw SystemCallError("ftruncate", Errno.current) }
            size = target
        }
        if populateAhead > 0 && count + populateAhead > populated { populate(from: count, upTo: count + populateAhead) }
    }

    /// Faults data pages in from the step holding `start` (what is before it was written already: a journal got
    /// back from the store is not walked again) up to `end` within the file, a step at a time, with
    /// MADV_POPULATE_WRITE (Linux 5.14; an older kernel refuses it and the pages fault as they are written).
    private func populate(from start: Int, upTo end: Int) {
        let step = Self.populateStep
        let first = max(populated, start / step * step)
        let limit = min(size - Self.headerSize, (end + step - 1) / step * step)
        guard limit > first else { return }
        _ = madvise(data + first, limit - first, 23 /* MADV_POPULATE_WRITE */)
        populated = limit
    }

    /// Drops every data byte (they read as zero again) and gives the memory back.
    func clearData() throws(SystemCallError) {
        guard ftruncate(fd, off_t(Self.headerSize)) == 0 else { throw SystemCallError("ftruncate", Errno.current) }
        size = Self.headerSize
        populated = 0
    }
}
