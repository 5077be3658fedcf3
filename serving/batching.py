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
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from lamina import storage
from lamina.serving.protocol import ServingError


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's BatchingParameters; every field is acted on, or refused where it cannot be.

    `max_batch_size`: the most rows one request may bring, and the most rows one model call runs
    unless `enable_large_batch_splitting` is on; then a request of up to `max_batch_size` rows is
    split into pieces of at most `max_execution_batch_size` (default: `max_batch_size`) rows, run
    in as many calls, and its answer put back together. Without splitting, a larger request is
    refused with INVALID_ARGUMENT, as TF Serving refuses it.
    `allowed_batch_sizes`: increasing sizes ending at the largest call; a call is padded (with
    copies of its first row, answers dropped) up to the next allowed size, so a model compiled
    for fixed shapes sees only those.
    `max_enqueued_batches`: the batches waiting per signature; a request that would need one more
    is refused with UNAVAILABLE.
    `thread_pool_name`: names the batch threads and the batching metrics' thread_pool_name label.
    `pad_variable_length_inputs` is refused: requests merge only when their inner shapes agree.
    """

    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 4
    max_enqueued_batches: int = 100
    allowed_batch_sizes: Tuple[int, ...] = ()
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: Optional[int] = None
    thread_pool_name: str = "batch_threads"

    def __post_init__(self):
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"batching: {name} must be at least 1, got {getattr(self, name)}.")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batching: batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}.")
        if self.max_execution_batch_size is not None:
            if not self.enable_large_batch_splitting:
                raise ValueError("batching: max_execution_batch_size applies only with enable_large_batch_splitting "
                                 "true.")
            if not 1 <= self.max_execution_batch_size <= self.max_batch_size:
                raise ValueError(f"batching: max_execution_batch_size must be between 1 and max_batch_size "
                                 f"({self.max_batch_size}), got {self.max_execution_batch_size}.")
        sizes = list(self.allowed_batch_sizes)
        if sizes:
            if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
                raise ValueError(f"batching: allowed_batch_sizes must be positive and strictly increasing, got "
                                 f"{sizes}.")
            if sizes[-1] != self.execution_batch_size:
                what = "max_execution_batch_size" if self.enable_large_batch_splitting else "max_batch_size"
                raise ValueError(f"batching: the last of allowed_batch_sizes ({sizes[-1]}) must equal {what} "
                                 f"({self.execution_batch_size}).")

    @property
    def execution_batch_size(self) -> int:
        """The most rows one model call runs."""
        return self.max_execution_batch_size or self.max_batch_size

    def padded_size(self, rows: int) -> int:
        """The allowed batch size a call of `rows` rows is padded to (`rows` when none are set)."""
        return next((b for b in self.allowed_batch_sizes if b >= rows), rows)


INT_FIELDS = ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches",
              "max_execution_batch_size")
BOOL_FIELDS = ("enable_large_batch_splitting",)
REFUSED_FIELDS = {"pad_variable_length_inputs": "Lamina merges only requests whose inner shapes agree, so "
                                                "there is nothing to pad; remove it (or set it false)"}
KNOWN_FIELDS = INT_FIELDS + BOOL_FIELDS + ("allowed_batch_sizes", "thread_pool_name") + tuple(REFUSED_FIELDS)


def read_batching_config(path: str) -> BatchingParameters:
    """TF Serving's batching.config: BatchingParameters in text format (`max_batch_size { value: 32 }`).

    tensorflow-serving-api does not ship that proto, so the file is read field by field; an
    unknown field is an error naming the known ones, and so is a field Lamina cannot honour.
    """
    import re

    try:
        text = storage.read_text(path)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the batching config: {e.strerror}.") from None
    values: Dict[str, object] = {}
    body = re.sub(r"#[^\n]*", "", text)
    for match in re.finditer(r"(\w+)\s*:?\s*\{\s*value\s*:\s*([^}\s]+)\s*\}|(\w+)\s*:\s*(\S+)|(\S+)", body):
        name = match.group(1) or match.group(3)
        value = (match.group(2) or match.group(4) or "").strip('"\'')
        if name is None:
            raise ValueError(f"{path}: cannot read {match.group(5)!r}; fields look like 'max_batch_size "
                             "{ value: 32 }'.")
        if name not in KNOWN_FIELDS:
            raise ValueError(f"{path}: unknown field {name!r}; known: {', '.join(KNOWN_FIELDS)}.")
        if name in REFUSED_FIELDS:
            if value.lower() in ("true", "1"):
                raise ValueError(f"{path}: {name} is not supported: {REFUSED_FIELDS[name]}.")
        elif name in INT_FIELDS:
            try:
                values[name] = int(value)
            except ValueError:
                raise ValueError(f"{path}: {name} must be an integer, got {value!r}.") from None
        elif name in BOOL_FIELDS:
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{path}: {name} must be true or false, got {value!r}.")
            values[name] = value.lower() == "true"
        elif name == "allowed_batch_sizes":
            try:
                values[name] = tuple(values.get(name, ())) + (int(value),)  # a repeated field: one line each
            except ValueError:
                raise ValueError(f"{path}: allowed_batch_sizes must be integers, got {value!r}.") from None
        else:
            values[name] = value
    try:
        return BatchingParameters(**values)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


class _Task:
    __slots__ = ("key", "fn", "tensors", "rows", "deadline", "enqueued", "done", "outputs", "error", "api")

    def __init__(self, key, fn, tensors: Dict[str, tf.Tensor], rows: int, deadline: Optional[float],
                 api: str = "Predict"):
        self.key, self.fn, self.tensors, self.rows, self.deadline = key, fn, tensors, rows, deadline
        self.api = api
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.outputs: Optional[Dict[str, np.ndarray]] = None
        self.error: Optional[BaseException] = None


@dataclasses.dataclass(frozen=True)
class BatchCall:
    """One model call the batcher made, for the metrics."""

    key: object
    apis: Tuple[str, ...]  # the API of each request (or piece of one) in the call
    waited: Tuple[float, ...]  # seconds each waited in the queue
    rows: Tuple[int, ...]  # rows each brought
    processed: int  # rows the model ran, padding included
    padding: int
    seconds: float  # the model call


def _batch_key(key, tensors: Dict[str, tf.Tensor]):
    return (key, tuple((k, t.dtype, tuple(t.shape[1:])) for k, t in sorted(tensors.items())))


def _pad(tensors: Dict[str, tf.Tensor], rows: int, padded: int) -> Dict[str, tf.Tensor]:
    """Each tensor with copies of its first row appended, up to `padded` rows."""
    if padded <= rows:
        return tensors
    return {k: tf.concat([t, tf.repeat(t[:1], padded - rows, axis=0)], axis=0) for k, t in tensors.items()}


class Batcher:
    """Queues per (version, signature, input shapes); `num_batch_threads` workers run merged calls.

    `call(fn, tensors)` runs the model and returns numpy outputs; `on_batch(key, rows)`
    hears every model call's size, `on_call(BatchCall)` every merged call's details, and
    `on_expire(key)` every request dropped because its deadline passed in the queue (all for
    the metrics).
    """

    def __init__(self, params: BatchingParameters, call: Callable = None,
                 on_batch: Optional[Callable[[object, int], None]] = None,
                 on_expire: Optional[Callable[[object], None]] = None,
                 on_call: Optional[Callable[[BatchCall], None]] = None):
        self.params = params
        self.call = call or (lambda fn, tensors: {k: v.numpy() for k, v in fn(**tensors).items()})
        self.on_batch = on_batch
        self.on_expire = on_expire
        self.on_call = on_call
        self._queues: Dict[object, collections.deque] = {}
        self._queued_rows: Dict[object, int] = {}
        self._cv = threading.Condition()
        self._stopping = False
        self._threads: List[threading.Thread] = []

    def start(self) -> "Batcher":
        for i in range(self.params.num_batch_threads):
            t = threading.Thread(target=self._work, name=f"{self.params.thread_pool_name}-{i}", daemon=True)
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

    def queued_rows(self) -> int:
        """Rows waiting in the queues now, over every signature (what max_enqueued_batches bounds)."""
        with self._cv:
            return sum(self._queued_rows.values())

    def wait_for_queued(self, rows: int, timeout: float) -> bool:
        """Blocks until at least `rows` rows wait in the queues; False when `timeout` seconds pass first."""
        with self._cv:
            return self._cv.wait_for(lambda: sum(self._queued_rows.values()) >= rows, timeout)

    def run(self, fn, tensors: Dict[str, tf.Tensor], key, deadline: Optional[float] = None,
            api: str = "Predict") -> Dict[str, np.ndarray]:
        rows = {int(t.shape[0]) for t in tensors.values() if t.shape.rank}
        if len(rows) != 1 or any(t.shape.rank == 0 for t in tensors.values()):
            return self._call_one(key, fn, tensors)
        count = rows.pop()
        if count == 0:
            return self._call_one(key, fn, tensors)
        if count > self.params.max_batch_size:
            raise ServingError("INVALID_ARGUMENT", f"Task size {count} is larger than maximum input batch size "
                                                   f"{self.params.max_batch_size}.")
        size = self.params.execution_batch_size
        pieces = [_Task(key, fn, {k: t[i:i + size] for k, t in tensors.items()}, min(size, count - i), deadline, api)
                  for i in range(0, count, size)] if count > size else [_Task(key, fn, tensors, count, deadline, api)]
        bkey = _batch_key(key, tensors)
        with self._cv:
            if self._stopping:
                raise ServingError("UNAVAILABLE", "The server is shutting down.")
            queue = self._queues.setdefault(bkey, collections.deque())
            queued = self._queued_rows.get(bkey, 0)
            batches = -(-(queued + count) // size)  # the batches the queue would hold, counted as TF Serving does
            if batches > self.params.max_enqueued_batches:
                raise ServingError("UNAVAILABLE", f"The batch queue is full ({-(-queued // size)} batches of "
                                                  f"{self.params.max_enqueued_batches} waiting); retry later.")
            queue.extend(pieces)
            self._queued_rows[bkey] = queued + count
            self._cv.notify_all()
        for piece in pieces:
            piece.done.wait()
        for piece in pieces:
            if piece.error is not None:
                raise piece.error
        if len(pieces) == 1:
            return pieces[0].outputs
        return {k: np.concatenate([p.outputs[k] for p in pieces], axis=0) for k in pieces[0].outputs}

    def _call_one(self, key, fn, tensors):
        outputs = self.call(fn, tensors)
        if self.on_batch:
            rows = {int(t.shape[0]) for t in tensors.values() if t.shape.rank}
            self.on_batch(key, rows.pop() if len(rows) == 1 else 1)
        return outputs

    # -- workers ---------------------------------------------------------------------------

    def _next_batch(self) -> Optional[List[_Task]]:
        timeout = self.params.batch_timeout_micros / 1e6
        limit = self.params.execution_batch_size
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
            self._queued_rows[bkey] = self._queued_rows.get(bkey, 0) - rows
            if not queue and self._queues.get(bkey) is queue:  # another worker may have made a new one
                del self._queues[bkey]
                self._queued_rows.pop(bkey, None)
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
                    self._run_batch(live, now)
                except BaseException as e:  # never leave a caller waiting on a dead worker
                    for task in live:
                        if not task.done.is_set():
                            task.error = e
                            task.done.set()

    def _run_batch(self, batch: List[_Task], started: float) -> None:
        try:
            self._run_merged(batch, started)
        except Exception as e:  # one bad request, or outputs that do not split: each request alone
            if len(batch) == 1:
                batch[0].error = e
                batch[0].done.set()
                return
            for task in batch:
                try:
                    self._run_merged([task], started)
                except Exception as e:  # pylint: disable=broad-except  # the caller's thread re-raises it
                    task.error = e
                    task.done.set()

    def _run_merged(self, batch: List[_Task], started: float) -> None:
        total = sum(t.rows for t in batch)
        padded = self.params.padded_size(total)
        if len(batch) == 1:
            merged = batch[0].tensors
        else:
            merged = {k: tf.concat([t.tensors[k] for t in batch], axis=0) for k in batch[0].tensors}
        merged = _pad(merged, total, padded)
        call_started = time.monotonic()
        outputs = self.call(batch[0].fn, merged)
        seconds = time.monotonic() - call_started
        if any(np.ndim(v) == 0 or np.shape(v)[0] != padded for v in outputs.values()):
            if len(batch) > 1 or padded != total:
                raise ValueError("an output is not one row per input row")
            for task in batch:  # a single request's outputs go back as they are
                task.outputs = outputs
        else:
            start = 0
            for task in batch:
                task.outputs = {k: v[start:start + task.rows] for k, v in outputs.items()}
                start += task.rows
        if self.on_batch:
            self.on_batch(batch[0].key, total)
        if self.on_call:
            self.on_call(BatchCall(batch[0].key, tuple(t.api for t in batch),
                                   tuple(started - t.enqueued for t in batch), tuple(t.rows for t in batch),
                                   padded, padded - total, seconds))
        for task in batch:
            task.done.set()
