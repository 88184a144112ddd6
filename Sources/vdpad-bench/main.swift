// vdpad-bench: `vdpad-bench iotlb N [--verify]` (also `vdpad-bench N [--verify]`, the
// anchors' calling convention) and `vdpad-bench rpc …`.
#if canImport(Glibc)
    import Glibc
#endif

var arguments = Array(CommandLine.arguments.dropFirst())
if let first = arguments.first, Int(first) != nil { arguments.insert("iotlb", at: 0) }
BenchCommand.main(arguments)
