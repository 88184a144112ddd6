// VDPASimNet.swift — vdpa_sim_net: rx, tx and a control queue; the data
// queues in group 0 and the CVQ in group 1, two address spaces that start as
// identity passthrough (R33); every config byte written is kept (R51).

public struct VDPASimNet: NetParent {
    public init() {}
    public var name: String { "vdpasim_net" }
    public var groupCount: Int { 2 }
    public var addressSpaceCount: Int { 2 }
    public func group(ofVirtqueue vq: Int, isControlQueue: Bool) -> Int { isControlQueue ? 1 : 0 }
    /// 0x3_0883_0028 (R53).
    public var offeredFeatures: UInt64 {
        VirtioFeatures.mask("VERSION_1", "ANY_LAYOUT", "ACCESS_PLATFORM", "MAC", "MTU", "CTRL_VQ", "CTRL_MAC_ADDR", "STATUS", class: .net)
    }
}
