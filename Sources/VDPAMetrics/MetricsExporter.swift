// MetricsExporter.swift — the daemon's metrics in the Prometheus text format.
// The devices already count what they do (VDPADevice.stats, queueStats); an
// export mirrors those counts into swift-metrics counters and gauges — the
// API the daemon records into — and swift-prometheus writes the exposition.
// Mirroring at export time keeps the map path exactly as it was (no metric
// object is touched per request) and costs nothing while nobody asks.
import CoreMetrics
import Prometheus
import Synchronization
import VDPACore
import VDPARegistry

/// The daemon-wide figures an export reports beside the devices.
public struct DaemonSnapshot: Sendable, Equatable {
    public var connections: Int
    public var requests: Int
    public var errors: Int
    public var uptimeSeconds: Int

    public init(connections: Int, requests: Int, errors: Int, uptimeSeconds: Int) {
        (self.connections, self.requests, self.errors, self.uptimeSeconds) = (connections, requests, errors, uptimeSeconds)
    }
}

public final class MetricsExporter: Sendable {
    /// What the exposition is, as an HTTP Content-Type would say it.
    public static let contentType = "text/plain; version=0.0.4"

    /// One time series: a family and its label values, in the family's label order.
    struct SeriesKey: Hashable {
        let family: String
        let labels: [String]
    }

    /// A counter and the count it was last brought to (swift-metrics counters only go up by increments).
    final class CounterSeries: @unchecked Sendable {  // only touched holding `state`'s lock
        var counter: CoreMetrics.Counter
        var value: Int
        init(_ counter: CoreMetrics.Counter) { (self.counter, value) = (counter, 0) }
    }

    struct State: ~Copyable {
        var counters: [SeriesKey: CounterSeries] = [:]
        var gauges: [SeriesKey: Meter] = [:]
    }

    private let registry = PrometheusCollectorRegistry()
    private let factory: DocumentedFactory
    private let state = Mutex(State())

    public init() {
        factory = DocumentedFactory(registry: registry, families: MetricFamily.all)
    }

    /// Brings every series to `devices` and `daemon` and returns the exposition (text format 0.0.4).
    /// A device gone since the last export loses its series; one made again under the same name starts anew.
    public func exposition(devices: [DeviceSnapshot], daemon: DaemonSnapshot) -> String {
        state.withLock { state in
            var seen = Set<SeriesKey>()
            func gauge(_ f: MetricFamily, _ labels: [(String, String)], _ value: Int) {
                let key = SeriesKey(family: f.name, labels: labels.map(\.1))
                seen.insert(key)
                let meter = state.gauges[key] ?? Meter(label: f.name, dimensions: labels, factory: factory)
                state.gauges[key] = meter
                meter.set(value)
            }
            func counter(_ f: MetricFamily, _ labels: [(String, String)], _ value: Int) {
                let key = SeriesKey(family: f.name, labels: labels.map(\.1))
                seen.insert(key)
                if let series = state.counters[key], value >= series.value {
                    series.counter.increment(by: value - series.value)
                    series.value = value
                    return
                }
                // New, or lower than before (a device deleted and made again between two exports): start anew.
                state.counters[key]?.counter.destroy()
                let series = CounterSeries(CoreMetrics.Counter(label: f.name, dimensions: labels, factory: factory))
                series.counter.increment(by: value)
                series.value = value
                state.counters[key] = series
            }

            gauge(.devices, [], devices.count)
            gauge(.connections, [], daemon.connections)
            gauge(.uptime, [], daemon.uptimeSeconds)
            counter(.requests, [], daemon.requests)
            counter(.requestErrors, [], daemon.errors)
            for d in devices {
                let device = [("device", d.name)]
                gauge(.deviceInfo, device + [("mgmtdev", d.mgmtdev)], 1)
                gauge(.ownerPID, device, Int(d.ownerPID ?? 0))
                gauge(.status, device, Int(d.status))
                gauge(.suspended, device, d.suspended ? 1 : 0)
                for a in d.addressSpaces {
                    gauge(.iotlbEntries, device + [("asid", String(a.asid)), ("layer", "session")], a.sessionEntries ?? 0)
                    gauge(.iotlbEntries, device + [("asid", String(a.asid)), ("layer", "device")], a.deviceEntries)
                }
                let s = d.stats
                counter(.mapCalls, device, s.mapCalls)
                counter(.unmapCalls, device, s.unmapCalls)
                counter(.deviceCommits, device, s.deviceCommits)
                counter(.entriesCopied, device, s.entriesCopied)
                counter(.defaultRestores, device, s.defaultRestores)
                counter(.resets, device + [("kind", "clean")], s.resetsClean)
                counter(.resets, device + [("kind", "persist")], s.resetsPersist)
                counter(.translateCalls, device, s.translateCalls)
                counter(.cvqRequests, device, s.cvqRequests)
                counter(.cvqSuccesses, device, s.cvqSuccesses)
                counter(.cvqErrors, device, s.cvqErrors)
                counter(.indexStores, device + [("method", "atomic")], s.atomicIndexStores)
                counter(.indexStores, device + [("method", "copied")], s.copiedIndexStores)
                gauge(.sharedMemoryBytes, device, Int(clamping: d.sharedMemoryBytes))
                counter(.memoryAccesses, device + [("method", "shared")], s.sharedAccesses)
                counter(.memoryAccesses, device + [("method", "process_vm")], s.processVMAccesses)
                counter(.shareRefusals, device, s.sharesRefused)
                counter(.unshares, device, s.unshares)
                for q in d.queues {
                    let queue = device + [("qidx", String(q.index)), ("queue_type", q.type.rawValue)]
                    counter(.receivedDesc, queue, q.stats.receivedDesc)
                    counter(.completedDesc, queue, q.stats.completedDesc)
                    counter(.queueBytes, queue, q.stats.bytes)
                    counter(.queueDrops, queue, q.stats.drops)
                    counter(.queueErrors, queue, q.stats.errors)
                }
            }
            for key in state.gauges.keys where !seen.contains(key) { state.gauges.removeValue(forKey: key)?.destroy() }
            for key in state.counters.keys where !seen.contains(key) { state.counters.removeValue(forKey: key)?.counter.destroy() }
            return registry.emitToString()
        }
    }
}
