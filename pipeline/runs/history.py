"""`lamina runs`: the runs under a run root, read back from ML Metadata, and a model's lineage.

Each pipeline's run directory (`<runner.root>/<name>/`) holds its SQLite ML Metadata store; every
`lamina run` is one `pipeline_run` context in it. For each run this reads when it started, how it
ended (pushed, blocked by the data or by evaluation and why, failed and where), its key metric
and the version it pushed. `run_lineage` traces one run's model back: the data files and their
fingerprint, the examples, the schema, the transform graph, the hyperparameters and model spec,
the Lamina version, the evaluation, and the pushed version; `find_version` goes from a served
version folder to the run that pushed it. Nothing here runs a pipeline or writes to a store.
"""

import dataclasses
import datetime
import os
from typing import List, Optional

from lamina.constants import (ANOMALY_GATE, EVALUATOR, IMAGE_EXAMPLE_GEN, PUSHER, TRAINER, TRANSFORM, EXAMPLE_GEN_IDS,
                              METADATA_FILE)
from lamina.pipeline.runs.metadata import custom_property, open_metadata, pipeline_runs, run_outputs

# The metric a run is summed up by, first one found in its evaluation.
KEY_METRICS = ("sparse_categorical_accuracy", "accuracy", "binary_accuracy", "auc", "mean_absolute_error",
               "root_mean_squared_error", "mean_squared_error")
# Components whose failure means the data stopped the run, and the reason shown.
DATA_GATES = {"AnomalyGate": "data anomalies", **{i: "bad input rows" for i in EXAMPLE_GEN_IDS.values()},
              IMAGE_EXAMPLE_GEN: "bad input files"}


@dataclasses.dataclass
class RunSummary:
    pipeline: str
    run_id: str  # the pipeline_run context's name, as TFX's LocalDagRunner writes it
    started: float  # seconds since the epoch
    outcome: str  # pushed | blocked: ... | failed at ... | running | no push step
    metric: Optional[str] = None
    value: Optional[float] = None
    version: Optional[str] = None  # the pushed version folder's name
    pushed_to: Optional[str] = None

    @property
    def when(self) -> str:
        return datetime.datetime.fromtimestamp(self.started).strftime("%Y-%m-%d %H:%M:%S")


def _key_metric(evaluation_uri: str):
    from lamina.pipeline.runs.summary import overall_metrics

    try:
        metrics = overall_metrics(evaluation_uri)
    except Exception:  # an evaluation that did not finish writing: the run says so elsewhere
        return None, None
    name = next((m for m in KEY_METRICS if m in metrics), None)
    return (name, metrics[name]) if name else (None, None)


def runs_in_store(metadata_path: str) -> List[RunSummary]:
    """Every run one ML Metadata store records, oldest first."""
    store = open_metadata(metadata_path, readonly=True)
    summaries = []
    for run in pipeline_runs(store):
        states = run.states()
        summary = RunSummary(run.pipeline, run.run_id, run.started, "running")
        outputs = run_outputs(store, run)
        evaluation = outputs.get((EVALUATOR, "evaluation"))
        if evaluation is not None and states.get(EVALUATOR) in ("COMPLETE", "CACHED"):
            summary.metric, summary.value = _key_metric(evaluation.uri)
        failed = [c for c, s in states.items() if s == "FAILED"]
        pushed = outputs.get((PUSHER, "pushed_model"))
        if failed:
            gate = next((c for c in failed if c in DATA_GATES), None)
            summary.outcome = f"blocked: {DATA_GATES[gate]} ({gate})" if gate else f"failed at {', '.join(failed)}"
        elif pushed is not None and states.get(PUSHER) in ("COMPLETE", "CACHED"):
            if pushed.custom_properties["pushed"].int_value == 1:
                summary.outcome = "pushed"
                summary.pushed_to = pushed.custom_properties["pushed_destination"].string_value
                summary.version = os.path.basename(summary.pushed_to.rstrip("/"))
            else:
                summary.outcome = "blocked: failed evaluation"
        elif all(s in ("COMPLETE", "CACHED") for s in states.values()) and PUSHER not in states:
            summary.outcome = "no push step"
        summaries.append(summary)
    return summaries


def stores(root: str) -> List[str]:
    """The ML Metadata stores under a run root (`<root>/<name>/metadata.sqlite`), or one run directory's."""
    single = os.path.join(root, METADATA_FILE)
    if os.path.isfile(single):
        return [single]
    if not os.path.isdir(root):
        return []
    return [p for p in (os.path.join(root, n, METADATA_FILE) for n in sorted(os.listdir(root))) if os.path.isfile(p)]


def list_runs(root: str) -> List[RunSummary]:
    """The runs of every pipeline under a run root, newest first."""
    found = [run for path in stores(root) for run in runs_in_store(path)]
    return sorted(found, key=lambda r: r.started, reverse=True)


def find_run(root: str, run_id: str) -> str:
    """The metadata store under `root` that records run `run_id`."""
    for path in stores(root):
        if any(r.run_id == run_id for r in runs_in_store(path)):
            return path
    raise KeyError(f"{root}: no run {run_id!r}; `lamina runs {root}` lists them.")


def format_runs(runs: List[RunSummary]) -> str:
    rows = [("when", "pipeline", "outcome", "metric", "version", "run")]
    for r in runs:
        metric = f"{r.metric} {r.value:.4f}" if r.metric else "-"
        rows.append((r.when, r.pipeline, r.outcome, metric, r.version or "-", r.run_id))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def run_lineage(metadata_path: str, run_id: str) -> List[tuple]:
    """(what, value) lines tracing one run's model from the data files to the pushed version."""
    import json


    store = open_metadata(metadata_path, readonly=True)
    runs = {r.run_id: r for r in pipeline_runs(store)}
    if run_id not in runs:
        known = ", ".join(sorted(runs)[-5:]) or "none"
        raise KeyError(f"{metadata_path}: no run {run_id!r}; the newest runs: {known}")
    summary = next(r for r in runs_in_store(metadata_path) if r.run_id == run_id)
    run = runs[run_id]
    executions = {run.component_of[ex.id]: ex for ex in run.executions if ex.id in run.component_of}
    outputs = run_outputs(store, run)
    lines = [("run", f"{run_id} ({summary.when}), {summary.outcome}")]
    gen = next((n for n in executions if n.endswith("ExampleGen")), None)
    if gen:
        ex = executions[gen]
        pattern = ""
        try:
            splits = json.loads(custom_property(ex, "input_config") or "{}").get("splits", [])
            pattern = splits[0].get("pattern", "") if splits else ""
        except ValueError:
            pass
        lines.append(("data", os.path.join(custom_property(ex, "input_base") or "", pattern)))
        examples = outputs.get((gen, "examples"))
        if examples is not None:
            lines.append(("data fingerprint", examples.custom_properties["input_fingerprint"].string_value))
            lines.append(("examples", examples.uri))
    for what, key in (("schema", (ANOMALY_GATE, "validated_schema")), ("transform graph", (TRANSFORM, "transform_graph")),
                      ("model", (TRAINER, "model")), ("evaluation", (EVALUATOR, "evaluation"))):
        if key in outputs:
            lines.append((what, outputs[key].uri))
    trainer = executions.get(TRAINER)
    if trainer is not None:
        config = json.loads(custom_property(trainer, "custom_config") or "{}")
        spec = json.loads(config.get("spec", "{}"))
        training = spec.get("training", {})
        shown = {k: training[k] for k in ("epochs", "batch_size", "learning_rate", "optimizer", "seed")
                 if k in training}
        lines.append(("hyperparameters", ", ".join(f"{k}={v}" for k, v in shown.items())))
        lines.append(("model spec", json.dumps(spec.get("model", {}), sort_keys=True)))
        lines.append(("Lamina", config.get("lamina_version", "(not recorded: a run from before Lamina recorded it)")))
    if summary.metric:
        lines.append(("key metric", f"{summary.metric} {summary.value:.4f}"))
    lines.append(("pushed", summary.pushed_to or "(not pushed)"))
    return lines


def find_version(root: str, model_dir: str, version: str):
    """(metadata path, run id) of the run that pushed `<model_dir>/<version>`, searching the run root."""
    target = os.path.abspath(os.path.join(model_dir, str(version))) if "://" not in model_dir else \
        f"{model_dir.rstrip('/')}/{version}"
    for path in stores(root):
        for run in runs_in_store(path):
            if run.pushed_to and run.pushed_to.rstrip("/") == target:
                return path, run.run_id
    raise KeyError(f"no run under {root} pushed {target}")


def format_lineage(lines: List[tuple]) -> str:
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)
