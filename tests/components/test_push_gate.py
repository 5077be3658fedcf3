"""The PushGate's decisions on given per-slice metrics: the rules themselves, without a pipeline.

(tests/test_e2e_trust.py runs them on a real Evaluator output.)
"""

import pytest

from lamina.components.gates import OVERALL, class_recalls, evaluate_gates
from lamina.spec import Spec


def _spec(evaluation: dict, head: str = "classification") -> Spec:
    return Spec.from_dict({"data": {"path": "x.csv", "label": "y"}, "model": {"head": {"type": head}},
                           "evaluation": evaluation}, base_dir="/tmp")


def _slice(name: str, count: int, **metrics) -> dict:
    features = dict(part.split("=") for part in name.split(", ")) if name != OVERALL else {}
    return {"slice": name, "features": features, "count": count, "metrics": metrics}


SLICES = [
    _slice(OVERALL, 500, sparse_categorical_accuracy=0.86, tpr=0.80, fpr=0.10, auc=0.91),
    _slice("group=a", 300, sparse_categorical_accuracy=0.90, tpr=0.90, fpr=0.08, auc=0.93),
    _slice("group=b", 180, sparse_categorical_accuracy=0.80, tpr=0.62, fpr=0.16, auc=0.88),
    _slice("group=c", 20, sparse_categorical_accuracy=0.40, tpr=0.10, fpr=0.50, auc=0.55),  # too small to gate
]


def test_equal_opportunity_gap_names_the_worst_big_slice_and_ignores_small_ones():
    spec = _spec({"metrics": ["accuracy", "tpr", "fpr"],
                  "fairness": [{"feature": "group", "metric": "tpr", "max_gap": 0.1, "min_examples": 50},
                               {"feature": "group", "metric": "fpr", "max_gap": 0.1, "min_examples": 50}]})
    tpr, fpr = evaluate_gates(spec, SLICES)
    assert tpr["passed"] is False and tpr["slice"] == "group=b" and tpr["gap"] == pytest.approx(0.28)
    assert tpr["message"] == ("fairness: tpr differs by 0.2800 across the slices of 'group': group=b has 0.6200 "
                              "(180 examples), group=a has 0.9000 (300 examples); the largest gap allowed is 0.1, so "
                              "the model is not pushed")
    # Lower is better for the false positive rate: the worst slice is the highest one.
    assert fpr["passed"] is True and fpr["slice"] == "group=b" and fpr["gap"] == pytest.approx(0.08)


def test_slice_bounds_gate_only_slices_with_enough_examples():
    spec = _spec({"metrics": ["accuracy"], "slices": [["group"]],
                  "slice_thresholds": {"accuracy": {"lower_bound": 0.85, "min_examples": 50}}})
    gates = {g["slice"]: g for g in evaluate_gates(spec, SLICES)}
    assert gates["group=a"]["passed"] and gates["group=a"]["gated"]
    assert gates["group=b"]["passed"] is False
    assert gates["group=b"]["message"] == ("accuracy = 0.8000 in slice group=b (180 examples), below the lower bound "
                                           "0.85 set for every slice of at least 50 examples")
    assert gates["group=c"]["passed"] and gates["group=c"]["gated"] is False
    assert "not gated, under the 50 examples a gated slice needs" in gates["group=c"]["message"]


def test_fewer_than_two_big_slices_are_reported_not_gated():
    spec = _spec({"metrics": ["accuracy"], "fairness": [{"feature": "group", "max_gap": 0.01, "min_examples": 200}]})
    [gate] = evaluate_gates(spec, SLICES)
    assert gate["passed"] and gate["gated"] is False
    assert gate["message"] == ("fairness of accuracy across 'group': not gated, 1 of its 3 slices have 200 examples "
                               "or more")


def test_baseline_gate_respects_the_metric_direction_and_the_tolerance():
    baselines = {"models": {"gbt": {"metrics": {"mae": 100.0}}, "linear": {"metrics": {"mae": 130.0}}}}
    overall = [_slice(OVERALL, 60, mean_absolute_error=105.0)]
    loose = _spec({"metrics": ["mae"], "baseline": {"must_beat": "best", "tolerance": 10}}, head="regression")
    [gate] = evaluate_gates(loose, overall, baselines)
    assert gate["passed"] and gate["baseline"] == "gbt"
    tight = _spec({"metrics": ["mae"], "baseline": {"must_beat": "gbt", "tolerance": 1}}, head="regression")
    [gate] = evaluate_gates(tight, overall, baselines)
    assert gate["passed"] is False
    assert gate["message"] == ("baseline: the model's mae is 105.0000 and gradient-boosted trees' is 100.0000; the "
                               "model is above it by 5.0000, more than the tolerance 1, so it is not pushed")
    linear = _spec({"metrics": ["mae"], "baseline": {"must_beat": "linear", "tolerance": 0}}, head="regression")
    assert evaluate_gates(linear, overall, baselines)[0]["passed"]  # 105 beats the linear model's 130


def test_per_class_recall_bounds_every_class():
    recalls = class_recalls([[40, 2, 0], [5, 10, 5], [0, 0, 0]], ["a", "b", "c"])
    assert recalls == {"a": pytest.approx(40 / 42), "b": 0.5}  # no example of 'c': nothing to gate
    spec = _spec({"metrics": ["accuracy", "class_recall"], "thresholds": {"class_recall": {"lower_bound": 0.6}}})
    gates = evaluate_gates(spec, [_slice(OVERALL, 62, sparse_categorical_accuracy=0.8)], recalls=recalls)
    assert [(g["class"], g["passed"]) for g in gates] == [("a", True), ("b", False)]
    assert gates[1]["message"] == "recall of class 'b' = 0.5000 on all examples, below the lower bound 0.6"


def test_gate_spec_errors_name_the_key():
    from lamina.spec import SpecError

    with pytest.raises(SpecError) as info:
        _spec({"metrics": ["accuracy"], "slice_thresholds": {"auc": {"lower_bound": 0.8}},
               "fairness": [{"feature": "group", "metric": "tpr", "max_gap": 0.1}],
               "baseline": {"must_beat": "forest"}})
    text = str(info.value)
    assert ("evaluation.baseline.must_beat: Received 'forest'; expected one of: 'gbt', 'linear', 'best', "
            "'seasonal_naive' or 'last_value'. Did you mean 'best'?") in text
    with pytest.raises(SpecError) as info:
        _spec({"metrics": ["accuracy"], "slice_thresholds": {"auc": {"lower_bound": 0.8}},
               "fairness": [{"feature": "group", "metric": "tpr", "max_gap": 0.1}]})
    text = str(info.value)
    assert "evaluation.slice_thresholds.auc: no such metric in evaluation.metrics; expected one of: 'accuracy'." in text
    assert ("evaluation.fairness.0.metric: Received 'tpr', which is not in evaluation.metrics; expected one of: "
            "'accuracy'.") in text
