"""Trust the push: the fairness and baseline gates, and the binary metrics, on a real pipeline run.

The data (tests/fair_data.py) is a spreadsheet export of loan decisions whose labels follow
axis-aligned rules, with one branch's labels noisier than the other's. A small network trained
for two epochs passes the overall accuracy threshold, but its accuracy differs between the
branches by more than the fairness bound, and gradient-boosted trees beat it by more than the
tolerance: it is not pushed, and the messages name the branch and give both numbers.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from lamina.components.gates import read_slices, run_gates
from lamina.pipeline.local_runner import run_pipeline
from lamina.pipeline.runs.summary import ModelNotBlessedError
from lamina.spec import Spec
from tests.fair_data import NOISY_BRANCH, loans_spec_dict, write_loans_csv

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def loans_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("loans")
    write_loans_csv(str(root / "data" / "loans.csv"))
    spec = Spec.from_dict(loans_spec_dict("data/loans.csv"), base_dir=str(root))
    with pytest.raises(ModelNotBlessedError) as info:
        run_pipeline(spec)
    return spec, info.value


def _eval_predictions(result):
    """(labels, positive-class probabilities) of the trained model on the eval split, in this process."""
    import glob

    model = tf.saved_model.load(result.model_dir)
    files = glob.glob(os.path.join(result.examples_dir, "Split-eval", "*"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    scores = model.signatures["serving_default"](inputs=tf.constant(records))["scores"].numpy()
    classes = [c.decode() for c in model.signatures["serving_default"](inputs=tf.constant(records[:1]))["classes"]
               .numpy()[0]]
    labels = [tf.train.Example.FromString(r).features.feature["approved"].bytes_list.value[0].decode() for r in records]
    index = classes.index("yes")
    return np.array([label == "yes" for label in labels]), scores[:, index], classes


def test_fair_and_baseline_gates_block_the_push(loans_run):
    spec, error = loans_run
    result = error.result
    assert result.pushed is False and result.blessed is False
    assert not os.path.exists(os.path.join(spec.push_dir, "loans"))
    # The overall threshold passed: what stopped the model is the gap between the branches and the trees.
    accuracy = result.metrics["sparse_categorical_accuracy"]
    assert accuracy >= 0.6
    assert result.gates["evaluator_blessed"] is True
    slices = {s["slice"]: s for s in read_slices(result.evaluation_dir)}
    south, north = slices[f"Branch={NOISY_BRANCH}"], slices["Branch=North"]
    south_acc = south["metrics"]["sparse_categorical_accuracy"]
    north_acc = north["metrics"]["sparse_categorical_accuracy"]
    assert north_acc - south_acc > 0.1
    gbt = result.baselines["models"]["gbt"]["metrics"]["accuracy"]
    assert gbt > accuracy + 0.01
    assert result.failed_thresholds == [
        f"fairness: accuracy differs by {north_acc - south_acc:.4f} across the slices of 'Branch': "
        f"Branch={NOISY_BRANCH} has {south_acc:.4f} ({south['count']} examples), Branch=North has "
        f"{north_acc:.4f} ({north['count']} examples); the largest gap allowed is 0.1, so the model is not pushed",
        f"baseline: the model's accuracy is {accuracy:.4f} and gradient-boosted trees' is {gbt:.4f}; the model "
        f"is below it by {gbt - accuracy:.4f}, more than the tolerance 0.01, so it is not pushed",
    ]
    assert str(error).startswith("The model failed evaluation and was not pushed:\n  - fairness: accuracy differs")


def test_report_shows_the_failing_cells_and_that_the_trees_win(loans_run):
    _, error = loans_run
    report = open(error.result.report, encoding="utf-8").read()
    south = f"Branch={NOISY_BRANCH}"
    # The per-slice table marks the failing cell, with the message on hover.
    row = report.split(f"<tr><td>{south}")[1].split("</tr>")[0]
    assert 'class="num fail" title="fairness: accuracy differs by' in row
    assert report.count('class="num fail"') == 2  # South's accuracy, and the overall accuracy the trees beat
    assert "<b>gradient-boosted trees</b> leads on accuracy" in report
    assert "network (this run)" in report and "linear model" in report
    assert 'class="gate-fail"' in report


def test_binary_metrics_match_their_definitions(loans_run):
    """TFMA's positive-class metrics, against numpy on the same model's eval predictions."""
    from sklearn.metrics import roc_auc_score

    from lamina.models.tfma_metrics import expected_calibration_error

    _, error = loans_run
    result = error.result
    labels, probs, classes = _eval_predictions(result)
    assert classes == ["yes", "no"]  # the declared positive class first, though it is the commoner one
    assert error.result.baselines["positive_class"] == "yes"
    m = result.metrics
    assert m["expected_calibration_error"] == pytest.approx(expected_calibration_error(labels, probs), abs=1e-6)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, probs), abs=2e-3)
    predicted = probs >= 0.5
    assert m["precision"] == pytest.approx(np.sum(predicted & labels) / np.sum(predicted), abs=1e-6)
    assert m["recall"] == pytest.approx(np.sum(predicted & labels) / np.sum(labels), abs=1e-6)
    assert m["tpr"] == m["recall"]
    assert m["fpr"] == pytest.approx(np.sum(predicted & ~labels) / np.sum(~labels), abs=1e-6)
    assert 0 < m["auc_precision_recall"] < 1


def test_the_same_run_with_the_gates_loosened_is_blessed(loans_run):
    """The PushGate's decision on the same Evaluator output, with a fairness bound and a tolerance that allow it."""
    spec, error = loans_run
    result = error.result
    loose = spec.model_dump(mode="json")
    loose["evaluation"]["fairness"][0]["max_gap"] = 0.5
    loose["evaluation"]["baseline"]["tolerance"] = 0.5
    loose = Spec.from_dict(loose, base_dir=spec.base_dir)
    baselines_dir = os.path.dirname(result.evaluation_dir).replace("Evaluator/evaluation", "Baselines/baselines")
    baselines_dir = os.path.join(baselines_dir, os.listdir(baselines_dir)[0])
    record = run_gates(loose, result.evaluation_dir, result.transform_graph_dir, baselines_dir, evaluator_blessed=True)
    assert record["blessed"] is True and record["failures"] == []
    assert [g["gate"] for g in record["gates"]] == ["fairness", "baseline"]
    assert all(g["passed"] and g["gated"] for g in record["gates"])
