// swift-tools-version: 6.1
//
// vdpad: a user-space model of the kernel's vdpa bus and vhost-vdpa driver,
// served as JSON-RPC 2.0 over a Unix socket (docs/architecture.md): the
// core and the virtio layer know no I/O; the registry is the typed service
// every front end calls (no JSON, no system call); the data path holds the
// only I/O below it; the RPC layer decodes, calls and encodes, and knows no
// sockets; the daemon owns sockets, signals, config, state files and
// systemd.  The preload library
// that answers an unmodified VMM's /dev/vhost-vdpa-N (preload/, C: it lives
// in the VMM's process, so no Swift runtime) is built by preload/Makefile:
// swiftc would link libswiftCore into any library SwiftPM makes.
import PackageDescription

let package = Package(
    name: "vdpad",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vdpad", targets: ["vdpad"]),
        .executable(name: "vdpad-cli", targets: ["vdpad-cli"]),
        .executable(name: "vdpad-bench", targets: ["vdpad-bench"]),
        .executable(name: "vdpad-run", targets: ["vdpad-run"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", exact: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // Pure virtio over a GuestMemory protocol: the split ring, the net control queue, the net loopback,
        // the blk request queue; no dependency at all.
        // Its ring walkers are generic over the memory they read; cross-module optimization lets the data path
        // specialize them for its own memory (unspecialized, a frame cost ~12,000 instructions in metadata lookups).
        .target(
            name: "VDPAVirtio",
            dependencies: ["CVDPAShim"],
            swiftSettings: [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]
        ),
        // The few Linux calls Swift's Glibc module lacks (eventfd, process_vm_readv/writev).
        .target(name: "CVDPAShim"),
        .target(
            name: "VDPACore",
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        // JSON values with exact 64-bit integers: what the wire and the client speak.
        .target(name: "VDPAJSON"),
        // The typed service: devices, parents, sessions, every role, events; no JSON, no sockets, no system
        // call (it is handed a DeviceIO: VDPADataPath's).
        .target(name: "VDPAJournal", dependencies: ["VDPACore"]),
        .target(name: "VDPARegistry", dependencies: ["VDPACore", .product(name: "Logging", package: "swift-log")]),
        // The only I/O below the registry: eventfds, guest memory (process_vm; the store agent), a worker per device.
        .target(
            name: "VDPADataPath",
            dependencies: ["VDPACore", "VDPARegistry", "VDPAVirtio", "UnixSocket", "CVDPAShim", .product(name: "SystemPackage", package: "swift-system")]),
        // Operators' metrics: the devices' counters through swift-metrics into a Prometheus exposition.
        .target(name: "VDPAMetrics", dependencies: ["VDPACore", "VDPARegistry", .product(name: "CoreMetrics", package: "swift-metrics"),
                                                    .product(name: "Prometheus", package: "swift-prometheus")]),
        // JSON-RPC 2.0 over the registry: decode, call, encode.
        .target(name: "VDPARPC", dependencies: ["VDPACore", "VDPARegistry", "VDPADataPath", "VDPAJSON", "VDPAMetrics", .product(name: "Logging", package: "swift-log")]),
        // System calls' shared parts: sockaddr_un, the default socket path, EINTR, errno (swift-system's).
        .target(name: "UnixSocket", dependencies: [.product(name: "SystemPackage", package: "swift-system")]),
        // The cost model alone: what pricing a recorded flow needs (vdpad-cli replay), no registry, no RPC.
        .target(name: "VDPACostModel", dependencies: ["VDPAJSON", .product(name: "TOMLKit", package: "TOMLKit")]),
        // Built-in VMM flows run on real devices, and the calibration of the cost model on them.
        .target(
            name: "VDPAFlows",
            dependencies: ["VDPACore", "VDPACostModel", "VDPARPC", "VDPARegistry", "VDPAJSON", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "vdpad-run",
            dependencies: ["VDPAClient", "UnixSocket", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .target(name: "VDPAClient", dependencies: ["VDPAJSON", "UnixSocket"]),
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        .target(
            name: "VDPADaemon",
            dependencies: [
                "VDPACore", "VDPARPC", "VDPARegistry", "VDPAJSON", "VDPAJournal", "CSystemd", "CVDPAShim", "UnixSocket",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .executableTarget(
            name: "vdpad",
            dependencies: ["VDPADaemon", "VDPARPC", "UnixSocket", .product(name: "Logging", package: "swift-log"), .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "vdpad-cli",
            dependencies: ["VDPAClient", "UnixSocket", "VDPACostModel", "CVDPAShim", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "vdpad-bench",
            dependencies: ["VDPACore", "VDPARPC", "VDPARegistry", "VDPADataPath", "VDPAClient", "VDPAFlows", "VDPACostModel", "VDPAJSON", "UnixSocket", "CVDPAShim", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // What the test targets share (fixtures, callers); never linked into a product.
        .target(name: "_VDPATestSupport", dependencies: ["VDPACore", "VDPARPC", "VDPARegistry", "VDPADataPath"], path: "Tests/_VDPATestSupport"),
        .testTarget(name: "VDPACoreTests", dependencies: ["VDPACore", "_VDPATestSupport"], exclude: ["README.md"]),
        .testTarget(name: "VDPARPCTests", dependencies: ["VDPARPC", "VDPARegistry", "VDPACore", "VDPAJSON", "_VDPATestSupport",
                                                        .product(name: "Logging", package: "swift-log"),
                                                        .product(name: "InMemoryLogging", package: "swift-log")]),
        .testTarget(name: "VDPARegistryTests", dependencies: ["VDPARegistry", "VDPACore", "VDPADataPath", "VDPAVirtio", "_VDPATestSupport"]),
        .testTarget(name: "VDPAJournalTests", dependencies: ["VDPAJournal", "VDPACore", "_VDPATestSupport"]),
        .testTarget(name: "VDPAVirtioTests", dependencies: ["VDPAVirtio"]),
        .testTarget(name: "VDPAFlowsTests", dependencies: ["VDPAFlows", "VDPACostModel"]),
        .testTarget(name: "VDPAMetricsTests", dependencies: ["VDPAMetrics", "VDPARegistry", "VDPACore", "_VDPATestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["VDPAClient", "VDPACore", "VDPADaemon", "VDPARPC", "VDPARegistry", "VDPAJSON", "UnixSocket"]),
    ]
)

// The libFuzzer targets, only when scripts/fuzz.sh asks for them (VDPAD_FUZZ=1, with --sanitize fuzzer
// --sanitize address): libFuzzer supplies main, so each file is parsed as a library and would not link
// in an ordinary build.  vdpad-fuzz drives the RPC input path, vdpad-fuzz-ring the data path's rings.
if Context.environment["VDPAD_FUZZ"] != nil {
    package.targets.append(contentsOf: [
        .executableTarget(
            name: "vdpad-fuzz",
            dependencies: ["VDPARPC", "VDPARegistry", "VDPAJSON", .product(name: "Logging", package: "swift-log")],
            path: "Fuzz/RPC", exclude: ["corpus"],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
        .executableTarget(
            name: "vdpad-fuzz-ring",
            dependencies: ["VDPAVirtio", "VDPADataPath", "VDPACore"],
            path: "Fuzz/Ring", exclude: ["corpus", "seeds.py"],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ])
}
