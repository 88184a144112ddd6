// StateStore.swift — the devices that must survive a restart, in
// <state_dir>/devices.json.  Written atomically (temp file, fsync, rename,
// fsync of the directory) so a crash leaves the old or the new file, never a
// torn one; a file that does not parse is moved aside and reported, never
// silently dropped.
import UnixSocket
import SystemPackage
import VDPAJSON
import VDPARPC
import VDPARegistry
#if canImport(Glibc)
    import Glibc
#endif

public struct StateStore: Sendable {
    public let directory: String
    public var path: String { directory + "/devices.json" }

    public init(directory: String) { self.directory = directory }

    public struct LoadResult {
        public var records: [DeviceRecord]
        /// Where a corrupt file was moved, if it was.
        public var movedAside: String?
        public var problem: String?
    }

    public func load() -> LoadResult {
        guard let bytes = try? readFile(path) else { return LoadResult(records: [], movedAside: nil, problem: nil) }
        do {
            return LoadResult(records: try Self.decode(bytes), movedAside: nil, problem: nil)
        } catch {
            let aside = path + ".corrupt-\(time(nil))"
            rename(path, aside)
            return LoadResult(records: [], movedAside: aside, problem: "\(error)")
        }
    }

    public func save(_ records: [DeviceRecord]) throws {
        try writeFileAtomically(path, Self.encode(records), mode: 0o600, durable: true)
    }

    static func encode(_ records: [DeviceRecord]) -> [UInt8] {
        let devices: [JSON] = records.map { r in
            let a = r.attributes
            var m: [(String, JSON)] = [
                ("name", .string(r.name)), ("mgmtdev", .string(r.mgmtdev)), ("legacy", .bool(a.legacy)),
                ("iova_first", .unsigned(a.iovaRange.first)), ("iova_last", .unsigned(a.iovaRange.last)),
                ("users", .array(a.users.map { .unsigned(UInt64($0)) })),
                ("groups", .array(a.groups.map { .unsigned(UInt64($0)) }))
            ]
            if let mac = a.mac { m.append(("mac", .string(mac))) }
            if let mtu = a.mtu { m.append(("mtu", JSON(mtu))) }
            if let q = a.maxVQP { m.append(("max_vqp", JSON(q))) }
            if let backing = a.backing { m.append(("backing", .string(backing))) }
            if let kernel = a.kernel { m.append(("kernel", .string(kernel))) }
            return .object(m)
        }
        let doc: JSON = ["version": 1, "devices": .array(devices)]
        return doc.encoded() + [0x0A]
    }

    static func decode(_ bytes: [UInt8]) throws(ConfigError) -> [DeviceRecord] {
        let doc: JSON
        do throws(JSONParseError) { doc = try JSON.parse(bytes) } catch { throw ConfigError("not JSON: \(error.description)") }
        guard doc["version"] == .unsigned(1), case .array(let items)? = doc["devices"] else {
            throw ConfigError("not a vdpad state file (version 1 with a devices array)")
        }
        // add_device's decoder: a value add_device would refuse is a corrupt file, never silently changed.
        return try items.enumerated().map { (k, item) throws(ConfigError) -> DeviceRecord in
            do throws(RPCError) {
                return try DeviceRecord(fields: item)
            } catch {
                throw ConfigError("devices[\(k)]: \(error.message)")
            }
        }
    }
}

/// Replaces the file at `path` with `bytes` so that a reader sees the old file or the new one, never a part:
/// a temporary file beside it, written whole, then renamed over it.  `durable` also syncs the data and the
/// directory, so a crash after the call keeps the new file (the state file needs that; a metrics file does not).
func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t, durable: Bool) throws {
    let target = FilePath(path)
    let tmp = FilePath(path + ".tmp")
    let permissions = FilePermissions(rawValue: mode)
    let file: FileDescriptor
    do {
        file = try FileDescriptor.open(tmp, .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: permissions)
    } catch {
        throw SystemCallError("open \(tmp)", (error as? Errno) ?? .current)
    }
    try file.closeAfter {
        // The umask may have narrowed the mode: a metrics file must stay readable by its scraper.
        _ = fchmod(file.rawValue, mode)
        do { _ = try file.writeAll(bytes) } catch { throw SystemCallError("write \(tmp)", (error as? Errno) ?? .current) }
        if durable { guard fsync(file.rawValue) == 0 else { throw SystemCallError("fsync \(tmp)") } }
    }
    guard rename(tmp.string, target.string) == 0 else { throw SystemCallError("rename \(tmp)") }
    guard durable else { return }
    let directory = target.removingLastComponent()
    if let dir = try? FileDescriptor.open(directory.isEmpty ? "." : directory, .readOnly, options: [.directory, .closeOnExec]) {
        fsync(dir.rawValue)
        try? dir.close()
    }
}

/// The whole file, read with EINTR retries.
public func readFile(_ path: String) throws -> [UInt8] {
    let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SystemCallError("open \(path)") }
    defer { Glibc.close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = retryingOnEINTR { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, 65536) } }
        guard n >= 0 else { throw SystemCallError("read \(path)") }
        if n == 0 { return out }
        out.append(contentsOf: chunk[0..<n])
    }
}

/// The target of a symbolic link (readlink(2)).
func readLink(_ path: String) throws -> String {
    var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = buffer.withUnsafeMutableBufferPointer { b in
        b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { readlink(path, $0, b.count - 1) }
    }
    guard n > 0 else { throw SystemCallError("readlink \(path)", Errno.current) }
    return String(decoding: buffer[..<n], as: UTF8.self)
}
