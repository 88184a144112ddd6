#!/usr/bin/env python3
"""Writes the seed inputs of vdpad-fuzz-ring (Fuzz/Ring/corpus): well-formed
drivers of each device the fuzzer then bends.  The layout is FuzzRing.swift's
`Setup`: a 64-byte header (device, queue size, budget, four IOTLB entries,
two rings), then the driver's memory from arena offset 0.

    python3 Fuzz/Ring/seeds.py     (rewrites Fuzz/Ring/corpus/seed-*.bin)
"""
import os
import struct

ARENA = 16384
RING_IOVA, BUF_IOVA = 0x10000, 0x20000  # the rings' table maps arena 0, the buffers' arena 8192
MAC = bytes([0x02, 0, 0, 0, 0, 0x42])
NEXT, WRITE, INDIRECT = 1, 2, 4


class Driver:
    def __init__(self, device, num=32, budget=64, version1=True, mergeable=False, apart=True, overlap=False):
        """overlap: the buffers' table maps the whole arena (rings too) from BUF_IOVA, as a hostile driver may."""
        self.arena = bytearray(ARENA)
        log2 = num.bit_length() - 1
        mode = device | (4 if version1 else 0) | (8 if mergeable else 0) | (16 if apart else 0) | log2 << 5
        self.header = bytearray(64)
        self.header[0], self.header[1] = mode, budget - 1
        self.num = num
        self.entry(0, ring=True, iova=RING_IOVA, length=8192, offset=0)
        self.buf_offset = 0 if overlap else 8192
        length = ARENA if overlap else 8192
        self.entry(1, ring=False, iova=BUF_IOVA, length=length, offset=0 if apart else self.buf_offset)
        self.rings = []
        self.buffer = BUF_IOVA + 8192 - self.buf_offset  # buffers in the arena's second half either way
        self.tables = RING_IOVA + 0x1800  # indirect tables, read through the rings' table: past the two rings

    def entry(self, k, ring, iova, length, offset, permission=3):
        struct.pack_into("<BHHHB", self.header, 2 + 8 * k, permission | (4 if ring else 0),
                         (iova - 0x10000) // 8, length // 8 - 1, offset // 8, 0)

    def ring(self, r, base=0):
        """Ring r's areas at 1 KiB apart in the rings' half: desc, avail, used."""
        desc = RING_IOVA + 0x400 * 3 * r
        areas = (desc, desc + 0x400, desc + 0x800, base)
        struct.pack_into("<IIIH", self.header, 34 + 14 * r, *areas)
        self.rings.append({"desc": desc, "avail": desc + 0x400, "used": desc + 0x800, "next": 0, "idx": base})
        return r

    def at(self, iova):
        return iova - RING_IOVA if iova < BUF_IOVA else self.buf_offset + iova - BUF_IOVA

    def put(self, iova, data):
        """Writes data where iova is in the arena; what would fall past the arena's end is not there to write."""
        o = self.at(iova)
        data = data[:ARENA - o]
        self.arena[o:o + len(data)] = data

    def data(self, payload):
        """A buffer holding payload in the buffers' half."""
        iova = self.buffer
        self.put(iova, payload)
        self.buffer += (len(payload) + 15) // 16 * 16
        return iova, len(payload)

    def chain(self, r, parts, indirect=False):
        """Posts a chain of (iova, length, writable) parts on ring r."""
        ring = self.rings[r]
        if indirect:
            table, n = self.tables, 16 * len(parts)
            self.tables += n
            for k, (iova, length, writable) in enumerate(parts):
                flags = (WRITE if writable else 0) | (NEXT if k + 1 < len(parts) else 0)
                self.put(table + 16 * k, struct.pack("<QIHH", iova, length, flags, k + 1))
            parts, head_flags = [(table, n, False)], INDIRECT
        else:
            head_flags = 0
        head = ring["next"]
        for k, (iova, length, writable) in enumerate(parts):
            d = ring["next"]
            ring["next"] += 1
            flags = (WRITE if writable else 0) | (NEXT if k + 1 < len(parts) else 0) | head_flags
            self.put(ring["desc"] + 16 * d, struct.pack("<QIHH", iova, length, flags, d + 1))
        self.put(ring["avail"] + 4 + 2 * (ring["idx"] % self.num), struct.pack("<H", head))
        ring["idx"] = (ring["idx"] + 1) & 0xFFFF
        self.put(ring["avail"] + 2, struct.pack("<H", ring["idx"]))

    def bytes(self):
        end = max(i for i, b in enumerate(self.arena) if b) + 1 if any(self.arena) else 0
        return bytes(self.header) + bytes(self.arena[:end])


class EdgeDriver(Driver):
    """Buffers' table of three entries with a hole: RW [BUF, +4 KiB), RO [+4 KiB, +6 KiB), unmapped [+6 KiB, +8 KiB),
    RW [+8 KiB, +10 KiB): buffers placed across each edge are what a span or a window must not reach past."""

    def __init__(self, device):
        super().__init__(device)
        self.entry(1, ring=False, iova=BUF_IOVA, length=4096, offset=0)
        self.entry(2, ring=False, iova=BUF_IOVA + 4096, length=2048, offset=4096, permission=1)
        self.entry(3, ring=False, iova=BUF_IOVA + 8192, length=2048, offset=6144)

    def at(self, iova):
        if iova >= BUF_IOVA + 8192:
            return 8192 + 6144 + iova - (BUF_IOVA + 8192)
        return super().at(iova)


class TopDriver(Driver):
    """The rings' table at the top of the IOVA space, [2^64 − 8 KiB, 2^64), and the rings there (header bytes 62 and
    63): ring arithmetic and indirect tables next to the wrap."""
    TOP = 2**64 - 8192

    def __init__(self, device):
        super().__init__(device)
        self.header[63] |= 1  # entry 0 ends at the top
        struct.pack_into("<H", self.header, 2 + 1, 0)
        self.tables = self.TOP + 0x1800

    def ring(self, r, base=0):
        desc = self.TOP + 0x400 * 3 * r
        struct.pack_into("<IIIH", self.header, 34 + 14 * r, *(2**64 - a for a in (desc, desc + 0x400, desc + 0x800)), base)
        self.header[62] |= 7 << (3 * r)
        self.rings.append({"desc": desc, "avail": desc + 0x400, "used": desc + 0x800, "next": 0, "idx": base})
        return r

    def at(self, iova):
        return iova - self.TOP if iova >= self.TOP else super().at(iova)


# Where an edge buffer starts: across RW→RO, across RO→the hole, across the last entry's end, across the hole→RW.
EDGES = {"rw-ro": BUF_IOVA + 4096 - 40, "ro-hole": BUF_IOVA + 6144 - 40, "end": BUF_IOVA + 10240 - 40,
         "hole-rw": BUF_IOVA + 8192 - 16}


def net_edge(edge, side):
    """The net seed's frames and RX buffers with the first RX buffer (side "rx") or TX frame ("tx") across an edge."""
    d = EdgeDriver(0)
    rx, tx = d.ring(0), d.ring(1)
    at = EDGES[edge]
    for k in range(3):
        d.chain(rx, [(at, 256, True) if k == 0 and side == "rx" else (*d.data(bytes(256)), True)])
    for k in range(3):
        frame = bytes(12) + MAC + bytes([0x02, 0, 0, 0, 0, 0x99]) + b"\x08\x00" + bytes(range(k, k + 46))
        if k == 0 and side == "tx":
            d.put(at, frame) if edge != "hole-rw" else d.put(at + 16, frame[16:])
            d.chain(tx, [(at, len(frame), False)])
        else:
            d.chain(tx, [(*d.data(frame), False)])
    return d.bytes()


def net(version1=True, mergeable=False, indirect=False, base=0, overlap=False, top=False):
    """Four frames (to the device's MAC, broadcast, a foreign MAC: dropped, the MAC again) and three RX buffers;
    overlap: the first RX buffer is the TX ring's avail ring, through the buffers' table; top: the rings and their
    indirect tables at the top of the IOVA space."""
    d = TopDriver(0) if top else Driver(0, version1=version1, mergeable=mergeable, apart=not overlap, overlap=overlap)
    rx, tx = d.ring(0, base), d.ring(1, base)
    header = bytes(12 if version1 else 10)
    if overlap:
        d.chain(rx, [(BUF_IOVA + d.at(d.rings[tx]["avail"]), 256, True)])
    for k in range(3):
        d.chain(rx, [(*d.data(bytes(256)), True)])
    for k, dst in enumerate([MAC, b"\xff" * 6, bytes([0x06, 0x11, 0x22, 0x33, 0x44, 0x55]), MAC]):
        frame = header + dst + bytes([0x02, 0, 0, 0, 0, 0x99]) + b"\x08\x00" + bytes(range(k, k + 46))
        d.chain(tx, [(*d.data(frame), False)], indirect=indirect and k == 3)
    return d.bytes()


def block(overlap=False):
    """Eight requests of every type; overlap: the last reads the disk over the ring's own descriptor table."""
    d = Driver(1, apart=not overlap, overlap=overlap)
    q = d.ring(0)

    def request(kind, sector, out=b"", read=0, status=1):
        parts = [(*d.data(struct.pack("<IIQ", kind, 0, sector) + out), False)]
        if read:
            parts.append((*d.data(bytes(read)), True))
        parts.append((*d.data(bytes(status)), True))
        d.chain(q, parts)

    request(1, 2, out=bytes(range(256)) * 2)  # OUT one sector
    request(0, 2, read=512)  # IN it back
    request(4, 0)  # FLUSH
    request(8, 0, read=20)  # GET_ID
    request(13, 0, out=struct.pack("<QII", 4, 2, 0))  # WRITE_ZEROES
    request(11, 0, out=struct.pack("<QII", 8, 1, 0))  # DISCARD
    request(0, 63, read=1024)  # IN past the end: IOERR
    request(99, 0)  # unknown: UNSUPP
    if overlap:
        header = d.data(struct.pack("<IIQ", 0, 0, 0))
        d.chain(q, [(*header, False), (BUF_IOVA + d.at(d.rings[q]["desc"]), 512, True), (*d.data(bytes(1)), True)])
    return d.bytes()


def block_edges():
    """A read into a buffer across RW→RO, a write from one across RO→the hole, a status byte in RO, a read across
    the last entry's end, then a good read."""
    d = EdgeDriver(1)
    q = d.ring(0)

    def request(kind, data_part, status_at=None):
        parts = [(*d.data(struct.pack("<IIQ", kind, 0, 1)), False), data_part]
        parts.append((status_at, 1, True) if status_at else (*d.data(bytes(1)), True))
        d.chain(q, parts)

    request(0, (EDGES["rw-ro"], 512, True))
    request(1, (EDGES["ro-hole"], 512, False))
    request(0, (*d.data(bytes(512)), True), status_at=BUF_IOVA + 5000)
    request(0, (EDGES["end"], 512, True))
    request(0, (*d.data(bytes(512)), True))
    return d.bytes()


def control():
    d = Driver(2)
    q = d.ring(0)
    for command in [bytes([1, 1]) + MAC, bytes([4, 0]) + struct.pack("<H", 2), bytes([0, 0, 1])]:
        d.chain(q, [(*d.data(command), False), (*d.data(bytes(1)), True)])
    return d.bytes()


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    seeds = {
        "net-v1": net(),
        "net-legacy": net(version1=False),
        "net-mergeable": net(mergeable=True),
        "net-indirect-wrap": net(indirect=True, base=0xFFFE),
        "net-overlap": net(overlap=True),
        "net-top": net(indirect=True, top=True),
        "block": block(),
        "block-overlap": block(overlap=True),
        "control": control(),
        "block-edges": block_edges(),
        **{f"net-edge-{side}-{edge}": net_edge(edge, side) for edge in EDGES for side in ("rx", "tx")},
    }
    for name, data in seeds.items():
        with open(os.path.join(out, f"seed-{name}.bin"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
