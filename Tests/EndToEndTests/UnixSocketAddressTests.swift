// UnixSocketAddressTests.swift — the one place that builds Unix socket
// addresses (listener, client, tests) must refuse a path it would cut.
import Foundation
import Testing
import UnixSocket

@Suite("Unix socket address")
struct UnixSocketAddressTests {
    @Test("a path fits in sun_path up to 107 bytes (plus its NUL); a longer one is refused, not cut")
    func pathLength() {
        #expect(UnixSocketAddress(path: "/" + String(repeating: "a", count: 106)) != nil)
        #expect(UnixSocketAddress(path: "/" + String(repeating: "a", count: 107)) == nil)
    }

    @Test("an address bound by one socket is the one another connects to")
    func bindThenConnect() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("usa-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let address = try #require(UnixSocketAddress(path: dir.path + "/s.sock"))
        let server = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0), client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer {
            close(server)
            close(client)
        }
        #expect(address.withSockaddr { bind(server, $0, $1) } == 0 && listen(server, 1) == 0)
        #expect(address.withSockaddr { connect(client, $0, $1) } == 0, "errno \(errno)")
        #expect(FileManager.default.fileExists(atPath: dir.path + "/s.sock"))
    }
}
