"""PushGate: the gates TFMA's own thresholds cannot express, and one blessing for the Pusher.

TFMA (the Evaluator) computes every metric, per slice, and gates the overall thresholds. This
component reads its output and adds:

- `evaluation.slice_thresholds`: a bound a metric must meet in every slice with at least
  `min_examples` examples (smaller slices are reported, not gated);
- `evaluation.fairness`: the largest gap in a metric between the slices of one feature;
- `evaluation.baseline.must_beat`: the network within `tolerance` of a baseline's metric;
- `evaluation.thresholds.class_recall`: the recall of every class, from TFMA's confusion matrix.

The model is blessed when the Evaluator blessed it (or set no gate) and every gate here passes.
Each gate's outcome, with a message naming the feature, the slice, the metric, its value, the
bound and the number of examples, goes into `gates.json` beside the blessing.
"""

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model, ModelBlessing, ModelEvaluation, TransformGraph

from lamina import storage
from lamina.components.baselines import NAMES, Baselines, read_baselines

GATES_FILE = "gates.json"
OVERALL = "all examples"


def _load(evaluation_dir: str, plots: bool = False):
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(evaluation_dir)
    if (plots and not result.plots) or (not plots and not result.slicing_metrics):
        result = tfma.load_eval_result(evaluation_dir, model_name="candidate")  # TFMA keeps models apart
    return result


def slice_name(pairs: Sequence[Tuple[str, object]]) -> str:
    return ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in pairs) or OVERALL


def read_slices(evaluation_dir: str) -> List[dict]:
    """Every slice TFMA computed, overall first: {"slice", "features", "count", "metrics"}.

    `metrics` is keyed by TFMA's names (sparse_categorical_accuracy, auc, r_squared, ...;
    lamina.spec.TFMA_OUTPUT_NAMES maps the spec's names onto them); the positive-class metrics
    of a binary task are read from TFMA's sub key of the positive class (`classId:<index>`: the
    eval config binarizes at that one class only).
    """
    rows = []
    for slice_key, metrics in _load(evaluation_dir).slicing_metrics:
        by_sub_key = metrics.get("", {})
        values = {}
        for sub_key, found in by_sub_key.items():
            if sub_key != "" and not sub_key.startswith("classId:"):
                continue
            for k, v in found.items():
                if "doubleValue" not in v or k.endswith("_diff"):
                    continue
                if sub_key == "" or k not in values:
                    values[k] = float(v["doubleValue"])
        features = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in slice_key}
        rows.append({"slice": slice_name(slice_key), "features": features,
                     "count": int(values.pop("example_count", 0)), "metrics": values})
    return sorted(rows, key=lambda r: (r["slice"] != OVERALL, r["slice"]))


def confusion_counts(evaluation_dir: str, num_classes: int) -> Optional[List[List[float]]]:
    """The unsliced multi-class confusion matrix TFMA computed (actual x predicted), or None."""
    for slice_key, by_output in _load(evaluation_dir, plots=True).plots:
        if slice_key:
            continue
        found = by_output.get("", {}).get("", {}).get("multiClassConfusionMatrixAtThresholds")
        if not found:
            return None
        matrix = [[0.0] * num_classes for _ in range(num_classes)]
        for entry in found["matrices"][0].get("entries", []):
            actual, predicted = int(entry.get("actualClassId", 0)), int(entry.get("predictedClassId", 0))
            if 0 <= actual < num_classes and 0 <= predicted < num_classes:
                matrix[actual][predicted] += float(entry.get("numWeightedExamples", 0.0))
        return matrix
    return None


def class_recalls(matrix: List[List[float]], classes: Sequence[str]) -> Dict[str, float]:
    """{class: recall} from a confusion matrix (classes without examples are left out)."""
    out = {}
    for i, row in enumerate(matrix):
        total = sum(row)
        if total:
            out[classes[i]] = row[i] / total
    return out


def failed_thresholds(evaluation_dir: str) -> List[str]:
    """One readable line per failed TFMA threshold: metric, slice, value, bound and the gap."""
    import tensorflow_model_analysis as tfma

    validation = tfma.load_validation_result(evaluation_dir)
    lines = []
    for per_slice in validation.metric_validations_per_slice:
        where = slice_name([(c.column, c.bytes_value or c.int64_value or c.float_value)
                            for c in per_slice.slice_key.single_slice_keys])
        for failure in per_slice.failures:
            name = failure.metric_key.name
            value = failure.metric_value.double_value.value
            threshold = failure.metric_threshold
            if threshold.HasField("value_threshold"):
                vt = threshold.value_threshold
                if vt.HasField("lower_bound") and value < vt.lower_bound.value:
                    lines.append(f"{name} = {value:.4f} on {where}, below the lower bound "
                                 f"{vt.lower_bound.value:g} by {vt.lower_bound.value - value:.4f}")
                    continue
                if vt.HasField("upper_bound") and value > vt.upper_bound.value:
                    lines.append(f"{name} = {value:.4f} on {where}, above the upper bound "
                                 f"{vt.upper_bound.value:g} by {value - vt.upper_bound.value:.4f}")
                    continue
            if failure.metric_key.is_diff:
                lines.append(f"{name} changed by {value:+.4f} against the last blessed model on {where}, "
                             f"more than the allowed {threshold.change_threshold.absolute.value:+g}")
                continue
            lines.append(f"{name} = {value:.4f} on {where}: {failure.message}")
    if not lines and not validation.validation_ok and not validation.missing_thresholds:
        # `missing_thresholds` (a flag) means no gate was configured: nothing failed.
        for ms in validation.missing_slices:
            lines.append(f"a gated slice had no examples: {' '.join(str(ms).split())}")
    return lines


def _bound_problem(value: float, lower: Optional[float], upper: Optional[float]) -> Optional[str]:
    if math.isnan(value):
        return "not a number"
    if lower is not None and value < lower:
        return f"below the lower bound {lower:g}"
    if upper is not None and value > upper:
        return f"above the upper bound {upper:g}"
    return None


def evaluate_gates(spec, slices: List[dict], baselines: Optional[dict] = None,
                   recalls: Optional[Dict[str, float]] = None) -> List[dict]:
    """Every gate's outcome: {"gate", "passed", "message"} plus what the report marks
    ("slice", "metric" for a failing cell). Pure: reads nothing but its arguments."""
    from lamina.spec import TFMA_OUTPUT_NAMES, higher_is_better

    def value_of(s: dict, metric: str) -> float:
        return s["metrics"].get(TFMA_OUTPUT_NAMES[metric], float("nan"))

    ev = spec.evaluation
    gates = []
    overall = next((s for s in slices if s["slice"] == OVERALL), {"metrics": {}, "count": 0})
    sliced = [s for s in slices if s["slice"] != OVERALL]

    gate = ev.thresholds.get("class_recall")
    if gate is not None:
        for cls, value in sorted((recalls or {}).items()):
            problem = _bound_problem(value, gate.lower_bound, gate.upper_bound)
            gates.append({"gate": "class_recall", "passed": problem is None, "slice": OVERALL,
                          "metric": "class_recall", "class": cls, "value": value,
                          "message": f"recall of class {cls!r} = {value:.4f} on all examples"
                          + (f", {problem}" if problem else "")})

    for metric, gate in ev.slice_thresholds.items():
        for s in sliced:
            value = value_of(s, metric)
            where = f"slice {s['slice']} ({s['count']} examples)"
            if s["count"] < gate.min_examples:
                gates.append({"gate": "slice", "passed": True, "gated": False, "slice": s["slice"], "metric": metric,
                              "value": value, "count": s["count"],
                              "message": f"{metric} = {value:.4f} in {where}: not gated, under the "
                              f"{gate.min_examples} examples a gated slice needs"})
                continue
            problem = _bound_problem(value, gate.lower_bound, gate.upper_bound)
            gates.append({"gate": "slice", "passed": problem is None, "gated": True, "slice": s["slice"],
                          "metric": metric, "value": value, "count": s["count"],
                          "message": f"{metric} = {value:.4f} in {where}"
                          + (f", {problem} set for every slice of at least {gate.min_examples} examples"
                             if problem else "")})

    for fair in ev.fairness:
        groups = [s for s in sliced if list(s["features"]) == [fair.feature]]
        big = [s for s in groups if s["count"] >= fair.min_examples
               and not math.isnan(value_of(s, fair.metric))]
        if len(big) < 2:
            gates.append({"gate": "fairness", "passed": True, "gated": False, "feature": fair.feature,
                          "metric": fair.metric,
                          "message": f"fairness of {fair.metric} across {fair.feature!r}: not gated, "
                          f"{len(big)} of its {len(groups)} slices have {fair.min_examples} examples or more"})
            continue
        up = higher_is_better(fair.metric)
        ranked = sorted(big, key=lambda s: value_of(s, fair.metric), reverse=up)
        best, worst = ranked[0], ranked[-1]
        gap = abs(value_of(best, fair.metric) - value_of(worst, fair.metric))
        passed = gap <= fair.max_gap
        gates.append({
            "gate": "fairness", "passed": passed, "gated": True, "feature": fair.feature, "metric": fair.metric,
            "slice": worst["slice"], "value": value_of(worst, fair.metric), "count": worst["count"], "gap": gap,
            "message": f"fairness: {fair.metric} differs by {gap:.4f} across the slices of {fair.feature!r}: "
            f"{worst['slice']} has {value_of(worst, fair.metric):.4f} ({worst['count']} examples), "
            f"{best['slice']} has {value_of(best, fair.metric):.4f} ({best['count']} examples); "
            f"the largest gap allowed is {fair.max_gap:g}" + ("" if passed else ", so the model is not pushed")})

    must = ev.baseline.must_beat
    if must:
        metric = ev.baseline_metric
        network = value_of(overall, metric)
        models = {k: v["metrics"][metric] for k, v in ((baselines or {}).get("models") or {}).items()
                  if metric in v.get("metrics", {})}
        up = higher_is_better(metric)
        if must != "best":
            models = {k: v for k, v in models.items() if k == must}
        if not models:
            gates.append({"gate": "baseline", "passed": True, "gated": False, "metric": metric,
                          "message": f"baseline: no {NAMES.get(must, 'baseline')} {metric} to compare with "
                          f"({(baselines or {}).get('skipped') or 'it was not fit'}); not gated"})
        else:
            name, value = (max if up else min)(models.items(), key=lambda kv: kv[1])
            ok = network >= value - ev.baseline.tolerance if up else network <= value + ev.baseline.tolerance
            side = "below" if up else "above"
            gates.append({
                "gate": "baseline", "passed": bool(ok), "gated": True, "metric": metric, "value": network,
                "baseline": name, "baseline_value": value, "slice": OVERALL,
                "message": f"baseline: the model's {metric} is {network:.4f} and {NAMES[name]}' is {value:.4f}"
                + ("" if ok else f"; the model is {side} it by {abs(network - value):.4f}, more than the "
                   f"tolerance {ev.baseline.tolerance:g}, so it is not pushed")})
    return gates


def run_gates(spec, evaluation_dir: str, transform_dir: Optional[str], baselines_dir: Optional[str],
              evaluator_blessed: Optional[bool]) -> dict:
    """Reads the Evaluator's output and the baselines; returns gates.json's content."""
    from lamina.models.features import label_vocabulary

    slices = read_slices(evaluation_dir)
    baselines = read_baselines(baselines_dir) if baselines_dir else None
    recalls = None
    if spec.task == "classification" and transform_dir:
        import tensorflow_transform as tft

        classes = label_vocabulary(tft.TFTransformOutput(transform_dir)) or []
        matrix = confusion_counts(evaluation_dir, len(classes)) if classes else None
        recalls = class_recalls(matrix, classes) if matrix else None
    gates = evaluate_gates(spec, slices, baselines, recalls)
    tfma_failures = failed_thresholds(evaluation_dir) if evaluator_blessed is False else []
    blessed = evaluator_blessed is not False and all(g["passed"] for g in gates)
    return {"blessed": blessed, "evaluator_blessed": evaluator_blessed, "tfma_failures": tfma_failures,
            "gates": gates, "class_recalls": recalls, "failures": tfma_failures + [g["message"] for g in gates
                                                                                   if not g["passed"]]}


def read_gates(folder: str) -> Optional[dict]:
    return storage.read_json_if_exists(os.path.join(folder, GATES_FILE))


def write_blessing(blessing, model, record: dict) -> None:
    """gates.json (the record's gates, failures and outcome), the BLESSED or NOT_BLESSED marker, and the
    properties TFX's Pusher and the LatestBlessedModelResolver read; then the failed gates and the outcome,
    printed. Shared by the PushGate and the ForecastEvaluator."""
    storage.write_json(os.path.join(blessing.uri, GATES_FILE), record)
    storage.write_text(os.path.join(blessing.uri, "BLESSED" if record["blessed"] else "NOT_BLESSED"), "")
    blessing.set_int_custom_property("blessed", int(record["blessed"]))
    blessing.set_string_custom_property("current_model", model.uri)
    blessing.set_int_custom_property("current_model_id", model.id)
    for g in record["gates"]:
        if g.get("gated", True) and not g["passed"]:
            print(f"    gate failed: {g['message']}", flush=True)
    passed = sum(1 for g in record["gates"] if g.get("gated", True) and g["passed"])
    print(f"    {passed} gate(s) passed, {len(record['failures'])} failed: the model is "
          f"{'blessed' if record['blessed'] else 'not blessed'}", flush=True)


@component
def PushGate(  # pylint: disable=invalid-name
    model: InputArtifact[Model],
    evaluation: InputArtifact[ModelEvaluation],
    transform_graph: InputArtifact[TransformGraph],
    blessing: OutputArtifact[ModelBlessing],
    spec_json: Parameter[str],
    evaluator_blessing: InputArtifact[ModelBlessing] = None,
    baselines: InputArtifact[Baselines] = None,
):
    """Blesses `model` when the Evaluator did and every slice, fairness, baseline and per-class gate passes."""
    from lamina.spec import Spec

    evaluator_blessed = None
    if evaluator_blessing is not None and evaluator_blessing.has_custom_property("blessed"):
        evaluator_blessed = bool(evaluator_blessing.get_int_custom_property("blessed"))
    record = run_gates(Spec.from_json(spec_json), evaluation.uri, transform_graph.uri,
                       baselines.uri if baselines is not None else None, evaluator_blessed)
    write_blessing(blessing, model, record)
