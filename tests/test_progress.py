"""Progress inside long components: the count, the rate and an ETA, throttled to a line every few seconds."""

import io
import os

import keras
import numpy as np
import tensorflow as tf

from lamina.progress import Progress, duration, progress_line


def test_the_line_people_read():
    assert progress_line("CsvExampleGen", 420_000, 1_000_000, "rows", 80.0) == (
        "CsvExampleGen: 420,000 of 1,000,000 rows (42%), 5,250 rows/s, about 1m50s left")
    assert progress_line("epoch 1/3", 1200, None, "steps", 60.0) == "epoch 1/3: 1,200 steps, 20 steps/s"
    assert progress_line("epoch 2/3", 3125, 3125, "steps", 10.0) == "epoch 2/3: 3,125 of 3,125 steps (100%), 312 steps/s"
    assert [duration(s) for s in (0.4, 59, 61, 3600 + 120)] == ["0s", "59s", "1m01s", "1h02m"]


def test_nothing_is_printed_before_the_interval():
    out = io.StringIO()
    progress = Progress("Transform", 100, stream=out, every=3600)
    for i in range(100):
        progress.update(i)
    assert out.getvalue() == "" and progress.printed == 0


def test_an_epoch_reports_its_steps_and_later_epochs_an_eta():
    from lamina.models.callbacks import EpochProgress

    out = io.StringIO()
    callback = EpochProgress(2, stream=out)
    callback._progress.every = 0.0  # every step, for the test
    x = np.arange(30, dtype="float32").reshape(-1, 1)
    # A filtered dataset: its length is unknown until the first epoch has run through it.
    data = tf.data.Dataset.from_tensor_slices((x, x)).filter(lambda a, b: True).batch(10)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(data, epochs=2, callbacks=[callback], verbose=0)
    lines = [l.strip() for l in out.getvalue().splitlines()]
    first = [l for l in lines if l.startswith("epoch 1/2:")]
    second = [l for l in lines if l.startswith("epoch 2/2:")]
    assert [l.split(",")[0] for l in first] == ["epoch 1/2: 1 steps", "epoch 1/2: 2 steps", "epoch 1/2: 3 steps"]
    assert [l.split(",")[0] for l in second] == ["epoch 2/2: 1 of 3 steps (33%)", "epoch 2/2: 2 of 3 steps (67%)",
                                                 "epoch 2/2: 3 of 3 steps (100%)"]
    assert "left" in second[0] and "left" not in second[-1]
    assert sum(l.startswith("epoch   1/2") for l in lines) == 1  # the epoch's own summary line, once


def test_example_gen_counts_rows_against_the_scan(tmp_path, monkeypatch, capsys):
    import lamina.progress
    from lamina.components.table_example_gen import ReadTable
    from lamina.components.table_source import TablePolicy, scan_table

    monkeypatch.setattr(lamina.progress, "PROGRESS_SECONDS", 0.0)
    path = tmp_path / "export.csv"
    path.write_text("\ufeffID,Amount ($),Label\n" + "".join(f"{i},{i * 1.5},{'ab'[i % 2]}\n" for i in range(2500))
                    + ",,\n", encoding="utf-8")  # a trailing row without a label is not counted
    scan = scan_table(str(path), TablePolicy(label="Label"))
    read = ReadTable("csv", scan.names, scan.delimiter, "utf-8", "Label",
                      {"ID": "int", "Amount ($)": "float", "Label": "bytes"}, total=scan.kept_rows,
                      component="CsvExampleGen")
    batches = list(read.process(str(path)))  # batches of serialized examples
    assert [len(b) for b in batches] == [1000, 1000, 500]
    lines = [l.strip() for l in capsys.readouterr().out.splitlines()]
    assert [l.split(" rows")[0] for l in lines] == ["CsvExampleGen: 1,000 of 2,500", "CsvExampleGen: 2,000 of 2,500",
                                                   "CsvExampleGen: 2,500 of 2,500"]
    assert lines[0].startswith("CsvExampleGen: 1,000 of 2,500 rows (40%)")


def test_local_beam_runs_build_no_tfx_package_for_workers(tmp_path):
    """TFX's Beam executors package TFX itself for remote workers (3.7 s and 42 MB in /tmp each); a local
    run's Beam arguments carry the flag that tells them not to, TFX's own code is left as it is, and a
    remote runner keeps TFX's behaviour."""
    import glob
    import tempfile

    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.utils import dependency_utils

    from lamina.components.table_example_gen import Executor
    from lamina.pipeline.local_runner import LOCAL_WORKERS_FLAG, local_beam_args

    original = dependency_utils.make_beam_dependency_flags
    pattern = os.path.join(tempfile.gettempdir(), "*", "build", "tfx")
    before = set(glob.glob(pattern))
    args = local_beam_args(["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert args == ["--direct_running_mode=in_memory", "--direct_num_workers=1", LOCAL_WORKERS_FLAG,
                    "--pickle_library=cloudpickle"]
    # The executor's constructor is where TFX builds the package: a real one, with the run's arguments.
    Executor(BaseBeamExecutor.Context(beam_pipeline_args=args, tmp_dir=str(tmp_path)))
    assert set(glob.glob(pattern)) == before
    assert dependency_utils.make_beam_dependency_flags is original  # nothing of TFX's is patched
    assert local_beam_args(["--runner=DataflowRunner", "--project=p"]) == ["--runner=DataflowRunner", "--project=p"]
    assert local_beam_args(["--extra_packages=dist/x.tar.gz"]) == ["--extra_packages=dist/x.tar.gz",
                                                                   "--pickle_library=cloudpickle"]
    assert local_beam_args(["--pickle_library=dill"]) == ["--pickle_library=dill", LOCAL_WORKERS_FLAG]
