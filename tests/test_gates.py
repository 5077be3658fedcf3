"""The run's gates: anomalous data stops it before Transform, a weak model is never pushed."""

import os

import pytest

from lamina.components.anomaly_gate import DataAnomaliesError
from lamina.pipeline.local_runner import run_pipeline
from lamina.pipeline.runs.summary import ModelNotBlessedError, latest_run_states
from tests.helpers import make_spec, read_csv, write_csv

pytestmark = pytest.mark.e2e

COLUMNS = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]


def _assert_stopped_before_transform(spec):
    states = latest_run_states(spec)
    assert states["ExampleValidator"] == "COMPLETE"
    assert states["AnomalyGate"] == "FAILED"
    for never in ("Transform", "Trainer", "Evaluator", "Pusher"):
        assert never not in states
    assert not os.path.exists(os.path.join(spec.push_dir, "penguins"))


def test_strings_in_a_numeric_column_stop_the_run(tmp_path, penguins_dir):
    rows = read_csv(penguins_dir / "data" / "penguins.csv")
    for r in rows[10:20]:
        r["bill_length_mm"] = "not measured"
    write_csv(str(tmp_path / "data" / "penguins.csv"), rows, COLUMNS)
    spec = make_spec(tmp_path)
    with pytest.raises(DataAnomaliesError) as info:
        run_pipeline(spec)
    by_feature = {(a.split, a.feature): a for a in info.value.anomalies}
    assert set(by_feature) == {("train", "bill_length_mm"), ("eval", "bill_length_mm")}
    assert by_feature[("train", "bill_length_mm")].description.startswith("Expected data of type: FLOAT")
    message = str(info.value)
    assert message.startswith("Data validation found 2 anomalies; the run stopped before Transform and training.")
    assert "train  bill_length_mm" in message
    assert "<td>bill_length_mm<td>Unexpected data type" in open(info.value.report).read()
    _assert_stopped_before_transform(spec)
    from lamina.pipeline.runs.history import list_runs

    [run] = list_runs(os.path.dirname(spec.run_dir))
    assert (run.pipeline, run.outcome, run.version, run.metric) == (
        "penguins", "blocked: data anomalies (AnomalyGate)", None, None)


def test_a_missing_column_stops_the_run(tmp_path, penguins_dir):
    rows = read_csv(penguins_dir / "data" / "penguins.csv")
    write_csv(str(tmp_path / "data" / "penguins.csv"), rows, [c for c in COLUMNS if c != "body_mass_g"])
    spec = make_spec(tmp_path)
    with pytest.raises(DataAnomaliesError) as info:
        run_pipeline(spec)
    assert {a.feature for a in info.value.anomalies} == {"body_mass_g"}
    assert {a.anomaly for a in info.value.anomalies} == {"Column dropped"}
    assert "body_mass_g" in str(info.value)
    _assert_stopped_before_transform(spec)


def test_a_model_below_its_threshold_is_not_pushed(tmp_path, penguins_dir):
    rows = read_csv(penguins_dir / "data" / "penguins.csv")
    write_csv(str(tmp_path / "data" / "penguins.csv"), rows, COLUMNS)
    # One epoch at a tiny learning rate cannot reach 0.99 accuracy.
    spec = make_spec(tmp_path, training={"epochs": 1, "learning_rate": 1e-5, "early_stopping": None},
                     evaluation={"metrics": ["accuracy", "crossentropy"],
                                 "thresholds": {"accuracy": {"lower_bound": 0.99}},
                                 "slice_thresholds": {}, "fairness": [], "baseline": {"must_beat": None}})
    with pytest.raises(ModelNotBlessedError) as info:
        run_pipeline(spec)
    result = info.value.result
    accuracy = result.metrics["sparse_categorical_accuracy"]
    assert accuracy < 0.99
    assert result.failed_thresholds == [
        f"sparse_categorical_accuracy = {accuracy:.4f} on all examples, below the lower bound 0.99 by "
        f"{0.99 - accuracy:.4f}"]
    assert str(info.value).startswith("The model failed evaluation and was not pushed:\n  - sparse_categorical_accuracy")
    assert result.blessed is False and result.pushed is False
    assert latest_run_states(spec)["Pusher"] == "COMPLETE"  # it ran, and declined to push
    assert not os.path.exists(os.path.join(spec.push_dir, "penguins"))
    from lamina.pipeline.runs.history import list_runs

    [run] = list_runs(spec.run_dir)
    assert (run.outcome, run.version, run.metric) == ("blocked: failed evaluation", None,
                                                      "sparse_categorical_accuracy")
    assert run.value == pytest.approx(accuracy)
