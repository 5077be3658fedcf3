"""Runs the pipeline locally: LocalDagRunner on Beam's DirectRunner, ML Metadata in SQLite.

It only works out paths, calls `create_pipeline`, and reports: one line per component
with its duration, then the pushed model, the metrics and the anomaly report.
"""

import contextlib
import dataclasses
import logging
import os
import sys
import time
from typing import Dict, List, Optional, TextIO

from pipeline.report import slice_metrics, write_report
from pipeline.spec import Spec, SpecError

log = logging.getLogger("lamina")


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


class ComponentProgress(logging.Handler):
    """Prints one line per component with its duration, and whether it came from the cache.

    It wraps TFX's component launcher for the length of a run (timing each launch) and
    listens for TFX's 'A cached execution ... is used.' log record.
    """

    def __init__(self, total: int, stream: TextIO):
        super().__init__(level=logging.INFO)
        self.total = total
        self.stream = stream
        self.runs: List[ComponentRun] = []
        self.current: Optional[str] = None
        self._start = 0.0
        self._cached = False

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith("A cached execution"):
            self._cached = True

    def begin(self, name: str) -> None:
        self.current, self._start, self._cached = name, time.perf_counter(), False

    def end(self) -> None:
        run = ComponentRun(self.current, time.perf_counter() - self._start, self._cached)
        self.runs.append(run)
        note = "  (cached)" if run.cached else ""
        print(f"[{len(self.runs):>2}/{self.total}] {run.name:<28} {run.seconds:6.1f}s{note}",
              file=self.stream, flush=True)
        self.current = None

    @contextlib.contextmanager
    def attached(self):
        from tfx.orchestration.portable import launcher

        absl_logger = logging.getLogger("absl")
        original = launcher.Launcher.launch
        progress = self

        def launch(launcher_self):
            # Components may reset log levels (Beam, TFT); the cache record must still reach us.
            absl_logger.setLevel(logging.INFO)
            progress.begin(launcher_self._pipeline_node.node_info.id)  # pylint: disable=protected-access
            result = original(launcher_self)
            progress.end()
            return result

        absl_logger.addHandler(self)
        launcher.Launcher.launch = launch
        try:
            yield self
        finally:
            launcher.Launcher.launch = original
            absl_logger.removeHandler(self)


def quiet_logs(verbose: bool = False) -> None:
    """TFX logs whole protos at INFO; people see our progress lines instead.

    With `verbose`, TFX's, Beam's and TensorFlow's own logs go to stderr as usual.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)  # our progress handler reads TFX's INFO records
    absl_logger.propagate = verbose
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore")
        for name in ("tensorflow", "apache_beam", "tensorflow_transform", "tensorflow_model_analysis"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            from absl import logging as absl_logging

            absl_logger.removeHandler(absl_logging.get_absl_handler())
        except ImportError:
            pass


def check_pretrained_models(spec: Spec) -> None:
    """Reads each pretrained text model's config and vocabulary before anything runs.

    Raises SpecError naming the encoder's key, the file and the key inside it, so a wrong path
    fails in a second, not after ingestion and Transform.
    """
    from models.text import TextModelError, inspect_pretrained, resolve_path

    problems = []
    for key, enc in spec.model.encoders.items():
        if getattr(enc, "type", None) == "bert":
            try:
                inspect_pretrained(resolve_path(enc.path, spec.base_dir))
            except TextModelError as e:
                problems.append(f"model.encoders.{key}.path: {e}")
    if problems:
        raise SpecError(problems)


def run_pipeline(spec: Spec, stream: TextIO = sys.stdout, verbose: bool = False) -> RunResult:
    """Runs `spec` end to end and returns what it produced.

    Raises:
      SpecError: the data path matches no file, or a pretrained model directory is unusable.
      DataAnomaliesError: validation found anomalies; nothing was transformed, trained or pushed.
      ModelNotBlessedError: the model missed a threshold; it was not pushed.
    """
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from components.anomaly_gate import DataAnomaliesError
    from components.image_example_gen import BadInputFilesError
    from pipeline.pipeline import create_pipeline

    spec.check_data_exists()
    check_pretrained_models(spec)
    quiet_logs(verbose)
    os.makedirs(spec.run_dir, exist_ok=True)
    pipeline = create_pipeline(spec)
    progress = ComponentProgress(len(pipeline.components), stream)
    print(f"Running pipeline {spec.name!r} ({len(pipeline.components)} components); run directory {spec.run_dir}",
          file=stream, flush=True)
    try:
        with progress.attached():
            LocalDagRunner().run(pipeline)
    except DataAnomaliesError as e:
        print(f"[{len(progress.runs) + 1:>2}/{progress.total}] {progress.current}: stopped the run",
              file=stream, flush=True)
        e.report = write_report(spec.report_path, f"Lamina run: {spec.name}", progress.runs,
                                "stopped: data validation found anomalies", ok=False, anomalies=e.anomalies,
                                artifacts={"anomaly report": e.report_dir})
        raise e from None
    except BadInputFilesError as e:
        print(f"[{len(progress.runs) + 1:>2}/{progress.total}] {progress.current}: stopped the run",
              file=stream, flush=True)
        e.report = write_report(spec.report_path, f"Lamina run: {spec.name}", progress.runs,
                                "stopped: " + str(e).splitlines()[0], ok=False, bad_files=e.bad,
                                artifacts={"ingestion report": e.report_path})
        raise e from None
    except Exception as e:
        if progress.current:
            raise RuntimeError(f"Component {progress.current} failed: {type(e).__name__}: {e}") from e
        raise
    result = summarize_run(spec, progress.runs)
    result.report = write_report(
        spec.report_path, f"Lamina run: {spec.name}", result.components,
        "model pushed" if result.pushed else "model not pushed: it failed evaluation", ok=result.pushed,
        evaluation_dir=result.evaluation_dir, failed_thresholds=result.failed_thresholds,
        bad_files=_bad_files(result.ingest), ingest=result.ingest,
        artifacts={"pushed model": result.pushed_model_dir, "trained model": result.model_dir,
                   "evaluation": result.evaluation_dir, "anomaly report": result.anomalies_dir,
                   "TensorBoard logs": result.tensorboard_dir, "bulk inference": result.inference_dir})
    if not result.pushed:
        raise ModelNotBlessedError(result)
    return result


def _bad_files(ingest: Optional[dict]) -> list:
    from components.image_example_gen import BadFile

    return [BadFile(**b) for b in (ingest or {}).get("bad_files", [])]


def summarize_run(spec: Spec, components: List[ComponentRun]) -> RunResult:
    """Reads the latest run's outputs from ML Metadata."""
    outputs = latest_run_outputs(spec)
    result = RunResult(spec=spec, components=components)
    images = outputs.get(("ImageExampleGen", "examples"))
    if images:
        from components.image_example_gen import read_report

        result.ingest = read_report(images.uri)
    anomalies = outputs.get(("ExampleValidator", "anomalies"))
    result.anomalies_dir = anomalies.uri if anomalies else None
    model = outputs.get(("Trainer", "model"))
    result.model_dir = os.path.join(model.uri, "Format-Serving") if model else None
    model_run = outputs.get(("Trainer", "model_run"))
    result.tensorboard_dir = model_run.uri if model_run else None
    evaluation = outputs.get(("Evaluator", "evaluation"))
    if evaluation:
        result.evaluation_dir = evaluation.uri
        result.metrics = overall_metrics(evaluation.uri)
        result.failed_thresholds = failed_thresholds(evaluation.uri)
    blessing = outputs.get(("Evaluator", "blessing"))
    if blessing:
        result.blessed = bool(blessing.custom_properties["blessed"].int_value)
    pushed = outputs.get(("Pusher", "pushed_model"))
    if pushed and pushed.custom_properties["pushed"].int_value == 1:
        result.pushed = True
        result.pushed_model_dir = pushed.custom_properties["pushed_destination"].string_value
    inference = outputs.get(("BulkInferrer", "inference_result"))
    result.inference_dir = inference.uri if inference else None
    return result


def _latest_run(spec: Spec):
    """(store, executions of the newest pipeline run, execution id -> component id)."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(spec.metadata_path))
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return store, [], {}
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = store.get_executions_by_context(run.id)
    node_type = store.get_context_type("node").id
    node_of = {}
    for ex in executions:
        for ctx in store.get_contexts_by_execution(ex.id):
            if ctx.type_id == node_type and ctx.name.startswith(f"{spec.name}."):
                node_of[ex.id] = ctx.name[len(spec.name) + 1:]
    return store, executions, node_of


def latest_run_states(spec: Spec) -> Dict[str, str]:
    """Component id -> execution state (COMPLETE, CACHED, FAILED...) in the newest run."""
    from ml_metadata.proto import metadata_store_pb2

    _, executions, node_of = _latest_run(spec)
    return {node_of[ex.id]: metadata_store_pb2.Execution.State.Name(ex.last_known_state)
            for ex in executions if ex.id in node_of}


def latest_run_outputs(spec: Spec) -> Dict[tuple, object]:
    """(component id, output key) -> artifact, for the newest pipeline run in ML Metadata."""
    from ml_metadata.proto import metadata_store_pb2

    store, _, node_of = _latest_run(spec)
    if not node_of:
        return {}
    events = store.get_events_by_execution_ids(list(node_of))
    outputs = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    wanted = [e for e in events if e.type in outputs]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list({e.artifact_id for e in wanted}))}
    out = {}
    for e in wanted:
        key = e.path.steps[0].key if e.path.steps else ""
        out[(node_of[e.execution_id], key)] = artifacts[e.artifact_id]
    return out


def overall_metrics(evaluation_dir: str) -> Dict[str, float]:
    """The unsliced metrics TFMA computed, by name."""
    return dict(slice_metrics(evaluation_dir)).get("all examples", {})


def failed_thresholds(evaluation_dir: str) -> List[str]:
    """One readable line per failed threshold: metric, slice, value, bound and the gap."""
    import tensorflow_model_analysis as tfma

    validation = tfma.load_validation_result(evaluation_dir)
    lines = []
    for per_slice in validation.metric_validations_per_slice:
        where = _slice_name(per_slice.slice_key)
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
    if not lines and not validation.validation_ok:
        for reason in validation.missing_thresholds:
            lines.append(f"no value computed for threshold on {reason.metric_key.name}")
        for ms in validation.missing_slices:
            lines.append(f"slice {ms} had no examples")
    return lines


def _slice_name(slice_key) -> str:
    parts = [f"{c.column}={c.bytes_value.decode() if c.bytes_value else (c.int64_value or c.float_value)}"
             for c in slice_key.single_slice_keys]
    return ", ".join(parts) if parts else "all examples"


def format_result(result: RunResult) -> str:
    lines = [f"Pipeline finished in {result.seconds:.1f}s."]
    if result.metrics:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items()))
        lines.append(f"  metrics (eval split): {shown}")
    if result.ingest:
        i = result.ingest
        lines.append(f"  images:         {i['examples']} examples from {i['files']} files in {len(i['classes'])} "
                     f"classes; {i['bad']} bad file(s) skipped" + (" (listed in the report)" if i["bad"] else ""))
    lines.append(f"  pushed model:   {result.pushed_model_dir or '(not pushed)'}")
    lines.append(f"  metrics:        {result.evaluation_dir}")
    lines.append(f"  anomaly report: {result.anomalies_dir}")
    if result.inference_dir:
        lines.append(f"  inference:      {result.inference_dir}")
    lines.append(f"  TensorBoard:    tensorboard --logdir {result.tensorboard_dir}")
    lines.append(f"  report:         {result.report}")
    return "\n".join(lines)
