// RecordedMigration.swift — QEMU's real live migration, recorded on both
// sides (vdpad-run --record: one JSON line per call, each with `mono`, the
// host's CLOCK_MONOTONIC), measured and priced: the window the published
// downtime figures measure runs from the source's last SUSPEND to the
// destination's last queue enabled.  Guest memory is what QEMU's memory
// listener maps in a batch; a guest of another size is the same flow with
// that memory scaled, and the IOTLB_PERSIST and DESC_ASID variants change the
// recorded flow the way the built-in flows price them (VDPAFlows): with
// IOTLB_PERSIST guest memory stays mapped across the source's reset and the
// destination maps it before the window; with DESC_ASID the switch to shadow
// virtqueues moves only the rings.
import VDPAJSON

/// One recorded call, as pricing needs it.
public struct RecordedCall: Sendable {
    public var mono: Double
    public var method: String
    public var params: [(String, JSON)]
    public var succeeded: Bool
    /// Whether it maps or unmaps guest memory: inside a batch (QEMU's memory listener commits in batches; its
    /// shadow and CVQ rings are mapped one by one).
    public var guestMemory = false

    public init(mono: Double, method: String, params: [(String, JSON)], succeeded: Bool) {
        (self.mono, self.method, self.params, self.succeeded) = (mono, method, params, succeeded)
    }

    /// The calls of one record file's text, in order; guest-memory maps and unmaps marked.
    public static func parse(_ text: String) throws(CostModel.LoadError) -> [RecordedCall] {
        var calls: [RecordedCall] = []
        var inBatch = false
        for (k, line) in text.split(separator: "\n").enumerated() where !line.isEmpty {
            guard let j = try? JSON.parse(String(line)), case .string(let method)? = j["method"],
                case .object(let params)? = j["params"], let mono = j["mono"]?.doubleValue
            else {
                throw CostModel.LoadError(description: "line \(k + 1): not a recorded call with mono (vdpad-run --record)")
            }
            var call = RecordedCall(mono: mono, method: method, params: params, succeeded: j["error"] == nil)
            if method == "batch_begin" { inBatch = true }
            if method == "batch_end" { inBatch = false }
            call.guestMemory = inBatch && (method == "map" || method == "unmap")
            calls.append(call)
        }
        return calls
    }

    var size: UInt64 {
        switch params.first(where: { $0.0 == "size" })?.1 {
        case .unsigned(let u)?: u
        default: 0
        }
    }

    /// The same call with its size multiplied by `factor` (a guest of another size).
    func scaled(_ factor: Double) -> RecordedCall {
        var c = self
        c.params = params.map { $0.0 == "size" ? ($0.0, .unsigned(UInt64((Double(size) * factor).rounded()))) : $0 }
        return c
    }
}

public struct RecordedMigration: Sendable {
    public let source: [RecordedCall]
    public let destination: [RecordedCall]
    /// The source's last SUSPEND (the stop) and the destination's last queue enabled (the start).
    public let windowStart: Double, windowEnd: Double
    /// Guest memory as recorded: what the destination mapped in its last batch.
    public let recordedGuestGiB: Double

    public init(source: [RecordedCall], destination: [RecordedCall]) throws(CostModel.LoadError) {
        guard let stop = source.last(where: { $0.method == "suspend" && $0.succeeded })?.mono else {
            throw CostModel.LoadError(description: "the source record has no SUSPEND: not a migration's source")
        }
        guard let start = destination.last(where: { $0.method == "set_vring" && $0.succeeded && Self.ready($0) })?.mono, start > stop
        else {
            throw CostModel.LoadError(description: "the destination record enables no queue after the source's SUSPEND")
        }
        let lastBatch = destination.lastIndex { $0.method == "batch_begin" } ?? 0
        let memory = destination[lastBatch...].prefix { $0.method != "batch_end" }.filter { $0.guestMemory && $0.method == "map" }
        (self.source, self.destination, windowStart, windowEnd) = (source, destination, stop, start)
        recordedGuestGiB = Double(memory.reduce(0) { $0 + $1.size }) / Double(1 << 30)
    }

    static func ready(_ c: RecordedCall) -> Bool { c.params.contains { $0.0 == "ready" && $0.1 == .bool(true) } }

    /// The measured window, in seconds.
    public var measuredSeconds: Double { windowEnd - windowStart }

    /// The calls of both sides inside the window, in time order.
    public var windowCalls: [RecordedCall] {
        (source + destination).filter { $0.mono >= windowStart && $0.mono <= windowEnd && $0.succeeded }.sorted { $0.mono < $1.mono }
    }

    /// What the downtime window did for a guest of `guestGiB`, as recorded or with IOTLB_PERSIST acked.  The
    /// destination is a fresh process: what it maps in the window, it pins cold.
    public func downtime(guestGiB: Double, persist: Bool, pageSize: UInt64 = 4096) -> Tally {
        tally(windowCalls, guestGiB: guestGiB, keepGuestMemory: persist, pageSize: pageSize, before: [])
    }

    /// The source's switch of its data queues to shadow virtqueues when the migration began: its first SUSPEND to
    /// the last queue enabled after it.  With DESC_ASID only the rings move; guest memory stays mapped.
    public func svqSwitch(guestGiB: Double, descASID: Bool, pageSize: UInt64 = 4096) -> Tally? {
        guard let first = source.firstIndex(where: { $0.method == "suspend" && $0.succeeded }),
            let end = source[first...].lastIndex(where: { $0.method == "set_vring" && Self.ready($0) && $0.mono < windowStart })
        else { return nil }
        // The source had mapped its guest memory before: what it maps again there, it finds resident.
        return tally(
            Array(source[first...end].filter(\.succeeded)), guestGiB: guestGiB, keepGuestMemory: descASID, pageSize: pageSize,
            before: Array(source[..<first]))
    }

    func tally(_ calls: [RecordedCall], guestGiB: Double, keepGuestMemory: Bool, pageSize: UInt64, before: [RecordedCall]) -> Tally {
        let factor = recordedGuestGiB > 0 ? guestGiB / recordedGuestGiB : 1
        func sized(_ c: RecordedCall) -> RecordedCall { c.guestMemory ? c.scaled(factor) : c }
        let priced = calls.compactMap { c -> RecordedCall? in c.guestMemory && keepGuestMemory ? nil : sized(c) }
        let mapped = before.filter { $0.method == "map" && $0.succeeded }.map(sized).map { c -> (UInt64, UInt64) in
            let addr: UInt64 = if case .unsigned(let a)? = c.params.first(where: { $0.0 == "addr" })?.1 { a } else { 0 }
            return (addr, Tally.end(addr, c.size))
        }
        return Tally.of(priced.map { ($0.method, JSON.object($0.params)) }, pageSize: pageSize, alreadyMapped: mapped)
    }
}
