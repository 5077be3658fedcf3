"""Reading a finished run: what each component produced, the metrics, the gates, the push, the report.

Everything here reads ML Metadata (SQLite under the run directory) and the artifacts it points
to; nothing runs the pipeline. `lamina run` uses it after a run; a `lamina runs` command can
use it on any earlier one.
"""

import dataclasses
import os
from typing import Dict, List, Optional

from lamina.constants import (BASELINES, BULK_INFERRER, EVALUATOR, EXAMPLE_VALIDATOR, EXPLAINER, FORECAST_EVALUATOR,
                              FORECAST_EXAMPLE_GEN, IMAGE_EXAMPLE_GEN, PUSHER, PUSH_GATE, STATISTICS_GEN,
                              TFLITE_EXPORTER, TRAINER, TRANSFORM, TUNER, DEFAULT_SIGNATURE, METADATA_FILE)
from lamina import storage
from lamina.pipeline.runs.metadata import ExecutionRecord, latest_run, open_metadata, run_outputs
from lamina.pipeline.runs.report import slice_metrics, write_report
from lamina.spec import Spec


@dataclasses.dataclass
class ComponentRun:
    name: str
    seconds: float
    cached: bool = False


@dataclasses.dataclass
class RunResult:
    """What a run produced. `pushed` is False when the model failed its thresholds."""

    spec: Spec
    components: List[ComponentRun]
    pushed: bool = False
    pushed_model_dir: Optional[str] = None
    blessed: Optional[bool] = None
    evaluation_dir: Optional[str] = None
    anomalies_dir: Optional[str] = None
    model_dir: Optional[str] = None
    metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    failed_thresholds: List[str] = dataclasses.field(default_factory=list)
    inference_dir: Optional[str] = None
    tensorboard_dir: Optional[str] = None
    report: Optional[str] = None
    ingest: Optional[dict] = None  # image runs: ImageExampleGen's report (files, examples, bad files)
    rows: Optional[dict] = None  # table runs: TableExampleGen's report (rows read, skipped, left out; column types)
    statistics_dir: Optional[str] = None
    examples_dir: Optional[str] = None  # ExampleGen's output (raw tf.Examples per split)
    transform_graph_dir: Optional[str] = None
    tflite_dir: Optional[str] = None
    tflite: Optional[dict] = None  # TFLiteExporter's report: the forms, their sizes and metrics
    explanations_dir: Optional[str] = None  # the Explainer's output
    trials: Optional[dict] = None  # the Tuner's trials.json
    tuner_dir: Optional[str] = None  # the Tuner's output folder (trials.json, tensorboard/)
    model_choice: Optional[dict] = None  # the Trainer's model_choice.json: model.type, what was exported, scores
    baselines: Optional[dict] = None  # the Baselines component's baselines.json
    gates: Optional[dict] = None  # the PushGate's gates.json
    forecast: Optional[dict] = None  # a forecast's ForecastEvaluator forecast.json: metrics, baselines, gates
    forecast_file: Optional[str] = None

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.components)


class ModelNotBlessedError(RuntimeError):
    """The trained model failed its evaluation thresholds and was not pushed."""

    def __init__(self, result: RunResult):
        self.result = result
        lines = ["The model failed evaluation and was not pushed:"]
        lines += [f"  - {f}" for f in result.failed_thresholds] or ["  - (see the evaluation report)"]
        if result.evaluation_dir:
            lines.append(f"Evaluation: {result.evaluation_dir}")
        super().__init__("\n".join(lines))


def bad_files(ingest: Optional[dict]) -> list:
    """The bad input files an image ingestion report lists."""
    from lamina.components.image_example_gen import BadFile

    return [BadFile(**b) for b in (ingest or {}).get("bad_files", [])]


def summarize_run(spec: Spec, components: List[ComponentRun]) -> RunResult:
    """Reads the latest run's outputs from ML Metadata."""
    outputs = latest_run_outputs(spec)
    result = RunResult(spec=spec, components=components)
    from lamina.constants import EXAMPLE_GEN_IDS

    rows = next((outputs[(i, "examples")] for i in EXAMPLE_GEN_IDS.values() if (i, "examples") in outputs), None)
    if rows:
        from lamina.components.table_example_gen import read_report as read_table_report

        result.rows = read_table_report(rows.uri)
    images = outputs.get((IMAGE_EXAMPLE_GEN, "examples"))
    if images:
        from lamina.components.image_example_gen import read_report

        result.ingest = read_report(images.uri)
    def uri(component: str, key: str) -> Optional[str]:
        found = outputs.get((component, key))
        return found.uri if found else None

    examples = rows or images or outputs.get((FORECAST_EXAMPLE_GEN, "examples"))
    result.examples_dir = examples.uri if examples else None
    result.statistics_dir = uri(STATISTICS_GEN, "statistics")
    result.transform_graph_dir = uri(TRANSFORM, "transform_graph")
    result.tflite_dir = uri(TFLITE_EXPORTER, "tflite_models")
    if result.tflite_dir:
        from lamina.models.tflite import read_report as read_tflite_report

        result.tflite = read_tflite_report(result.tflite_dir)
    result.explanations_dir = uri(EXPLAINER, "explanations")
    result.anomalies_dir = uri(EXAMPLE_VALIDATOR, "anomalies")
    model = uri(TRAINER, "model")
    result.model_dir = os.path.join(model, "Format-Serving") if model else None
    result.tensorboard_dir = uri(TRAINER, "model_run")
    if result.tensorboard_dir:
        from lamina.models.trees import MODEL_CHOICE_FILE

        result.model_choice = storage.read_json_if_exists(os.path.join(result.tensorboard_dir, MODEL_CHOICE_FILE))
    evaluation = outputs.get((EVALUATOR, "evaluation"))
    if evaluation:
        result.evaluation_dir = evaluation.uri
        result.metrics = overall_metrics(evaluation.uri)
        result.failed_thresholds = failed_thresholds(evaluation.uri)
    blessing = outputs.get((EVALUATOR, "blessing"))
    if blessing and "blessed" in blessing.custom_properties:  # absent when no gate was set
        result.blessed = bool(blessing.custom_properties["blessed"].int_value)
    tuner_results = uri(TUNER, "tuner_results")
    result.tuner_dir = tuner_results
    if tuner_results:
        from lamina.models.tuning import read_trials

        result.trials = read_trials(tuner_results)
    baselines = uri(BASELINES, "baselines")
    if baselines:
        from lamina.components.baselines import read_baselines

        result.baselines = read_baselines(baselines)
    gate = outputs.get((PUSH_GATE, "blessing"))
    if gate:  # the final word: the Evaluator's thresholds and the slice, fairness and baseline gates
        from lamina.components.gates import read_gates

        result.gates = read_gates(gate.uri)
        if result.gates is not None:
            result.blessed = bool(result.gates["blessed"])
            result.failed_thresholds = list(result.gates["failures"])
    forecast = outputs.get((FORECAST_EVALUATOR, "blessing"))
    if forecast:
        from lamina.components.forecast_evaluator import read_forecast

        result.forecast = read_forecast(forecast.uri)
        result.forecast_file = os.path.join(forecast.uri, "forecast.json")
        if result.forecast is not None:
            result.metrics = {k: v for k, v in result.forecast["metrics"]["model"].items() if k != "points"}
            result.blessed = bool(result.forecast["blessed"])
            result.failed_thresholds = list(result.forecast["failures"])
    pushed = outputs.get((PUSHER, "pushed_model"))
    if pushed and pushed.custom_properties["pushed"].int_value == 1:
        result.pushed = True
        result.pushed_model_dir = pushed.custom_properties["pushed_destination"].string_value
    inference = outputs.get((BULK_INFERRER, "inference_result"))
    result.inference_dir = inference.uri if inference else None
    return result


def open_store(spec: Spec, readonly: bool = False):
    """The run directory's ML Metadata store (SQLite); `readonly` for reading while a run writes."""
    return open_metadata(spec.metadata_path, readonly)


def latest_run_executions(spec: Spec, store=None, since_ms: int = 0) -> List[ExecutionRecord]:
    """The newest run's executions, in the order they last changed."""
    run = latest_run(store or open_store(spec), spec.name, since_ms)
    return run.records() if run else []


def latest_run_states(spec: Spec) -> Dict[str, str]:
    """Component id -> execution state (COMPLETE, CACHED, FAILED...) in the newest run."""
    return {r.component: r.state for r in latest_run_executions(spec)}


def latest_run_outputs(spec: Spec) -> Dict[tuple, object]:
    """(component id, output key) -> artifact, for the newest pipeline run in ML Metadata."""
    store = open_store(spec)
    run = latest_run(store, spec.name)
    return run_outputs(store, run) if run else {}


def failed_thresholds(evaluation_dir: str) -> List[str]:
    """One readable line per failed TFMA threshold (components.gates.failed_thresholds)."""
    from lamina.components.gates import failed_thresholds as read_failures

    return read_failures(evaluation_dir)


def overall_metrics(evaluation_dir: str) -> Dict[str, float]:
    """The unsliced metrics TFMA computed, by name."""
    return dict(slice_metrics(evaluation_dir)).get("all examples", {})


def format_result(result: RunResult) -> str:
    lines = [f"Pipeline finished in {result.seconds:.1f}s."]
    if result.metrics:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items()))
        lines.append(f"  metrics (eval split): {shown}")
    if result.rows:
        r = result.rows
        left_out = []
        if r["bad_rows"]:
            left_out.append(f"{r['bad_rows']} with the wrong number of fields skipped")
        if r["missing_label"]:
            left_out.append(f"{r['missing_label']} without a label left out")
        lines.append(f"  rows:           {r['examples']} examples from {r['rows']} rows"
                     + (f" ({'; '.join(left_out)})" if left_out else ""))
    if result.ingest:
        i = result.ingest
        lines.append(f"  {'audio: ' if i.get('media') == 'audio' else 'images:'}         {i['examples']} examples from {i['files']} files in {len(i['classes'])} "
                     f"classes; {i['bad']} bad file(s) skipped" + (" (listed in the report)" if i["bad"] else ""))
    positive = positive_class(result)
    if positive is not None:
        why = "evaluation.positive_class" if result.spec.evaluation.positive_class else "the rarer class"
        lines.append(f"  positive class: {positive!r} ({why}): auc, precision, recall and the like are of it")
    lines += tuning_lines(result.trials)
    lines += model_choice_lines(result.model_choice)
    lines += class_balance_lines(result.model_choice, result.metrics)
    lines += baseline_lines(result)
    lines += forecast_lines(result)
    if result.gates:
        gated = [g for g in result.gates["gates"] if g.get("gated", True)]
        failed = [g for g in gated if not g["passed"]]
        lines.append(f"  gates:          {len(gated) - len(failed)} of {len(gated)} slice, fairness, baseline and "
                     f"per-class gates passed" + ("" if result.gates["evaluator_blessed"] is not False
                                                  else "; the Evaluator's thresholds failed"))
        lines += [f"    failed: {g['message']}" for g in failed]
    if not result.spec.evaluation.thresholds and not result.spec.evaluation.gated_beyond_tfma:
        lines.append("  evaluation gate: none set (evaluation.thresholds is empty); the model was pushed ungated")
    lines.append(f"  pushed model:   {result.pushed_model_dir or '(not pushed)'}")
    lines.append(f"  metrics:        {result.evaluation_dir or result.forecast_file}")
    lines.append(f"  anomaly report: {result.anomalies_dir}")
    if result.inference_dir:
        lines.append(f"  inference:      {result.inference_dir}")
    lines.append(f"  TensorBoard:    tensorboard --logdir {result.tensorboard_dir}")
    lines.append(f"  report:         {result.report}")
    return "\n".join(lines)


def positive_class(result: "RunResult") -> Optional[str]:
    """The class the binary metrics are of, when the spec asks for any and the label has two classes."""
    from lamina.spec import POSITIVE_CLASS_METRICS

    ev = result.spec.evaluation
    if result.spec.task != "classification" or not set(ev.metrics) & set(POSITIVE_CLASS_METRICS):
        return None
    classes = label_classes(result)
    return classes[ev.positive_index] if classes and len(classes) == 2 else None


def tuning_lines(trials: Optional[dict], limit: int = 25) -> List[str]:
    """A table of the Tuner's trials and the best one, for the terminal."""
    if not trials or not trials.get("trials"):
        return []
    rows = trials["trials"]
    params = sorted({k for r in rows for k in r["values"]})
    best = (trials.get("best") or {}).get("trial")

    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    header = ["trial"] + params + [trials["objective"], "epochs", "status"]
    table = [[str(r["trial"]) + (" *" if r["trial"] == best else "")] + [cell(r["values"].get(p, "")) for p in params]
             + [f"{r['score']:.4f}", str(r["epochs"]), r["status"]] for r in rows[:limit]]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    pruned = sum(1 for r in rows if r["status"] == "pruned")
    lines = [f"  tuning:         {trials['engine']}, {len(rows)} trials ({pruned} pruned), "
             f"{trials['direction']}imizing {trials['objective']} on a {trials['holdout']:.0%} train holdout"
             + (f", stopped after {trials['stopped_by']}" if trials.get("stopped_by") else "")]
    lines.append("    " + "  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines += ["    " + "  ".join(c.ljust(w) for c, w in zip(t, widths)) for t in table]
    if len(rows) > limit:
        lines.append(f"    ... {len(rows) - limit} more in the report")
    if trials.get("best"):
        b = trials["best"]
        lines.append(f"    best: trial {b['trial']} ({trials['objective']} {b['score']:.4f}): "
                     + ", ".join(f"{k}={cell(v)}" for k, v in b["values"].items()))
    return lines


def forecast_lines(result: "RunResult") -> List[str]:
    """A forecast's metrics beside the seasonal-naive and last-value forecasts', then per backtest origin."""
    f = result.forecast
    if not f:
        return []
    metrics = result.spec.evaluation.metrics
    names = {"model": "network", **f["baseline_names"]}
    lines = [f"  forecast:       {f['windows']} eval windows of {f['horizon']} steps (season {f['season']})"]
    width = max(len(n) for n in names.values())
    for key, m in f["metrics"].items():
        lines.append(f"    {names[key].ljust(width)}  " + "  ".join(f"{k}={m[k]:.4f}" for k in metrics if k in m))
    if len(f["folds"]) > 1:
        first = metrics[0]
        lines.append(f"    {first} per rolling origin: " + ", ".join(
            f"{k}: {v['model'][first]:.3f} (seasonal naive {v['seasonal_naive'][first]:.3f})"
            for k, v in f["folds"].items()))
    for g in f["gates"]:
        if not g["passed"]:
            lines.append(f"    failed: {g['message']}")
    return lines


def exported_name(choice: Optional[dict]) -> str:
    """What the Trainer exported, by `MODEL_NAMES`: 'network', 'gradient-boosted trees', ..."""
    from lamina.models.trees import MODEL_NAMES

    return MODEL_NAMES[(choice or {}).get("exported", "network")]


def model_choice_lines(choice: Optional[dict]) -> List[str]:
    """The model the Trainer exported and why (model.type gbt, or auto with every candidate's score)."""
    from lamina.models.trees import MODEL_NAMES, choice_reason

    if not choice or choice.get("type", "network") == "network":
        return []
    name = exported_name(choice)
    scores = choice.get("scores")
    if not scores:
        return [f"  model:          {name} (model.type: {choice['type']})"]
    others = ", ".join(f"{v:.4f} for the {MODEL_NAMES[k]}" for k, v in scores.items() if k != choice["exported"])
    reason = choice_reason(choice)
    return [f"  model:          {name} (model.type: auto): {choice['metric']} {scores[choice['exported']]:.4f} on the "
            f"eval split against {others}" + (f"; {reason}" if reason else "")]


def class_balance_lines(choice: Optional[dict], metrics: Dict[str, float]) -> List[str]:
    """The decision threshold that class weights imply, and a warning when the model's accuracy is below
    always answering the majority class: never pushed without a word."""
    choice = choice or {}
    lines = []
    implied = choice.get("threshold")
    if implied:
        lines.append(f"  threshold:      the class weights make the model answer {implied['class']!r} where its "
                     f"unweighted probability passes {implied['probability']:.2f}, not 0.5")
    accuracy = metrics.get("sparse_categorical_accuracy")
    share = choice.get("majority_share")
    if accuracy is not None and share is not None and accuracy < share:
        why = ("; that is the class weights' doing (training.class_weights: none answers at 0.5)" if implied
               else "")
        lines.append(f"  warning:        accuracy {accuracy:.4f} on the eval split is below always answering "
                     f"{choice['majority']!r} ({share:.4f} of the train split){why}")
    return lines


def baseline_lines(result: "RunResult") -> List[str]:
    """The network's metrics beside each baseline's."""
    from lamina.spec import TFMA_OUTPUT_NAMES

    b = result.baselines
    if not b or not b.get("models"):
        return []
    lines = ["  baselines (eval split):"]
    network = {m: result.metrics.get(TFMA_OUTPUT_NAMES.get(m, m)) for m in b["metrics"]}
    recalls = (result.gates or {}).get("class_recalls")
    if recalls and "class_recall" in network:
        network["class_recall"] = min(recalls.values())
    chosen = (result.model_choice or {}).get("type", "network") != "network"
    rows = [(f"pushed model ({exported_name(result.model_choice)})" if chosen else "network", network)]
    rows += [(m["name"], m.get("metrics")) for m in b["models"].values()]
    width = max(len(n) for n, _ in rows)
    for name, values in rows:
        shown = ("  ".join(f"{k}={v:.4f}" for k, v in values.items() if v is not None) if values
                 else "not fit: " + next(m.get("error", "") for m in b["models"].values() if m["name"] == name))
        lines.append(f"    {name.ljust(width)}  {shown}")
    return lines


def column_uses(result: RunResult) -> List[tuple]:
    """(column, what the spec makes of it, its type in the examples) for a table run's columns."""
    if not result.rows:
        return []
    data = result.spec.data
    types = data.feature_types
    uses = []
    for name, wire in result.rows.get("columns", {}).items():
        use = ("label" if name == data.label else f"{types[name]} feature" if name in types
               else "excluded" if name in data.exclude else "not a feature")
        uses.append((name, use, {"float": "float32", "int": "int64", "bytes": "string"}.get(wire, wire)))
    return uses


def label_classes(result: RunResult) -> Optional[List[str]]:
    """The classes, in the model's output order, from the run's Transform graph (None for regression)."""
    if result.spec.task != "classification" or not result.transform_graph_dir:
        return None
    import tensorflow_transform as tft

    from lamina.models.features import label_vocabulary

    return label_vocabulary(tft.TFTransformOutput(result.transform_graph_dir))


def regression_sample(result: RunResult, limit: int = 1000) -> Optional[tuple]:
    """(predicted, actual) for the first `limit` eval examples with a label, from the trained model."""
    if result.spec.task != "regression" or not result.model_dir or not result.examples_dir:
        return None
    import numpy as np
    import tensorflow as tf

    from lamina.components.warmup_pusher import first_examples
    from tfx.types import standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = result.examples_dir
    examples.split_names = '["train", "eval"]'
    serialized = first_examples(examples, "eval", limit)
    label = result.spec.data.label
    kept, actual = [], []
    for record in serialized:
        feature = tf.train.Example.FromString(record).features.feature.get(label)
        values = list(feature.float_list.value or feature.int64_list.value) if feature else []
        if values:
            kept.append(record)
            actual.append(float(values[0]))
    if not kept:
        return None
    model = tf.saved_model.load(result.model_dir)
    predicted = model.signatures[DEFAULT_SIGNATURE](inputs=tf.constant(kept))["outputs"].numpy().reshape(-1)
    return [float(p) for p in np.asarray(predicted)], actual


def forecast_baselines(forecast: Optional[dict]) -> Optional[dict]:
    """A forecast's seasonal-naive and last-value forecasts in the report's baselines table."""
    if not forecast:
        return None
    names = forecast["baseline_names"]
    return {"metrics": [m for m in ("mase", "mae", "rmse", "mape", "smape") if m in forecast["metrics"]["model"]],
            "models": {k: {"name": f"{names[k]} forecast", "metrics": forecast["metrics"][k]} for k in names},
            "train_rows": None, "eval_rows": forecast["windows"], "sampled": False}


def write_run_report(result: RunResult, path: Optional[str] = None) -> str:
    """The run's one-page HTML report: gates, data statistics, timings, training curves, metrics per
    slice, the confusion matrix or residuals, TFLite sizes and metrics, bad files and artifacts."""
    spec = result.spec
    if result.pushed:
        outcome = "model pushed" + ("" if spec.evaluation.thresholds else " (no evaluation gate set)")
    else:
        outcome = "model not pushed: it failed evaluation"
    return write_report(
        path or spec.report_path, f"Lamina run: {spec.name}", result.components, outcome, ok=result.pushed,
        evaluation_dir=result.evaluation_dir, failed_thresholds=result.failed_thresholds,
        bad_files=bad_files(result.ingest), ingest=result.ingest, rows=result.rows, columns=column_uses(result),
        statistics_dir=result.statistics_dir, model_run_dir=result.tensorboard_dir, classes=label_classes(result),
        residuals=regression_sample(result), tflite=result.tflite, explanations_dir=result.explanations_dir,
        trials=result.trials, baselines=result.baselines or forecast_baselines(result.forecast),
        model_choice=result.model_choice,
        notices=[" ".join(line.split()) for line in class_balance_lines(result.model_choice, result.metrics)],
        gates=result.gates or result.forecast, positive_class=positive_class(result),
        network_metrics=result.metrics if result.forecast else None,
        artifacts={"pushed model": result.pushed_model_dir, "trained model": result.model_dir,
                   "TFLite files": result.tflite_dir, "explanations": result.explanations_dir,
                   "evaluation": result.evaluation_dir, "anomaly report": result.anomalies_dir,
                   "TensorBoard logs": result.tensorboard_dir, "bulk inference": result.inference_dir})


def rewrite_report(run_dir: str) -> str:
    """Writes `<run_dir>/report.html` again from the run directory's ML Metadata and its resolved spec."""
    import yaml

    from lamina.spec import Spec

    run_dir = os.path.abspath(run_dir)
    spec_path = os.path.join(run_dir, "resolved_spec.yaml")
    if not storage.isfile(os.path.join(run_dir, METADATA_FILE)) or not storage.isfile(spec_path):
        raise FileNotFoundError(f"{run_dir}: not a run directory (expected metadata.sqlite and resolved_spec.yaml, "
                                f"as `lamina run` writes them)")
    data = yaml.safe_load(storage.read_text(spec_path))
    data.setdefault("runner", {})["root"] = os.path.dirname(run_dir)
    spec = Spec.from_dict(data, base_dir=run_dir)
    components = [ComponentRun(r.component, max(0.0, r.updated - r.started), r.state == "CACHED")
                  for r in latest_run_executions(spec) if r.finished]
    return write_run_report(summarize_run(spec, components))
