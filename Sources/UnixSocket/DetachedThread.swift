// DetachedThread.swift — a detached pthread with a modest stack, for the
// daemon's per-connection readers and the per-device data-path workers (the
// JSON parser's recursion is bounded at 128 levels; the ring walker loops).
#if canImport(Glibc)
    import Glibc
#endif

public enum DetachedThread {
    public static let stackBytes = 1 << 20

    /// Starts `body` on a new thread; false if none could be started.
    public static func start(_ body: @escaping () -> Void) -> Bool {
        final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackBytes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let r = pthread_create(
            &thread, &attributes,
            { context in
                Unmanaged<Box>.fromOpaque(context!).takeRetainedValue().body()
                return nil
            }, context)
        if r != 0 { Unmanaged<Box>.fromOpaque(context).release() }
        return r == 0
    }
}
