// CopyCommand.swift — `vdpad-bench copy`: what one guarded copy into or out
// of shared guest memory costs, beside glibc's memcpy, for the sizes the data
// path copies and the placements a guest's buffers can have.  Where the
// destination is 1 to 63 bytes past the source modulo 4 KiB, `rep movsb`
// (and memcpy from 4 KiB up, which uses it) runs 10–16× slower on AMD Zen;
// the guarded copy steps around it (CVDPAShim, docs/performance.md).
import ArgumentParser
import CVDPAShim
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
            """)

    @Option(help: "Copies per size and placement (fewer for the larger sizes).")
    var copies = 2_000_000

    func validate() throws {
        guard copies > 0 else { throw ValidationError("--copies must be positive") }
    }

    func run() throws {
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
}
