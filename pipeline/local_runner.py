"""Runs the pipeline locally: LocalDagRunner on Beam's DirectRunner, ML Metadata in SQLite.

It works out nothing but the run directory, calls `create_pipeline`, and shows progress: one
line per component with its duration, taken from the start and end records TFX's
LocalDagRunner logs (and its launcher's record of a cached execution). What the run produced is
read back from ML Metadata by `lamina.pipeline.results`.
"""

import logging
import os
import sys
from typing import List, Optional, TextIO

from lamina.pipeline.results import ComponentRun, ModelNotBlessedError, RunResult, summarize_run, write_run_report
from lamina.pipeline.report import write_report
from lamina.pipeline.spec import Spec, SpecError

__all__ = ["ComponentProgress", "ModelNotBlessedError", "RunResult", "check_pretrained_models", "quiet_logs",
           "run_pipeline"]

# What TFX logs (absl, INFO) around each component, and when a cached result stands in for a run.
_STARTED = "Component %s is running."
_FINISHED = "Component %s is finished."
_CACHED_PREFIX = "A cached execution"


class ComponentProgress(logging.Handler):
    """Prints one line per component with its duration, and whether it came from the cache.

    Listens to TFX's own log records: LocalDagRunner's 'Component X is running.' and 'Component
    X is finished.', and the launcher's 'A cached execution N is used.'.
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
        if record.msg == _STARTED and record.args:
            self.current, self._start, self._cached = str(record.args[0]), record.created, False
        elif record.msg == _FINISHED and record.args and self.current == str(record.args[0]):
            self._finish(record.created)
        elif isinstance(record.msg, str) and record.msg.startswith(_CACHED_PREFIX):
            self._cached = True

    def _finish(self, when: float) -> None:
        run = ComponentRun(self.current, max(0.0, when - self._start), self._cached)
        self.runs.append(run)
        note = "  (cached)" if run.cached else ""
        print(f"[{len(self.runs):>2}/{self.total}] {run.name:<28} {run.seconds:6.1f}s{note}",
              file=self.stream, flush=True)
        self.current = None

    def stopped(self) -> str:
        """The progress line for the component that stopped the run."""
        return f"[{len(self.runs) + 1:>2}/{self.total}] {self.current}: stopped the run"


def quiet_logs(verbose: bool = False) -> None:
    """TFX logs whole protos at INFO; people see our progress lines instead.

    With `verbose`, TFX's, Beam's and TensorFlow's own logs go to stderr as usual.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)  # the progress handler reads TFX's INFO records
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
    from lamina.models.text import TextModelError, inspect_pretrained, resolve_path
    from lamina.pipeline.spec import BertEncoder

    problems = []
    for key, enc in spec.model.encoders.items():
        if isinstance(enc, BertEncoder):
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
      BadInputFilesError: too many unusable image files; nothing was trained or pushed.
      ModelNotBlessedError: the model missed a threshold; it was not pushed.
    """
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from lamina.components.anomaly_gate import DataAnomaliesError
    from lamina.components.image_example_gen import BadInputFilesError
    from lamina.pipeline.pipeline import create_pipeline

    spec.check_data_exists()
    check_pretrained_models(spec)
    quiet_logs(verbose)
    os.makedirs(spec.run_dir, exist_ok=True)
    pipeline = create_pipeline(spec)
    progress = ComponentProgress(len(pipeline.components), stream)
    print(f"Running pipeline {spec.name!r} ({len(pipeline.components)} components); run directory {spec.run_dir}",
          file=stream, flush=True)
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)
    absl_logger.addHandler(progress)
    title = f"Lamina run: {spec.name}"
    try:
        LocalDagRunner().run(pipeline)
    except DataAnomaliesError as e:
        print(progress.stopped(), file=stream, flush=True)
        e.report = write_report(spec.report_path, title, progress.runs, "stopped: data validation found anomalies",
                                ok=False, anomalies=e.anomalies, artifacts={"anomaly report": e.report_dir})
        raise e from None
    except BadInputFilesError as e:
        print(progress.stopped(), file=stream, flush=True)
        e.report = write_report(spec.report_path, title, progress.runs, "stopped: " + str(e).splitlines()[0],
                                ok=False, bad_files=e.bad, artifacts={"ingestion report": e.report_path})
        raise e from None
    except Exception as e:
        if progress.current:
            raise RuntimeError(f"Component {progress.current} failed: {type(e).__name__}: {e}") from e
        raise
    finally:
        absl_logger.removeHandler(progress)
    result = summarize_run(spec, progress.runs)
    result.report = write_run_report(result)
    if not result.pushed:
        raise ModelNotBlessedError(result)
    return result
