// JournalTests.swift — the session journal (docs/restart.md): what a device
// journals, replayed on a fresh device of the same name, gives the same
// session — tables, mappings, batch, control state and eventfd bindings —
// after any sequence of operations; a transaction without its commit counts
// for nothing; a compacted journal says the same as the history it replaces;
// a torn tail is refused, never guessed.
import Testing
import VDPACore
import VDPAJournal
import _VDPATestSupport

/// Journals a device as DeviceSlot does: after each operation its table operations, and its control state when
/// that changed.
struct Recorder {
    var device: VDPADevice
    var records: [JournalRecord] = []
    var transaction = Transaction.daemon
    private var last: SessionImage

    init(_ kind: ManagementDevice = .vdpasimNet) throws {
        var d = try VDPADevice(name: DeviceName(rawValue: "vdpa0")!, mgmtdev: kind)
        d.setJournaling(true)
        device = d
        last = d.sessionImage
    }

    /// Runs one operation; a refused one journals nothing (it changed nothing).
    mutating func run(_ body: (inout VDPADevice) throws -> Void) {
        try? body(&device)
        _ = device.takeEventFDEffects()
        let ops = device.takeJournalOps()
        if !ops.isEmpty { records.append(.ops(device: "vdpa0", transaction: transaction, ops)) }
        let image = device.sessionImage
        if image != last {
            records.append(.image(device: "vdpa0", transaction: transaction, image))
            last = image
        }
    }
}

/// The records as the daemon writes them (eventfds as tokens: descriptor + 1000) and read back.
func roundTrip(_ records: [JournalRecord]) -> JournalReplay {
    var w = JournalWriter()
    for r in records { r.encode(into: &w) { UInt32($0.descriptor) + 1000 } }
    return w.bytes.withUnsafeBytes { JournalReplay($0) { EventFD(Int32($0) - 1000) } }
}

/// One session image as a record the daemon writes (eventfds as tokens) and reads back, with the record's bytes.
func imageRoundTrip(_ image: SessionImage) throws -> (record: JournalRecord, bytes: Int) {
    var w = JournalWriter()
    JournalRecord.image(device: "d", transaction: .daemon, image).encode(into: &w) { UInt32($0.descriptor) + 1000 }
    let record = try w.bytes.withUnsafeBytes { raw throws -> JournalRecord in
        var r = JournalReader(UnsafeRawBufferPointer(rebasing: raw[4...]))
        return try JournalRecord(from: &r) { EventFD(Int32($0) - 1000) }
    }
    return (record, w.bytes.count)
}

func fresh(_ kind: ManagementDevice = .vdpasimNet) throws -> VDPADevice {
    try VDPADevice(name: DeviceName(rawValue: "vdpa0")!, mgmtdev: kind)
}

/// The same session: control state, both table layers of every ASID, the device mappings, the open batch.
func expectSameSession(_ a: VDPADevice, _ b: VDPADevice, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.sessionImage == b.sessionImage, sourceLocation: sourceLocation)
    #expect(a.batchASID == b.batchASID, sourceLocation: sourceLocation)
    for asid in 0..<a.addressSpaceCount {
        #expect(a.sessionTables[asid] == b.sessionTables[asid], "ASID \(asid) session table", sourceLocation: sourceLocation)
        #expect(a.deviceMapping(asid: asid) == b.deviceMapping(asid: asid), "ASID \(asid) device mapping", sourceLocation: sourceLocation)
    }
}

@Suite("Session journal")
struct JournalTests {
    @Test("a writer is a value: a copy writes bytes of its own; a length is patched in place; growing keeps the bytes")
    func writerIsAValue() {
        var a = JournalWriter()
        a.u32(0)
        a.u64(7)
        var b = a
        b.u8(9)
        a.setU32(at: 0, 12)
        #expect(a.bytes == [12, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0])
        #expect(b.bytes == [0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9])
        for k in 0..<1000 { a.u16(UInt16(k)) }
        #expect(a.count == 2012 && Array(a.bytes.prefix(4)) == [12, 0, 0, 0] && Array(a.bytes.suffix(2)) == [0xE7, 0x03])
        a.removeAll()
        a.string("vdpa0")
        #expect(a.bytes == [5, 0, 0, 0] + Array("vdpa0".utf8) && b.count == 13)
    }

    @Test("every record kind reads back as written, eventfds through their tokens")
    func encoding() throws {
        var image = SessionImage()
        image.owner = Owner(connection: 7, pid: 70, uid: 1000)
        image.status = 0x0F
        image.driverFeatures = 1 << 32
        image.groupASID = [1, 0]
        var ring = Vring()
        (ring.num, ring.desc, ring.driver, ring.device, ring.ready, ring.base) = (256, 0x1000, 0x2000, 0x3000, true, 65535)
        (ring.kick, ring.call) = (EventFD(5), EventFD(6))
        image.vrings = [ring, Vring(), Vring()]
        image.storedConfig = [1, 2, 3, 4, 5, 6]
        image.configCall = EventFD(9)
        let entries = [IOTLBEntry(first: 0, last: 0xFFF, address: 0x10000, permission: .readWrite)]
        let records: [JournalRecord] = [
            .image(device: "d", transaction: Transaction(connection: 3, sequence: 4), image),
            .ops(
                device: "d", transaction: .daemon,
                [
                    .open(Owner(connection: 1, pid: 2, uid: 3)), .map(asid: 1, iova: 0x1000, size: 0x1000, address: 0x2000, permission: 2),
                    .unmap(asid: 0, iova: 0, size: 0), .batchBegin(asid: 1), .batchEnd(asid: 1), .resetMap(asid: 0), .reset, .release,
                    .setTable(asid: 0, entries: entries), .setTable(asid: 1, entries: nil), .setMapping(asid: 0, .snapshot(entries)),
                    .setMapping(asid: 1, .committed), .setBatch(asid: 1), .setBatch(asid: nil)
                ]),
            .commit(Transaction(connection: 3, sequence: 4), ConnectionCursor(inboxEpoch: 1, answered: 2, outboxEpoch: 3, outboxEnd: 4)),
            .commit(Transaction(connection: 3, sequence: 5), ConnectionCursor(answered: 9, outboxEnd: 9, passedTaken: 7)),
            .commit(Transaction(connection: 3, sequence: 6), ConnectionCursor(answered: 9, outboxEnd: 9, subscriptions: 1 << 31 | 5)),
            .closed(connection: 9), .forget(device: "e")
        ]
        for record in records {
            var w = JournalWriter()
            record.encode(into: &w) { UInt32($0.descriptor) + 1000 }
            let decoded = try w.bytes.withUnsafeBytes { raw throws -> JournalRecord in
                var r = JournalReader(UnsafeRawBufferPointer(rebasing: raw[4...]))
                return try JournalRecord(from: &r) { EventFD(Int32($0) - 1000) }
            }
            #expect(decoded == record)
        }
    }

    @Test("shared regions' files: through their tokens; none in an older image; one that did not come back left out")
    func sharedFiles() throws {
        var image = try fresh().sessionImage
        image.owner = Owner(connection: 7, pid: 70, uid: 1000)
        image.sharedFiles = [
            SharedFile(start: 0x7000_0000, size: 1 << 20, offset: 0, file: EventFD(11)),
            SharedFile(start: 0x8000_0000, size: 1 << 21, offset: 1 << 20, file: EventFD(12))
        ]
        #expect(image.eventFDs.contains(EventFD(11)) && image.eventFDs.contains(EventFD(12)), "the files are held like eventfds")
        func decode(_ w: JournalWriter, back: @escaping (UInt32) -> EventFD?) throws -> JournalRecord {
            try w.bytes.withUnsafeBytes { raw throws -> JournalRecord in
                var r = JournalReader(UnsafeRawBufferPointer(rebasing: raw[4...]))
                return try JournalRecord(from: &r, eventFD: back)
            }
        }
        var w = JournalWriter()
        JournalRecord.image(device: "d", transaction: .daemon, image).encode(into: &w) { UInt32($0.descriptor) + 1000 }
        #expect(try decode(w) { EventFD(Int32($0) - 1000) } == .image(device: "d", transaction: .daemon, image))
        var lost = image
        lost.sharedFiles.removeFirst()
        #expect(try decode(w) { $0 == 1011 ? nil : EventFD(Int32($0) - 1000) } == .image(device: "d", transaction: .daemon, lost))
        // A journal from before: the image ends at the store agent.
        var none = image
        none.sharedFiles = []
        var old = JournalWriter()
        JournalRecord.image(device: "d", transaction: .daemon, none).encode(into: &old) { UInt32($0.descriptor) + 1000 }
        #expect(old.bytes.count < w.bytes.count, "no shared files: nothing written for them")
        #expect(try decode(old) { EventFD(Int32($0) - 1000) } == .image(device: "d", transaction: .daemon, none))
        // A restore hands the regions to the daemon to map again, once; they are not regions until then.
        var d = try fresh()
        try d.restore(image)
        #expect(d.sharedMemory.isEmpty && d.sessionImage.sharedFiles.isEmpty)
        #expect(d.takeSharedFilesToMap() == image.sharedFiles && d.takeSharedFilesToMap().isEmpty)
    }

    @Test("rings at enable (R62): through the journal, with or without shared files; none in an older image")
    func ringsAtEnable() throws {
        var image = try fresh().sessionImage
        var ring = EnabledRing()
        (ring.num, ring.desc, ring.driver, ring.device) = (32, 0x7000, 0x7400, nil)
        image.ringsAtEnable = [2: ring, 0: EnabledRing()]
        #expect(try imageRoundTrip(image).0 == .image(device: "d", transaction: .daemon, image))
        var withFiles = image
        withFiles.sharedFiles = [SharedFile(start: 0x7000_0000, size: 1 << 20, offset: 0, file: EventFD(11))]
        #expect(try imageRoundTrip(withFiles).0 == .image(device: "d", transaction: .daemon, withFiles))
        var none = image
        none.ringsAtEnable = [:]
        #expect(try imageRoundTrip(none).1 < imageRoundTrip(image).1, "no rings at enable: nothing written for them")
        #expect(try imageRoundTrip(none).0 == .image(device: "d", transaction: .daemon, none))
    }

    @Test("the features last negotiated: through the journal alone or after the other trailing sections; none in an older image")
    func lastNegotiatedFeatures() throws {
        func roundTrip(_ image: SessionImage) throws -> (SessionImage, Int) {
            let (record, bytes) = try imageRoundTrip(image)
            guard case .image(_, _, let decoded) = record else { throw JournalReader.Truncated() }
            return (decoded, bytes)
        }
        let none = try fresh().sessionImage
        var image = none
        image.lastNegotiatedFeatures = 0x1_0002_0000
        #expect(try roundTrip(image).0 == image, "alone: the earlier sections are written empty before it")
        #expect(try roundTrip(none).0 == none && roundTrip(none).1 < roundTrip(image).1, "never negotiated: nothing written")
        image.lastNegotiatedFeatures = 0
        #expect(try roundTrip(image).0 == image, "features 0 negotiated is not none")
        image.sharedFiles = [SharedFile(start: 0x7000_0000, size: 1 << 20, offset: 0, file: EventFD(11))]
        image.ringsAtEnable = [1: EnabledRing()]
        #expect(try roundTrip(image).0 == image)
        var older = image
        older.lastNegotiatedFeatures = nil  // a journal from before ends after the rings at enable
        #expect(try roundTrip(older).0 == older)
    }

    @Test("a random session, journaled and replayed on a fresh device, is the same session", arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func randomSessions(seed: UInt64) throws {
        for kind in [ManagementDevice.vdpasimNet, .mlx5Net, .platformNet, .vdpasimBlock] {
            var rng = SplitMix64(state: seed)
            var r = try Recorder(kind)
            r.run { try $0.open(by: me) }
            for _ in 0..<400 {
                let asid = ASID(rng.next() % 2)
                let page = (rng.next() % 64) * 0x1000
                switch rng.next() % 20 {
                case 0..<7:
                    r.run { try $0.map(asid: asid, iova: page, size: 0x1000 * (1 + rng.next() % 3), address: rng.next(), permission: .readWrite) }
                case 7..<9: r.run { _ = try $0.unmap(asid: asid, iova: page, size: 0x2000) }
                case 9: r.run { try $0.batchBegin(asid: asid) }
                case 10: r.run { try $0.batchEnd(asid: asid) }
                case 11: r.run { _ = try $0.resetMap(asid: asid) }
                case 12:
                    let features: BackendFeatures = [.iotlbMessageV2, .iotlbBatch, .iotlbASID, .iotlbPersist]
                    r.run { try $0.setBackendFeatures(features.intersection($0.offeredBackendFeatures)) }
                case 13: r.run { try $0.setStatus(UInt64([0, 1, 3, 0xB, 0xF][Int(rng.next() % 5)])) }
                case 14: r.run { $0.reset() }
                case 15: r.run { try $0.setGroupASID(group: GroupIndex(rng.next() % 2), asid: asid) }
                case 16:
                    let vq = VirtqueueIndex(rng.next() % 2)
                    r.run { try $0.setVringKick(vq, EventFD(Int32(100 + rng.next() % 50))) }
                case 17:
                    let vq = VirtqueueIndex(rng.next() % 2)
                    let (num, base, ready): (UInt64, UInt64, Bool) = (1 << (4 + rng.next() % 4), rng.next() % 100, rng.next() % 2 == 0)
                    let addresses = rng.next() % 2 == 0 ? UInt64(0x10000) : nil
                    r.run { try $0.setVring(vq, num: num, desc: addresses, driver: addresses, device: addresses, base: base, ready: ready) }
                case 18: r.run { $0.release() }
                default: r.run { try $0.open(by: Owner(connection: rng.next() % 3 + 1, pid: 1, uid: 0)) }
                }
            }
            var replayed = try fresh(kind)
            try roundTrip(r.records).apply(to: &replayed)
            expectSameSession(replayed, r.device)

            // A compacted journal (the session as it is, no history) says the same.
            var compacted = try fresh(kind)
            try roundTrip(JournalReplay.snapshot(devices: [r.device], cursors: [:])).apply(to: &compacted)
            expectSameSession(compacted, r.device)
        }
    }

    @Test("a transaction counts only once its connection committed it (the same or a later sequence)")
    func transactions() throws {
        var r = try Recorder()
        r.run { try $0.open(by: me) }
        r.transaction = Transaction(connection: 5, sequence: 1)
        r.run { try $0.map(iova: 0, size: 0x1000, address: 0x1000, permission: .read) }
        r.records.append(.commit(Transaction(connection: 5, sequence: 1), ConnectionCursor(answered: 100)))
        r.transaction = Transaction(connection: 5, sequence: 2)
        r.run { try $0.map(iova: 0x1000, size: 0x1000, address: 0x2000, permission: .read) }
        r.transaction = .daemon  // the daemon's own work counts at once
        r.run { try $0.setGroupASID(group: 1, asid: 1) }

        let replay = roundTrip(r.records)
        #expect(replay.uncommitted == 1)
        #expect(replay.cursors[5] == ConnectionCursor(answered: 100))
        var d = try fresh()
        try replay.apply(to: &d)
        #expect(d.sessionTables[0]?.entries().map(\.first) == [0])  // sequence 2 never committed: the new process answers it again
        #expect(d.groupASID == [0, 1])

        // A later commit covers every earlier sequence of the connection.
        r.records.append(.commit(Transaction(connection: 5, sequence: 3), ConnectionCursor(answered: 200)))
        var later = try fresh()
        try roundTrip(r.records).apply(to: &later)
        expectSameSession(later, r.device)
    }

    @Test("a connection's end drops its cursor; a device's forget drops what came before")
    func closedAndForget() throws {
        var r = try Recorder()
        r.run { try $0.open(by: me) }
        r.run { try $0.map(iova: 0, size: 0x1000, address: 0x1000, permission: .read) }
        r.records.append(.commit(Transaction(connection: 1, sequence: 1), ConnectionCursor(answered: 10)))
        r.records.append(.closed(connection: 1))
        r.records.append(.forget(device: "vdpa0"))
        let replay = roundTrip(r.records)
        #expect(replay.cursors.isEmpty && replay.closed == [1])
        var d = try fresh()
        try replay.apply(to: &d)
        #expect(d.owner == nil && d.sessionTables[0] == nil)
    }

    @Test("a journal cut inside a record keeps what precedes the cut and says where it is")
    func tornTail() throws {
        var r = try Recorder()
        r.run { try $0.open(by: me) }
        r.run { try $0.map(iova: 0, size: 0x1000, address: 0x1000, permission: .read) }
        var w = JournalWriter()
        for record in r.records { record.encode(into: &w) { _ in 0 } }
        let whole = w.bytes
        for cut in 1..<whole.count {
            let replay = whole[..<cut].withUnsafeBytes { JournalReplay($0) { _ in nil } }
            #expect(replay.records <= r.records.count)
            if replay.damagedAt == nil {
                // A cut at a record boundary: the records before it, whole.
                #expect(replay.records < r.records.count)
            }
        }
        let bad = whole + [9, 0, 0, 0, 0xFF, 1, 2, 3, 4, 5, 6, 7, 8]  // a record of an unknown kind
        let replay = bad.withUnsafeBytes { JournalReplay($0) { _ in nil } }
        #expect(replay.records == r.records.count && replay.damagedAt == whole.count)
    }

    @Test("a restarted daemon's first look signals every ready queue's call once (an interrupt the dead process owed)")
    func resumeSignalsCalls() throws {
        var d = try device()
        try d.setVringCall(0, EventFD(40))
        try d.setVringCall(1, EventFD(41))
        try d.setVring(0, num: 256, desc: nil, driver: nil, device: nil, ready: true)
        _ = d.takeEventFDEffects()
        d.resumeAfterRestart()
        let effects = d.takeEventFDEffects()
        #expect(effects.signal == [EventFD(40)])  // vq 1 is not ready: no interrupt
        #expect(effects.kicksChanged && effects.resumed && effects.close.isEmpty)
    }

    @Test("a journaled session that does not fit the device of that name is refused (EINVAL), not forced")
    func mismatch() throws {
        var r = try Recorder(.mlx5Net)
        r.run { try $0.open(by: me) }
        var other = try fresh(.vdpasimBlock)
        expectError(.EINVAL) { try roundTrip(r.records).apply(to: &other) }
    }
}
