// StateStore.swift — the devices that must survive a restart, in
// <state_dir>/devices.json.  Written atomically (temp file, fsync, rename,
// fsync of the directory) so a crash leaves the old or the new file, never a
// torn one; a file that does not parse is moved aside and reported, never
// silently dropped.
import UnixSocket
import VDPACore
import VDPARPC
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
        let text = Self.encode(records)
        let tmp = path + ".tmp"
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("open \(tmp)", errno) }
        defer { Glibc.close(fd) }
        var offset = 0
        while offset < text.count {
            let n = retryingOnEINTR { text.withUnsafeBytes { write(fd, $0.baseAddress! + offset, text.count - offset) } }
            guard n > 0 else { throw SystemError("write \(tmp)", errno) }
            offset += n
        }
        guard fsync(fd) == 0 else { throw SystemError("fsync \(tmp)", errno) }
        guard rename(tmp, path) == 0 else { throw SystemError("rename \(tmp)", errno) }
        let dfd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            Glibc.close(dfd)
        }
    }

    static func encode(_ records: [DeviceRecord]) -> [UInt8] {
        let devices: [JSON] = records.map { r in
            let a = r.attributes
            var m: [(String, JSON)] = [("name", .string(r.name)), ("mgmtdev", .string(r.mgmtdev)), ("legacy", .bool(a.legacy)),
                                       ("iova_first", .unsigned(a.iovaRange.first)), ("iova_last", .unsigned(a.iovaRange.last)),
                                       ("users", .array(a.users.map { .unsigned(UInt64($0)) })),
                                       ("groups", .array(a.groups.map { .unsigned(UInt64($0)) }))]
            if let mac = a.mac { m.append(("mac", .string(mac))) }
            if let mtu = a.mtu { m.append(("mtu", JSON(mtu))) }
            if let q = a.maxVQP { m.append(("max_vqp", JSON(q))) }
            return .object(m)
        }
        let doc: JSON = ["version": 1, "devices": .array(devices)]
        return doc.encoded() + [0x0A]
    }

    static func decode(_ bytes: [UInt8]) throws -> [DeviceRecord] {
        let doc = try JSON.parse(bytes)
        guard doc["version"] == .unsigned(1), case .array(let items)? = doc["devices"] else {
            throw ConfigError("not a vdpad state file (version 1 with a devices array)")
        }
        return try items.map { item in
            guard case .string(let name)? = item["name"], case .string(let mgmtdev)? = item["mgmtdev"] else {
                throw ConfigError("a device entry lacks name or mgmtdev")
            }
            func u(_ k: String) -> UInt64? { if case .unsigned(let v)? = item[k] { v } else { nil } }
            func ids(_ k: String) -> [UInt32] {
                if case .array(let a)? = item[k] { a.compactMap { if case .unsigned(let v) = $0 { UInt32(truncatingIfNeeded: v) } else { nil } } } else { [] }
            }
            var a = DeviceAttributes(mac: { if case .string(let s)? = item["mac"] { s } else { nil } }(),
                                     mtu: u("mtu").map { Int($0) }, maxVQP: u("max_vqp").map { Int($0) },
                                     legacy: item["legacy"] == .bool(true))
            a.iovaRange = IOVARange(first: u("iova_first") ?? 0, last: u("iova_last") ?? .max)
            a.users = ids("users")
            a.groups = ids("groups")
            return DeviceRecord(name: name, mgmtdev: mgmtdev, attributes: a)
        }
    }
}

public struct SystemError: Error, CustomStringConvertible {
    public var call: String
    public var code: Int32
    init(_ call: String, _ code: Int32) {
        self.call = call
        self.code = code
    }
    public var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// The whole file, read with EINTR retries.
public func readFile(_ path: String) throws -> [UInt8] {
    let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SystemError("open \(path)", errno) }
    defer { Glibc.close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = retryingOnEINTR { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, 65536) } }
        guard n >= 0 else { throw SystemError("read \(path)", errno) }
        if n == 0 { return out }
        out.append(contentsOf: chunk[0..<n])
    }
}
