// Locked.swift — a value behind a pthread mutex.
//
// Why not Synchronization.Mutex: on Linux it locks with raw futex calls that
// ThreadSanitizer cannot see, so every TSan run of the daemon reported
// false races on the tables it protects (a six-line Mutex program shows
// the same).  A pthread mutex keeps the sanitizer meaningful.
#if canImport(Glibc)
    import Glibc
#endif

public final class Locked<Value> {
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Behind a pointer rather than a stored property: an inout access to a class's stored property
    /// is checked for exclusivity at run time (swift_beginAccess), on every map through a device.
    @usableFromInline let value: UnsafeMutablePointer<Value>

    public init(_ value: Value) {
        self.value = .allocate(capacity: 1)
        self.value.initialize(to: value)
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    /// Runs `body` with the value, holding the lock.  Inlinable, so other modules (the daemon's
    /// connections) get it specialized rather than as a generic call.
    @inlinable
    public func withLock<T, E: Error>(_ body: (inout Value) throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}

/// Sendable only when what it guards is: a lock makes access exclusive, it does not make a
/// non-Sendable value (a class shared elsewhere) safe to hand to another thread.
extension Locked: @unchecked Sendable where Value: Sendable {}
