// VDPASimBlock.swift — vdpa_sim_blk: one request queue, one group, one
// address space, a 128 MiB config rebuilt on every read (R52).

public struct VDPASimBlock: BlockParent {
    public init() {}
    public var name: String { "vdpasim_blk" }
    public var groupCount: Int { 1 }
    public var addressSpaceCount: Int { 1 }
    public func group(ofVirtqueue vq: Int, isControlQueue: Bool) -> Int { 0 }
    /// 0x3_0800_7646 (R53).
    public var offeredFeatures: UInt64 {
        VirtioFeatures.mask(
            "VERSION_1", "ACCESS_PLATFORM", "ANY_LAYOUT", "SIZE_MAX", "SEG_MAX", "BLK_SIZE", "FLUSH", "TOPOLOGY", "MQ", "DISCARD",
            "WRITE_ZEROES", class: .block)
    }
}
