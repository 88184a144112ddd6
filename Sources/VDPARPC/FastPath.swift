// FastPath.swift — `map` and `unmap`, the calls a VMM makes by the
// hundred thousand during boot and migration, decoded straight from bytes
// into a struct and answered with bytes, without building a JSON tree.
//
// Profiles of the batch path showed the tree (parse, allocate, destroy,
// encode) costing about half of each map.  The scanner accepts only the
// plain shape (known keys, unsigned integers, strings without escapes);
// anything else returns nil and takes the general path, which stays the
// reference: tests compare the two byte for byte.  FastScanner.swift reads
// the requests; this file runs them and writes the replies.
import VDPACore
import VDPAJSON
import VDPARegistry
#if canImport(Glibc)
    import Glibc
#endif

/// The slot a connection used last, kept while the device table does not change, so a stream of
/// requests for one device skips building its name, hashing it and taking the table's lock.
struct SlotCache {
    private var name: [UInt8] = []
    private var slot: DeviceSlot?
    private var generation: UInt64 = 0

    mutating func slot(named bytes: UnsafeBufferPointer<UInt8>, in registry: DeviceRegistry) throws(VDPAError) -> DeviceSlot {
        if let slot = cachedSlot(named: bytes, in: registry) { return slot }
        // Read the generation before the table: a change after this read only makes the entry stale.
        let now = registry.tableGeneration
        let found = try registry.slot(named: String(decoding: bytes, as: UTF8.self))
        (name, slot, generation) = (Array(bytes), found, now)
        return found
    }

    /// The cached slot, if `bytes` names it and the device table has not changed since.
    @inline(__always)
    func cachedSlot(named bytes: UnsafeBufferPointer<UInt8>, in registry: DeviceRegistry) -> DeviceSlot? {
        guard let slot, registry.tableGeneration == generation, name.count == bytes.count,
            bytes.isEmpty || name.withUnsafeBufferPointer({ memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) == 0 })
        else {
            return nil
        }
        return slot
    }
}

extension VDPAService {
    /// Runs what `parser` parsed from `text` (complete: one request, or a batch of them) and appends the
    /// reply and a newline.
    func answer(
        _ parser: FastTextParser, in text: UnsafeBufferPointer<UInt8>, caller: Caller, slots: inout SlotCache,
        into output: inout [UInt8]
    ) {
        if var single = parser.single {
            withUnsafeMutablePointer(to: &single) { r in
                runPerDevice(r, text: text, caller: caller, slots: &slots, into: &output, after: { _ in }, next: { _, _ in false })
            }
            output.append(0x0A)
            return
        }
        output.append(UInt8(ascii: "["))
        parser.batch.withUnsafeBufferPointer { requests in
            guard let first = requests.baseAddress, !requests.isEmpty else { return }  // never empty, in fact
            let end = first + requests.count
            // Read in place: the elements are walked by pointer, never copied out.
            runPerDevice(
                UnsafeMutablePointer(mutating: first), text: text, caller: caller, slots: &slots, into: &output, after: { _ in },
                next: { (r: inout UnsafeMutablePointer<FastRequest>, out: inout [UInt8]) -> Bool in
                    guard r + 1 < end else { return false }
                    out.append(UInt8(ascii: ","))  // between a batch's replies
                    r += 1
                    return true
                })
        }
        output.append(literal: "]\n")
    }

    /// Answers the plain map/unmap texts at the start of `text` one after another — each reply with
    /// its newline — until a text is not plain, not whole, longer than `maxTextBytes`, or the replies
    /// reach `budget` bytes.  A run never outlasts the bytes of one read (or the budget), so others
    /// waiting for a device wait no longer than behind a batch.
    /// - Returns: the bytes answered (from the start of `text` to the end of the last text answered),
    ///   how many texts that was, and whether the next text was plain as far as `text` went (cut by the
    ///   end of the read: the resumable parser takes it over, so it is never scanned from the framer).
    func answerTexts(
        _ text: UnsafeBufferPointer<UInt8>, maxTextBytes: Int, budget: Int, caller: Caller,
        slots: inout SlotCache, into output: inout [UInt8]
    ) -> (length: Int, texts: Int, cut: Bool) {
        var scanner = FastScanner(bytes: text, i: 0)
        var answered = (length: 0, texts: 0)
        var cut = false
        // One request at a time, parsed in place into `r`: the one to answer next.
        var request = FastRequest(method: .map)
        guard scanner.plainText(maxBytes: maxTextBytes, into: &request, cut: &cut) else { return (0, 0, cut) }
        withUnsafeMutablePointer(to: &request) { r in
            runPerDevice(
                r, text: text, caller: caller, slots: &slots, into: &output,
                after: { (out: inout [UInt8]) in
                    out.append(0x0A)  // each text's reply on its line
                    answered = (scanner.i, answered.texts + 1)
                },
                next: { (r: inout UnsafeMutablePointer<FastRequest>, out: inout [UInt8]) -> Bool in
                    out.count < budget && scanner.plainText(maxBytes: maxTextBytes, into: &r.pointee, cut: &cut)
                })
        }
        return (answered.length, answered.texts, cut)
    }

    /// The one grouping of fast requests per device, for a batch's elements and a run of single texts
    /// alike: `r`, and every request `next` yields after it while it names the same device, run under one
    /// acquisition of that device's lock — a VMM pipelining maps sends runs of them, and the lock, the slot
    /// lookup and the count cost more than the map itself.  The requests are reached by pointer, so a batch's
    /// are read in place.  `after` follows each reply (a text's newline); `next` moves `r` to the following
    /// request or loads it there (writing what goes between two replies), or says there is none.  A device
    /// that cannot be found answers each of its requests with the error.
    @inline(__always)
    func runPerDevice(
        _ first: UnsafeMutablePointer<FastRequest>, text: UnsafeBufferPointer<UInt8>, caller: Caller, slots: inout SlotCache,
        into output: inout [UInt8], after: (inout [UInt8]) -> Void,
        next: (inout UnsafeMutablePointer<FastRequest>, inout [UInt8]) -> Bool
    ) {
        var r = first
        var performed = 0
        var haveNext = true
        while haveNext {
            guard
                let slot = slots.cachedSlot(named: UnsafeBufferPointer(rebasing: text[r.pointee.device]), in: registry)
                    ?? lookUpSlot(for: r.pointee, text: text, caller: caller, slots: &slots, into: &output)
            else {
                performed += 1
                after(&output)
                haveNext = next(&r, &output)
                continue
            }
            haveNext = false
            slot.syncTables { d in
                while true {
                    perform(r.pointee, on: &d, text: text, caller: caller, into: &output)
                    performed += 1
                    after(&output)
                    let device = r.pointee.device
                    guard next(&r, &output) else { return }
                    guard FastScanner(bytes: text, i: 0).equals(r.pointee.device, device) else {
                        haveNext = true  // for another device: the next round looks it up
                        return
                    }
                }
            }
        }
        requestCount.add(performed, ordering: .relaxed)
    }

    /// The slot of `r`'s device after a miss in the cache, or nil with the error reply appended.  Kept
    /// out of line: the throwing lookup's error buffer is large, and the hot loop should not carry it.
    @inline(never)
    private func lookUpSlot(
        for r: FastRequest, text: UnsafeBufferPointer<UInt8>, caller: Caller, slots: inout SlotCache,
        into output: inout [UInt8]
    ) -> DeviceSlot? {
        do throws(VDPAError) {
            return try slots.slot(named: UnsafeBufferPointer(rebasing: text[r.device]), in: registry)
        } catch {
            replyFailure(r, RPCError(error), text: text, caller: caller, into: &output)
            return nil
        }
    }

    /// Runs one request on its device (locked by the caller) through the registry's operation, the one the
    /// general path's `map`/`unmap` run too (caller check included), and appends its reply.
    @inline(__always)
    private func perform(
        _ r: FastRequest, on d: inout VDPADevice, text: UnsafeBufferPointer<UInt8>, caller: Caller,
        into out: inout [UInt8]
    ) {
        // No Result here: building one copied the (large) error type on every success too.
        do throws(VDPAError) {
            let asid = ASID(r.asid ?? 0)
            switch r.method {
            case .map:
                let request = MapRequest(asid: asid, iova: r.iova!, size: r.size!, address: r.addr!, permission: .permission(r.perm!))
                try DeviceRegistry.map(request, on: &d, by: caller)
                replySuccess(r, removed: nil, text: text, into: &out)
            case .unmap:
                let removed = try DeviceRegistry.unmap(UnmapRequest(asid: asid, iova: r.iova!, size: r.size!), on: &d, by: caller)
                replySuccess(r, removed: removed, text: text, into: &out)
            }
        } catch {
            replyFailure(r, RPCError(error), text: text, caller: caller, into: &out)
        }
    }

    /// The success reply's bytes, the same as the general path would encode: `{}` for map,
    /// `{"removed":n}` for unmap.
    @inline(__always)
    private func replySuccess(_ r: FastRequest, removed: Int?, text: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        // Assembled on the stack and appended once: four small appends cost more than the bytes.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 96 + r.id.count) { buffer in
            var n = 0
            func put(_ bytes: UnsafeBufferPointer<UInt8>) {
                UnsafeMutableRawPointer(buffer.baseAddress! + n).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                n += bytes.count
            }
            func put(_ literal: StaticString) { put(UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)) }
            put(#"{"jsonrpc":"2.0","id":"#)
            put(UnsafeBufferPointer(rebasing: text[r.id]))
            if let removed {
                put(#","result":{"removed":"#)
                n += JSON.writeDecimal(UInt64(removed), to: buffer.baseAddress! + n)
                put("}}")
            } else {
                put(#","result":{}}"#)
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[..<n]))
        }
    }

    /// The error reply, encoded (and logged) as the general path does.
    private func replyFailure(
        _ r: FastRequest, _ error: RPCError, text: UnsafeBufferPointer<UInt8>, caller: Caller,
        into out: inout [UInt8]
    ) {
        // The id was scanned as an integer or a plain string, so it parses.
        let id = (try? JSON.parse(UnsafeBufferPointer(rebasing: text[r.id]))) ?? .null
        let device = String(decoding: UnsafeBufferPointer(rebasing: text[r.device]), as: UTF8.self)
        // The params the general path would log from: the device, and the asid only when it was sent.
        let params: JSON = .object([("device", .string(device))] + (r.asid.map { [("asid", .unsigned($0))] } ?? []))
        log(error, method: r.method == .map ? "map" : "unmap", params: params, caller: caller)
        response(id: id, error: error).encode(into: &out)
    }
}

extension [UInt8] {
    /// Appends the bytes of a literal (one copy, no String machinery).
    @inline(__always)
    mutating func append(literal: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }
}
