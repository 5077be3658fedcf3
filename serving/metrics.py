"""Prometheus metrics for the server, on the REST port at TF Serving's path.

  lamina_requests_total{model,version,method,api,status}            counter
  lamina_request_latency_seconds{model,version,method,api,status}   histogram
  lamina_batch_size{model,version,signature}                        histogram of rows per model call
  lamina_model_load_events_total{model,version,event}               loaded | failed | unloading | unloaded
  lamina_model_versions_available{model}                            gauge

`model` and `version` are empty when a request names nothing that exists (NOT_FOUND).

Beside them, TF Serving's own series under its own names, so dashboards and alerts written for
`tensorflow_model_server` carry over (`TFServingMetrics`; times in microseconds, its buckets):

  :tensorflow:serving:request_count{model_name,status}                  counter
  :tensorflow:serving:request_latency{model_name,API,entrypoint}         histogram (GRPC | REST)
  :tensorflow:serving:runtime_latency{model_name,API,runtime}            histogram of the model call
  :tensorflow:serving:request_example_counts{model}                      histogram of examples per request
  :tensorflow:serving:request_example_count_total{model}                 counter
  :tensorflow:serving:model_warmup_latency{model_path,status}            histogram
  :tensorflow:serving:batching_session:queuing_latency{thread_pool_name} histogram
  :tensorflow:serving:batching_session:input_batch_size{thread_pool_name}, processed_batch_size,
    padding_size                                                         histograms
  :tensorflow:serving:batching_session:wrapped_run_count                 counter

The `*_created` series prometheus_client adds to the lamina_* counters are left out of this
server's page only; the process-wide setting stays the host application's.
"""

import threading
from typing import Dict, List, Sequence, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def exponential_buckets(scale: float, growth: float, count: int) -> Tuple[float, ...]:
    """TF's monitoring::Buckets::Exponential: scale * growth**i for i < count (then +Inf)."""
    return tuple(scale * growth ** i for i in range(count))


TF_PREFIX = ":tensorflow:serving:"
LATENCY_US_BUCKETS = exponential_buckets(10, 1.8, 33)  # 10 us .. ~20 min, as TF Serving
QUEUING_US_BUCKETS = exponential_buckets(100, 1.2, 52)
EXAMPLE_BUCKETS = exponential_buckets(1, 2, 15)
# TF Serving's API label, by method.
API_NAMES = {"Predict": "predict", "Classify": "classify", "Regress": "regress", "MultiInference": "multi_inference",
             "GetModelMetadata": "get_model_metadata"}


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    def esc(v):
        return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return ",".join(f'{n}="{esc(v)}"' for n, v in zip(names, values))


class _Family:
    """One TF Serving metric: a counter (`buckets` None) or a histogram, rendered in Prometheus text."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str], buckets=None):
        self.name, self.help, self.labels, self.buckets = TF_PREFIX + name, help_text, tuple(labels), buckets
        self.cells: Dict[Tuple[str, ...], list] = {}

    def add(self, values: Tuple[str, ...], amount: float) -> None:
        if self.buckets is None:
            cell = self.cells.setdefault(values, [0.0])
            cell[0] += amount
            return
        cell = self.cells.setdefault(values, [[0] * (len(self.buckets) + 1), 0.0, 0])
        index = next((i for i, b in enumerate(self.buckets) if amount <= b), len(self.buckets))
        cell[0][index] += 1
        cell[1] += amount
        cell[2] += 1

    def render(self) -> List[str]:
        kind = "counter" if self.buckets is None else "histogram"
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {kind}"]
        for values, cell in sorted(self.cells.items()):
            labels = _labels(self.labels, values)
            if self.buckets is None:
                lines.append(f"{self.name}{{{labels}}} {cell[0]:g}" if labels else f"{self.name} {cell[0]:g}")
                continue
            sep = "," if labels else ""
            running = 0
            for bound, n in zip(list(self.buckets) + [float("inf")], cell[0]):
                running += n
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                lines.append(f'{self.name}_bucket{{{labels}{sep}le="{le}"}} {running}')
            lines.append(f"{self.name}_sum{{{labels}}} {cell[1]:g}" if labels else f"{self.name}_sum {cell[1]:g}")
            lines.append(f"{self.name}_count{{{labels}}} {cell[2]}" if labels else f"{self.name}_count {cell[2]}")
        return lines


class TFServingMetrics:
    """TF Serving's metric names and labels, kept by the server beside the lamina_* ones."""

    def __init__(self):
        self._lock = threading.Lock()
        self.request_count = _Family("request_count", "The total number of requests.", ["model_name", "status"])
        self.request_latency = _Family("request_latency", "Distribution of wall time (in microseconds) for "
                                       "Tensorflow Serving request.", ["model_name", "API", "entrypoint"],
                                       LATENCY_US_BUCKETS)
        self.runtime_latency = _Family("runtime_latency", "Distribution of wall time (in microseconds) for "
                                       "Tensorflow runtime.", ["model_name", "API", "runtime"], LATENCY_US_BUCKETS)
        self.example_counts = _Family("request_example_counts", "The number of tensorflow.Examples per request.",
                                      ["model"], EXAMPLE_BUCKETS)
        self.example_count_total = _Family("request_example_count_total", "The total number of tensorflow.Examples.",
                                           ["model"])
        self.warmup_latency = _Family("model_warmup_latency", "Distribution of wall time (in microseconds) for "
                                      "warming up the model.", ["model_path", "status"], LATENCY_US_BUCKETS)
        self.queuing_latency = _Family("batching_session:queuing_latency", "Distribution of wall time spent (in "
                                       "microseconds) in queuing", ["thread_pool_name"], QUEUING_US_BUCKETS)
        self.input_batch_size = _Family("batching_session:input_batch_size", "Tracks the batch size distribution on "
                                        "the inputs.", ["thread_pool_name"], EXAMPLE_BUCKETS)
        self.processed_batch_size = _Family("batching_session:processed_batch_size", "Tracks the batch size "
                                            "distribution on processing.", ["thread_pool_name"], EXAMPLE_BUCKETS)
        self.padding_size = _Family("batching_session:padding_size", "Tracks the padding size distribution on "
                                    "batches.", ["thread_pool_name"], EXAMPLE_BUCKETS)
        self.wrapped_run_count = _Family("batching_session:wrapped_run_count", "Total count of run calls on the "
                                         "wrapped session", [])
        self.families = [self.request_count, self.request_latency, self.runtime_latency, self.example_counts,
                         self.example_count_total, self.warmup_latency, self.queuing_latency, self.input_batch_size,
                         self.processed_batch_size, self.padding_size, self.wrapped_run_count]

    def add(self, family: _Family, values: Tuple[str, ...], amount: float) -> None:
        with self._lock:
            family.add(values, amount)

    def render(self) -> str:
        with self._lock:
            return "\n".join(line for f in self.families if f.cells for line in f.render()) + "\n"


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
        self.tf = TFServingMetrics()

    def observe_request(self, model: str, version, method: str, api: str, status: str, seconds: float) -> None:
        labels = (model or "", "" if version is None else str(version), method, api, status)
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)
        self.tf.add(self.tf.request_count, (model or "", status), 1)
        self.tf.add(self.tf.request_latency, (model or "", API_NAMES.get(method, method), api.upper()), seconds * 1e6)

    def observe_runtime(self, model: str, method: str, seconds: float) -> None:
        """The model call alone (one merged call counts for each request in it)."""
        self.tf.add(self.tf.runtime_latency, (model, API_NAMES.get(method, method), "TF2"), seconds * 1e6)

    def observe_examples(self, model: str, count: int) -> None:
        """tf.Examples in one Classify, Regress or MultiInference request."""
        self.tf.add(self.tf.example_counts, (model,), count)
        self.tf.add(self.tf.example_count_total, (model,), count)

    def observe_warmup(self, model_path: str, ok: bool, seconds: float) -> None:
        self.tf.add(self.tf.warmup_latency, (model_path, "OK" if ok else "ERROR"), seconds * 1e6)

    def observe_queue(self, pool: str, waited_seconds: Sequence[float], input_rows: Sequence[int], processed: int,
                      padding: int) -> None:
        """One merged model call: each request's wait and size, the rows run and the padding rows among them."""
        for waited, rows in zip(waited_seconds, input_rows):
            self.tf.add(self.tf.queuing_latency, (pool,), waited * 1e6)
            self.tf.add(self.tf.input_batch_size, (pool,), rows)
        self.tf.add(self.tf.processed_batch_size, (pool,), processed)
        self.tf.add(self.tf.padding_size, (pool,), padding)
        self.tf.add(self.tf.wrapped_run_count, (), 1)

    def observe_batch(self, model: str, version: int, signature: str, rows: int) -> None:
        self.batch_size.labels(model, str(version), signature).observe(rows)

    def observe_expired(self, model: str, version: int, signature: str) -> None:
        self.expired.labels(model, str(version), signature).inc()

    def load_event(self, event: str, model: str, version: int) -> None:
        self.load_events.labels(model, str(version), event).inc()

    def render(self) -> bytes:
        own = [line for line in generate_latest(self.registry).decode().splitlines()
               if not line.split("{")[0].split(" ")[0].endswith("_created")
               and not (line.startswith("# ") and line.split(" ")[2].endswith("_created"))]
        return ("\n".join(own) + "\n" + self.tf.render()).encode()
