// BenchCommand.swift — the benchmark's command tree.
import ArgumentParser

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vdpad-bench",
        abstract: "Benchmarks for vdpad: the IOTLB structure and the RPC path.",
        discussion: """
            Build with -c release: debug figures mean nothing.
              vdpad-bench iotlb 1000000            the anchors' workload (shared/anchors/workload.md)
              vdpad-bench 100000 --verify          the same, as the anchors' run.sh calls a peer
            """,
        subcommands: [IOTLBCommand.self]
    )
}

struct IOTLBCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iotlb",
        abstract: "Run the anchors' IOTLB workload on the Swift interval tree and print the anchors' line format.")

    @Argument(help: "Number of ranges N (10 … 2^26).")
    var n: Int

    @Flag(name: .customLong("verify"), help: "Check every answer against the generator and report the first mismatch.")
    var verify = false

    func validate() throws {
        guard (10...(1 << 26)).contains(n) else { throw ValidationError("N must be in 10…67108864") }
        guard (IOTLBWorkload.space / UInt64(n)) & ~(IOTLBWorkload.maxSize - 1) >= IOTLBWorkload.maxSize else {
            throw ValidationError("N is too large for a 48-bit space of 2 MiB slots")
        }
    }

    func run() throws {
        if !IOTLBBenchmark.run(n: n, verify: verify) { throw ExitCode(1) }
    }
}
