// CoreFixtures.swift — what the core's tests share: an owner, an opened
// device of any parent, and an expectation on a rule's errno.
import Testing
import VDPACore

/// The owner every fixture device is opened by.
public let me = Owner(connection: 1, pid: 100, uid: 0)

/// A device of `kind`, opened by `me`, with the backend features in `acked` that its parent offers.
public func device(
    _ kind: ManagementDevice = .vdpasimNet, legacy: Bool = false, range: IOVARange = .full,
    acked: BackendFeatures = [.iotlbMessageV2, .iotlbBatch, .iotlbASID], kernel: KernelVersion? = nil
) throws -> VDPADevice {
    var attributes = DeviceAttributes(iovaRange: range, legacy: legacy)
    attributes.kernel = kernel?.rawValue
    var d = try VDPADevice(name: DeviceName(rawValue: "vdpa0")!, mgmtdev: kind, attributes: attributes)
    try d.open(by: me)
    try d.setBackendFeatures(acked.intersection(d.offeredBackendFeatures))
    return d
}

/// Expects `body` to fail with `errno` (and, when given, the kernel's errno `kernel`).
public func expectError(
    _ errno: KernelErrno, kernel: KernelErrno? = nil, _ body: () throws -> Void,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    do {
        try body()
        Issue.record("expected \(errno), got success", sourceLocation: sourceLocation)
    } catch let error as VDPAError {
        #expect(error.errno == errno, "\(error.message)", sourceLocation: sourceLocation)
        if let kernel { #expect(error.kernelErrno == kernel, sourceLocation: sourceLocation) }
    } catch {
        Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
    }
}
