"""What a Trainer run writes for TensorBoard, read back from the event files."""

import glob
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from lamina.models.tensorboard import NetworkHistograms, histogram_layers, logged_epochs, write_hparams  # noqa: E402


def _events(folder):
    """{run folder relative to `folder`: {tag: [steps]}} of every event file under `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for path in glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"), recursive=True):
        acc = EventAccumulator(os.path.dirname(path), size_guidance={"tensors": 0})
        acc.Reload()
        run = os.path.relpath(os.path.dirname(path), folder)
        out[run] = {tag: [e.step for e in acc.Tensors(tag)] for tag in acc.Tags()["tensors"]}
    return out


def test_logged_epochs_keep_the_first_and_last():
    assert logged_epochs(20, 4) == [0, 6, 13, 19]
    assert logged_epochs(3, 10) == [0, 1, 2]
    assert logged_epochs(7, 1) == [6]


def test_histograms_are_bounded_in_layers_and_epochs(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,))] + [keras.layers.Dense(8, activation="relu") for _ in range(6)]
                             + [keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.01, 4, 0.5)),
                  loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    assert len(histogram_layers(model, 3)) == 3 and len(histogram_layers(model, 100)) == 7
    callback = NetworkHistograms(str(tmp_path), total_epochs=6, max_layers=3, histogram_epochs=3, sample=(x[:16], y[:16]))
    model.fit(x, y, batch_size=16, epochs=6, verbose=0, callbacks=[callback])
    events = _events(str(tmp_path / "network"))["."]
    weights = sorted(t for t in events if t.startswith("weights/"))
    gradients = sorted(t for t in events if t.startswith("gradients/"))
    assert len(weights) == 6 and [t.replace("gradients/", "weights/") for t in gradients] == weights  # kernel, bias
    assert all(events[t] == [1, 3, 6] for t in weights + gradients)  # epochs 1, the middle and 6
    assert events["learning_rate"] == [1, 2, 3, 4, 5, 6]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "network"), size_guidance={"tensors": 0})
    acc.Reload()
    rates = [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("learning_rate")]
    np.testing.assert_allclose(rates, [0.01 * 0.5 ** (4 * e / 4) for e in range(1, 7)], rtol=1e-5)


def test_hparams_hold_every_trial_and_its_curve(tmp_path):
    summary = {"objective": "val_accuracy", "direction": "max", "trials": [
        {"trial": 0, "values": {"learning_rate": 0.01, "width": 16, "optimizer": "adam"}, "curve": [0.5, 0.7],
         "score": 0.7},
        {"trial": 1, "values": {"learning_rate": 0.001, "width": 32, "optimizer": "sgd"}, "curve": [0.4],
         "score": 0.4}]}
    assert write_hparams(str(tmp_path), summary) == 2
    events = _events(str(tmp_path))
    assert "_hparams_/experiment" in events["."]
    assert events["trial-000"]["val_accuracy"] == [1, 2] and events["trial-001"]["val_accuracy"] == [1]
    assert all("_hparams_/session_start_info" in events[t] for t in ("trial-000", "trial-001"))
