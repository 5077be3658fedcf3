"""Lamina's own training loop, for MultiWorkerMirroredStrategy, where Keras 3's `fit` breaks.

keras-team/keras#20585: `fit` under MultiWorkerMirroredStrategy crashes in Keras 3's
`_maybe_symbolic_build` and `reduce_per_replica`. This loop never reaches them: each step is
`strategy.run` inside a `tf.function`, and Keras 3's optimizer sums the gradients across every
replica of every worker itself.

What it keeps from `fit`, by using the same objects rather than copies of them:
- the phases (models.finetune), the optimizer and its learning-rate schedule (`compile_model`);
- the loss as Keras defines it: the class-weighted sum over the global batch divided by the
  number of examples in it (every replica learns that number from an all-reduce), plus the
  regularization losses once;
- Keras' callbacks: the per-epoch progress lines, EarlyStopping with its best weights restored,
  TensorBoard on the chief, and History, driven through a CallbackList;
- the metrics' definitions: each compiled metric's per-example function, summed across workers.

Every epoch the chief writes a checkpoint (weights, optimizer state, epoch) to storage every
worker reaches; a rerun resumes from it, as Keras' BackupAndRestore does for `fit`.
"""

import hashlib
import io
import json
import os
import sys
from typing import Callable, Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from lamina.models.builder import compile_model
from lamina.models.callbacks import EpochProgress, early_stopping
from lamina.models.finetune import apply_phase, training_phases
from lamina.models.heads import task_loss_and_metrics
from lamina.spec import Spec

CHECKPOINT_PREFIX = "epoch-"
CHECKPOINT_DIR = "checkpoints"  # beside the Trainer's run folders
SUM = tf.distribute.ReduceOp.SUM


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process exports and writes checkpoints: the chief, else worker 0, else the only process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return True
    if "chief" in cluster:  # Vertex AI's worker pools name one
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns when every worker has called it (an all-reduce of one number)."""
    tf.function(lambda: strategy.reduce(SUM, strategy.run(lambda: tf.constant(1.0)), axis=None))()


def checkpoint_dir_for(spec: Spec, transform_output: str, train_files: List[str], run_dir: str) -> str:
    """`training.distribution.checkpoint_dir`, or beside the Trainer's run folders, keyed by what the
    training depends on, so that a rerun of a failed Trainer (a new execution, a new run folder) finds
    the checkpoint of the failed one."""
    if spec.training.distribution.checkpoint_dir:
        return spec.training.distribution.checkpoint_dir
    key = hashlib.sha256(json.dumps([spec.to_json(), transform_output, sorted(train_files)]).encode()).hexdigest()
    return os.path.join(os.path.dirname(run_dir.rstrip("/")), CHECKPOINT_DIR, key[:16])


def per_example_metrics(metrics: list) -> Dict[str, Callable]:
    """name -> per-example function, for the metrics `task_loss_and_metrics` compiles."""
    known = {
        "accuracy": lambda y, p: keras.metrics.sparse_categorical_accuracy(keras.ops.reshape(y, (-1, 1)), p),
        "mae": lambda y, p: keras.losses.mean_absolute_error(keras.ops.reshape(keras.ops.cast(y, p.dtype),
                                                                               keras.ops.shape(p)), p),
    }
    unknown = [m.name for m in metrics if m.name not in known]
    if unknown:
        raise ValueError(f"training.distribution multi_worker: no per-example form of the metric(s) {unknown}; "
                         f"the loop knows {sorted(known)}")
    return {m.name: known[m.name] for m in metrics}


def checkpoint_epoch(path: str) -> int:
    """The epoch a checkpoint file ends: epoch-3.npz -> 3."""
    return int(os.path.basename(path)[len(CHECKPOINT_PREFIX):-len(".npz")])


class Checkpoints:
    """The per-epoch checkpoint of a multi-worker run: the chief writes, every worker reads."""

    def __init__(self, directory: Optional[str], chief: bool):
        self.directory = directory
        self.chief = chief

    def latest(self) -> Optional[str]:
        if not self.directory:
            return None
        paths = tf.io.gfile.glob(os.path.join(self.directory, CHECKPOINT_PREFIX + "*.npz"))
        return max(paths, key=checkpoint_epoch, default=None)

    def save(self, model: keras.Model, optimizer, epoch: int, phase: int) -> None:
        if not (self.directory and self.chief):
            return
        arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        arrays.update({f"o{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)})
        arrays["epoch"], arrays["phase"] = np.int64(epoch), np.int64(phase)
        tf.io.gfile.makedirs(self.directory)
        final = os.path.join(self.directory, f"{CHECKPOINT_PREFIX}{epoch}.npz")
        partial = final + ".partial"
        buffer = io.BytesIO()  # np.savez seeks, which GFile's writers cannot
        np.savez(buffer, **arrays)
        with tf.io.gfile.GFile(partial, "wb") as f:
            f.write(buffer.getvalue())
        tf.io.gfile.rename(partial, final, overwrite=True)  # a reader never sees half a file
        for old in tf.io.gfile.glob(os.path.join(self.directory, CHECKPOINT_PREFIX + "*.npz")):
            if old != final:
                tf.io.gfile.remove(old)

    @staticmethod
    def read(path: str) -> Dict[str, np.ndarray]:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = np.load(io.BytesIO(f.read()))
            return {k: data[k] for k in data.files}


def restore(state: Dict[str, np.ndarray], model: keras.Model, optimizer=None) -> None:
    """A checkpoint's weights into `model`, and its optimizer state into `optimizer` when given."""
    model.set_weights([state[f"w{i}"] for i in range(len(model.get_weights()))])
    for i, v in enumerate(optimizer.variables if optimizer is not None else []):
        v.assign(state[f"o{i}"])


def fit_loop(model: keras.Model, spec: Spec, strategy: tf.distribute.Strategy, train_fn, eval_fn,
             steps_per_epoch: Optional[int] = None, callbacks: Optional[list] = None, stream=None,
             batches_per_epoch: Optional[int] = None, class_weight: Optional[Dict[int, float]] = None,
             checkpoint_dir: Optional[str] = None, from_start: bool = False) -> List[keras.callbacks.History]:
    """Fits `model` (built under `strategy`) phase by phase; returns one History per phase, like `trainer.fit`.

    `train_fn(epoch)`/`eval_fn`: `tf.distribute.InputContext -> dataset` of this worker's share,
    batched per replica (for `strategy.distribute_datasets_from_function`).
    `from_start`: the model before training is a fitted one (`model.head.linear_start`); early stopping must beat
    its score on the eval split, else restores it, as in `trainer.fit`.
    """
    out = stream or sys.stdout
    chief = is_chief(strategy)
    checkpoints = Checkpoints(checkpoint_dir, chief)
    resume = checkpoints.latest()
    state = Checkpoints.read(resume) if resume else None
    done = int(state["epoch"]) if state is not None else 0
    if resume:
        print(f"    resuming from the checkpoint of epoch {done} ({resume})", file=out, flush=True)

    eval_data = strategy.distribute_datasets_from_function(eval_fn)
    phases = training_phases(model, spec)
    total = sum(p.epochs for p in phases)
    progress = EpochProgress(total, stream)
    histories, epoch = [], 0
    for index, phase in enumerate(phases):
        if epoch + phase.epochs <= done:  # this phase ended before the checkpoint
            epoch += phase.epochs
            continue
        with strategy.scope():
            apply_phase(model, spec, phase)
            per_epoch = steps_per_epoch or batches_per_epoch
            compile_model(model, spec, phase.learning_rate,
                          total_steps=phase.epochs * per_epoch if per_epoch else None)
            optimizer = model.optimizer
            optimizer.build(model.trainable_variables)
        if state is not None:  # the optimizer's state only within the phase that saved it
            restore(state, model, optimizer if int(state["phase"]) == index else None)
            state = None
        first = max(epoch, done)
        histories.append(_run_phase(model, spec, strategy, optimizer, train_fn, eval_data, first,
                                    epoch + phase.epochs, total, steps_per_epoch, callbacks, class_weight,
                                    checkpoints, index, progress, from_start))
        epoch += phase.epochs
        if model.stop_training:
            break
    return histories


def _run_phase(model, spec, strategy, optimizer, train_fn, eval_data, first: int, last: int, total: int,
               steps_per_epoch, callbacks, class_weight, checkpoints: Checkpoints, phase: int, progress,
               from_start: bool = False):
    loss_fn = model.loss  # the compiled Loss; `.call` gives its per-example values
    metric_fns = per_example_metrics(task_loss_and_metrics(spec.model.head)[1])
    weights = None
    if class_weight:
        weights = tf.constant([class_weight.get(i, 1.0) for i in range(max(class_weight) + 1)], tf.float32)
    replicas = strategy.num_replicas_in_sync

    def sums(y, pred, per_example, weight):
        out = {"loss": tf.reduce_sum(per_example * weight), "count": tf.cast(tf.shape(per_example)[0], tf.float32)}
        for name, fn in metric_fns.items():
            out[name] = tf.reduce_sum(tf.cast(fn(y, pred), tf.float32))
        return out

    def example_weights(y):
        if weights is None:
            return tf.ones([tf.shape(y)[0]], tf.float32)
        return tf.gather(weights, tf.cast(tf.reshape(y, [-1]), tf.int32))

    def train_replica(x, y):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            per_example = tf.cast(tf.reshape(loss_fn.call(y, pred), [-1]), tf.float32)
            weight = example_weights(y)
            count = context.all_reduce(SUM, tf.cast(tf.shape(per_example)[0], tf.float32))
            loss = tf.reduce_sum(per_example * weight) / tf.maximum(count, 1.0)
            regularization = tf.add_n(model.losses) if model.losses else 0.0
            loss += regularization / replicas  # summed over the replicas' gradients: counted once
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        out = sums(y, pred, per_example, weight)
        out["loss"] += regularization * out["count"]  # as fit logs it: each batch's loss includes it
        return out

    def eval_replica(x, y):
        pred = model(x, training=False)
        per_example = tf.cast(tf.reshape(loss_fn.call(y, pred), [-1]), tf.float32)
        return sums(y, pred, per_example, tf.ones_like(per_example))

    keys = ["loss", "count", *metric_fns]

    @tf.function
    def train_step(batch):  # the sums as one vector: one all-reduce across every worker's replicas
        return strategy.reduce(SUM, strategy.run(lambda x, y: packed(train_replica(x, y)), args=batch), axis=None)

    @tf.function
    def eval_step(batch):
        return strategy.reduce(SUM, strategy.run(lambda x, y: packed(eval_replica(x, y)), args=batch), axis=None)

    def packed(sums_: Dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.stack([sums_[k] for k in keys])

    start = None
    monitor = spec.training.early_stopping.monitor if spec.training.early_stopping else ""
    if from_start and monitor.startswith("val_"):  # the model as it is, scored as every epoch is
        start = _means(dict(zip(keys, _accumulate(eval_step, iter(eval_data))))).get(monitor[len("val_"):])
        if start is not None:
            print(f"    before training: {monitor}={start:.4f}", file=progress.stream, flush=True)
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [progress, *(callbacks or []), *early_stopping(spec, start), history], model=model, epochs=total,
        steps=steps_per_epoch, verbose=0)
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(first, last):
        callback_list.on_epoch_begin(epoch)
        train_data = strategy.distribute_datasets_from_function(train_fn(epoch))
        logs = _means(dict(zip(keys, _accumulate(train_step, iter(train_data), steps_per_epoch, callback_list))))
        evaluated = _means(dict(zip(keys, _accumulate(eval_step, iter(eval_data)))))
        logs.update({f"val_{k}": v for k, v in evaluated.items()})
        callback_list.on_epoch_end(epoch, logs)
        checkpoints.save(model, optimizer, epoch + 1, phase)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return history


def _accumulate(step, iterator, steps: Optional[int] = None, callback_list=None) -> np.ndarray:
    """The sum of `step`'s vectors over the iterator (or its first `steps` batches)."""
    totals = None
    done = 0
    while steps is None or done < steps:
        try:
            batch = next(iterator)
        except StopIteration:
            break
        result = step(batch).numpy().astype(np.float64)
        totals = result if totals is None else totals + result
        done += 1
        if callback_list is not None:
            callback_list.on_train_batch_end(done - 1)
    return totals if totals is not None else np.zeros(0)


def _means(totals: Dict[str, float]) -> Dict[str, float]:
    count = totals.pop("count", 0.0)
    return {k: float(v / count) for k, v in totals.items()} if count else {}
