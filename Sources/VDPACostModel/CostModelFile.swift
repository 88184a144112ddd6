// CostModelFile.swift — where config/cost-model.toml is found, for every
// tool that prices a flow (vdpad-bench flows, vdpad-cli replay).
#if canImport(Glibc)
    import Glibc
#endif

extension CostModel {
    /// Where the model is looked for when none is named: the copy beside the sources (a checkout),
    /// then the installed ones.
    public static let searchPath: [String] = [
        "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/") + "/config/cost-model.toml",
        "/etc/vdpad/cost-model.toml", "/usr/local/share/vdpad/cost-model.toml", "/usr/share/vdpad/cost-model.toml"
    ]

    /// The text of `path` when one is named, else of the first readable file on `searchPath`; nil if none.
    public static func text(at path: String?) -> String? { file(at: path)?.text }

    /// The file `text(at:)` reads, with its path.
    public static func file(at path: String?) -> (path: String, text: String)? {
        for candidate in path.map({ [$0] }) ?? searchPath {
            guard let file = fopen(candidate, "r") else { continue }
            defer { fclose(file) }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = fread(&chunk, 1, chunk.count, file)
                if n <= 0 { break }
                bytes += chunk[0..<n]
            }
            return (candidate, String(decoding: bytes, as: UTF8.self))
        }
        return nil
    }

    /// The model file's text with its [calibrated] section (the cached solution) replaced by `section`, or
    /// `section` appended when it has none.
    public static func replacingCalibration(in text: String, with section: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let start = lines.firstIndex(where: { $0.hasPrefix("[calibrated]") }) {
            // From the comment block just above the header to the next table header (or the end).
            var from = start
            while from > 0 && lines[from - 1].hasPrefix("#") { from -= 1 }
            var to = start + 1
            while to < lines.count && !lines[to].hasPrefix("[") { to += 1 }
            lines.removeSubrange(from..<to)
        }
        while let last = lines.last, last.isEmpty { lines.removeLast() }
        return lines.joined(separator: "\n") + "\n\n" + section
    }

    /// The [calibrated] section for this model's solved values.
    public var calibrationSection: String {
        precondition(isCalibrated, "calibrationSection of a model that is not calibrated")
        return """
            # The two CALIBRATED values, solved from the [calibration] pair by the built-in flows
            # (`vdpad-bench flows --calibrate` writes this section; a test fails when it is stale), so that
            # pricing a recorded flow (vdpad-cli replay) does not run the flows again.
            [calibrated]
            pin_cold_s_per_gib = \(pinColdPerGiB)
            unpin_and_mr_s_per_gib = \(unpinAndMRPerGiB)

            """
    }
}
