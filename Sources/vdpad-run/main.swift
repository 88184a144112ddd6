// vdpad-run — runs a command (an unmodified VMM) with libvdpad-vhost.so
// preloaded, so the /dev/vhost-vdpa-N paths it is given are answered by
// vdpad devices.  It checks first, and says clearly, when the daemon is not
// there, a device does not exist or another session owns it; then it
// replaces itself with the command (exec), so signals and the exit status are
// the command's own.
import ArgumentParser
import UnixSocket
import VDPAClient
#if canImport(Glibc)
    import Glibc
#endif

struct VDPARun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vdpad-run",
        abstract: "Run a VMM whose /dev/vhost-vdpa-N files are vdpad devices.",
        usage: "vdpad-run [-s SOCKET] --device /dev/vhost-vdpa-0=vdpa0 [--device …] [--record FILE [--anonymize]] -- COMMAND [ARGS…]",
        discussion: """
            The command runs with libvdpad-vhost.so in LD_PRELOAD. Its open() of a mapped
            path claims the vdpad device (EBUSY if another session owns it, as the kernel's
            open); ioctl() and write() on that fd become vdpad's JSON-RPC methods with the
            kernel's structs and errno; every other file is untouched. When the command
            exits, even without close(), the device is released.

            The same without vdpad-run, with plain environment variables:
              LD_PRELOAD=/usr/local/lib/vdpad/libvdpad-vhost.so \\
              VDPAD_VHOST_DEVICES=/dev/vhost-vdpa-0=vdpa0 \\
              [VDPAD_SOCKET=/run/vdpad/vdpad.sock] \\
              qemu-system-x86_64 \\
                -netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0 …
            VDPAD_VHOST_QUIET=1 silences the library's one-line messages on stderr;
            VDPAD_VHOST_RECORD=FILE (and VDPAD_VHOST_RECORD_ANONYMIZE=1) is --record
            (--anonymize).

            Example:
              vdpad-run --device /dev/vhost-vdpa-0=vdpa0 -- \\
                qemu-system-x86_64 -M q35 -m 256 \\
                -netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=n0 \\
                -device virtio-net-pci,netdev=n0 …
            """
    )

    @Option(name: .customShort("s"), help: "vdpad's socket (default: VDPAD_SOCKET, else the system socket, then a per-user one).")
    var socket: String?

    @Option(name: .customLong("device"), help: "PATH=NAME: answer PATH (e.g. /dev/vhost-vdpa-0) with vdpad's device NAME. Repeatable.")
    var devices: [String] = []

    @Option(name: .customLong("record"), help: "Append every call the VMM's devices make to FILE as JSON lines (vdpad-cli replay reads them).")
    var record: String?

    @Flag(name: .customLong("anonymize"), help: "With --record: write host addresses relative to the first one mapped.")
    var anonymize = false

    @Option(name: .customLong("library"), help: "The preload library (default: VDPAD_VHOST_LIBRARY, else next to vdpad-run, else ../lib/vdpad/).")
    var library: String?

    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        guard !devices.isEmpty else { throw ValidationError("name at least one --device PATH=NAME") }
        if anonymize && record == nil { throw ValidationError("--anonymize goes with --record FILE") }
        for mapping in devices {
            let parts = mapping.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0].hasPrefix("/"), !parts[1].isEmpty, !parts[1].contains(",") else {
                throw ValidationError("--device \(mapping): expected an absolute path, =, and a device name, e.g. /dev/vhost-vdpa-0=vdpa0")
            }
        }
        guard !command.isEmpty else { throw ValidationError("give the command to run after --") }
    }

    func run() throws {
        let env = DefaultSocketPath.processEnvironment
        // The socket the library will use: the first that answers, so the check and the VMM agree.
        let candidates = socket.map { [$0] } ?? DefaultSocketPath.forClient()
        var client: VDPAClient?
        var socketPath = candidates[0]
        var failures: [String] = []
        for path in candidates {
            do {
                client = try VDPAClient(path: path, timeout: 10)
                socketPath = path
                break
            } catch { failures.append("\(error)") }
        }
        guard let client else {
            throw fail(
                "no vdpad answers on \(candidates.joined(separator: " nor ")):\n  " + failures.joined(separator: "\n  ")
                    + "\nstart it (systemctl start vdpad.socket, or vdpad) or name its socket with -s")
        }
        for mapping in devices {
            let name = String(mapping.split(separator: "=", maxSplits: 1)[1])
            let device: JSON
            do {
                device = try client.call("get_device", ["device": .string(name)])
            } catch let e as RemoteError {
                throw fail(e.data?["errno"] == "ENODEV" ? "vdpad has no device \(name) (see vdpad-cli dev show)" : e.message)
            }
            if let owner = device["owner"], owner != .null {
                throw fail(
                    "\(name) is owned by another session (pid \(owner["pid"]?.text ?? "?"), uid \(owner["uid"]?.text ?? "?")); "
                        + "close it or use another device")
            }
        }
        let libraryPath = try findLibrary(env)
        let preload = [libraryPath] + (env("LD_PRELOAD").map { [$0] } ?? [])
        setenv("LD_PRELOAD", preload.joined(separator: " "), 1)
        setenv("VDPAD_VHOST_DEVICES", devices.joined(separator: ","), 1)
        setenv("VDPAD_SOCKET", socketPath, 1)
        if let record {
            // Fail here, clearly, rather than in the VMM's process.
            guard let file = fopen(record, "a") else {
                throw fail("cannot write the record \(record): \(Errno.current)")
            }
            fclose(file)
            setenv("VDPAD_VHOST_RECORD", record, 1)
            if anonymize { setenv("VDPAD_VHOST_RECORD_ANONYMIZE", "1", 1) }
        }
        let argv = command.map { strdup($0) } + [nil]
        execvp(command[0], argv)
        throw fail("cannot run \(command[0]): \(Errno.current)")
    }

    func findLibrary(_ env: (String) -> String?) throws -> String {
        if let library { return library }
        if let path = env("VDPAD_VHOST_LIBRARY") { return path }
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = n > 0 ? String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        let dir = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        for candidate in [dir + "/libvdpad-vhost.so", dir + "/../lib/vdpad/libvdpad-vhost.so"] where access(candidate, R_OK) == 0 {
            return candidate
        }
        throw fail(
            "libvdpad-vhost.so is neither next to vdpad-run (\(dir)) nor in \(dir)/../lib/vdpad; "
                + "build it (make -C preload OUT=\(dir)) or name it with --library")
    }

    func fail(_ message: String) -> ExitCode {
        let line = "vdpad-run: \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        return ExitCode(1)
    }
}

VDPARun.main()
