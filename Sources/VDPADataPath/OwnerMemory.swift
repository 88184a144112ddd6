// OwnerMemory.swift — the owner's memory as a data-path run sees it.  An
// IOVA goes through a snapshot of the device's mapping of the right ASID
// (`DataPathView`: as `translate` computes it, the owner's own addresses,
// never a guest-physical one), then, where a region the owner shared holds those
// addresses, one offset into vdpad's mapping of the file; elsewhere
// process_vm_readv/writev on the owner's pid (private memory).  Accesses to
// shared memory are guarded: a VMM that truncates its file under vdpad
// costs a fault on that access, not the daemon.
import CVDPAShim
import Synchronization
import VDPACore
import VDPAVirtio

#if canImport(Glibc)
    import Glibc
#endif

final class OwnerMemory: GuestMemory {
    /// Where a dup of the VMM's store agent socket comes from (-1: none), asked at the run's first index store that
    /// needs it — a run on shared memory never does, and a dup and a close per run are two system calls — and
    /// closed at the run's end (`unbind`).
    private let agentSource: () -> Int32

    /// The run's owner and ASIDs (`bind`).
    var pid: Int32 { state.pointee.pid }
    var ringASID: Int { state.pointee.ringASID }
    var bufferASID: Int { state.pointee.bufferASID }

    /// A device-mapping entry this run looked up, flattened (every field read in the hot loop is a plain load),
    /// and where its first byte is in vdpad when one shared region holds all of it.
    private struct Cached {
        var asid: Int
        var first: UInt64
        var last: UInt64
        var address: UInt64
        /// Permission's raw bits (VHOST_ACCESS_RO 1, WO 2).
        var permission: UInt8
        var host: UnsafeMutableRawPointer?
    }
    /// The run's state lives behind pointers, not in stored `var`s: a class's stored property pays a dynamic
    /// exclusivity check on every access, and these are touched several times per buffer.  Kept from one run to
    /// the next (`bind`): a worker's runs allocate nothing for their memory.
    private let state: UnsafeMutablePointer<RunState>
    private struct RunState {
        var pid: Int32 = 0
        /// Whether `viewPlace` holds the run's view of the device.
        var bound = false
        var ringASID = 0, bufferASID = 0
        /// Whether the owner shared any region (the view's `sharedMemory`, kept as one flag for the hot path's
        /// first test): without one every access goes the general way.
        var anyShared = false
        var counts = MemoryAccessCounts()
        /// Entries looked up (the cache holds the last `capacity`).
        var cached = 0
        /// The slot of the last hit: a run's accesses come in streaks on one entry (the rings', a buffer arena's).
        var recent = 0
        /// The agent's dup once asked for (nil: not yet).
        var agent: Int32?
    }
    /// The entries looked up so far, most runs touch two or three (the rings' and the buffers'): a short list
    /// beats any map.  Replaced round-robin past `capacity`.
    private let cache: UnsafeMutableBufferPointer<Cached>
    private static let capacity = 8
    /// The run's view of the device (its tables, copy-on-write: stable here; its shared regions, which stay mapped
    /// while the view holds them, so `unbind` lets it go), between `bind` and `unbind`: apart from `state`, so that a
    /// lookup reads it in place (an optional field would be copied whole to be read, a retain per field).
    private let viewPlace: UnsafeMutablePointer<DataPathView>
    /// The regions the owner shared, as the run's view has them (read in place, bound runs only).
    private var regions: SharedRegions {
        _read { yield viewPlace.pointee.sharedMemory }
    }

    /// What the run did to reach the memory, for the device's counters.
    var counts: MemoryAccessCounts { state.pointee.counts }

    /// A memory for runs, bound to none yet (`bind`).
    init(agent: @escaping () -> Int32 = { -1 }) {
        agentSource = agent
        state = .allocate(capacity: 1)
        state.initialize(to: RunState())
        cache = .allocate(capacity: Self.capacity)
        viewPlace = .allocate(capacity: 1)
    }

    /// A memory bound for one run.
    convenience init(pid: Int32, device: VDPADevice, ringASID: Int, bufferASID: Int, agent: @escaping () -> Int32 = { -1 }) {
        self.init(agent: agent)
        bind(pid: pid, device: device, ringASID: ringASID, bufferASID: bufferASID)
    }

    /// Starts a run on `view` (taken under the device's lock) for `pid`'s memory: counters at zero, no entry cached.
    func bind(pid: Int32, view: consuming DataPathView) {
        unbind()
        let (anyShared, ringASID, bufferASID) = (!view.sharedMemory.isEmpty, view.ringASID, view.bufferASID)
        viewPlace.initialize(to: view)
        state.pointee = RunState(pid: pid, bound: true, ringASID: ringASID, bufferASID: bufferASID, anyShared: anyShared)
    }

    /// Starts a run on `device`'s view with those ASIDs.
    func bind(pid: Int32, device: VDPADevice, ringASID: Int, bufferASID: Int) {
        bind(pid: pid, view: device.dataPathView(ringASID: ringASID, bufferASID: bufferASID))
    }

    /// Ends the run: closes the agent's dup, and lets go of the view (a region the VMM unshared stays mapped while a
    /// view holds it).  Returns what the run did to reach the memory (`counts`, zero afterwards).
    @discardableResult
    func unbind() -> MemoryAccessCounts {
        let counts = state.pointee.counts
        if let agent = state.pointee.agent, agent >= 0 { close(agent) }
        if state.pointee.bound { viewPlace.deinitialize(count: 1) }
        state.pointee = RunState()
        return counts
    }

    deinit {
        unbind()
        state.deinitialize(count: 1)
        state.deallocate()
        viewPlace.deallocate()
        cache.deallocate()  // trivially destructible elements: nothing to deinitialize
    }

    typealias Transfer = @convention(c) (pid_t, UnsafePointer<iovec>?, UInt, UnsafePointer<iovec>?, UInt) -> Int

    /// Where [iova, iova+count) is in vdpad, when one IOTLB entry that allows `access` maps it and one shared
    /// region holds what it maps to: the hot path, with no allocation.  Nil sends the access the general way
    /// (`pieces`), which also explains a fault or a permission error.
    private func direct(_ iova: UInt64, _ count: Int, _ access: Access, ring: Bool) -> UnsafeMutableRawPointer? {
        guard state.pointee.anyShared, count > 0 else { return nil }
        let last = iova &+ UInt64(count - 1)
        guard last >= iova, let c = entry(holding: iova, last, access, ring: ring) else { return nil }
        if let host = c.host { return host + Int(iova &- c.first) }
        return regions.resolve(c.address &+ (iova &- c.first), count: count)
    }

    /// The cached entry that maps [iova, last] in the ring areas' ASID (`ring`) or the buffers', allowing `access`.
    @inline(__always)
    private func entry(holding iova: UInt64, _ last: UInt64, _ access: Access, ring: Bool) -> Cached? {
        let asid = ring ? ringASID : bufferASID
        var k = state.pointee.recent
        if state.pointee.cached == 0 || !Self.holds(cache[k], asid, iova, last) {
            guard let slot = lookUp(asid, ring: ring, iova, last) else { return nil }
            k = slot
        }
        let c = cache[k]
        guard c.permission & (access == .read ? Permission.read.rawValue : Permission.write.rawValue) != 0 else { return nil }
        return c
    }

    /// The cache slot of the entry that holds [iova, last] in `asid`, looked up when no slot does in the device's table
    /// `direct` reached it through (`ring`: the ring areas', else the buffers'; nil: no one entry maps it).  Apart from
    /// `direct` so that the hit, which nearly every access is, runs without this path's stack frame.
    @inline(never)
    private func lookUp(_ asid: Int, ring: Bool, _ iova: UInt64, _ last: UInt64) -> Int? {
        let filled = Swift.min(state.pointee.cached, Self.capacity)
        var k = 0
        while k < filled && !Self.holds(cache[k], asid, iova, last) { k += 1 }
        if k == filled {
            guard state.pointee.bound, let entry = viewPlace.pointee.mappedEntry(ring: ring, containing: iova), last <= entry.last
            else { return nil }
            // An identity mapping is the whole space: its host base is only per region, never for the entry.
            let size = entry.last - entry.first
            let host = size < UInt64(Int.max) ? regions.resolve(entry.address, count: Int(size) + 1) : nil
            k = state.pointee.cached % Self.capacity
            cache[k] = Cached(
                asid: asid, first: entry.first, last: entry.last, address: entry.address, permission: entry.permission.rawValue, host: host)
            state.pointee.cached += 1
        }
        state.pointee.recent = k
        return k
    }

    @inline(__always)
    private static func holds(_ c: Cached, _ asid: Int, _ first: UInt64, _ last: UInt64) -> Bool {
        c.asid == asid && c.first <= first && last <= c.last
    }

    /// The owner's addresses for [iova, iova+count), one piece per IOTLB entry.
    func pieces(_ iova: UInt64, _ count: Int, _ access: Access, ring: Bool) throws(RingError) -> [iovec] {
        precondition(state.pointee.bound, "an OwnerMemory used outside a run")
        guard count > 0, iova <= UInt64.max - UInt64(count - 1) else { throw .fault(iova) }
        switch viewPlace.pointee.translate(ring: ring, access: access, iova: iova, size: UInt64(count)) {
        case .success(let segments):
            return segments.map { iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt($0.address)), iov_len: Int($0.size)) }
        case .failure(.permission): throw .permission(iova)
        case .failure(.hole): throw .fault(iova)
        }
    }

    /// Where each piece is in vdpad, when shared regions hold every one of them; else nil.
    private func shared(_ remote: [iovec]) -> [UnsafeMutableRawPointer]? {
        guard state.pointee.anyShared else { return nil }
        var pointers: [UnsafeMutableRawPointer] = []
        pointers.reserveCapacity(remote.count)
        for piece in remote {
            guard let p = regions.resolve(UInt64(UInt(bitPattern: piece.iov_base)), count: piece.iov_len) else { return nil }
            pointers.append(p)
        }
        return pointers
    }

    /// Copies between `local` and the owner's pieces: in the shared regions when they hold all of them, else one
    /// process_vm call for all (one system call whatever the count; a short count is a fault).
    private func copy(_ local: UnsafeMutableRawBufferPointer, _ remote: [iovec], _ iova: UInt64, toOwner: Bool) throws(RingError) {
        if let pointers = shared(remote) {
            var offset = 0
            for (piece, p) in zip(remote, pointers) {
                let here = local.baseAddress! + offset
                let rc = toOwner ? vdpad_guarded_copy(p, here, piece.iov_len) : vdpad_guarded_copy(here, p, piece.iov_len)
                guard rc == 0 else { throw .fault(iova) }
                offset += piece.iov_len
            }
            state.pointee.counts.sharedAccesses += 1
            return
        }
        guard remote.count <= 1024 else { throw .fault(iova) }
        var localVector = iovec(iov_base: local.baseAddress, iov_len: local.count)
        let f: Transfer = toOwner ? vdpad_process_vm_writev : vdpad_process_vm_readv
        let n = remote.withUnsafeBufferPointer { f(pid, &localVector, 1, $0.baseAddress, UInt($0.count)) }
        state.pointee.counts.processVMAccesses += 1
        guard n == local.count else { throw .fault(iova) }
    }

    func read(_ iova: UInt64, count: Int, ring: Bool) throws(RingError) -> [UInt8] {
        if let p = direct(iova, count, .read, ring: ring) {
            var failed = false
            let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                failed = vdpad_guarded_copy(buffer.baseAddress, p, count) != 0
                initialized = count
            }
            guard !failed else { throw .fault(iova) }
            state.pointee.counts.sharedAccesses += 1
            return bytes
        }
        let remote = try pieces(iova, count, .read, ring: ring)
        var bytes = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return bytes }
        let failure = bytes.withUnsafeMutableBytes { b -> RingError? in
            do throws(RingError) { try copy(b, remote, iova, toOwner: false); return nil } catch { return error }
        }
        if let failure { throw failure }
        return bytes
    }

    func write(_ bytes: [UInt8], at iova: UInt64, ring: Bool) throws(RingError) {
        if let p = direct(iova, bytes.count, .write, ring: ring) {
            guard bytes.withUnsafeBytes({ vdpad_guarded_copy(p, $0.baseAddress, $0.count) }) == 0 else { throw .fault(iova) }
            state.pointee.counts.sharedAccesses += 1
            return
        }
        let remote = try pieces(iova, bytes.count, .write, ring: ring)
        guard !bytes.isEmpty else { return }
        var copy = bytes
        let failure = copy.withUnsafeMutableBytes { b -> RingError? in
            do throws(RingError) { try self.copy(b, remote, iova, toOwner: true); return nil } catch { return error }
        }
        if let failure { throw failure }
    }

    func copy(_ iova: UInt64, into buffer: UnsafeMutableRawBufferPointer, ring: Bool) throws(RingError) {
        guard buffer.count > 0 else { return }
        if let p = direct(iova, buffer.count, .read, ring: ring) {
            guard vdpad_guarded_copy(buffer.baseAddress, p, buffer.count) == 0 else { throw .fault(iova) }
            state.pointee.counts.sharedAccesses += 1
            return
        }
        try copy(buffer, try pieces(iova, buffer.count, .read, ring: ring), iova, toOwner: false)
    }

    func copy(from bytes: UnsafeRawBufferPointer, to iova: UInt64, ring: Bool) throws(RingError) {
        guard bytes.count > 0 else { return }
        if let p = direct(iova, bytes.count, .write, ring: ring) {
            guard vdpad_guarded_copy(p, bytes.baseAddress, bytes.count) == 0 else { throw .fault(iova) }
            state.pointee.counts.sharedAccesses += 1
            return
        }
        // process_vm_writev reads the local side only: the cast drops a mutability it never uses.
        try copy(UnsafeMutableRawBufferPointer(mutating: bytes), try pieces(iova, bytes.count, .write, ring: ring), iova, toOwner: true)
    }

    /// A 16-bit ring field (the avail idx, flags and entries): in a shared region, one acquire load (the entries the
    /// idx publishes are read after it).  One IOTLB entry must hold both bytes, as vringh's 16-bit accessors ask
    /// (ENOBUFS there): a field split across two is a fault.
    func readIndex(at iova: UInt64) throws(RingError) -> UInt16 {
        if let p = alignedShared(iova, .read) {
            var value: UInt16 = 0
            guard vdpad_guarded_load_acquire_u16(p, &value) == 0 else { throw .fault(iova) }
            state.pointee.counts.sharedAccesses += 1
            return value
        }
        let remote = try fieldPiece(iova, .read)
        var value: UInt16 = 0
        try withUnsafeMutableBytes(of: &value) { (b) throws(RingError) in try copy(b, remote, iova, toOwner: false) }
        return UInt16(littleEndian: value)
    }

    /// The used idx, after the element: in a shared region, one release store (the element is visible first).
    /// Else through the VMM's store agent (the preload library's thread, one aligned store inside the VMM);
    /// without it, or if it does not answer within a second, one process_vm_writev of the two bytes, which
    /// promises no single store (docs/protocol.md §5.6).  The mapping must allow reading as well as writing:
    /// vringh translates this store for reading (D24: a used ring mapped write-only gets its elements, never its
    /// idx), and vdpad never writes where the IOTLB does not allow writing; and one entry must hold both bytes.
    func writeIndex(_ value: UInt16, at iova: UInt64) throws(RingError) {
        if let p = alignedShared(iova, .write), alignedShared(iova, .read) != nil {
            guard vdpad_guarded_store_release_u16(p, value) == 0 else { throw .fault(iova) }
            state.pointee.counts.atomicIndexStores += 1
            return
        }
        _ = try fieldPiece(iova, .read)
        let remote = try fieldPiece(iova, .write)
        if agent >= 0, let address = remote[0].iov_base, UInt(bitPattern: address) % 2 == 0, agentStore(address, value) {
            state.pointee.counts.atomicIndexStores += 1
            return
        }
        var little = value.littleEndian
        try withUnsafeMutableBytes(of: &little) { (b) throws(RingError) in try copy(b, remote, iova, toOwner: true) }
    }

    /// The owner's address of the 16-bit ring field at `iova`, allowing `access`: one piece, for a field split across
    /// two IOTLB entries is a fault (ENOBUFS in vringh's 16-bit accessors).
    private func fieldPiece(_ iova: UInt64, _ access: Access) throws(RingError) -> [iovec] {
        let remote = try pieces(iova, 2, access, ring: true)
        guard remote.count == 1 else { throw .fault(iova) }
        return remote
    }

    /// The agent's dup, asked for at the first call.
    private var agent: Int32 {
        if let agent = state.pointee.agent { return agent }
        let agent = agentSource()
        state.pointee.agent = agent
        return agent
    }

    /// A ring area in a shared region (the walker guards its accesses there as this type guards its own).
    func ringWindow(_ iova: UInt64, bytes: Int, writable: Bool) -> UnsafeMutableRawPointer? {
        direct(iova, bytes, writable ? .write : .read, ring: true)
    }

    /// A buffer in a shared region (the net loopback's one copy from TX buffer to RX buffer).
    @inline(__always)
    func bufferWindow(_ iova: UInt64, bytes: Int, writable: Bool) -> UnsafeMutableRawPointer? {
        direct(iova, bytes, writable ? .write : .read, ring: false)
    }

    /// The whole IOTLB entry around a buffer, when one shared region holds all it maps (an identity mapping, the
    /// whole space, never is: its buffers get a window each).
    func bufferSpan(_ iova: UInt64, writable: Bool) -> BufferSpan? {
        guard state.pointee.anyShared, let c = entry(holding: iova, iova, writable ? .write : .read, ring: false), let host = c.host
        else { return nil }
        return BufferSpan(first: c.first, last: c.last, base: host)
    }

    func countWindowAccesses(_ accesses: Int, indexStores: Int) {
        state.pointee.counts.sharedAccesses += accesses - indexStores
        state.pointee.counts.atomicIndexStores += indexStores
    }

    /// A ring index's place in a shared region, when it is there and aligned.
    private func alignedShared(_ iova: UInt64, _ access: Access) -> UnsafeMutableRawPointer? {
        guard let p = direct(iova, 2, access, ring: true), UInt(bitPattern: p) % 2 == 0 else { return nil }
        return p
    }

    /// Tags of agent requests, 1…255 in turn (shared by every run: a late answer to an earlier run's request is
    /// told apart from this one's).
    private static let agentTags = Atomic<UInt32>(0)

    /// One request to the agent: {u64 address, u16 value, u8 tag, 5 bytes 0}, answered with the tag when the store
    /// is done.  An answer with another tag is a late one — to a request given up after its second, or sent by a
    /// daemon that died and was restarted on this same socket — and is skipped: taking it for this one's would
    /// signal the driver before its used idx moved.
    private func agentStore(_ address: UnsafeMutableRawPointer, _ value: UInt16) -> Bool {
        var message = [UInt8](repeating: 0, count: 16)
        let a = UInt64(UInt(bitPattern: address))
        for k in 0..<8 { message[k] = UInt8(truncatingIfNeeded: a >> (8 * UInt64(k))) }
        (message[8], message[9]) = (UInt8(value & 0xFF), UInt8(value >> 8))
        let tag = UInt8(Self.agentTags.add(1, ordering: .relaxed).newValue % 255 + 1)
        message[10] = tag
        guard message.withUnsafeBytes({ send(agent, $0.baseAddress, 16, Int32(MSG_NOSIGNAL)) }) == 16 else { return false }
        let deadline = Self.milliseconds() + 1000
        while true {
            var p = pollfd(fd: agent, events: Int16(POLLIN), revents: 0)
            let left = deadline - Self.milliseconds()
            guard left > 0, poll(&p, 1, Int32(left)) == 1 else { return false }
            var ack: UInt8 = 0
            guard recv(agent, &ack, 1, 0) == 1 else { return false }
            if ack == tag { return true }
            if ack == 0 { return false }
        }
    }

    private static func milliseconds() -> Int {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return t.tv_sec * 1000 + t.tv_nsec / 1_000_000
    }
}
