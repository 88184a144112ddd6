// SplitRing.swift — the device side of a virtio split ring, as vdpa_sim's
// vringh walks it (docs/datapath.md; docs/kernel-rules.md D22–D24): fetch a chain
// from the avail ring, following NEXT and INDIRECT, collecting readable and
// writable buffers; complete it in the used ring.  Every access to the VMM's
// memory goes through `GuestMemory` — so the walker is tested against rings
// built in the test's own memory and driven against a VMM by the daemon —
// except, for one run, the ring areas a memory says are in place (a shared
// file mapping): those are loaded and stored directly, each access guarded
// by CVDPAShim.

import CVDPAShim
import Synchronization

/// How the walker reads and writes ring and buffer memory by IOVA; errors are the access's own.
public protocol GuestMemory {
    /// `count` bytes at `iova`, read through the ring areas' ASID (`ring: true`) or the buffers' (`ring: false`).
    func read(_ iova: UInt64, count: Int, ring: Bool) throws(RingError) -> [UInt8]
    func write(_ bytes: [UInt8], at iova: UInt64, ring: Bool) throws(RingError)
    /// A 16-bit ring index as one aligned store (the used idx: a torn store would show the driver a stale entry),
    /// through the ring areas' ASID, where it may be read as well as written: vringh asks this store for reading
    /// (D24: a used ring mapped write-only never shows its completions), and no store goes where writing is not allowed.
    func writeIndex(_ value: UInt16, at iova: UInt64) throws(RingError)
    /// A 16-bit ring field as one aligned load that orders the reads after it (the avail idx, before the entries
    /// it publishes: the virtio spec's read barrier; the avail flags and entries too), its two bytes in one IOTLB
    /// entry, as vringh's 16-bit accessors ask: a field split across two entries is a fault.
    func readIndex(at iova: UInt64) throws(RingError) -> UInt16
    func copy(_ iova: UInt64, into buffer: UnsafeMutableRawBufferPointer, ring: Bool) throws(RingError)
    func copy(from bytes: UnsafeRawBufferPointer, to iova: UInt64, ring: Bool) throws(RingError)
    /// Where `bytes` of a ring area at `iova` are in this process, when the ring areas' ASID maps all of it
    /// (`writable`: for writing too) into memory reached in place — a shared file mapping, whose accesses the walker
    /// guards (a fault, not a crash, if the file shrinks); nil sends each access of the area through the methods above.
    func ringWindow(_ iova: UInt64, bytes: Int, writable: Bool) -> UnsafeMutableRawPointer?
    /// The same for a buffer, through the buffers' ASID: where a loop copies a frame from one buffer to another in
    /// one guarded copy (`NetLoopback`), nil sends it through the methods above.
    func bufferWindow(_ iova: UInt64, bytes: Int, writable: Bool) -> UnsafeMutableRawPointer?
    /// The stretch of buffer IOVAs around `iova` that one mapping takes, with the permission asked, to memory reached in
    /// place for the run: a loop that meets many buffers there (a run's frames) finds each one's place by an offset
    /// (`BufferSpan.window`) instead of a window lookup per buffer.  Nil: ask `bufferWindow`.
    func bufferSpan(_ iova: UInt64, writable: Bool) -> BufferSpan?
    /// Accesses a run made in its windows (`SplitRing.attach`), for the memory's counters.
    func countWindowAccesses(_ accesses: Int, indexStores: Int)
}

extension GuestMemory {
    /// Memory that copies (a test's own bytes, process_vm_readv) has no reordering to prevent.
    public func readIndex(at iova: UInt64) throws(RingError) -> UInt16 {
        let b = try read(iova, count: 2, ring: true)
        return UInt16(b[0]) | UInt16(b[1]) << 8
    }

    /// `buffer.count` bytes at `iova` into `buffer`: what the walker uses for its fixed-size reads (a descriptor,
    /// a ring entry) and a frame's copy, so a memory that can copy in place allocates nothing per access.
    public func copy(_ iova: UInt64, into buffer: UnsafeMutableRawBufferPointer, ring: Bool) throws(RingError) {
        let bytes = try read(iova, count: buffer.count, ring: ring)
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
    }

    /// `bytes` written at `iova` (the twin of `copy(_:into:ring:)`).
    public func copy(from bytes: UnsafeRawBufferPointer, to iova: UInt64, ring: Bool) throws(RingError) {
        try write(Array(bytes), at: iova, ring: ring)
    }

    /// Memory that copies has no place to reach in place.
    public func ringWindow(_ iova: UInt64, bytes: Int, writable: Bool) -> UnsafeMutableRawPointer? { nil }
    public func bufferWindow(_ iova: UInt64, bytes: Int, writable: Bool) -> UnsafeMutableRawPointer? { nil }
    public func bufferSpan(_ iova: UInt64, writable: Bool) -> BufferSpan? { nil }
    public func countWindowAccesses(_ accesses: Int, indexStores: Int) {}
}

/// Buffer IOVAs `first`…`last` reached in place from `base` (where `first` is), all with the permission they were
/// asked for: what `GuestMemory.bufferSpan` gives, good for the run it was given in.  Its places are reached with
/// guarded accesses, as a window's are.
public struct BufferSpan {
    public let first: UInt64, last: UInt64
    public let base: UnsafeMutableRawPointer

    public init(first: UInt64, last: UInt64, base: UnsafeMutableRawPointer) {
        precondition(first <= last && last - first < UInt64(Int.max), "a span holds at least one byte, and fewer than Int.max")
        (self.first, self.last, self.base) = (first, last, base)
    }

    /// Where [iova, iova + bytes) is, when the span holds all of it (and `bytes` > 0).
    @inline(__always)
    public func window(_ iova: UInt64, bytes: Int) -> UnsafeMutableRawPointer? {
        guard bytes > 0, iova >= first, iova <= last, UInt64(bytes - 1) <= last - iova else { return nil }
        return base + Int(iova - first)
    }
}

/// Why a chain could not be fetched or completed (vringh's errno in parentheses).
public enum RingError: Error, Equatable, Sendable {
    /// A ring or buffer address has no mapping, or the VMM's memory could not be reached (EFAULT / EINVAL).
    case fault(UInt64)
    /// The mapping forbids the access (EPERM).
    case permission(UInt64)
    /// avail->ring[slot] ≥ num (EINVAL, not consumed: the queue is stuck until reset or SET_VRING_BASE).
    case headOutOfRange(UInt16)
    /// A `next` ≥ num, or past an indirect table (EINVAL, consumed).
    case nextOutOfRange(UInt16)
    /// More descriptors than the ring or the indirect table holds: a loop (ELOOP, consumed).
    case loop
    /// A readable descriptor after a writable one (EINVAL, consumed).
    case readableAfterWritable
    /// An indirect table inside an indirect table, or a table length not a multiple of 16 or 0 (EINVAL, consumed).
    case badIndirect
}

/// One buffer of a chain, by IOVA (translated only when copied, as vringh does).
public struct RingBuffer: Equatable, Sendable {
    public var iova: UInt64
    public var length: UInt32
}

/// A fetched chain: its head (the used element's id) and its buffers.
public struct RingChain: Equatable, Sendable {
    public var head: UInt16
    public var readable = RingBuffers()
    public var writable = RingBuffers()
}

public struct SplitRing: Sendable {
    public let num: UInt16
    /// num - 1: num is a power of two (R58), so a slot is an index masked, not divided (a division per access
    /// costs more than the rest of the access).
    private let mask: UInt16
    public let desc: UInt64
    public let avail: UInt64
    public let used: UInt64
    /// last_avail_idx: the next avail entry to take (SET/GET_VRING_BASE).
    public private(set) var lastAvail: UInt16
    /// last_used_idx: made equal to lastAvail at a 0→1 enable (R62).  What the driver has been shown: completions
    /// written in place but not yet published (`unpublished`) are past it.
    public private(set) var lastUsed: UInt16
    /// The avail idx as last read in this run.  Every chain up to it is published, so it is read again only once
    /// they are all taken: one acquire load per batch the driver posts, not one per chain (a driver cannot tell).
    /// Forgotten at each `attach`: a ring kept across runs must not trust an index read before a reset.
    private var availSeen: UInt16
    /// The three areas in place for the run between `attach` and `detach`, when the memory has them all; the
    /// accesses made there, and the used idx stores among them (the memory's counters, at `detach`).
    private var inPlace: InPlace?
    private var inPlaceAccesses = 0, inPlaceIndexStores = 0
    /// Used elements written in place after `lastUsed` whose idx store waits for the run's end (`publishUsed`): one
    /// store per run instead of one per completion, each a line the driver is reading.
    private var unpublished: UInt16 = 0
    /// Sendable only so that a ring can hold one: set between `attach` and `detach`, on the one thread of a run.
    private struct InPlace: @unchecked Sendable {
        let desc: UnsafeRawPointer, avail: UnsafeRawPointer, used: UnsafeMutableRawPointer
    }

    static let next: UInt16 = 1, write: UInt16 = 2, indirect: UInt16 = 4

    /// `num` is a power of two in 1…32768, as SET_VRING_NUM accepts (R58).
    public init(num: UInt16, desc: UInt64, avail: UInt64, used: UInt64, base: UInt16) {
        precondition(num > 0 && num & (num - 1) == 0, "a split ring's size is a power of two (R58)")
        mask = num - 1
        (self.num, self.desc, self.avail, self.used) = (num, desc, avail, used)
        (lastAvail, lastUsed, availSeen) = (base, base, base)
    }

    /// SET_VRING_BASE on a ring in use: vdpa_sim moves last_avail_idx and nothing else (R60), so the next
    /// completions still go where last_used points until an enable builds the ring again (R62).
    public mutating func rebase(lastAvail base: UInt16) {
        (lastAvail, availSeen) = (base, base)
    }

    /// Starts a run: the avail idx is read afresh, and the descriptor table, the avail ring and the used ring are
    /// reached in place when the memory can (a shared region holds each whole, with the permission its accesses
    /// need, the indexes aligned); every access then is one guarded load or store (CVDPAShim), no IOTLB lookup.
    /// Call `detach` at the run's end: the places are the run's.
    public mutating func attach(_ memory: some GuestMemory) {
        availSeen = lastAvail
        let n = Int(num)
        guard avail % 2 == 0, used % 4 == 0,
            let descArea = memory.ringWindow(desc, bytes: 16 * n, writable: false),
            let availArea = memory.ringWindow(avail, bytes: 4 + 2 * n, writable: false),
            let usedArea = memory.ringWindow(used, bytes: 4 + 8 * n, writable: true),
            // The idx store asks for reading too, as vringh's does (D24): a used ring that is write-only goes the
            // general way, which writes its elements and fails its idx.
            memory.ringWindow(used &+ 2, bytes: 2, writable: false) != nil,
            UInt(bitPattern: availArea) % 2 == 0, UInt(bitPattern: usedArea) % 4 == 0
        else { return }
        inPlace = InPlace(desc: descArea, avail: availArea, used: usedArea)
    }

    /// Whether the run reaches the ring's areas in place (`attach` found them all).
    public var isInPlace: Bool { inPlace != nil }

    /// Ends the run's places: publishes the completions made there (`publishUsed`) and hands the accesses to the
    /// memory's counters.  Returns how many completions were lost to a failed idx store (0 but for a fault).
    @discardableResult
    public mutating func detach(_ memory: some GuestMemory) -> Int {
        guard inPlace != nil else { return 0 }
        let lost = publishUsed()
        memory.countWindowAccesses(inPlaceAccesses, indexStores: inPlaceIndexStores)
        (inPlace, inPlaceAccesses, inPlaceIndexStores) = (nil, 0, 0)
        return lost
    }

    /// Stores the used idx past the completions written in place since the last store, as one release store
    /// after their elements.  The driver sees them all at once — as vhost-net's batched used updates, where
    /// vringh stores the idx after each — and a driver cannot tell a slow device from a batching one.  last_used
    /// moves only once the store landed: after a failed one the next completions rewrite the same slots and the
    /// driver never sees these (D24).  Returns how many completions were lost that way.
    private mutating func publishUsed() -> Int {
        guard unpublished > 0, let p = inPlace else { return 0 }
        let count = unpublished
        unpublished = 0
        guard vdpad_guarded_store_release_u16(p.used + 2, lastUsed &+ count) == 0 else { return Int(count) }
        lastUsed &+= count
        // Each completion's idx reached the driver in one atomic store (the counters count completions).
        (inPlaceAccesses, inPlaceIndexStores) = (inPlaceAccesses + 1, inPlaceIndexStores + Int(count))
        return 0
    }

    static func le32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) } }
    static func le64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) } }

    /// A ring structure read whole into `value`'s bytes (a descriptor, an avail entry): nothing allocated.
    static func load<T>(_ value: inout T, _ iova: UInt64, _ memory: some GuestMemory) throws(RingError) {
        let failure = withUnsafeMutableBytes(of: &value) { b -> RingError? in
            do throws(RingError) { try memory.copy(iova, into: b, ring: true) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }

    /// The avail idx read in place into `availSeen`, as one acquire load (the entries it publishes are read after
    /// it); false when the load faults.
    @inline(__always)
    private mutating func loadAvailIndex(_ p: InPlace) -> Bool {
        guard vdpad_guarded_load_acquire_u16(p.avail + 2, &availSeen) == 0 else { return false }
        inPlaceAccesses &+= 1
        return true
    }

    /// Whether the driver has posted chains not taken yet.
    public mutating func hasWork(_ memory: some GuestMemory) throws(RingError) -> Bool {
        if availSeen != lastAvail { return true }
        if let p = inPlace {
            guard loadAvailIndex(p) else { throw .fault(avail &+ 2) }
        } else {
            availSeen = try memory.readIndex(at: avail &+ 2)
        }
        return availSeen != lastAvail
    }

    /// The next chain, or nil when the ring is empty.  A head out of range is refused without consuming it;
    /// every other error consumes the head (vringh's rules, docs/kernel-rules.md D22–D23).
    public mutating func fetch(_ memory: some GuestMemory) throws(RingError) -> RingChain? {
        var chain = RingChain(head: 0)
        return try fetch(memory, into: &chain) ? chain : nil
    }

    /// `fetch` into a chain the caller keeps from one fetch to the next: its buffer lists are emptied, not
    /// made anew, so a run allocates nothing per chain.  False when the ring is empty.
    public mutating func fetch(_ memory: some GuestMemory, into chain: inout RingChain) throws(RingError) -> Bool {
        // In place, the chain as the peek read it: one plain descriptor (a frame, an RX buffer: most of what a net
        // driver posts) taken without the walk's loop, a longer one (a block request) walked on from its head.  An
        // error to report, or a ring not in place, goes the general way below.
        if let p = inPlace, let (head, first) = peek() {
            takePeeked()
            chain.head = head
            let buffer = RingBuffer(iova: first.address, length: first.length)
            switch first.flags & (Self.next | Self.indirect | Self.write) {
            case 0:
                chain.readable.replaceAll(with: buffer)
                chain.writable.removeAll()
            case Self.write:
                chain.readable.removeAll()
                chain.writable.replaceAll(with: buffer)
            default:
                chain.readable.removeAll()
                chain.writable.removeAll()
                var peeked: Descriptor? = first
                let (table, iova) = (p.desc, desc)
                let taken = try Self.walk(isRings: true, entries: num, first: head, into: &chain, memory) { i throws(RingError) in
                    if let d = peeked {  // the head's, as the peek read it
                        peeked = nil
                        return d
                    }
                    return try Self.loadInPlace(table, iova, i)
                }
                inPlaceAccesses += taken - 1  // the head's descriptor was counted with the peek
            }
            return true
        }
        // The general way: a ring reached through the memory, or, in place, what the peek could not take (an empty
        // ring, a head out of range, a fault), found and reported here.
        guard try hasWork(memory) else { return false }
        let slot = Int(lastAvail & mask)
        var head: UInt16 = 0
        if let p = inPlace {
            guard vdpad_guarded_load_acquire_u16(p.avail + 4 + 2 * slot, &head) == 0 else { throw .fault(avail &+ 4 &+ 2 * UInt64(slot)) }
            inPlaceAccesses += 1
            head = UInt16(littleEndian: head)
        } else {
            head = try memory.readIndex(at: avail &+ 4 &+ 2 * UInt64(slot))  // a 16-bit field, as the idx is
        }
        guard head < num else { throw .headOutOfRange(head) }
        lastAvail &+= 1
        chain.head = head
        chain.readable.removeAll()
        chain.writable.removeAll()
        if let p = inPlace {
            let (table, iova) = (p.desc, desc)
            inPlaceAccesses += try Self.walk(isRings: true, entries: num, first: head, into: &chain, memory) { i throws(RingError) in
                try Self.loadInPlace(table, iova, i)
            }
        } else {
            _ = try Self.walk(isRings: true, entries: num, first: head, into: &chain, memory) { [desc] i throws(RingError) in
                try Self.load(memory, desc, i)
            }
        }
        return true
    }

    /// The next chain when it is one plain descriptor in place (no NEXT, no INDIRECT), read without taking it: its
    /// head, its buffer and whether that is writable.  Nil for anything else — an empty ring, a ring not in place,
    /// a head out of range, a longer chain, a fault — which `fetch` then takes, or refuses, as it takes every chain.
    /// A loop that wants the common chain fast peeks, decides, and takes it (`takePeeked`) only once it is served.
    @inline(__always)
    public mutating func peekSingle() -> (head: UInt16, buffer: RingBuffer, writable: Bool)? {
        guard let (head, d) = peek(), d.flags & (Self.next | Self.indirect) == 0 else { return nil }
        return (head, RingBuffer(iova: d.address, length: d.length), d.flags & Self.write != 0)
    }

    /// The next chain's head and first descriptor in place, read without taking the chain.  Nil: an empty ring, a
    /// ring not in place, a head out of range, a fault.
    @inline(__always)
    mutating func peek() -> (head: UInt16, first: Descriptor)? {
        guard let p = inPlace else { return nil }
        if availSeen == lastAvail {
            guard loadAvailIndex(p), availSeen != lastAvail else { return nil }
        }
        var head: UInt16 = 0
        guard vdpad_guarded_load_acquire_u16(p.avail + 4 + 2 * Int(lastAvail & mask), &head) == 0 else { return nil }
        head = UInt16(littleEndian: head)
        guard head < num, let d = try? Self.loadInPlace(p.desc, desc, head) else { return nil }
        return (head, d)
    }

    /// Takes the chain peeked, as `fetch` would have (its avail entry and the descriptor read: two accesses).
    @inline(__always)
    public mutating func takePeeked() {
        lastAvail &+= 1
        inPlaceAccesses &+= 2
    }

    /// struct vring_desc as the walker uses it, its fields in host order.
    struct Descriptor {
        var address: UInt64, length: UInt32, flags: UInt16, next: UInt16

        /// From the 16 bytes as the driver wrote them (little-endian addr, len, flags, next).
        init(_ d: (UInt64, UInt32, UInt16, UInt16)) {
            (address, length, flags, next) = (
                UInt64(littleEndian: d.0), UInt32(littleEndian: d.1), UInt16(littleEndian: d.2), UInt16(littleEndian: d.3)
            )
        }
    }

    /// Descriptor `index` of the ring's table reached in place for the run (`attach`): one guarded 16-byte load.
    @inline(__always)
    static func loadInPlace(_ base: UnsafeRawPointer, _ iova: UInt64, _ index: UInt16) throws(RingError) -> Descriptor {
        var d: (UInt64, UInt32, UInt16, UInt16) = (0, 0, 0, 0)
        let loaded = withUnsafeMutableBytes(of: &d) { vdpad_guarded_load_16_bytes(base + 16 * Int(index), $0.baseAddress) }
        guard loaded == 0 else { throw .fault(iova &+ 16 * UInt64(index)) }
        return Descriptor(d)
    }

    /// Descriptor `index` of a table read through the memory: the ring's own when it is not in place, or an
    /// indirect one.  An indirect table is where the driver says, up to 2^64 − 16: one that runs past the top of
    /// the IOVA space faults there, as its translation does in vringh.
    static func load(_ memory: some GuestMemory, _ table: UInt64, _ index: UInt16) throws(RingError) -> Descriptor {
        var d: (UInt64, UInt32, UInt16, UInt16) = (0, 0, 0, 0)
        let (at, past) = table.addingReportingOverflow(16 * UInt64(index))
        guard !past else { throw .fault(table) }
        try load(&d, at, memory)
        return Descriptor(d)
    }

    /// Follows one table from `first`, each descriptor from `load`: NEXT within it, INDIRECT (from the ring's own
    /// table, `isRings`, only) into a table of its own, read through the memory.  Returns how many descriptors
    /// it loaded.  Inlined into its callers with the loader they give: a call per descriptor would cost more than
    /// the load in place.
    @inline(__always)
    static func walk(
        isRings: Bool, entries: UInt16, first: UInt16, into chain: inout RingChain, _ memory: some GuestMemory,
        load: (UInt16) throws(RingError) -> Descriptor
    ) throws(RingError) -> Int {
        var index = first
        var taken = 0
        while true {
            guard index < entries else { throw .nextOutOfRange(index) }
            taken += 1
            guard taken <= Int(entries) else { throw .loop }
            let d = try load(index)
            if d.flags & indirect != 0 {
                // Followed although INDIRECT_DESC is not offered, as vringh does; its WRITE flag is ignored.
                guard isRings, d.length > 0, d.length % 16 == 0 else { throw .badIndirect }
                guard d.length / 16 <= UInt32(UInt16.max) else { throw .loop }
                try followIndirect(d, into: &chain, memory)
                // With NEXT as well, the walk goes on at `next` unless it is 0 (vringh's reading).
                guard d.flags & next != 0, d.next != 0 else { return taken }
                index = d.next
                continue
            }
            let buffer = RingBuffer(iova: d.address, length: d.length)
            if d.flags & write != 0 {
                chain.writable.append(buffer)
            } else {
                guard chain.writable.isEmpty else { throw .readableAfterWritable }
                chain.readable.append(buffer)
            }
            guard d.flags & next != 0 else { return taken }
            index = d.next
        }
    }

    /// An indirect table's walk, out of line: rare, and its memory path would weigh on every in-place walk.
    @inline(never)
    static func followIndirect(_ d: Descriptor, into chain: inout RingChain, _ memory: some GuestMemory) throws(RingError) {
        _ = try walk(isRings: false, entries: UInt16(d.length / 16), first: 0, into: &chain, memory) { i throws(RingError) in
            try load(memory, d.address, i)
        }
    }

    /// Whether the driver asked for no interrupt: VRING_AVAIL_F_NO_INTERRUPT in avail->flags, read after a full
    /// barrier so that the used idx stores before it are seen first (a driver that clears the flag then looks at
    /// the used idx again: one of the two sees the other).  A flags word that cannot be read asks for none, as
    /// vringh's failed read does.  vringh reads the flags after each used entry; a run reads them once, after its
    /// last (its interrupts are one eventfd signal per run anyway): a driver that set the flag meanwhile is
    /// polling the used ring, and one that cleared it gets the interrupt.
    public func interruptsSuppressed(_ memory: some GuestMemory) -> Bool {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        guard let flags = try? memory.readIndex(at: avail) else { return true }
        return UInt16(littleEndian: flags) & Self.noInterrupt != 0
    }

    static let noInterrupt: UInt16 = 1

    /// Writes the used element {head, length}, then the used idx as one 16-bit store (the order a driver relies on);
    /// in place, the idx store waits for the run's end (`publishUsed`, at `detach`).
    ///
    /// Inlined into its callers for the in-place store (a call and its frame cost as much as the store); the
    /// general way is out of line.
    @inline(__always)
    public mutating func complete(_ head: UInt16, length: UInt32, _ memory: some GuestMemory) throws(RingError) {
        if let p = inPlace {
            let slot = Int((lastUsed &+ unpublished) & mask)
            let packed = UInt64(head) | UInt64(length) << 32  // id, then len, little-endian
            guard vdpad_guarded_store_u64(p.used + 4 + 8 * slot, packed.littleEndian) == 0 else { throw .fault(used &+ 4 &+ 8 * UInt64(slot)) }
            inPlaceAccesses &+= 1
            unpublished &+= 1
            return
        }
        try completeThroughMemory(head, length: length, memory)
    }

    @inline(never)
    private mutating func completeThroughMemory(_ head: UInt16, length: UInt32, _ memory: some GuestMemory) throws(RingError) {
        let slot = UInt64(lastUsed & mask)
        let element = (UInt32(head).littleEndian, length.littleEndian)  // struct vring_used_elem: id, len
        let failure = withUnsafeBytes(of: element) { b -> RingError? in
            do throws(RingError) { try memory.copy(from: b, to: used &+ 4 &+ 8 * slot, ring: true) } catch { return error }
            return nil
        }
        if let failure { throw failure }
        // last_used moves only once the idx store landed (vringh's __vringh_complete): after a failed store the
        // next completion rewrites the same slot, and the driver never sees this one (D24).
        try memory.writeIndex(lastUsed &+ 1, at: used &+ 2)
        lastUsed &+= 1
    }

    /// The first `limit` bytes of a chain's readable buffers, in order, up to the first buffer that cannot be
    /// read: a pull copies what it can before a fault, and a caller that needs n bytes sees fewer.  The limit
    /// keeps a hostile chain of gigabytes from costing more than the bytes a command can use.
    public static func gather(_ chain: RingChain, _ memory: some GuestMemory, limit: Int) -> [UInt8] {
        let total = min(limit, chain.readable.totalLength)
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, count in
            count = gather(chain, memory, skipping: 0, into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// The chain's readable bytes after the first `skipping` of them, copied into `destination` until it is
    /// full, the chain ends or a buffer cannot be read (what came before it stays copied).  Returns how many
    /// bytes landed.
    public static func gather(
        _ chain: RingChain, _ memory: some GuestMemory, skipping: Int, into destination: UnsafeMutableRawBufferPointer
    ) -> Int {
        var readable = chain.readable
        return gather(&readable, memory, skipping: skipping, into: destination)
    }

    /// `gather` from a chain's readable buffers, read where they are: `inout` only so that the list is never
    /// copied for the call (it is not changed).  A list passed by value is copied — 80 bytes the fetch has just
    /// stored, which the copy's wide loads then wait for (a store-forwarding stall per frame, a fifth of a
    /// worker's time in a loopback run).
    public static func gather(
        _ readable: inout RingBuffers, _ memory: some GuestMemory, skipping: Int, into destination: UnsafeMutableRawBufferPointer
    ) -> Int {
        var (skip, count) = (skipping, 0)
        for i in readable.indices where count < destination.count {
            let b = readable[i]
            guard b.length > 0 else { continue }
            if skip >= Int(b.length) {
                skip -= Int(b.length)
                continue
            }
            let n = min(Int(b.length) - skip, destination.count - count)
            let piece = UnsafeMutableRawBufferPointer(rebasing: destination[count..<count + n])
            // A buffer that runs past the top of the IOVA space faults there, as its translation does in vringh.
            let (at, past) = b.iova.addingReportingOverflow(UInt64(skip))
            guard !past, (try? memory.copy(at, into: piece, ring: false)) != nil else { break }
            (skip, count) = (0, count + n)
        }
        return count
    }

    /// The twin of `gather`: writes `data` across the chain's writable buffers in order, at most `limit` bytes
    /// (a smaller chain truncates it), skipping empty buffers as vringh skips empty iovs; stops at the first
    /// buffer that cannot be written.  Returns how many bytes landed.
    public static func scatter(
        _ data: ArraySlice<UInt8>, into buffers: RingBuffers, _ memory: some GuestMemory, limit: Int = .max
    ) -> Int {
        var buffers = buffers
        return data.prefix(limit).withUnsafeBytes { scatter($0, into: &buffers, memory) }
    }

    /// `scatter` from bytes anywhere in memory (a disk's), with no copy on the way; the buffers are read where
    /// they are, as `gather`'s (`inout` only for that).
    public static func scatter(_ data: UnsafeRawBufferPointer, into buffers: inout RingBuffers, _ memory: some GuestMemory) -> Int {
        var written = 0
        for i in buffers.indices where written < data.count {
            let b = buffers[i]
            guard b.length > 0 else { continue }
            let n = min(Int(b.length), data.count - written)
            let piece = UnsafeRawBufferPointer(rebasing: data[written..<written + n])
            guard (try? memory.copy(from: piece, to: b.iova, ring: false)) != nil else { break }
            written += n
        }
        return written
    }
}
