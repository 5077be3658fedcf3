"""The run report: one self-contained HTML page per run, rendered from a jinja2 template.

It holds the outcome and gates, anomalies, the rows and columns (or images) read, data statistics
with a histogram per feature, the component timings, training curves, metrics overall and per
slice, the confusion matrix (or residuals for regression) and the TFLite sizes and metrics. Plots
are inline SVG (matplotlib), so the page opens offline. Written to `<run dir>/report.html` after
every run, including runs stopped by a gate; `lamina report RUN_DIR` writes it again.
"""

import dataclasses
import datetime
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

from lamina import storage
import lamina.pipeline.runs.plots as plots  # the module, not the package: no import circle through lamina.pipeline

TEMPLATE = "report.html.j2"
MAX_HISTOGRAMS = 40  # features plotted; the table lists them all


def slice_metrics(evaluation_dir: str) -> List[Tuple[str, Dict[str, float]]]:
    """(slice name, metrics by TFMA's names, example_count included) for every slice, overall first."""
    from lamina.components.gates import read_slices

    return [(r["slice"], dict(r["metrics"], example_count=float(r["count"]))) for r in read_slices(evaluation_dir)]


def confusion_counts(evaluation_dir: str, classes: Sequence[str]) -> Optional[List[List[float]]]:
    """The unsliced multi-class confusion matrix TFMA computed (actual x predicted), or None."""
    from lamina.components import gates

    return gates.confusion_counts(evaluation_dir, len(classes))


def tuning_section(trials: Optional[dict]) -> Optional[dict]:
    """The Tuner's trials for the page: a row per trial (best first marked), the parameter columns, the curves."""
    if not trials or not trials.get("trials"):
        return None
    rows = trials["trials"]
    best = (trials.get("best") or {}).get("trial")
    params = sorted({k for r in rows for k in r["values"]})
    return dict(trials, params=params, best_trial=best,
                rows=[dict(r, cells=[r["values"].get(p) for p in params], best=r["trial"] == best) for r in rows],
                plot=plots.trial_curves(rows, trials["objective"]))


def baselines_section(baselines: Optional[dict], overall: Dict[str, float], gates: Optional[dict],
                      choice: Optional[dict] = None) -> Optional[dict]:
    """The pushed model's metrics beside each baseline's, which one leads on the first metric, and what
    `model.type: auto` chose (its candidates' scores on the eval split)."""
    from lamina.models.trees import MODEL_NAMES
    from lamina.spec import TFMA_OUTPUT_NAMES, higher_is_better

    if not baselines or not baselines.get("models"):
        return None
    metrics = list(baselines["metrics"])
    network = {m: overall.get(TFMA_OUTPUT_NAMES.get(m, m)) for m in metrics}
    recalls = (gates or {}).get("class_recalls")
    if "class_recall" in network and recalls:
        network["class_recall"] = min(recalls.values())
    exported = MODEL_NAMES[(choice or {}).get("exported", "network")]
    rows = [{"name": f"{exported} (this run)", "metrics": network, "error": None}]
    rows += [{"name": b["name"], "metrics": b.get("metrics", {}), "error": b.get("error")}
             for b in baselines["models"].values()]
    first = metrics[0]
    scored = [(r["name"], r["metrics"].get(first)) for r in rows if r["metrics"].get(first) is not None]
    leader = None
    if scored:
        leader = (max if higher_is_better(first) else min)(scored, key=lambda kv: kv[1])
    gate = next((g for g in (gates or {}).get("gates", []) if g["gate"] == "baseline"), None)
    return {"metrics": metrics, "rows": rows, "leader": leader, "metric": first, "gate": gate,
            "train_rows": baselines.get("train_rows"), "eval_rows": baselines.get("eval_rows"),
            "sampled": baselines.get("sampled"), "choice": _choice(choice)}


def _choice(choice: Optional[dict]) -> Optional[dict]:
    from lamina.models.trees import MODEL_NAMES, choice_reason

    if not choice or not choice.get("scores"):
        return None
    return {"metric": choice["metric"], "exported": MODEL_NAMES[choice["exported"]],
            "scores": [(MODEL_NAMES[k], v, k == choice["exported"]) for k, v in choice["scores"].items()],
            "reason": choice_reason(choice)}


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}"


def read_statistics(statistics_dir: str, split: str = "train") -> Optional[dict]:
    """Per-feature summary and histogram from StatisticsGen's output for `split`."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    path = os.path.join(statistics_dir, f"Split-{split}", "FeatureStats.pb")
    if not storage.isfile(path):
        return None
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with storage.open_binary(path) as f:
        stats.ParseFromString(f.read())
    if not stats.datasets:
        return None
    dataset = stats.datasets[0]
    features = []
    for i, f in enumerate(sorted(dataset.features, key=lambda f: f.path.step[-1] if f.path.step else f.name)):
        name = ".".join(f.path.step) or f.name
        row = {"name": name, "type": "", "missing": "", "mean": "", "std": "", "min": "", "max": "", "distinct": "",
               "plot": ""}
        if f.HasField("num_stats"):
            s = f.num_stats
            row.update(type="number", missing=s.common_stats.num_missing, mean=_fmt(s.mean), std=_fmt(s.std_dev),
                       min=_fmt(s.min), max=_fmt(s.max))
            standard = next((h for h in s.histograms if h.type == h.STANDARD), None)
            if s.min == s.max:
                row["distinct"] = 1  # constant: nothing to plot
            elif standard and i < MAX_HISTOGRAMS and standard.buckets:
                row["plot"] = plots.numeric_histogram(
                    [(b.low_value, b.high_value, b.sample_count) for b in standard.buckets], name)
        elif f.HasField("string_stats"):
            s = f.string_stats
            row.update(type="string", missing=s.common_stats.num_missing, distinct=s.unique)
            top = [(v.value, v.frequency) for v in s.top_values]
            # Not plotted: a value per example (paths, IDs) or binary blobs (TFDV's __BYTES_VALUE__).
            unique_per_example = s.unique >= dataset.num_examples - s.common_stats.num_missing
            if top and i < MAX_HISTOGRAMS and not unique_per_example and top[0][0] != "__BYTES_VALUE__":
                row["plot"] = category_plot(name, top, s.unique)
        elif f.HasField("bytes_stats"):
            row.update(type="bytes", missing=f.bytes_stats.common_stats.num_missing, distinct=f.bytes_stats.unique)
        features.append(row)
    return {"split": split, "examples": dataset.num_examples, "features": features}


def category_plot(name: str, top: List[tuple], unique: int) -> str:
    shown = f"{name} (top {min(len(top), 12)} of {unique})" if unique > 12 else name
    return plots.category_bars(top, shown)


def read_history(model_run_dir: Optional[str]) -> List[dict]:
    """The Trainer's per-epoch history (history.json in its model_run output), or []."""
    from lamina.models.artifacts import HISTORY_FILE

    if not model_run_dir:
        return []
    path = os.path.join(model_run_dir, HISTORY_FILE)
    if not storage.isfile(path):
        return []
    return storage.read_json(path).get("epochs", [])


def training_curves(epochs: List[dict]) -> List[Tuple[str, str]]:
    names = sorted({k for e in epochs for k in e if k != "epoch" and not k.startswith("val_")},
                   key=lambda k: (k != "loss", k))
    return [(n, plots.training_curves(epochs, n)) for n in names if n != "learning_rate"]


@dataclasses.dataclass
class _Component:
    name: str
    seconds: float
    cached: bool
    width: int


def read_explanations(explanations_dir: Optional[str]) -> Optional[dict]:
    """The Explainer's record, with its Grad-CAM PNGs inlined and its texts' token colours, for the page."""
    import base64

    from lamina.models.explain import EXPLANATIONS_FILE, token_spans
    if not explanations_dir:
        return None
    path = os.path.join(explanations_dir, EXPLANATIONS_FILE)
    if not storage.isfile(path):
        return None
    record = storage.read_json(path)
    if "error" in record:
        return {"error": record["error"]}
    record["error"] = None
    examples = record.get("examples", [])
    for image in record.get("images", []):
        with storage.open_binary(os.path.join(explanations_dir, image["file"])) as f:
            image["src"] = "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")
        image.update({k: examples[image["example"]].get(k) for k in ("label", "predicted", "correct")})
    record["importance_plot"] = plots.importance(record["tabular"], record.get("method", "Integrated Gradients")) \
        if record.get("tabular") else ""
    record["texts"] = [
        {"feature": feature, "rows": [dict(examples[i], spans=token_spans(r["tokens"], r["attributions"]))
                                      for i, r in enumerate(rows)]}
        for feature, rows in (record.get("text") or {}).items()]
    record["table"] = []
    if record.get("tabular"):
        names = [r["feature"] for r in record["tabular"][:5]]  # the most important; the JSON has them all
        record["table_columns"] = names
        record["table"] = [dict(e, cells=[e.get("attributions", {}).get(n) for n in names]) for e in examples[:10]]
    return record


def render(context: dict) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("lamina.pipeline.runs", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template(TEMPLATE).render(**context)


def write_report(path: str, title: str, components: Sequence, outcome: str, ok: bool,
                 evaluation_dir: Optional[str] = None, anomalies: Sequence = (),
                 failed_thresholds: Sequence[str] = (), artifacts: Optional[Dict[str, str]] = None,
                 bad_files: Sequence = (), ingest: Optional[dict] = None, rows: Optional[dict] = None,
                 columns: Sequence[Tuple[str, str, str]] = (), statistics_dir: Optional[str] = None,
                 model_run_dir: Optional[str] = None, classes: Optional[Sequence[str]] = None,
                 residuals: Optional[Tuple[Sequence[float], Sequence[float]]] = None,
                 tflite: Optional[dict] = None, explanations_dir: Optional[str] = None,
                 trials: Optional[dict] = None, baselines: Optional[dict] = None,
                 gates: Optional[dict] = None, positive_class: Optional[str] = None,
                 model_choice: Optional[dict] = None, notices: Sequence[str] = (), network_metrics: Optional[Dict[str, float]] = None) -> str:
    """Writes the page and returns its path.

    `rows` is a table ingestion's report, `columns` (name, use, wire type) its columns,
    `statistics_dir` StatisticsGen's output, `model_run_dir` the Trainer's (history.json),
    `classes` the label's classes (for the confusion matrix), `residuals` (predicted, actual) on
    eval examples of a regression, `tflite` TFLiteExporter's report, `explanations_dir` the Explainer's output,
    `trials` the Tuner's trials.json, `baselines` baselines.json, `gates` the PushGate's gates.json,
    `model_choice` the Trainer's model_choice.json, `notices` lines shown under the outcome (the
    threshold class weights imply, accuracy below the majority class's share), `network_metrics` the model's metrics when no TFMA
    evaluation holds them (a forecast's).
    """
    from lamina.spec import TFMA_OUTPUT_NAMES

    longest = max([c.seconds for c in components] + [1e-9])
    metrics = slice_metrics(evaluation_dir) if evaluation_dir and storage.isdir(evaluation_dir) else []
    confusion = None
    if metrics and classes:
        matrix = confusion_counts(evaluation_dir, classes)
        confusion = plots.confusion_matrix(matrix, classes) if matrix else None
    statistics = read_statistics(statistics_dir) if statistics_dir else None
    epochs = read_history(model_run_dir)
    if tflite:
        written = [f for f in tflite["forms"] if f.get("size_bytes")]
        tflite = dict(tflite, plot=plots.sizes([f["form"] for f in written],
                                               [f["size_bytes"] / 1024 for f in written]) if written else "")
    context = {
        "title": title, "when": f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}", "outcome": outcome, "ok": ok,
        "failed_thresholds": list(failed_thresholds), "notices": list(notices), "anomalies": list(anomalies), "rows": rows,
        "columns": list(columns), "ingest": ingest, "bad_files": list(bad_files), "statistics": statistics,
        "components": [_Component(c.name, c.seconds, c.cached, int(300 * c.seconds / longest)) for c in components],
        "curves": training_curves(epochs), "epochs": len(epochs),
        "metrics": metrics, "metric_names": sorted({k for _, m in metrics for k in m}),
        # (slice, TFMA metric name) -> the failed gate's message: the cells the page marks
        "failing": {(g["slice"], TFMA_OUTPUT_NAMES.get(g["metric"], g["metric"])): g["message"]
                    for g in (gates or {}).get("gates", []) if not g["passed"] and g.get("slice")},
        "gates": (gates or {}).get("gates", []), "positive_class": positive_class,
        "tuning": tuning_section(trials),
        "baselines": baselines_section(baselines, network_metrics or (dict(metrics).get("all examples", {})
                                                                      if metrics else {}), gates, model_choice),
        "confusion": confusion,
        "residuals": {"svg": plots.residuals(*residuals), "count": len(residuals[0])} if residuals else None,
        "tflite": tflite, "artifacts": artifacts or {}, "explanations": read_explanations(explanations_dir),
    }
    context["sections"] = [(anchor, label) for anchor, label, present in (
        ("gates", "gates", failed_thresholds or context["gates"]), ("anomalies", "anomalies", anomalies),
        ("data", "data", rows or ingest), ("statistics", "statistics", statistics),
        ("components", "components", True), ("tuning", "tuning", context["tuning"]),
        ("training", "training", context["curves"]),
        ("metrics", "metrics", metrics), ("baselines", "baselines", context["baselines"]),
        ("confusion", "confusion matrix", confusion),
        ("residuals", "residuals", residuals), ("explanations", "explanations", context["explanations"]),
        ("tflite", "TFLite", tflite),
        ("artifacts", "artifacts", artifacts)) if present]
    return storage.write_text(path, render(context))
