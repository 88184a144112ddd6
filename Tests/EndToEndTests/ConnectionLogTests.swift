// ConnectionLogTests.swift — a connection's inbox and outbox as a restart finds
// them (docs/restart.md, "Exactly once"): input received and not committed as
// answered is answered again, input received in the instant before its count
// was stored is found by its bytes, output committed and not sent is sent, and
// an emptying the journal announced is finished — never undone, never repeated.
import Dispatch
import Foundation
import Glibc
import Testing
@testable import VDPADaemon
import VDPAJournal
import VDPARegistry

@Suite("Connection log")
struct ConnectionLogTests {
    /// A socket pair: [0] the daemon's end, [1] the client's.
    func pair() -> [Int32] {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        return fds
    }

    func sendAll(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        #expect(bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == bytes.count)
    }

    func receiveAll(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : ""
    }

    @Test("the journal keeps pages faulted in ahead of its end: a record is not the first write to its page")
    func journalPopulatesAhead() throws {
        let journal = try JournalFile(generation: 1)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        /// Pages of data bytes [0, bytes) resident in memory.
        func resident(_ bytes: Int) -> Int {
            var vector = [UInt8](repeating: 0, count: bytes / page)
            #expect(mincore(journal.file.data, bytes, &vector) == 0)
            return vector.filter { $0 & 1 != 0 }.count
        }
        #expect(resident(JournalFile.populateAhead) == 0, "nothing written yet")
        try journal.append([1, 2, 3])
        #expect(resident(JournalFile.populateAhead) == JournalFile.populateAhead / page)
        try journal.append([UInt8](repeating: 7, count: JournalFile.populateAhead))
        #expect(resident(2 * JournalFile.populateAhead) == 2 * JournalFile.populateAhead / page)
        // A connection's inbox and outbox fault their pages as they are written (thousands of connections).
        let log = try ConnectionLog.create(connection: 9)
        try log.outbox.ensureData(4 * page)
        var vector = [UInt8](repeating: 0, count: 4)
        #expect(mincore(log.outbox.data, 4 * page, &vector) == 0 && vector.allSatisfy { $0 & 1 == 0 })
    }

    @Test("input received and not committed is answered again; output committed and not sent is sent")
    func recovery() throws {
        let s = pair()
        defer { for fd in s { close(fd) } }
        let log = try ConnectionLog.create(connection: 1)
        sendAll(s[1], "{\"a\":1}\n{\"b\":2}\n")
        var passed: [Int32] = []
        #expect(log.receive(s[0], descriptors: &passed) == 16)
        // The first text answered and committed; its reply staged and published, not sent.
        let end = try log.stage(Array("reply-a\n".utf8))
        log.committed(ConnectionCursor(answered: 8, outboxEnd: UInt64(end)))
        log.publish(end)
        // The process dies here: a new one adopts the files (its own descriptors for them, as the store gives them).
        let again = try ConnectionLog.adopt(inbox: dup(log.inbox.fd), outbox: dup(log.outbox.fd), cursor: log.cursor)
        #expect(String(decoding: Array(again.unanswered), as: UTF8.self) == "{\"b\":2}\n")
        #expect(again.unsent == 8)
        #expect(again.send(to: s[0]) == 8)
        #expect(receiveAll(s[1]) == "reply-a\n")
        // Sent once: a third process has nothing to send.
        let third = try ConnectionLog.adopt(inbox: dup(log.inbox.fd), outbox: dup(log.outbox.fd), cursor: log.cursor)
        #expect(third.unsent == 0)
    }

    @Test("bytes received in the instant before their count was stored are found (the inbox reads zero past its input)")
    func countNotStored() throws {
        let log = try ConnectionLog.create(connection: 2)
        try log.inbox.ensureData(64)
        let text = Array("{\"late\":true}\n".utf8)
        text.withUnsafeBytes { log.inbox.data.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }  // recv wrote; count not stored
        let again = try ConnectionLog.adopt(inbox: dup(log.inbox.fd), outbox: dup(log.outbox.fd), cursor: ConnectionCursor())
        #expect(Array(again.unanswered) == text)
    }

    @Test("an emptying the journal announced is finished by the next process; one it did not announce never happens")
    func rewind() throws {
        let s = pair()
        defer { for fd in s { close(fd) } }
        let log = try ConnectionLog.create(connection: 3)
        sendAll(s[1], "{\"x\":1}\n")
        var passed: [Int32] = []
        _ = log.receive(s[0], descriptors: &passed)
        let end = try log.stage(Array("r\n".utf8))
        log.committed(ConnectionCursor(answered: 8, outboxEnd: UInt64(end)))
        log.publish(end)
        _ = log.send(to: s[0])
        // Dead before the journal heard of an emptying: the files stay as they are, nothing is answered or sent twice.
        let old = try ConnectionLog.adopt(inbox: dup(log.inbox.fd), outbox: dup(log.outbox.fd), cursor: log.cursor)
        #expect(old.unanswered.count == 0 && old.unsent == 0 && old.inbox.word(0) == 0)
        // The journal commits the new epochs, then the process dies before emptying the files: the next one empties them.
        let next = log.rewound(inbox: true, outbox: true)
        let again = try ConnectionLog.adopt(inbox: dup(log.inbox.fd), outbox: dup(log.outbox.fd), cursor: next)
        #expect(again.unanswered.count == 0 && again.unsent == 0)
        #expect(again.inbox.word(0) == 1 && again.outbox.word(0) == 1 && again.inbox.word(1) == 0)
        #expect(lseek(again.outbox.fd, 0, SEEK_CUR) == off_t(MappedFile.headerSize))
    }
    @Test("a parked reader: its blocking receive is interrupted having taken nothing; what comes meanwhile waits for unpark")
    func parkedReader() throws {
        ReaderPark.install()
        let s = pair()
        defer { for fd in s { close(fd) } }
        let log = try ConnectionLog.create(connection: 9)
        let park = ReaderPark()
        let got = Locked<[Int]>([])
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            park.readerStarted()
            var passed: [Int32] = []
            while got.withLock({ $0.reduce(0, +) }) < 7 {
                let n = park.receiving { log.receive(s[0], descriptors: &passed) { park.requested } }
                if n < 0 && errno == EINTR { continue }
                got.withLock { $0.append(n) }
            }
            done.signal()
        }
        sendAll(s[1], "{\"a\"}\n")
        while got.withLock({ $0.isEmpty }) { usleep(1000) }
        ReaderPark.parkAll([park])  // the reader is blocked in recvmsg: interrupted, parked
        sendAll(s[1], "x")
        usleep(50_000)
        #expect(got.withLock { $0 } == [6], "nothing received while parked")
        park.unpark()
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(got.withLock { $0 } == [6, 1])
    }
}
