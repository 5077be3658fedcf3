"""A tuned run end to end: TFX's Tuner finds a learning rate that the spec's bad default misses; the Trainer
uses it; the slice and fairness gates pass; the model is pushed and served, and answers as it does in process."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from lamina.pipeline.local_runner import run_pipeline
from lamina.pipeline.runs.summary import format_result, latest_run_outputs
from tests.helpers import make_spec, read_csv, serving, write_csv

pytestmark = pytest.mark.e2e

BAD_LEARNING_RATE = 1e-5


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory, penguins_dir):
    root = tmp_path_factory.mktemp("tuned")
    rows = read_csv(penguins_dir / "data" / "penguins.csv")
    write_csv(str(root / "data" / "penguins.csv"), rows, list(rows[0]))
    spec = make_spec(
        root, training={"epochs": 8, "batch_size": 16, "learning_rate": BAD_LEARNING_RATE, "early_stopping": None},
        tuning={"trials": 6, "epochs": 8, "seed": 1,
                "space": {"learning_rate": {"low": 1e-4, "high": 0.1, "log": True}, "width": {"choices": [16, 32]}}},
        evaluation={"metrics": ["accuracy", "class_recall"], "slices": [["island"], ["sex"]],
                    "thresholds": {"accuracy": {"lower_bound": 0.85}, "class_recall": {"lower_bound": 0.7}},
                    "slice_thresholds": {"accuracy": {"lower_bound": 0.8, "min_examples": 15}},
                    "fairness": [{"feature": "sex", "metric": "accuracy", "max_gap": 0.15, "min_examples": 15}]},
        export={"tflite": []}, explain={"enabled": False})
    return spec, run_pipeline(spec)


def _eval_accuracy(model_dir, result) -> float:
    model = tf.saved_model.load(model_dir)
    files = glob.glob(os.path.join(result.examples_dir, "Split-eval", "*"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    out = model.signatures["serving_default"](inputs=tf.constant(records))
    predicted = [c[np.argmax(s)].decode() for c, s in zip(out["classes"].numpy(), out["scores"].numpy())]
    labels = [tf.train.Example.FromString(r).features.feature["species"].bytes_list.value[0].decode() for r in records]
    return float(np.mean([p == label for p, label in zip(predicted, labels)]))


def test_tuning_beats_the_bad_default_and_the_trainer_uses_the_best_trial(tuned_run, tmp_path):
    from lamina.models.trainer import train
    import tensorflow_transform as tft

    spec, result = tuned_run
    assert result.pushed and result.blessed
    ran = [c.name for c in result.components]
    assert ran.index("Transform") < ran.index("Tuner") < ran.index("Trainer") < ran.index("Evaluator") \
        < ran.index("PushGate") < ran.index("Pusher")
    trials = result.trials
    assert len(trials["trials"]) == 6 and trials["engine"] == "optuna"
    best = trials["best"]
    # The Trainer trained with the best trial's values (the Tuner's best_hyperparameters artifact).
    hp_dir = latest_run_outputs(spec)[("Tuner", "best_hyperparameters")].uri
    import json

    values = json.loads(open(os.path.join(hp_dir, "best_hyperparameters.txt")).read())["values"]
    assert values["learning_rate"] == pytest.approx(best["values"]["learning_rate"])
    # The same spec untuned, on the same Transform output, for the same epochs: the bad default barely learns.
    examples = result.examples_dir
    untuned_dir = str(tmp_path / "untuned")
    train(spec, tft.TFTransformOutput(result.transform_graph_dir), [os.path.join(examples, "Split-train", "*")],
          [os.path.join(examples, "Split-eval", "*")], untuned_dir)
    untuned = _eval_accuracy(untuned_dir, result)
    tuned = result.metrics["sparse_categorical_accuracy"]
    assert tuned == pytest.approx(_eval_accuracy(result.pushed_model_dir, result), abs=1e-6)
    assert tuned >= 0.85 and tuned > untuned + 0.2, (tuned, untuned)
    # What `lamina run` prints: the table of trials, the best one marked.
    text = format_result(result)
    assert "  tuning:         optuna, 6 trials" in text
    assert f"    best: trial {best['trial']} (accuracy {best['score']:.4f})" in text
    assert "gates:          " in text and "passed" in text


def test_report_shows_the_trials_and_the_gates(tuned_run):
    _, result = tuned_run
    report = open(result.report, encoding="utf-8").read()
    assert '<h2 id="tuning">Tuning</h2>' in report
    assert report.count("<tr class=\"best\">") == 1 and report.count('data-plot="trials"') == 1
    assert 'class="num fail"' not in report and 'class="gate-fail"' not in report
    assert "recall of class &#39;Adelie&#39;" in report and "fairness: accuracy differs by" in report


def test_the_tuned_model_is_served_as_it_answers_in_process(tuned_run):
    from lamina.rows import row_to_example
    from lamina.serving.client import PredictionClient

    spec, result = tuned_run
    model = tf.saved_model.load(result.pushed_model_dir)
    rows = [{k: v for k, v in r.items() if k != "species"}
            for r in read_csv(os.path.join(spec.base_dir, "data", "penguins.csv"))[:40:7]]
    dtypes = {k: v.dtype.as_datatype_enum
              for k, v in model.signatures["serving_raw"].structured_input_signature[1].items()}
    examples = [row_to_example(r, dtypes).SerializeToString() for r in rows]
    expected = model.signatures["serving_default"](inputs=tf.constant(examples))["scores"].numpy()
    server = serving(spec.push_dir)
    srv = next(server)
    try:
        with PredictionClient(srv.target) as client:
            got = client.predict("penguins", rows)
        np.testing.assert_array_equal(got["scores"], expected)
    finally:
        next(server, None)
