// JournalFile.swift — the session journal's memfd (docs/restart.md): header
// words magic, generation, complete, committed length; then framed records
// (JournalRecord.swift).  A record is copied in first and the committed length
// moves past it after (a release store): a process killed at any instruction
// leaves the journal at one length or the other, never in a torn record.
import UnixSocket
import VDPAJournal
#if canImport(Glibc)
    import Glibc
#endif

final class JournalFile: @unchecked Sendable {
    private enum Word: Int { case magic = 0, generation, complete, committed }
    static let magic: UInt64 = 0x314C_4E4A_4150_4456  // "VDPAJNL1", little-endian

    let file: MappedFile
    let generation: UInt64

    /// A new, empty journal (not complete until its snapshot is written: `markComplete`).
    convenience init(generation: UInt64) throws(SystemCallError) {
        let file = try MappedFile(creating: "vdpad-journal")
        file.setWord(Word.generation.rawValue, generation)
        file.setWord(Word.complete.rawValue, 0)
        file.setWord(Word.committed.rawValue, 0)
        file.setWord(Word.magic.rawValue, Self.magic)
        self.init(file)
    }

    /// Journal bytes kept faulted in ahead of the end (MappedFile.populateAhead).
    static let populateAhead = 128 << 10

    /// A journal's file, new or got back: its generation is the one its header holds.
    private init(_ file: MappedFile) {
        self.file = file
        file.populateAhead = Self.populateAhead
        generation = file.word(Word.generation.rawValue)
    }

    /// A journal got back from the store (it owns `fd` from now on), or why `fd` is not one.
    static func adopt(_ fd: Int32) -> Result<JournalFile, SystemCallError> {
        let file: MappedFile
        do {
            file = try MappedFile(adopting: fd)
        } catch {
            close(fd)
            return .failure(error)
        }
        guard file.word(Word.magic.rawValue) == Self.magic else { return .failure(SystemCallError("not a vdpad journal", .invalidArgument)) }
        return .success(JournalFile(file))
    }

    var isComplete: Bool { file.word(Word.complete.rawValue) == 1 }
    func markComplete() { file.setWord(Word.complete.rawValue, 1) }

    /// Bytes of records committed.
    var committed: Int { Int(file.word(Word.committed.rawValue)) }

    /// The committed records, for a replay (within the file: a length past it is cut to it).
    var records: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: file.data, count: min(committed, file.size - MappedFile.headerSize))
    }

    /// Copies `bytes` (whole framed records) in and commits them.  Only one thread appends at a time.
    func append(_ bytes: [UInt8]) throws(SystemCallError) {
        let failure = bytes.withUnsafeBytes { raw -> SystemCallError? in
            do throws(SystemCallError) { try append(raw) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(SystemCallError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let at = committed
        try file.ensureData(at + bytes.count)
        (file.data + at).copyMemory(from: base, byteCount: bytes.count)
        file.setWord(Word.committed.rawValue, UInt64(at + bytes.count))
    }
}
