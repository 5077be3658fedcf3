"""Prometheus metrics for the server, on the REST port at TF Serving's path.

  lamina_requests_total{model,version,method,api,status}            counter
  lamina_request_latency_seconds{model,version,method,api,status}   histogram
  lamina_batch_size{model,version,signature}                        histogram of rows per model call
  lamina_model_load_events_total{model,version,event}               loaded | failed | unloading | unloaded
  lamina_model_versions_available{model}                            gauge

`model` and `version` are empty when a request names nothing that exists (NOT_FOUND).
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # no *_created series: they double the output and nobody graphs them

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServingMetrics:
    """One registry per server, so several servers in one process keep separate counts."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        labels = ["model", "version", "method", "api", "status"]
        self.requests = Counter("lamina_requests", "Requests answered, by model, version, method, API and status.",
                                labels, registry=self.registry)
        self.latency = Histogram("lamina_request_latency_seconds", "Time from receiving a request to answering it.",
                                 labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("lamina_batch_size", "Rows per model call (merged requests count once).",
                                    ["model", "version", "signature"], buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.expired = Counter("lamina_batch_expired", "Requests whose deadline passed while they waited for a "
                               "batch (dropped, never run).", ["model", "version", "signature"],
                               registry=self.registry)
        self.load_events = Counter("lamina_model_load_events", "Model version load events.",
                                   ["model", "version", "event"], registry=self.registry)
        self.available = Gauge("lamina_model_versions_available", "Versions serving, per model.", ["model"],
                               registry=self.registry)

    def observe_request(self, model: str, version, method: str, api: str, status: str, seconds: float) -> None:
        labels = (model or "", "" if version is None else str(version), method, api, status)
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def observe_batch(self, model: str, version: int, signature: str, rows: int) -> None:
        self.batch_size.labels(model, str(version), signature).observe(rows)

    def observe_expired(self, model: str, version: int, signature: str) -> None:
        self.expired.labels(model, str(version), signature).inc()

    def load_event(self, event: str, model: str, version: int) -> None:
        self.load_events.labels(model, str(version), event).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
