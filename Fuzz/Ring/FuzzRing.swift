// FuzzRing.swift — a libFuzzer target over the device side of the data
// path: the split-ring walker, the net loopback, the block RAM disk and the
// control queue, serving rings a hostile driver wrote, in memory an IOTLB of
// the fuzzer's making maps.  Built and run by scripts/fuzz.sh beside
// FuzzRPC; any crash is a bug to turn into a test.
//
// The input is a 64-byte header (`Setup`: the device, its rings and an IOTLB
// of up to four entries, each in the rings' table or the buffers' — a
// descriptor group in an ASID of its own — with its permission), then the
// driver's memory.  Each input is served five times, on memories that differ
// only in how the device reaches them: a model of the IOTLB reached through
// copies, in place with a window per access, and in place with spans; and the
// daemon's own memory (`OwnerMemory`, on a device that maps the same entries,
// `MemoryHarness`) on a shared file — windows and spans from its IOTLB entry
// cache and shared regions, guarded — and on the same file unshared, through
// process_vm_readv/writev on this process (the private-RAM fallback).
// Oracles:
// * never outside the IOTLB: every byte a run changed lies where an entry
//   allows writing, and the guard zones around the memory are untouched;
// * bounded: no run takes more chains than its budget;
// * the counters are what the driver sees: completions counted equal the
//   used idx's advance, and the idx the driver reads there;
// * the five ways agree — the memory, the disk, the counters and the rings'
//   indexes — when the driver keeps its rings and its buffers in different
//   memory and no used ring where the device reads (`Setup.apart`).  A driver
//   that overlaps them, which the virtio spec forbids, sees an order of
//   accesses no two devices share: its inputs are held to the others only.
import VDPACore
import VDPADataPath
import VDPAVirtio

/// One IOTLB entry: IOVAs `first`…`last` at `offset` in the arena, in the rings' table or the buffers'.
struct Entry {
    var first: UInt64, last: UInt64
    var offset: Int
    var readable: Bool, writable: Bool
    var ring: Bool
    func holds(_ iova: UInt64) -> Bool { iova >= first && iova <= last }
}

/// The device to serve and how, as the input's header gives it.
struct Setup {
    enum Device { case net, block, control }
    static let headerBytes = 64, arenaBytes = 16384, guardBytes = 4096
    static let mac: [UInt8] = [0x02, 0, 0, 0, 0, 0x42]
    static let diskSectors: UInt64 = 64
    /// Each run's disk starts with these bytes (not zeros: a read that lands shows where it read from).
    static let diskContents = (0..<Int(diskSectors) * RAMDisk.sectorSize).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

    var device = Device.net
    var version1 = false, mergeable = false
    /// Ring-table entries map the arena's first half, buffer-table entries its second.
    var apart = false
    var num: UInt16 = 1
    var budget = 1
    var entries: [Entry] = []
    /// desc, avail, used, base of each ring (net: rx, then tx; the others use the first).
    var rings: [(desc: UInt64, avail: UInt64, used: UInt64, base: UInt16)] = []

    /// Header layout, little-endian:
    ///   0        device (bits 0-1: 0 and 3 net, 1 block, 2 control queue), bit 2 VERSION_1, bit 3 MRG_RXBUF,
    ///            bit 4 apart, bits 5-7 log2 of the queue size (1…128)
    ///   1        budget − 1
    ///   2..<34   four entries of 8 bytes: flags (bits 0-1 permission, 0 no entry, 1 RO, 2 WO, 3 RW; bit 2 the
    ///            rings' table), u16 first IOVA ÷ 8 (from 0x10000: never an arena offset), u16 length ÷ 8 − 1,
    ///            u16 arena offset ÷ 8 (wrapped into the arena, or its table's half when apart; the length cut
    ///            at its end), then a byte whose low 3 bits are added to the first IOVA
    ///   34..<62  two rings of 14 bytes: u32 desc, u32 avail, u32 used, u16 base (last_avail = last_used)
    ///   62       bit k (k < 6): the k-th ring address (desc, avail, used, then the second ring's) is 2^64 − it
    ///   63       bit k (k < 4): entry k ends 8 × its u16 "first IOVA" bytes below the top of the IOVA space
    init(_ h: [UInt8]) {
        func u16(_ at: Int) -> Int { Int(h[at]) | Int(h[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt64 { UInt64(u16(at)) | UInt64(u16(at + 2)) << 16 }
        device = [.net, .block, .control, .net][Int(h[0] & 3)]
        (version1, mergeable, apart) = (h[0] & 4 != 0, h[0] & 8 != 0, h[0] & 16 != 0)
        num = 1 << UInt16(h[0] >> 5)
        budget = Int(h[1]) + 1
        for k in 0..<4 {
            let e = 2 + 8 * k, permission = h[e] & 3, ring = h[e] & 4 != 0
            guard permission != 0 else { continue }
            // Apart: each table has its half of the arena; else the whole arena, for both.
            let (low, high) = apart ? (ring ? (0, Self.arenaBytes / 2) : (Self.arenaBytes / 2, Self.arenaBytes)) : (0, Self.arenaBytes)
            let offset = low + (8 * u16(e + 5)) % (high - low)
            let length = min(8 * (u16(e + 3) + 1), high - offset)
            let first =
                h[63] & 1 << k != 0
                ? UInt64.max - UInt64(length - 1) - 8 * UInt64(u16(e + 1))
                : 0x10000 + 8 * UInt64(u16(e + 1)) + UInt64(h[e + 7] & 7)
            let entry = Entry(
                first: first, last: first + (UInt64(length) - 1), offset: offset, readable: permission & 1 != 0, writable: permission & 2 != 0,
                ring: ring)
            // A map that overlaps an entry of its table is refused (EEXIST), as vhost-vdpa refuses it.
            guard !entries.contains(where: { $0.ring == ring && $0.first <= entry.last && entry.first <= $0.last }) else { continue }
            entries.append(entry)
        }
        // A table never mapped is passthrough in vdpad, as in vdpa_sim (an IOVA is the owner's address: here, any byte
        // of the fuzzer's own memory): a table the input leaves empty maps one read-only byte at IOVA 0 instead.
        for ring in [true, false] where !entries.contains(where: { $0.ring == ring }) {
            let offset = apart && !ring ? Self.arenaBytes / 2 : 0
            entries.append(Entry(first: 0, last: 0, offset: offset, readable: true, writable: false, ring: ring))
        }
        // Near 2^64 where byte 62 says so: ring arithmetic past the top wraps, as vringh's does.
        func address(_ k: Int) -> UInt64 {
            let v = u32(34 + 14 * (k / 3) + 4 * (k % 3))
            return h[62] & 1 << k != 0 ? 0 &- v : v
        }
        rings = (0..<2).map { r in (address(3 * r), address(3 * r + 1), address(3 * r + 2), UInt16(u16(34 + 14 * r + 12))) }
    }
}

/// The driver's memory: `Setup.arenaBytes` between two guard zones of 0xA5 in one stretch of memory (AddressSanitizer
/// sees past a model's allocation; the oracle sees the zones), filled anew from the input for each run.
struct Arena {
    let allocation: UnsafeMutableRawBufferPointer
    static let totalBytes = Setup.arenaBytes + 2 * Setup.guardBytes
    var bytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: allocation[Setup.guardBytes..<Setup.guardBytes + Setup.arenaBytes])
    }
    var guards: [Range<Int>] { [0..<Setup.guardBytes, Setup.guardBytes + Setup.arenaBytes..<allocation.count] }

    func fill(_ contents: ArraySlice<UInt8>) {
        allocation.initializeMemory(as: UInt8.self, repeating: 0xA5)
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
        bytes.copyBytes(from: contents.prefix(Setup.arenaBytes))
    }
}

/// The five ways a run reaches the driver's memory, each on an arena of its own, kept for the fuzzer's life.
enum Way: CaseIterable {
    case copies, windows, spans, daemonShared, daemonProcessVM
    // The fuzzer runs one input at a time, on one thread.
    nonisolated(unsafe) static let models = [Way.copies, .windows, .spans].map { _ in
        Arena(allocation: .allocate(byteCount: Arena.totalBytes, alignment: 4096))
    }
    nonisolated(unsafe) static let daemon = [0, 1].map { _ in
        // swift-format-ignore: NeverUseForceTry
        // A fuzzer that cannot make its memory has nothing to run: stop at once, saying why.
        try! MemoryHarness(bytes: Arena.totalBytes)
    }
    var arena: Arena {
        switch self {
        case .copies: Self.models[0]
        case .windows: Self.models[1]
        case .spans: Self.models[2]
        case .daemonShared: Arena(allocation: UnsafeMutableRawBufferPointer(start: Self.daemon[0].file.base, count: Arena.totalBytes))
        case .daemonProcessVM: Arena(allocation: UnsafeMutableRawBufferPointer(start: Self.daemon[1].file.base, count: Arena.totalBytes))
        }
    }

    /// The memory of this way for `setup`'s IOTLB, its arena filled from the input.
    func memory(_ setup: Setup, contents: ArraySlice<UInt8>) -> (any GuestMemory, FuzzMemory?) {
        arena.fill(contents)
        switch self {
        case .copies, .windows, .spans:
            let model = FuzzMemory(self, entries: setup.entries, arena: arena)
            return (model, model)
        case .daemonShared, .daemonProcessVM:
            let entries = setup.entries.map {
                MemoryHarness.Entry(
                    ring: $0.ring, iova: $0.first, size: $0.last - $0.first + 1, offset: Setup.guardBytes + $0.offset,
                    permission: [$0.readable ? .read : [], $0.writable ? .write : []])
            }
            let harness = Self.daemon[self == .daemonShared ? 0 : 1]
            do {
                return (try harness.memory(entries, shared: self == .daemonShared), nil)
            } catch {
                fatalError("FuzzRing: the daemon's device refused the IOTLB the model holds: \(error)")
            }
        }
    }
}

/// The driver's memory as the device reaches it through a model of the fuzzer's IOTLB, in one of the model's ways.
final class FuzzMemory: GuestMemory {
    let way: Way
    let entries: [Entry]
    let storage: Arena
    var arena: UnsafeMutableRawBufferPointer { storage.bytes }
    /// Arena ranges read through the rings' table (the copies way only: in place, the walker's loads are its own).
    var ringReads: [Range<Int>] = []

    init(_ way: Way, entries: [Entry], arena: Arena) {
        (self.way, self.entries, self.storage) = (way, entries, arena)
    }

    /// The entry of the table that holds `iova`.
    func entry(_ iova: UInt64, ring: Bool) -> Entry? { entries.first { $0.ring == ring && $0.holds(iova) } }

    /// The arena pieces of [iova, iova+count), each checked for the access; an unmapped byte is a fault.
    func pieces(_ iova: UInt64, _ count: Int, write: Bool, ring: Bool) throws(RingError) -> [Range<Int>] {
        guard count > 0 else { return [] }
        guard iova <= UInt64.max - UInt64(count - 1) else { throw .fault(iova) }
        var (at, left, pieces) = (iova, count, [Range<Int>]())
        while left > 0 {
            guard let e = entry(at, ring: ring) else { throw .fault(at) }
            guard write ? e.writable : e.readable else { throw .permission(at) }
            let n = Int(min(UInt64(left), e.last - at + 1))
            let start = e.offset + Int(at - e.first)
            pieces.append(start..<start + n)
            (at, left) = (at &+ UInt64(n), left - n)
        }
        return pieces
    }

    func read(_ iova: UInt64, count: Int, ring: Bool) throws(RingError) -> [UInt8] {
        let pieces = try pieces(iova, count, write: false, ring: ring)
        if ring && way == .copies { ringReads += pieces }
        return pieces.flatMap { Array(arena[$0]) }
    }

    func write(_ bytes: [UInt8], at iova: UInt64, ring: Bool) throws(RingError) {
        var from = 0
        for piece in try pieces(iova, bytes.count, write: true, ring: ring) {
            UnsafeMutableRawBufferPointer(rebasing: arena[piece]).copyBytes(from: bytes[from..<from + piece.count])
            from += piece.count
        }
    }

    /// Two bytes in one entry, as vringh's 16-bit accessors ask (ENOBUFS), where reading is allowed as well as
    /// writing (D24).
    func writeIndex(_ value: UInt16, at iova: UInt64) throws(RingError) {
        guard try pieces(iova, 2, write: false, ring: true).count == 1 else { throw .fault(iova) }
        try write([UInt8(value & 0xFF), UInt8(value >> 8)], at: iova, ring: true)
    }

    /// A 16-bit ring field: two bytes in one entry, as vringh's accessors ask.
    func readIndex(at iova: UInt64) throws(RingError) -> UInt16 {
        guard try pieces(iova, 2, write: false, ring: true).count == 1 else { throw .fault(iova) }
        let b = try read(iova, count: 2, ring: true)
        return UInt16(b[0]) | UInt16(b[1]) << 8
    }

    /// [iova, iova+count) in place: one entry holds all of it with the permission asked.
    func place(_ iova: UInt64, _ count: Int, writable: Bool, ring: Bool) -> UnsafeMutableRawPointer? {
        guard way != .copies, count > 0, iova <= UInt64.max - UInt64(count - 1), let e = entry(iova, ring: ring),
            e.holds(iova + UInt64(count - 1)), writable ? e.writable : e.readable
        else { return nil }
        return arena.baseAddress! + e.offset + Int(iova - e.first)
    }

    func ringWindow(_ iova: UInt64, bytes: Int, writable: Bool) -> UnsafeMutableRawPointer? {
        place(iova, bytes, writable: writable, ring: true)
    }
    func bufferWindow(_ iova: UInt64, bytes: Int, writable: Bool) -> UnsafeMutableRawPointer? {
        place(iova, bytes, writable: writable, ring: false)
    }
    func bufferSpan(_ iova: UInt64, writable: Bool) -> BufferSpan? {
        guard way == .spans, let e = entry(iova, ring: false), writable ? e.writable : e.readable else { return nil }
        return BufferSpan(first: e.first, last: e.last, base: arena.baseAddress! + e.offset)
    }

    /// Where an area of the rings' table is in the arena, as far as it is mapped (for the overlap rule).
    func ringArea(_ iova: UInt64, _ count: Int) -> [Range<Int>] {
        (0..<count).compactMap { k -> Range<Int>? in
            guard let e = entry(iova &+ UInt64(k), ring: true) else { return nil }
            let at = e.offset + Int(iova &+ UInt64(k) - e.first)
            return at..<at + 1
        }
    }
}

/// What one run left: compared across the five ways.
struct Outcome: Equatable {
    enum Counters: Equatable {
        case net(NetLoopback.Run), block(BlockRequests.Run), control(ControlQueue.Run)
    }
    var counters: Counters
    var arena: [UInt8]
    var disk: [UInt8]
    /// last_avail and last_used of each ring served.
    var indexes: [UInt16]
}

/// Serves the input's device once on `memory`, whose bytes are `arena`'s.
func serve(_ setup: Setup, _ memory: some GuestMemory, arena: Arena) -> Outcome {
    var rings = setup.rings.map { SplitRing(num: setup.num, desc: $0.desc, avail: $0.avail, used: $0.used, base: $0.base) }
    let counters: Outcome.Counters
    var diskBytes: [UInt8] = []
    switch setup.device {
    case .net:
        var (rx, tx) = (rings[0], rings[1])
        let run = NetLoopback.run(
            tx: &tx, rx: &rx, memory, mac: Setup.mac, version1: setup.version1, budget: setup.budget, mergeable: setup.mergeable)
        rings = [rx, tx]
        require(run.txChains <= setup.budget, "a net run took \(run.txChains) TX chains on a budget of \(setup.budget)")
        require(run.rxChains <= run.txChains, "a net run took more RX chains than TX chains")
        counters = .net(run)
    case .block:
        let disk = RAMDisk(capacity: Setup.diskSectors, contents: Setup.diskContents)
        let run = BlockRequests.run(&rings[0], memory, disk: disk, budget: setup.budget)
        require(run.requests <= setup.budget, "a block run took \(run.requests) requests on a budget of \(setup.budget)")
        diskBytes = Array(disk.bytes)
        counters = .block(run)
        rings.removeLast()
    case .control:
        let run = ControlQueue.run(&rings[0], memory, mac: Setup.mac, budget: setup.budget, maxQueuePairs: 4)
        require(run.counters.requests <= setup.budget, "a control run took \(run.counters.requests) commands on a budget of \(setup.budget)")
        counters = .control(run)
        rings.removeLast()
    }
    return Outcome(counters: counters, arena: Array(arena.bytes), disk: diskBytes, indexes: rings.flatMap { [$0.lastAvail, $0.lastUsed] })
}

/// The completions each served ring counted, in `Outcome.indexes`' order.
func completions(_ counters: Outcome.Counters) -> [Int] {
    switch counters {
    case .net(let run): [run.rxCompleted, run.txCompleted]
    case .block(let run): [run.completed]
    case .control(let run): [run.completed]
    }
}

/// How two outcomes differ, for a finding's report.
func difference(_ a: Outcome, _ b: Outcome) -> String {
    if a.counters != b.counters { return "counters \(a.counters) against \(b.counters)" }
    if a.indexes != b.indexes { return "ring indexes \(a.indexes) against \(b.indexes)" }
    if let k = a.arena.indices.first(where: { a.arena[$0] != b.arena[$0] }) { return "arena byte \(k): \(a.arena[k]) against \(b.arena[k])" }
    if let k = a.disk.indices.first(where: { a.disk[$0] != b.disk[$0] }) { return "disk byte \(k): \(a.disk[k]) against \(b.disk[k])" }
    return "nowhere shown"
}

func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("FuzzRing oracle: \(message())") }
}

/// Never outside the IOTLB: each changed byte lies in an entry that allows writing; the guard zones are as made.
func checkWrites(_ before: [UInt8], _ arena: Arena, _ entries: [Entry], _ way: Way) {
    let writable = entries.filter(\.writable).map { $0.offset..<$0.offset + Int($0.last - $0.first) + 1 }
    for k in 0..<Setup.arenaBytes where arena.bytes[k] != before[k] {
        require(writable.contains { $0.contains(k) }, "\(way): arena byte \(k) changed outside every writable entry")
    }
    for zone in arena.guards { require(arena.allocation[zone].allSatisfy { $0 == 0xA5 }, "\(way): a guard zone around the arena changed") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= Setup.headerBytes else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let setup = Setup(Array(input[..<Setup.headerBytes]))
    let contents = ArraySlice(input[Setup.headerBytes...])
    let before = Array(contents.prefix(Setup.arenaBytes)) + [UInt8](repeating: 0, count: max(0, Setup.arenaBytes - contents.count))
    var outcomes: [Outcome] = []
    var copies: FuzzMemory?
    for way in Way.allCases {
        let (memory, model) = way.memory(setup, contents: contents)
        let outcome = serve(setup, memory, arena: way.arena)
        checkWrites(before, way.arena, setup.entries, way)
        outcomes.append(outcome)
        if way == .copies { copies = model }
    }
    guard setup.apart, let copies else { return 0 }
    // The driver kept rings and buffers apart; the rest of the rule: no used ring where the device reads rings, and
    // each used ring's bytes its own (two IOVAs of one may be one byte of memory, through two entries).
    let served = outcomes[0].indexes.count / 2
    let used = (0..<served).map { r in copies.ringArea(setup.rings[r].used, 4 + 8 * Int(setup.num)) }
    let usedBytes = used.map { Set($0.map(\.lowerBound)) }
    let readBytes = Set(copies.ringReads.flatMap { $0 })
    guard zip(used, usedBytes).allSatisfy({ $0.count == $1.count && $1.isDisjoint(with: readBytes) }),
        served < 2 || usedBytes[0].isDisjoint(with: usedBytes[1])
    else { return 0 }
    for (k, outcome) in outcomes.enumerated() {
        require(outcome == outcomes[0], "the \(Way.allCases[k]) way differs from the copies way: \(difference(outcome, outcomes[0]))")
    }
    // What the counters say is what the driver sees: each ring's used idx moved by its completions, and reads so.
    let outcome = outcomes[0]
    for (r, completed) in completions(outcome.counters).enumerated() {
        let (base, lastUsed) = (setup.rings[r].base, outcome.indexes[2 * r + 1])
        require(lastUsed == base &+ UInt16(truncatingIfNeeded: completed), "ring \(r): last_used moved by other than its completions")
        let idx = copies.ringArea(setup.rings[r].used &+ 2, 2)
        if completed > 0, idx.count == 2 {
            let shown = UInt16(outcome.arena[idx[0].lowerBound]) | UInt16(outcome.arena[idx[1].lowerBound]) << 8
            require(shown == lastUsed, "ring \(r): the used idx the driver reads (\(shown)) is not last_used (\(lastUsed))")
        }
    }
    return 0
}
