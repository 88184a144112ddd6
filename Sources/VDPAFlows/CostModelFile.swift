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
    public static func text(at path: String?) -> String? {
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
            return String(decoding: bytes, as: UTF8.self)
        }
        return nil
    }
}
