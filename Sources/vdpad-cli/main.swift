// vdpad-cli — the admin command line.  This first cut offers the raw `call`
// command (any method, JSON params) over VDPAClient; the iproute2-style
// object tree (mgmtdev/dev/daemon/monitor, -b batch files) is issue 4.
import ArgumentParser
import VDPAClient
#if canImport(Glibc)
import Glibc
#endif

struct CLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vdpad-cli",
        abstract: "Talk to vdpad over its Unix socket.",
        subcommands: [Call.self]
    )
}

struct Call: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Call any JSON-RPC method and print its result as JSON.",
        discussion: """
            Examples:
              vdpad-cli call ping
              vdpad-cli call get_device '{"device":"vdpa0"}'
              vdpad-cli -s /tmp/vdpad.sock call add_device '{"name":"m0","mgmtdev":"mlx5_net","max_vqp":2}'
            A daemon error prints `vdpad-cli: <message>` on stderr and exits 1.
            """
    )

    @Option(name: .shortAndLong, help: "Socket path (default: VDPAD_SOCKET, /run/vdpad/vdpad.sock for root, else $XDG_RUNTIME_DIR/vdpad.sock).")
    var socket: String?

    @Option(name: .shortAndLong, help: "Seconds to wait for the daemon.")
    var timeout: Double = 10

    @Argument(help: "The method name, e.g. get_device.")
    var method: String

    @Argument(help: "Params as a JSON object.")
    var params: String?

    func run() throws {
        var parsed: JSON?
        if let params {
            do { parsed = try JSON.parse(params) } catch { throw ValidationError("params are not JSON: \(error)") }
        }
        let env = { (name: String) in getenv(name).map { String(cString: $0) } }
        let path = socket ?? env("VDPAD_SOCKET")
            ?? (getuid() == 0 ? "/run/vdpad/vdpad.sock" : (env("XDG_RUNTIME_DIR") ?? ".") + "/vdpad.sock")
        do {
            let client = try VDPAClient(path: path, timeout: timeout)
            print(try client.call(method, parsed).text)
        } catch let e as RemoteError {
            FileHandle.standardError("vdpad-cli: \(e.message)\n")
            throw ExitCode(1)
        } catch {
            FileHandle.standardError("vdpad-cli: \(error)\n")
            throw ExitCode(1)
        }
    }
}

enum FileHandle {
    static func standardError(_ s: String) { _ = s.withCString { write(2, $0, strlen($0)) } }
}

CLI.main()
