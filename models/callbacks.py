"""The Trainer's Keras callbacks, shared by `fit` and Lamina's own loop (models.distributed)."""

import sys
import time
from typing import Optional

import keras


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch: number, duration and every metric; and, in an epoch that takes longer
    than `lamina.progress.PROGRESS_SECONDS`, a line with the steps done, their rate and an ETA
    (the step count is known from the dataset, or from the first epoch)."""

    def __init__(self, epochs: int, stream=None):
        from lamina.progress import Progress

        super().__init__()
        self.epochs = epochs
        self.stream = stream  # None: sys.stdout at print time (TFX and pytest swap it)
        self._start = 0.0
        self._steps: Optional[int] = None
        self._step = 0
        self._progress = Progress("epoch", unit="steps", stream=stream, indent="      ")

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._step = 0
        self._progress.what = f"epoch {epoch + 1}/{self.epochs}"
        self._progress.restart(self.params.get("steps") or self._steps)

    def on_train_batch_end(self, batch, logs=None):
        self._step = batch + 1
        self._progress.update(self._step)

    def on_epoch_end(self, epoch, logs=None):
        self._steps = self._steps or self._step or None
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()) if isinstance(v, (int, float)))
        print(f"    epoch {epoch + 1:>3}/{self.epochs}  {time.perf_counter() - self._start:5.2f}s  {metrics}",
              file=self.stream or sys.stdout, flush=True)


class EarlyStoppingFromStart(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping whose first "best" is the model before training: `start`, the monitored value then.
    An epoch must beat the start to be kept, and when none does the starting weights come back. For a network
    that starts as a fitted model (`model.head.linear_start`), so the fit never ends worse on the eval split."""

    def __init__(self, start: float, **kwargs):
        super().__init__(**kwargs)
        self.start = float(start)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.best = self.start
        self.best_weights = self.model.get_weights()
        self.best_epoch = -1  # printed as "epoch 0": the start

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if self.best_epoch < 0:
            print(f"      no epoch beat the start's {self.monitor} {self.start:.4f}: the starting weights are kept",
                  flush=True)


def early_stopping(spec, start: Optional[float] = None) -> list:
    """`training.early_stopping` as Keras' callback (best weights restored), or nothing.

    `start`: the monitored value before training, which an epoch must then beat (`EarlyStoppingFromStart`)."""
    es = spec.training.early_stopping
    if not es:
        return []
    kwargs = dict(monitor=es.monitor, patience=es.patience, min_delta=es.min_delta, restore_best_weights=True)
    return [EarlyStoppingFromStart(start, **kwargs) if start is not None else keras.callbacks.EarlyStopping(**kwargs)]
