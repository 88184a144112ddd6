// DocumentedFactory.swift — swift-metrics' factory over a swift-prometheus
// registry that gives each family its HELP text.  swift-prometheus's own
// factory registers every metric with an empty help, so the exposition would
// carry no HELP lines; this one looks the text up by the metric's label.
import CoreMetrics
import Prometheus

struct DocumentedFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    let help: [String: String]
    /// The plain factory, for what vdpad does not export with help (timers, recorders) and for destroying.
    private let plain: PrometheusMetricsFactory

    init(registry: PrometheusCollectorRegistry, families: [MetricFamily]) {
        self.registry = registry
        help = Dictionary(uniqueKeysWithValues: families.map { ($0.name, $0.help) })
        plain = PrometheusMetricsFactory(registry: registry)
    }

    /// The whole name as the metric name (vdpad's names carry their prefix and unit already) and its help.
    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: help[label] ?? "")
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        plain.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        plain.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        plain.makeTimer(label: label, dimensions: dimensions)
    }

    func destroyCounter(_ handler: any CounterHandler) { plain.destroyCounter(handler) }
    func destroyMeter(_ handler: any MeterHandler) { plain.destroyMeter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { plain.destroyFloatingPointCounter(handler) }
    func destroyRecorder(_ handler: any RecorderHandler) { plain.destroyRecorder(handler) }
    func destroyTimer(_ handler: any TimerHandler) { plain.destroyTimer(handler) }
}
