// LogHandler.swift — swift-log lines on stderr.  Under systemd (JOURNAL_STREAM
// set) each line starts with the sd-daemon `<N>` priority prefix so the
// journal keeps severities; elsewhere a plain `level: message key=value`.
import Logging
#if canImport(Glibc)
    import Glibc
#endif

public struct StderrLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let journal: Bool

    public init(level: Logger.Level) {
        logLevel = level
        journal = getenv("JOURNAL_STREAM") != nil
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let fields = merged.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        let prefix = journal ? "<\(Self.priority(event.level))>" : "\(event.level): "
        let line = "\(prefix)\(event.message)\(fields)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}
