// CopyCommand.swift — `vdpad-bench copy`: what one guarded copy into or out
// of shared guest memory costs, beside glibc's memcpy, for the sizes the data
// path copies and the placements a guest's buffers can have.  Where the
// destination is 1 to 63 bytes past the source modulo 4 KiB, `rep movsb`
// (and memcpy from 4 KiB up, which uses it) runs 10–16× slower on AMD Zen;
// the guarded copy steps around it (CVDPAShim, docs/performance.md).
import ArgumentParser
import CVDPAShim
import VDPADataPath
#if canImport(Glibc)
    import Glibc
#endif

struct CopyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Time the data path's guarded copy beside memcpy, by size and placement.",
        discussion: """
            Prints one line per size and placement: ns per copy for vdpad_guarded_copy and for
            memcpy.  "aligned": source and destination at the same offset in their pages;
            "dst+12": the destination 12 bytes past the source modulo 4 KiB (where rep movsb
            is slow on AMD Zen); "src+12": the other way round.

            With --disk, the copy `vdpad-bench datapath`'s blk-seqread64k makes instead: 64 KiB
            pieces of a 128 MiB memfd (a RAM disk's size and kind) in turn, each into the next of
            64 buffers of 64 KiB in another memfd (the requests in flight), for --seconds, three
            interleaved rounds: pieces a second, the limit the machine's memory sets that read.
              vdpad-bench copy --disk --seconds 2
            """)

    @Option(help: "Copies per size and placement (fewer for the larger sizes).")
    var copies = 2_000_000

    @Flag(help: "Time the 64 KiB sequential read's copy from a 128 MiB memfd instead (pieces a second).")
    var disk = false

    @Option(help: "Seconds each way copies for in each --disk round (default 1).")
    var seconds: Double?

    func validate() throws {
        guard copies > 0 else { throw ValidationError("--copies must be positive") }
        if let seconds {
            guard disk else { throw ValidationError("--seconds times --disk's rounds; without --disk, --copies sets the work") }
            guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
        }
    }

    func run() throws {
        if disk { return try runDisk() }
        let span = 1 << 21
        let page = 4096
        let src = UnsafeMutableRawPointer.allocate(byteCount: span + 2 * page, alignment: page)
        let dst = UnsafeMutableRawPointer.allocate(byteCount: span + 2 * page, alignment: page)
        defer {
            src.deallocate()
            dst.deallocate()
        }
        memset(src, 1, span + 2 * page)
        memset(dst, 2, span + 2 * page)
        for size in [76, 1512, 4096, 65536] {
            // Sixteen buffers a stride apart, as a ring's are, so that a copy is not always the same lines.
            let stride = max(2048, (size + page) & ~(page - 1))
            let n = max(1000, copies * 76 / max(76, size))
            for (name, to, from) in [("aligned", 0, 0), ("dst+12", 12, 0), ("src+12", 0, 12)] {
                func time(_ copy: (UnsafeMutableRawPointer, UnsafeRawPointer, Int) -> Void) -> Double {
                    let start = nowNanos()
                    for i in 0..<n {
                        let o = (i & 15) * stride % span
                        copy(dst + o + to, src + o + from, size)
                    }
                    return Double(nowNanos() - start) / Double(n)
                }
                let guarded = time { d, s, k in _ = vdpad_guarded_copy(d, s, k) }
                let library = time { d, s, k in _ = memcpy(d, s, k) }
                print("vdpad copy size=\(size) placement=\(name) guarded_ns=\(format(guarded)) memcpy_ns=\(format(library))")
            }
        }
    }

    /// `--disk`: the sequential read's copies, the guarded copy and memcpy in turn, three rounds.
    func runDisk() throws {
        let seconds = self.seconds ?? 1
        let piece = 65536
        let (diskBytes, inFlight) = (128 << 20, 64)
        // Shared file mappings, the kind of memory a RAM disk and a VMM's shared guest RAM are.
        let (diskFile, bufferFile) = (try HarnessFile(bytes: diskBytes), try HarnessFile(bytes: piece * inFlight))
        defer { withExtendedLifetime((diskFile, bufferFile)) {} }  // mapped until the last copy, not the last use
        let (disk, buffers) = (diskFile.base, bufferFile.base)
        memset(disk, 1, diskBytes)  // every page there before the clock starts, as a RAM disk's are after its first pass
        memset(buffers, 2, piece * inFlight)
        let copies: [(String, (UnsafeMutableRawPointer, UnsafeRawPointer, Int) -> Void)] = [
            ("guarded", { d, s, k in _ = vdpad_guarded_copy(d, s, k) }), ("memcpy", { d, s, k in _ = memcpy(d, s, k) })
        ]
        for round in 1...3 {
            for (name, copy) in copies {
                var (copied, offset) = (0, 0)
                let start = nowNanos()
                let end = start + UInt64(seconds * 1e9)
                while nowNanos() < end {
                    for _ in 0..<inFlight {  // a clock read per 64 pieces, not per piece
                        copy(buffers + (copied % inFlight) * piece, disk + offset, piece)
                        (copied, offset) = (copied + 1, (offset + piece) % diskBytes)
                    }
                }
                let rate = Double(copied) / (Double(nowNanos() - start) / 1e9)
                print("vdpad copy disk size=\(piece) round=\(round) copy=\(name) pieces_per_s=\(Int(rate)) bytes_per_s=\(Int(rate) * piece)")
            }
        }
    }
}
