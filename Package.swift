// swift-tools-version: 6.1
//
// vdpad: a user-space model of the kernel's vdpa bus and vhost-vdpa driver,
// served as JSON-RPC 2.0 over a Unix socket.  The split follows DESIGN.md:
// the core knows no I/O, the RPC layer knows no sockets, the daemon owns
// sockets, signals, config, state files and systemd.  The preload library
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
    ],
    targets: [
        .target(
            name: "VDPACore",
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        .target(name: "VDPARPC", dependencies: ["VDPACore", .product(name: "Logging", package: "swift-log")]),
        .target(name: "UnixSocket"),
        .target(
            name: "VDPAFlows",
            dependencies: ["VDPARPC", .product(name: "Logging", package: "swift-log"), .product(name: "TOMLKit", package: "TOMLKit")]
        ),
        .executableTarget(
            name: "vdpad-run",
            dependencies: ["VDPAClient", "UnixSocket", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .target(name: "VDPAClient", dependencies: ["VDPARPC", "UnixSocket"]),
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        .target(
            name: "VDPADaemon",
            dependencies: [
                "VDPARPC", "CSystemd", "UnixSocket",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .executableTarget(
            name: "vdpad",
            dependencies: ["VDPADaemon", "UnixSocket", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "vdpad-cli",
            dependencies: ["VDPAClient", "UnixSocket", "VDPAFlows", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "vdpad-bench",
            dependencies: ["VDPACore", "VDPARPC", "VDPAClient", "VDPAFlows", "UnixSocket", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "VDPACoreTests", dependencies: ["VDPACore"], exclude: ["README.md"]),
        .testTarget(name: "VDPARPCTests", dependencies: ["VDPARPC", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "VDPAFlowsTests", dependencies: ["VDPAFlows"]),
        .testTarget(name: "EndToEndTests", dependencies: ["VDPAClient", "VDPADaemon", "UnixSocket"]),
    ]
)
