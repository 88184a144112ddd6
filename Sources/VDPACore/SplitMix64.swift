// SplitMix64.swift — the deterministic generator the anchors' workload is
// written with (workload.h), shared by the benchmark, which must draw the
// same numbers as the C peers, and the property tests, whose sequences a
// seed reproduces.  Nothing in the daemon draws from it.

/// SplitMix64 (Steele, Lea and Flood, 2014): one 64-bit state, a Weyl step and a mix.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(state: UInt64) { self.state = state }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
