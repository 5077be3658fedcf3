"""Server-side batching: concurrent requests to one signature merged into one model call.

The parameters are TF Serving's (`--enable_batching` with a `batching.config`):
`max_batch_size` rows per call, `batch_timeout_micros` that the first request of a batch
waits for others, `num_batch_threads` calls running at once and `max_enqueued_batches`
before new requests are refused with UNAVAILABLE. Requests are merged only with requests
to the same loaded version and signature whose tensors have the same dtypes and inner
shapes; the outputs are split back by row. A merged call that fails is re-run request by
request, so one bad request never fails its neighbours. A request whose deadline passes
while it waits is answered DEADLINE_EXCEEDED without running.

Example:
    >>> batcher = Batcher(BatchingParameters(max_batch_size=32)).start()
    >>> outputs = batcher.run(fn, {"inputs": tensor}, key=(model, "serving_default"))
"""

import collections
import dataclasses
import threading
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf

from lamina import storage
from lamina.serving.protocol import ServingError


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 4
    max_enqueued_batches: int = 100

    def __post_init__(self):
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"batching: {name} must be at least 1, got {getattr(self, name)}.")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batching: batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}.")


USED_FIELDS = ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches")
# Other BatchingParameters fields TF Serving knows; accepted here and not acted on.
KNOWN_FIELDS = USED_FIELDS + ("thread_pool_name", "allowed_batch_sizes", "pad_variable_length_inputs",
                              "enable_large_batch_splitting", "max_execution_batch_size")


def read_batching_config(path: str) -> BatchingParameters:
    """TF Serving's batching.config: BatchingParameters in text format (`max_batch_size { value: 32 }`).

    tensorflow-serving-api does not ship that proto, so the file is read field by field; an
    unknown field is an error naming the known ones.
    """
    import re

    try:
        text = storage.read_text(path)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the batching config: {e.strerror}.") from None
    values = {}
    body = re.sub(r"#[^\n]*", "", text)
    for match in re.finditer(r"(\w+)\s*:?\s*\{\s*value\s*:\s*([^}\s]+)\s*\}|(\w+)\s*:\s*(\S+)|(\S+)", body):
        name = match.group(1) or match.group(3)
        value = match.group(2) or match.group(4)
        if name is None:
            raise ValueError(f"{path}: cannot read {match.group(5)!r}; fields look like 'max_batch_size "
                             "{ value: 32 }'.")
        if name not in KNOWN_FIELDS:
            raise ValueError(f"{path}: unknown field {name!r}; known: {', '.join(KNOWN_FIELDS)}.")
        if name in USED_FIELDS:
            try:
                values[name] = int(value)
            except ValueError:
                raise ValueError(f"{path}: {name} must be an integer, got {value!r}.") from None
    return BatchingParameters(**values)


class _Task:
    __slots__ = ("key", "fn", "tensors", "rows", "deadline", "enqueued", "done", "outputs", "error")

    def __init__(self, key, fn, tensors: Dict[str, tf.Tensor], rows: int, deadline: Optional[float]):
        self.key, self.fn, self.tensors, self.rows, self.deadline = key, fn, tensors, rows, deadline
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.outputs: Optional[Dict[str, np.ndarray]] = None
        self.error: Optional[BaseException] = None


def _batch_key(key, tensors: Dict[str, tf.Tensor]):
    return (key, tuple((k, t.dtype, tuple(t.shape[1:])) for k, t in sorted(tensors.items())))


class Batcher:
    """Queues per (version, signature, input shapes); `num_batch_threads` workers run merged calls.

    `call(fn, tensors)` runs the model and returns numpy outputs; `on_batch(key, rows)`
    hears every model call's size, and `on_expire(key)` every request dropped because its
    deadline passed in the queue (both for the metrics).
    """

    def __init__(self, params: BatchingParameters, call: Callable = None,
                 on_batch: Optional[Callable[[object, int], None]] = None,
                 on_expire: Optional[Callable[[object], None]] = None):
        self.params = params
        self.call = call or (lambda fn, tensors: {k: v.numpy() for k, v in fn(**tensors).items()})
        self.on_batch = on_batch
        self.on_expire = on_expire
        self._queues: Dict[object, collections.deque] = {}
        self._cv = threading.Condition()
        self._stopping = False
        self._threads: List[threading.Thread] = []

    def start(self) -> "Batcher":
        for i in range(self.params.num_batch_threads):
            t = threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        """Runs what is queued, then stops the workers."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=30)

    def run(self, fn, tensors: Dict[str, tf.Tensor], key, deadline: Optional[float] = None) -> Dict[str, np.ndarray]:
        rows = {int(t.shape[0]) for t in tensors.values() if t.shape.rank}
        if len(rows) != 1 or any(t.shape.rank == 0 for t in tensors.values()):
            return self._call_one(key, fn, tensors)
        task = _Task(key, fn, tensors, rows.pop(), deadline)
        if task.rows == 0 or task.rows > self.params.max_batch_size:
            return self._call_one(key, fn, tensors)
        bkey = _batch_key(key, tensors)
        with self._cv:
            if self._stopping:
                raise ServingError("UNAVAILABLE", "The server is shutting down.")
            queue = self._queues.setdefault(bkey, collections.deque())
            if len(queue) >= self.params.max_enqueued_batches * self.params.max_batch_size:
                raise ServingError("UNAVAILABLE", f"The batch queue is full ({len(queue)} requests waiting); "
                                                  "retry later.")
            queue.append(task)
            self._cv.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs

    def _call_one(self, key, fn, tensors):
        outputs = self.call(fn, tensors)
        if self.on_batch:
            rows = {int(t.shape[0]) for t in tensors.values() if t.shape.rank}
            self.on_batch(key, rows.pop() if len(rows) == 1 else 1)
        return outputs

    # -- workers ---------------------------------------------------------------------------

    def _next_batch(self) -> Optional[List[_Task]]:
        timeout = self.params.batch_timeout_micros / 1e6
        limit = self.params.max_batch_size
        with self._cv:
            while True:
                ready = [(q[0].enqueued, k) for k, q in self._queues.items() if q]
                if ready:
                    break
                if self._stopping:
                    return None
                self._cv.wait()
            bkey = min(ready, key=lambda r: r[0])[1]
            queue = self._queues[bkey]
            batch = [queue.popleft()]
            rows = batch[0].rows
            close_at = batch[0].enqueued + timeout
            while rows < limit:
                while queue and rows + queue[0].rows <= limit:
                    task = queue.popleft()
                    batch.append(task)
                    rows += task.rows
                if rows >= limit or queue or self._stopping:
                    break  # full, or the next request does not fit
                remaining = close_at - time.monotonic()
                if remaining <= 0:
                    break
                self._cv.wait(remaining)
            if not queue and self._queues.get(bkey) is queue:  # another worker may have made a new one
                del self._queues[bkey]
            return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            now = time.monotonic()
            live = []
            for task in batch:
                if task.deadline is not None and now > task.deadline:
                    task.error = ServingError("DEADLINE_EXCEEDED", "The request's deadline passed while it waited "
                                                                   "for a batch; it was not run.")
                    task.done.set()
                    if self.on_expire:
                        self.on_expire(task.key)
                else:
                    live.append(task)
            if live:
                try:
                    self._run_batch(live)
                except BaseException as e:  # never leave a caller waiting on a dead worker
                    for task in live:
                        if not task.done.is_set():
                            task.error = e
                            task.done.set()

    def _run_batch(self, batch: List[_Task]) -> None:
        key = batch[0].key
        if len(batch) == 1:
            self._finish_alone(batch[0])
            return
        try:
            merged = {k: tf.concat([t.tensors[k] for t in batch], axis=0) for k in batch[0].tensors}
            total = sum(t.rows for t in batch)
            outputs = self.call(batch[0].fn, merged)
            if any(np.ndim(v) == 0 or np.shape(v)[0] != total for v in outputs.values()):
                raise ValueError("an output is not one row per input row")
        except Exception:  # one bad request, or outputs that do not split: each request alone
            for task in batch:
                self._finish_alone(task)
            return
        if self.on_batch:
            self.on_batch(key, total)
        start = 0
        for task in batch:
            task.outputs = {k: v[start:start + task.rows] for k, v in outputs.items()}
            start += task.rows
            task.done.set()

    def _finish_alone(self, task: _Task) -> None:
        try:
            task.outputs = self.call(task.fn, task.tensors)
            if self.on_batch:
                self.on_batch(task.key, task.rows)
        except BaseException as e:  # the caller's thread re-raises it
            task.error = e
        task.done.set()
