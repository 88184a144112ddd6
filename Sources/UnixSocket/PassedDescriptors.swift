// PassedDescriptors.swift — recvmsg(2) and sendmsg(2) with SCM_RIGHTS: a
// Unix socket carries file descriptors (a VMM's kick and call eventfds)
// beside its bytes.  The cmsg macros are not visible to Swift, so the
// control buffer is laid out here by hand (cmsghdr: len, level, type, data,
// each header and payload aligned to size_t).
#if canImport(Glibc)
    import Glibc
#endif

public enum PassedDescriptors {
    /// At most this many descriptors are taken from one message; the kernel closes any beyond (MSG_CTRUNC).
    public static let maxPerMessage = 16

    private static func align(_ n: Int) -> Int { (n + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1) }
    private static var headerSize: Int { align(MemoryLayout<cmsghdr>.size) }

    /// Receives into `buffer` like recv(2), appending any descriptors that came with the bytes to
    /// `descriptors` (close-on-exec).  Returns recv's result; `interruptible`: -1 with EINTR when a signal came
    /// before any byte did (else the receive starts again).
    public static func receive(
        _ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, descriptors: inout [Int32], interruptible: Bool = false
    ) -> Int {
        let controlSize = headerSize + align(maxPerMessage * MemoryLayout<Int32>.size)
        var iov = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        // On the stack: this runs for every read of every connection.
        let n = withUnsafeTemporaryAllocation(byteCount: controlSize, alignment: MemoryLayout<Int>.alignment) { controlBytes -> Int in
            withUnsafeMutablePointer(to: &iov) { iovPointer in
                var message = msghdr()
                message.msg_iov = iovPointer
                message.msg_iovlen = 1
                message.msg_control = controlBytes.baseAddress
                message.msg_controllen = controlBytes.count
                let receive = { recvmsg(fd, &message, Int32(MSG_CMSG_CLOEXEC)) }
                let n = interruptible ? receive() : retryingOnEINTR(receive)
                if n >= 0 { descriptors += parse(UnsafeRawBufferPointer(rebasing: controlBytes[..<Int(message.msg_controllen)])) }
                return n
            }
        }
        return n
    }

    /// The SCM_RIGHTS descriptors in a received control buffer.
    static func parse(_ control: UnsafeRawBufferPointer) -> [Int32] {
        var fds: [Int32] = []
        var offset = 0
        while offset + headerSize <= control.count {
            let header = control.loadUnaligned(fromByteOffset: offset, as: cmsghdr.self)
            let length = Int(header.cmsg_len)
            guard length >= headerSize, offset + length <= control.count else { break }
            if header.cmsg_level == SOL_SOCKET && header.cmsg_type == Int32(SCM_RIGHTS) {
                let count = (length - headerSize) / MemoryLayout<Int32>.size
                for k in 0..<count {
                    fds.append(control.loadUnaligned(fromByteOffset: offset + headerSize + k * 4, as: Int32.self))
                }
            }
            offset += align(length)
        }
        return fds
    }

    /// Sends `bytes` with `descriptors` attached (SCM_RIGHTS) in one sendmsg; returns sendmsg's result.
    public static func send(_ fd: Int32, _ bytes: [UInt8], descriptors: [Int32]) -> Int {
        let payload = descriptors.count * MemoryLayout<Int32>.size
        var control = [UInt8](repeating: 0, count: descriptors.isEmpty ? 0 : headerSize + align(payload))
        control.withUnsafeMutableBytes { c in
            guard !descriptors.isEmpty else { return }
            var header = cmsghdr()
            header.cmsg_len = headerSize + payload
            header.cmsg_level = SOL_SOCKET
            header.cmsg_type = Int32(SCM_RIGHTS)
            c.storeBytes(of: header, as: cmsghdr.self)
            for (k, d) in descriptors.enumerated() { c.storeBytes(of: d, toByteOffset: headerSize + 4 * k, as: Int32.self) }
        }
        var bytes = bytes
        return bytes.withUnsafeMutableBytes { b in
            control.withUnsafeMutableBytes { c in
                var iov = iovec(iov_base: b.baseAddress, iov_len: b.count)
                return withUnsafeMutablePointer(to: &iov) { iovPointer in
                    var message = msghdr()
                    message.msg_iov = iovPointer
                    message.msg_iovlen = 1
                    message.msg_control = c.count > 0 ? c.baseAddress : nil
                    message.msg_controllen = c.count
                    return sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
                }
            }
        }
    }
}
