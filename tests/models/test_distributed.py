"""Training on several devices and several worker processes: real processes on loopback, no GPU.

Every run here trains the penguins model on the shared run's Transform output, through the
launcher the Trainer's run_fn uses: 2 workers (MultiWorkerMirroredStrategy, TF_CONFIG on loopback
ports), one process with 2 logical CPU devices (MirroredStrategy), and 1 worker, each with the
same global batch and seed. Lamina's loop must give the same weights in all three.
"""

import contextlib
import io
import json
import os
import re
import shutil
import signal
import threading

import numpy as np
import pytest
import tensorflow as tf

from lamina.models.cluster import WorkerFailed, tf_config
from lamina.models.launcher import JOB_FILE, WORKERS_DIR, launch_workers
from lamina.models.artifacts import HISTORY_FILE, load_keras_model
from lamina.rows import row_to_example
from tests.helpers import make_spec, read_csv, serving

pytestmark = pytest.mark.e2e

EPOCHS = 6
GLOBAL_BATCH = 16


def run(penguins_run, out, strategy: str, workers: int = 1, stream=None, distribution=None, **training):
    """Trains through `launch_workers` into `out`; returns (serving dir, run dir, the chief's output).

    The run folder is out/../model_run/<out's name>, as TFX gives each Trainer execution a folder of its own
    under one parent."""
    spec, result = penguins_run
    examples = result.examples_dir
    replicas = workers if strategy == "multi_worker" else 2
    changed = make_spec(spec.base_dir, training={
        "epochs": EPOCHS, "batch_size": GLOBAL_BATCH // replicas, "early_stopping": None,
        "distribution": {"strategy": strategy, "workers": workers, **(distribution or {})}, **training})
    stream = stream or io.StringIO()
    run_dir = out.parent / "model_run" / out.name
    launch_workers(changed, result.transform_graph_dir, [os.path.join(examples, "Split-train", "*")],
                   [os.path.join(examples, "Split-eval", "*")], str(out / "serving"), str(run_dir), stream=stream)
    return str(out / "serving"), str(run_dir), stream.getvalue()


@pytest.fixture(scope="module")
def runs(penguins_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    return {name: run(penguins_run, root / name, strategy, workers)
            for name, strategy, workers in (("one", "multi_worker", 1), ("two", "multi_worker", 2),
                                            ("mirrored", "mirrored", 1))}


def weights(serving_dir):
    return load_keras_model(serving_dir).get_weights()


def history(run_dir):
    with open(os.path.join(run_dir, HISTORY_FILE)) as f:
        return json.load(f)["epochs"]


def test_two_workers_and_two_devices_learn_what_one_process_learns(runs):
    one = weights(runs["one"][0])
    for name in ("two", "mirrored"):
        other = weights(runs[name][0])
        assert len(other) == len(one)
        for a, b in zip(one, other):
            np.testing.assert_allclose(a, b, atol=2e-5, err_msg=name)
        for a, b in zip(history(runs["one"][1]), history(runs[name][1])):
            assert a.keys() == b.keys() == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
            np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], atol=2e-5)
    last = history(runs["two"][1])[-1]
    assert last["epoch"] == EPOCHS and last["val_accuracy"] >= 0.95
    # The chief's progress reached the Trainer's log, one line per epoch; TF's C++ notes did not.
    output = runs["two"][2]
    assert "2 worker process(es) on 127.0.0.1" in output
    assert "batch 16 (2 replicas x 8)" in output
    assert len(re.findall(r"^    epoch +\d+/6 ", output, re.M)) == EPOCHS
    assert "MultiDeviceIteratorGetNextFromShard" not in output and "/job:worker" not in output
    # Each worker's whole output stays in its own log.
    assert os.path.getsize(os.path.join(runs["two"][1], WORKERS_DIR, "worker-1.log")) > 0


def test_the_loop_starts_where_fit_on_one_device_starts(runs, penguins_run, tmp_path):
    """The first epoch of Keras' fit on one device (same data order, same seed) gives the loop's numbers."""
    import tensorflow_transform as tft

    from lamina.models.trainer import train

    spec, result = penguins_run
    examples = result.examples_dir
    one_device = make_spec(spec.base_dir, training={"epochs": 1, "batch_size": GLOBAL_BATCH, "early_stopping": None,
                                                   "distribution": {"strategy": "one_device"}})
    train(one_device, tft.TFTransformOutput(result.transform_graph_dir), [os.path.join(examples, "Split-train", "*")],
          [os.path.join(examples, "Split-eval", "*")], str(tmp_path / "serving"), log_dir=str(tmp_path / "run"))
    fit, loop = history(str(tmp_path / "run"))[0], history(runs["two"][1])[0]
    np.testing.assert_allclose([fit[k] for k in sorted(fit)], [loop[k] for k in sorted(loop)], atol=2e-5)


def test_the_two_worker_model_serves_what_it_computes_in_process(runs, penguins_run, tmp_path):
    from lamina.serving.client import PredictionClient

    spec, _ = penguins_run
    push_dir = tmp_path / "push"
    shutil.copytree(runs["two"][0], push_dir / spec.name / "1")
    rows = [r for r in read_csv(spec.resolve(spec.data.path)) if all(r.values())][::9]
    features = [{k: v for k, v in r.items() if k != spec.data.label} for r in rows]
    model = tf.saved_model.load(runs["two"][0])
    dtypes = {k: v.dtype.as_datatype_enum
              for k, v in model.signatures["serving_raw"].structured_input_signature[1].items()}
    batch = tf.constant([row_to_example(f, dtypes).SerializeToString() for f in features])
    in_process = model.signatures["serving_default"](inputs=batch)["scores"].numpy()
    with contextlib.contextmanager(serving)(str(push_dir)) as srv, PredictionClient(srv.target) as client:
        served = client.predict(spec.name, features)
    np.testing.assert_allclose(served["scores"], in_process, rtol=1e-6, atol=1e-7)
    classes = served["classes"].astype(str)
    predicted = classes[np.arange(len(rows)), served["scores"].argmax(axis=1)]
    assert np.mean(predicted == np.array([r[spec.data.label] for r in rows])) >= 0.9


def test_a_dead_worker_stops_the_run_and_a_rerun_resumes_from_its_checkpoint(runs, penguins_run, tmp_path):
    out = tmp_path / "faulty"
    failure = {}
    second_epoch = threading.Event()  # epoch 2's line comes after the chief wrote epoch 1's checkpoint

    class Output(io.StringIO):
        def write(self, text):
            if re.match(r"^    epoch +2/", text):
                second_epoch.set()
            return super().write(text)

    def target():
        try:
            run(penguins_run, out, "multi_worker", 2, stream=Output())
        except WorkerFailed as e:
            failure["error"] = e
        finally:
            second_epoch.set()

    thread = threading.Thread(target=target)
    thread.start()
    assert second_epoch.wait(timeout=300) and thread.is_alive(), failure
    job_file = tmp_path / "model_run" / "faulty" / WORKERS_DIR / JOB_FILE
    folder = json.loads(job_file.read_text())["checkpoint_dir"]
    assert tf.io.gfile.glob(os.path.join(folder, "epoch-*.npz")), "no checkpoint was written"
    pids = json.loads((job_file.parent / "pids.json").read_text())
    os.kill(pids[1], signal.SIGKILL)
    thread.join(timeout=120)
    assert not thread.is_alive()
    message = str(failure["error"])
    match = re.match(rf"training worker 1 of 2 \(pid {pids[1]}\) was killed by SIGKILL; the other workers were "
                     rf"stopped\. The checkpoint of epoch (\d) is in (\S+); run again to resume from it\. Its log: "
                     rf"\S+worker-1\.log", message)
    assert match, message
    epoch = int(match.group(1))
    assert 1 <= epoch < EPOCHS
    for pid in pids:  # none is left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    # The rerun (a new Trainer execution: a new run folder) finds the checkpoint, resumes after its
    # epoch, and ends with the weights of a run that never stopped.
    serving_dir, run_dir, output = run(penguins_run, tmp_path / "rerun", "multi_worker", 2)
    assert f"resuming from the checkpoint of epoch {epoch} " in output
    assert [e["epoch"] for e in history(run_dir)] == list(range(epoch + 1, EPOCHS + 1))
    for a, b in zip(weights(runs["two"][0]), weights(serving_dir)):
        np.testing.assert_allclose(a, b, atol=2e-5)
    assert not os.path.exists(match.group(2))  # a finished run leaves no checkpoint to resume


def test_a_linear_start_on_two_workers_is_the_one_device_start_and_is_kept_when_no_epoch_beats_it(
        penguins_run, tmp_path, capsys):
    """`model.head.linear_start` in Lamina's own loop: each worker fits the linear model, the loop scores the
    start before its first epoch as `fit` does, and early stopping restores it when no epoch beats it (here by
    the min_delta of 1.0 no loss can beat), so the two-worker model equals what `fit` on one device keeps:
    the start itself."""
    import tensorflow_transform as tft

    from lamina.models.trainer import train

    spec, result = penguins_run
    examples = result.examples_dir
    train_files, eval_files = ([os.path.join(examples, f"Split-{s}", "*")] for s in ("train", "eval"))
    model = {**spec.model.model_dump(), "head": {"type": "classification", "linear_start": True}}
    training = {"epochs": EPOCHS, "early_stopping": {"monitor": "val_loss", "patience": 2, "min_delta": 1.0}}
    two = make_spec(spec.base_dir, model=model, training={
        **training, "batch_size": GLOBAL_BATCH // 2, "distribution": {"strategy": "multi_worker", "workers": 2}})
    stream = io.StringIO()
    launch_workers(two, result.transform_graph_dir, train_files, eval_files, str(tmp_path / "two" / "serving"),
                   str(tmp_path / "model_run" / "two"), stream=stream)
    output = stream.getvalue()
    assert "model.head.linear_start: the network starts as the linear model and learns what it misses" in output
    start = float(re.search(r"^    before training: val_loss=(\S+)$", output, re.M).group(1))
    assert "no epoch beat the start's val_loss" in output
    assert len(history(str(tmp_path / "model_run" / "two"))) == 2  # patience 2: stopped after two epochs

    one = make_spec(spec.base_dir, model=model, training={
        **training, "batch_size": GLOBAL_BATCH, "distribution": {"strategy": "one_device"}})
    train(one, tft.TFTransformOutput(result.transform_graph_dir), train_files, eval_files,
          str(tmp_path / "one" / "serving"), log_dir=str(tmp_path / "one" / "run"))
    one_output = capsys.readouterr().out
    assert "no epoch beat the start's val_loss" in one_output
    assert float(re.search(r"^    before training: val_loss=(\S+)$", one_output, re.M).group(1)) == pytest.approx(
        start, abs=1e-4)  # the loop's score of the start is Keras' evaluate
    kept_two, kept_one = (load_keras_model(str(tmp_path / n / "serving")) for n in ("two", "one"))
    linear_two, linear_one = (m.get_layer("linear_start").get_weights() for m in (kept_two, kept_one))
    assert len(linear_two) == len(linear_one) > 0
    for a, b in zip(linear_two, linear_one):  # the same linear model, fitted by each worker and by fit's path
        np.testing.assert_array_equal(a, b)
    for a, b in zip(kept_two.get_weights(), kept_one.get_weights()):  # both kept the start: the same weights
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_mixed_precision_and_a_scaled_learning_rate_on_two_devices(penguins_run, tmp_path):
    serving_dir, run_dir, output = run(penguins_run, tmp_path / "bf16", "mirrored", mixed_precision="on",
                                       distribution={"scale_learning_rate": True})
    assert "learning rate x2 replicas: 0.01 -> 0.02" in output
    assert "batch 16 (2 replicas x 8), 952 parameters, on CPU in mixed_bfloat16" in output
    assert history(run_dir)[-1]["val_accuracy"] >= 0.95
    # Weights stay float32 (Keras keeps the variables in float32 under a mixed policy), and so do the scores.
    assert {w.dtype for w in weights(serving_dir)} == {np.dtype("float32")}
    model = tf.saved_model.load(serving_dir)
    assert model.signatures["serving_default"].structured_outputs["scores"].dtype == tf.float32


def test_tf_config_comes_from_the_pod_index_and_the_hosts():
    env = {"LAMINA_WORKER_HOSTS": "job-0.job:2222,job-1.job:2222", "JOB_COMPLETION_INDEX": "1"}
    assert tf_config(env) == {"cluster": {"worker": ["job-0.job:2222", "job-1.job:2222"]},
                              "task": {"type": "worker", "index": 1}}
    assert tf_config({"TF_CONFIG": '{"cluster": {}}', **env}) == {"cluster": {}}
    assert tf_config({}) == {}
    with pytest.raises(ValueError, match=r"^JOB_COMPLETION_INDEX=2, but LAMINA_WORKER_HOSTS names 2 workers$"):
        tf_config({**env, "JOB_COMPLETION_INDEX": "2"})
