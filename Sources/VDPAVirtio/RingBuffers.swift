// RingBuffers.swift — a chain's readable or writable buffers.  Nearly every
// chain a driver posts has one to three buffers of each kind (a frame, a
// block request's header, data and status), so the first few live inline in
// the chain: fetching one into a chain the caller keeps writes no heap memory
// and checks no array's uniqueness.  A longer chain (up to the ring's size, or
// an indirect table's) spills the rest into an array kept across fetches.

/// The buffers of one kind in a chain, in the driver's order.
public struct RingBuffers: RandomAccessCollection, Equatable, Sendable, ExpressibleByArrayLiteral {
    /// How many buffers live inline; the rest go to `spill`.
    static let inlineCapacity = 4

    /// The inline buffers as stored properties, not an `InlineArray`: reading one element of an inline array the
    /// compiler copies whole to the stack, where a switch over four properties is a jump and a load.
    private var b0 = RingBuffer(iova: 0, length: 0), b1 = RingBuffer(iova: 0, length: 0)
    private var b2 = RingBuffer(iova: 0, length: 0), b3 = RingBuffer(iova: 0, length: 0)
    private var spill: [RingBuffer] = []
    public private(set) var count = 0

    public init() {}

    public init(arrayLiteral elements: RingBuffer...) {
        for b in elements { append(b) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }
    /// A plain range: the default indices would hold a copy of the collection (a retain of the spill per loop).
    public var indices: Range<Int> { 0..<count }

    public subscript(position: Int) -> RingBuffer {
        precondition(position >= 0 && position < count, "RingBuffers index out of range")
        switch position {
        case 0: return b0
        case 1: return b1
        case 2: return b2
        case 3: return b3
        default: return spill[position - Self.inlineCapacity]
        }
    }

    public mutating func append(_ buffer: RingBuffer) {
        switch count {
        case 0: b0 = buffer
        case 1: b1 = buffer
        case 2: b2 = buffer
        case 3: b3 = buffer
        default: return appendSpilled(buffer)
        }
        count += 1
    }

    /// A long chain's buffer past the inline ones: out of line, so that an append in the walker's loop is a store.
    @inline(never)
    private mutating func appendSpilled(_ buffer: RingBuffer) {
        spill.append(buffer)
        count += 1
    }

    /// Forgets every buffer, keeping the spill's room for the next long chain.
    public mutating func removeAll() {
        if count > Self.inlineCapacity { spill.removeAll(keepingCapacity: true) }
        count = 0
    }

    /// The buffers' lengths added up.  An index walk: `reduce` would iterate a copy of the collection (its inline
    /// buffers copied and its spill retained, per request).
    public var totalLength: Int {
        var total = 0
        for k in 0..<count { total += Int(self[k].length) }
        return total
    }

    /// Makes `buffer` the only one (a chain of one descriptor, fetched into a chain kept from the last).
    @inline(__always)
    public mutating func replaceAll(with buffer: RingBuffer) {
        if count > Self.inlineCapacity { spill.removeAll(keepingCapacity: true) }
        (b0, count) = (buffer, 1)
    }

    public static func == (a: RingBuffers, b: RingBuffers) -> Bool { a.elementsEqual(b) }
}
