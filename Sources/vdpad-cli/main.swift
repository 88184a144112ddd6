// vdpad-cli — the admin command line, in iproute2 `vdpa` grammar:
//   vdpad-cli [-s SOCKET] [-j] [-p] [-t TIMEOUT] OBJECT COMMAND [ARGS]
//   vdpad-cli [-s SOCKET] -b FILE [-force]
// Exit status: 0 ok, 1 the daemon said no (or is not there), 2 usage.
import ArgumentParser
import UnixSocket
import VDPAClient
#if canImport(Glibc)
    import Glibc
#endif

struct VDPADCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vdpad-cli",
        abstract: "Manage vdpad's vDPA devices, in iproute2 `vdpa` grammar.",
        usage: "vdpad-cli [-s SOCKET] [-j] [-p] [-t TIMEOUT] OBJECT COMMAND [ARGS]\n       vdpad-cli [-s SOCKET] -b FILE [-force]",
        discussion: """
            Commands:
            \(Grammar.commandList)

            Examples:
              vdpad-cli mgmtdev show
              vdpad-cli dev add name vdpa1 mgmtdev mlx5_net max_vqp 4
              vdpad-cli -j -p dev show vdpa1
              vdpad-cli dev iotlb show vdpa0 asid 0 layer device
              vdpad-cli dev help                 (the dev commands only)
              vdpad-cli -b session.txt           (one command per line, one connection)

            A -b file holds one command per line (# comments, blank lines ignored), run
            over ONE connection, so `dev open` owns the device for the lines after it.
            It stops at the first error (reporting the line number) unless -force is
            given.

            Every command is one JSON-RPC call (`call METHOD [JSON]` reaches any of
            them); the methods, their params, errors and the order of checks are in the
            protocol document, docs/protocol.md (installed as
            PREFIX/share/doc/vdpad/protocol.md).
            """
    )

    @Option(
        name: .customShort("s"),
        help: "vdpad's socket (default: VDPAD_SOCKET, else /run/vdpad/vdpad.sock, then as a user $XDG_RUNTIME_DIR/vdpad.sock or ./.vdpad/vdpad.sock)."
    )
    var socket: String?

    @Flag(name: .customShort("j"), help: "JSON output, iproute2's shape.")
    var json = false

    @Flag(name: .customShort("p"), help: "Pretty (indented) JSON; with -j.")
    var pretty = false

    @Option(name: .customShort("t"), help: "Seconds to wait for each reply.")
    var timeout: Double = 10

    @Option(name: .customShort("b"), help: "Run the commands in FILE (- for stdin) over one connection.")
    var batch: String?

    @Flag(name: .customLong("force", withSingleDash: true), help: "With -b: go on after a failing line.")
    var force = false

    @Argument(parsing: .captureForPassthrough, help: "OBJECT COMMAND [ARGS]: see the list above.")
    var words: [String] = []

    /// The sockets to try, in order: -s alone, else VDPAD_SOCKET alone, else the system daemon's then a per-user one.
    var socketPaths: [String] { socket.map { [$0] } ?? DefaultSocketPath.forClient() }

    func run() throws {
        if let batch {
            guard words.isEmpty else { throw usage(UsageError("-b takes no command words")) }
            return try runBatch(batch)
        }
        if words == ["--experimental-dump-help"] {  // swift-argument-parser's man page generator asks this way
            print(VDPADCLI._dumpHelp())
            return
        }
        let helpWords: Set<String> = ["help", "--help", "-h"]
        if let first = words.first, words.contains(where: helpWords.contains) {
            // `vdpad-cli --help` is the full help; `vdpad-cli dev map --help` that command's usage and example.
            print(helpWords.contains(first) ? VDPADCLI.helpMessage() : Grammar.help(words.filter { !helpWords.contains($0) }))
            return
        }
        if words.first == "monitor" { try monitor(Array(words.dropFirst())) }
        if words.first == "replay" {
            let options: ReplayOptions
            do { options = try ReplayOptions.parse(Array(words.dropFirst())) } catch { throw usage(error) }
            if options.destination != nil {
                do { throw ExitCode(try MigrationPricing.run(options) { print($0) }) } catch let e as UsageError { throw usage(e) }
            }
            let client = try connect()
            do {
                throw ExitCode(try Replay.run(options, client: client) { print($0) })
            } catch let e as RemoteError {
                fail(e.message)
            } catch let e as UsageError {
                throw usage(e)
            }
        }
        let command: CLICommand
        do { command = try Grammar.parse(words) } catch { throw usage(error) }
        let client = try connect()
        do {
            try execute(command, on: client)
        } catch let e as RemoteError {
            fail(e.message)
        }
    }

    func connect() throws -> VDPAClient {
        let paths = socketPaths
        var failures: [String] = []
        for path in paths {
            do { return try VDPAClient(path: path, timeout: timeout) } catch { failures.append("\(error)") }
        }
        guard paths.count > 1 else { fail(failures[0]) }
        fail(
            "no vdpad answers on \(paths.joined(separator: " (the system daemon) nor on ")) (a per-user daemon):\n  "
                + failures.joined(separator: "\n  ")
                + "\nstart one (systemctl start vdpad.socket, or vdpad), or name its socket with -s or VDPAD_SOCKET")
    }

    func usage(_ e: UsageError) -> ExitCode {
        printError("vdpad-cli: \(e.description)")
        return ExitCode(2)
    }

    func fail(_ message: String) -> Never {
        printError("vdpad-cli: \(message)")
        Glibc.exit(1)
    }

    func execute(_ command: CLICommand, on client: VDPAClient) throws {
        let result = try client.call(command.method, command.params)
        if json {
            guard let shaped = Render.json(command.view, result, command) else { return }
            print(pretty ? shaped.prettyText : shaped.text)
        } else if let text = Render.human(command.view, result, command), !text.isEmpty {
            print(text)
        }
    }

    func runBatch(_ path: String) throws {
        let text: String
        if path == "-" {
            var lines: [String] = []
            while let line = readLine(strippingNewline: true) { lines.append(line) }
            text = lines.joined(separator: "\n")
        } else {
            guard let f = fopen(path, "r") else { fail("cannot read \(path): \(Errno.current)") }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while case let n = fread(&buffer, 1, buffer.count, f), n > 0 { bytes += buffer[0..<n] }
            fclose(f)
            text = String(decoding: bytes, as: UTF8.self)
        }
        let client = try connect()
        var failed = false
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let words = tokenize(line)
            if words.isEmpty { continue }
            do {
                try execute(try Grammar.parse(words), on: client)
            } catch let e as UsageError {
                printError("vdpad-cli: line \(index + 1): \(e.description)")
                if !force { throw ExitCode(2) }
                failed = true
            } catch let e as RemoteError {
                printError("vdpad-cli: line \(index + 1): \(e.message)")
                if !force { throw ExitCode(1) }
                failed = true
            }
        }
        if failed { throw ExitCode(1) }
    }

    /// Words separated by blanks; 'single' or "double" quotes keep JSON params whole.
    func tokenize(_ line: String) -> [String] {
        var words: [String] = [], current = "", quote: Character?
        var inWord = false
        for ch in line {
            if let q = quote {
                if ch == q { quote = nil } else { current.append(ch) }
            } else if ch == "'" || ch == "\"" {
                quote = ch
                inWord = true
            } else if ch == " " || ch == "\t" {
                if inWord { words.append(current); current = ""; inWord = false }
            } else {
                current.append(ch)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }

    /// Prints events until interrupted (or the daemon goes away).
    func monitor(_ types: [String]) throws -> Never {
        let client = try connect()
        var params: JSON?
        if !types.isEmpty { params = ["events": .array(types.map { .string($0) })] }
        do { try client.call("subscribe", params) } catch let e as RemoteError { fail(e.message) }
        setsockopt(client.fd, SOL_SOCKET, SO_RCVTIMEO, [timeval(tv_sec: 0, tv_usec: 0)], socklen_t(MemoryLayout<timeval>.size))
        while let message = try client.readMessage() {
            guard let event = message["params"] else { continue }
            if json {
                print(event.text)
            } else {
                let extra = event.members.filter { !["seq", "time", "type", "device"].contains($0.0) }.map { "\($0.0) \($0.1.plain)" }
                print("[\(event["type"]?.plain ?? "?")] \(event["device"]?.plain ?? "") \(extra.joined(separator: " "))".trimmingSuffixSpaces())
            }
            fflush(nil)
        }
        Glibc.exit(0)
    }
}

extension String {
    func trimmingSuffixSpaces() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}

func printError(_ s: String) { _ = (s + "\n").withCString { write(2, $0, strlen($0)) } }

// Usage errors exit 2 (as iproute2), not ArgumentParser's 64.
do {
    var command = try VDPADCLI.parseAsRoot()
    try command.run()
} catch {
    if VDPADCLI.exitCode(for: error) == .validationFailure {
        printError(VDPADCLI.fullMessage(for: error))
        Glibc.exit(2)
    }
    VDPADCLI.exit(withError: error)
}
