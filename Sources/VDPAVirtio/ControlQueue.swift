// ControlQueue.swift — the control virtqueue of vdpa_sim_net (docs/datapath.md,
// "The control queue"; docs/kernel-rules.md D11–D13): one command per chain, and one run of the
// queue as vdpasim_handle_cvq does it.  Pure: the ring and its buffers are
// reached through `GuestMemory`, so a run is tested against rings built in the
// test's own memory and driven against a VMM by the daemon's data path.

/// MAC_ADDR_SET writes the config MAC, every other class and command is answered ERR.  vdpa_sim's stale ack
/// is kept on purpose (documented in docs/protocol.md): the ack is set once per run, so an unknown command
/// after a successful MAC_ADDR_SET in the same run is acked OK (edge D12).
public struct ControlQueue: Sendable {
    public static let ok: UInt8 = 0, error: UInt8 = 1
    static let classMAC: UInt8 = 1, macAddrSet: UInt8 = 1
    static let classMQ: UInt8 = 4, vqPairsSet: UInt8 = 0
    /// The most command bytes a run looks at: the header and a MAC; the rest of a long chain is never read.
    public static let commandLimit = 64

    public struct Counters: Equatable, Sendable {
        public var requests = 0, successes = 0, errors = 0
        public init() {}
    }

    /// What one command did.
    public enum Outcome: Equatable, Sendable {
        /// The ack to write to the first writable byte (nil: no writable byte, used.len 0).
        case answered(ack: UInt8, newMAC: [UInt8]?)
        /// Fewer than 2 readable bytes: counted as an error and never completed (edge D13).
        case malformed
    }

    /// The ack of this run so far (vdpa_sim initialises it once per run: the stale-ack quirk).
    public var runAck = error
    /// The most queue pairs MQ_VQ_PAIRS_SET may ask for, when the parent offers MQ (mlx5_net); nil: the class is
    /// answered ERR, as vdpa_sim_net answers it.
    public let maxQueuePairs: Int?

    public init(maxQueuePairs: Int? = nil) { self.maxQueuePairs = maxQueuePairs }

    /// Processes one command: `command` is the chain's readable bytes; `mac` the current config MAC.
    public mutating func process(_ command: [UInt8], mac: [UInt8], counters: inout Counters) -> Outcome {
        var pairs: Int?
        return process(command, mac: mac, counters: &counters, newPairs: &pairs)
    }

    /// `process`, also giving the queue pairs an accepted MQ_VQ_PAIRS_SET asked for.
    public mutating func process(_ command: [UInt8], mac: [UInt8], counters: inout Counters, newPairs: inout Int?) -> Outcome {
        counters.requests += 1
        guard command.count >= 2 else {
            counters.errors += 1
            return .malformed
        }
        var newMAC: [UInt8]?
        if command[0] == Self.classMAC && command[1] == Self.macAddrSet {
            // Up to 6 bytes go straight into the config mac; exactly 6 are OK, fewer ERR with the bytes kept (D11).
            let data = Array(command.dropFirst(2).prefix(6))
            var updated = mac
            updated.replaceSubrange(0..<data.count, with: data)
            newMAC = updated
            runAck = data.count == 6 ? Self.ok : Self.error
        } else if let maxQueuePairs, command[0] == Self.classMQ && command[1] == Self.vqPairsSet {
            // A parent with MQ (mlx5_vdpa) takes 1…max_vqp pairs, a le16 after the header; anything else is ERR.
            let data = Array(command.dropFirst(2).prefix(2))
            let requested = data.count == 2 ? Int(data[0]) | Int(data[1]) << 8 : 0
            if (1...maxQueuePairs).contains(requested) {
                newPairs = requested
                runAck = Self.ok
            } else {
                runAck = Self.error
            }
        }
        if runAck == Self.ok { counters.successes += 1 } else { counters.errors += 1 }
        return .answered(ack: runAck, newMAC: newMAC)
    }

    /// What one run did, for the device to record.
    public struct Run: Equatable, Sendable {
        public var counters = Counters()
        /// The config MAC after the run, when a MAC_ADDR_SET changed it.
        public var newMAC: [UInt8]?
        /// The queue pairs after the run, when an MQ_VQ_PAIRS_SET was accepted.
        public var newQueuePairs: Int?
        /// Used entries whose idx store landed.
        public var completed = 0
        /// Command bytes read and ack bytes written.
        public var bytes = 0
        /// Callbacks fired: one per answered command, whether or not its completion landed (the CVQ's rule).
        public var calls = 0
        /// The run stopped at its budget with chains left.
        public var more = false
        public init() {}
    }

    /// The used length vdpa_sim writes when the ack's push fails: the push's -EFAULT, truncated to the
    /// element's 32 bits (vdpasim_handle_cvq stores the push result unchecked).
    public static let failedPushLength = UInt32(truncatingIfNeeded: -14)

    /// One run over `ring`, as vdpasim_handle_cvq: a chain that cannot be fetched ends the run and counts nothing
    /// (vringh's error: the head is lost or, out of range, stays); a command without its 2-byte header counts a
    /// request and an error, ends the run and is never completed (D13); every other command is acked, completed
    /// and signalled, and a failed ack push or completion is not an error of the command.
    public static func run(
        _ ring: inout SplitRing, _ memory: some GuestMemory, mac: [UInt8], budget: Int, maxQueuePairs: Int? = nil
    ) -> Run {
        ring.attach(memory)
        var run = loop(&ring, memory, mac: mac, budget: budget, maxQueuePairs: maxQueuePairs)
        run.completed -= ring.detach(memory)
        return run
    }

    /// `run` between the ring's attach and detach.
    private static func loop(_ ring: inout SplitRing, _ memory: some GuestMemory, mac: [UInt8], budget: Int, maxQueuePairs: Int?) -> Run {
        var queue = ControlQueue(maxQueuePairs: maxQueuePairs)
        var run = Run()
        var mac = mac
        for _ in 0..<budget {
            guard let chain = try? ring.fetch(memory) else { return run }  // empty, or vringh refused the chain
            let command = SplitRing.gather(chain, memory, limit: commandLimit)
            run.bytes += command.count
            guard
                case .answered(let ack, let updated) = queue.process(command, mac: mac, counters: &run.counters, newPairs: &run.newQueuePairs)
            else {
                return run
            }
            if let updated { (mac, run.newMAC) = (updated, updated) }
            var length: UInt32 = 0
            if let first = chain.writable.first(where: { $0.length > 0 }) {
                length = (try? memory.write([ack], at: first.iova, ring: false)) != nil ? 1 : failedPushLength
                if length == 1 { run.bytes += 1 }
            }
            if (try? ring.complete(chain.head, length: length, memory)) != nil { run.completed += 1 }
            run.calls += 1
        }
        run.more = (try? ring.hasWork(memory)) ?? false
        return run
    }
}
