// ControlQueueMQTests.swift — MQ_VQ_PAIRS_SET on the control queue: answered
// where the parent offers MQ (mlx5_net, up to max_vqp pairs), ERR where it
// does not (vdpa_sim_net answers every class but MAC with ERR).
import Testing
@testable import VDPAVirtio

@Suite("Control queue: MQ_VQ_PAIRS_SET")
struct ControlQueueMQTests {
    static let mac: [UInt8] = [2, 0, 0, 0, 0, 1]

    static func answer(_ command: [UInt8], max: Int?) -> (ack: UInt8?, pairs: Int?) {
        var queue = ControlQueue(maxQueuePairs: max)
        var counters = ControlQueue.Counters()
        var pairs: Int?
        guard case .answered(let ack, _) = queue.process(command, mac: mac, counters: &counters, newPairs: &pairs) else { return (nil, nil) }
        return (ack, pairs)
    }

    @Test("1…max_vqp pairs are OK and taken; 0, more than max_vqp, or a short command are ERR")
    func range() {
        #expect(Self.answer([4, 0, 2, 0], max: 4) == (ControlQueue.ok, 2))
        #expect(Self.answer([4, 0, 4, 0], max: 4) == (ControlQueue.ok, 4))
        #expect(Self.answer([4, 0, 0, 0], max: 4) == (ControlQueue.error, nil))
        #expect(Self.answer([4, 0, 5, 0], max: 4) == (ControlQueue.error, nil))
        #expect(Self.answer([4, 0, 2], max: 4) == (ControlQueue.error, nil))
    }

    @Test("a parent without MQ answers the class ERR, as vdpa_sim_net does")
    func withoutMQ() {
        #expect(Self.answer([4, 0, 2, 0], max: nil) == (ControlQueue.error, nil))
    }
}
