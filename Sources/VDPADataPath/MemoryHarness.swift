// MemoryHarness.swift — the daemon's own memory for data-path runs
// (`OwnerMemory`) over a file this process maps, through an IOTLB the caller
// draws: the rings' table in ASID 1, the buffers' in ASID 0 (a descriptor
// group in an address space of its own).  Each memory is bound to a device
// of its own, with the file shared (reached in place: windows and spans,
// guarded) or not (reached by process_vm_readv/writev on this process, the
// private-RAM fallback).  The ring fuzzer (Fuzz/Ring) serves hostile rings
// through both, beside its model of the same IOTLB.
import SystemPackage
import VDPACore
import VDPAVirtio

#if canImport(Glibc)
    import Glibc
#endif

public final class MemoryHarness {
    /// One IOTLB entry: IOVAs [iova, iova+size) to the file's bytes from `offset` on.
    public struct Entry: Sendable {
        public var ring: Bool
        public var iova: UInt64, size: UInt64
        public var offset: Int
        public var permission: Permission
        public init(ring: Bool, iova: UInt64, size: UInt64, offset: Int, permission: Permission) {
            (self.ring, self.iova, self.size, self.offset, self.permission) = (ring, iova, size, offset, permission)
        }
    }

    /// The file, mapped here as "the VMM's" memory; its bytes are what the memories reach.
    public let file: HarnessFile
    /// vdpad's own mapping of the file, made once (share_memory's code) and shared by every device that shares it.
    private let mapping: any SharedMapping

    public init(bytes: Int) throws(VDPAError) {
        file = try HarnessFile(bytes: bytes)
        mapping = try SharedFiles.map(dup(file.fd), address: file.address, size: UInt64(bytes), offset: 0, pid: getpid()).get()
    }

    /// A memory bound for one run to a new device that maps `entries` (each must lie in the file, and no two of one
    /// table overlap: the device refuses them as vhost-vdpa does), with the file `shared` or reached by process_vm.
    public func memory(_ entries: [Entry], shared: Bool) throws -> some GuestMemory {
        var device = try VDPADevice(name: DeviceName(rawValue: "harness")!, mgmtdev: .vdpasimNet)
        try device.open(by: Owner(connection: 1, pid: getpid(), uid: getuid()))
        try device.setBackendFeatures([.iotlbMessageV2, .iotlbBatch, .iotlbASID])
        for e in entries {
            precondition(e.offset >= 0 && e.offset + Int(e.size) <= file.bytes, "an entry maps bytes of the file")
            try device.map(asid: ASID(e.ring ? 1 : 0), iova: e.iova, size: e.size, address: file.address + UInt64(e.offset), permission: e.permission)
        }
        if shared { try device.shareMemory(SharedRegion(start: file.address, size: UInt64(file.bytes), mapping: mapping)) }
        return OwnerMemory(pid: getpid(), device: device, ringASID: 1, bufferASID: 0)
    }
}
