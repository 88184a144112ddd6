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

@Suite("System call errors")
struct SystemCallErrorTests {
    @Test("an errno keeps its number and reads as strerror's text; a failed call names itself, its object and the errno")
    func errnoText() {
        #expect(Errno(rawValue: ENOENT).description == "No such file or directory")
        errno = EACCES
        let failure = SystemCallError("open /nonexistent/state")
        #expect(failure.errno == Errno(rawValue: EACCES))
        #expect(failure.description == "open /nonexistent/state: Permission denied")
    }

    @Test("retryingOnEINTR calls again after EINTR and returns the first other result, errno untouched")
    func eintr() {
        var calls = 0
        let result = retryingOnEINTR { () -> Int32 in
            calls += 1
            if calls < 3 { errno = EINTR; return -1 }
            errno = EAGAIN
            return -1
        }
        #expect(result == -1 && calls == 3 && errno == EAGAIN)
    }
}
