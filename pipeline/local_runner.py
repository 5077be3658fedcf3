"""Runs the pipeline locally: LocalDagRunner on Beam's DirectRunner, ML Metadata in SQLite.

It works out nothing but the run directory, calls `create_pipeline`, and shows progress: one
line per component with its duration and whether it came from the cache, as ML Metadata
records each execution (read-only, from a thread that polls the store while TFX writes it).
What the run produced is read back by `lamina.pipeline.runs.summary`.
"""

import contextlib
import json
import logging
import os
import sys
import threading
import time
import warnings
from typing import List, Optional, TextIO

from lamina.constants import BEAM_PICKLER_FLAG, STATISTICS_GEN
from lamina import storage
from lamina.pipeline.runs.report import write_report
from lamina.pipeline.runs.metadata import ExecutionRecord
from lamina.pipeline.runs.summary import (ComponentRun, ModelNotBlessedError, RunResult, latest_run_executions,
                                          latest_run_outputs, open_store, summarize_run, write_run_report)
from lamina.spec import Spec, SpecError

__all__ = ["ComponentProgress", "ModelNotBlessedError", "RunResult", "check_pretrained_models", "local_beam_args",
           "run_pipeline"]


class ComponentProgress:
    """Prints one line per component when ML Metadata records it finished: its duration, and
    '(cached)' when TFX reused an earlier execution.

    `poll()` reads the store once; `watching()` polls it from a thread for the length of a run.
    """

    def __init__(self, spec: Spec, total: int, stream: TextIO, poll_seconds: float = 0.5):
        self.spec = spec
        self.total = total
        self.stream = stream
        self.poll_seconds = poll_seconds
        self.runs: List[ComponentRun] = []
        self.running: Optional[str] = None  # the component ML Metadata last saw start
        self.failed: Optional[str] = None
        self._since_ms = int(time.time() * 1000) - 1000
        self._store = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def poll(self) -> None:
        with self._lock:
            records = self._read()
            done = {r.name for r in self.runs}
            for record in records:
                if record.state == "FAILED":
                    self.failed = record.component
                elif record.finished and record.component not in done:
                    self._print(record)
                elif not record.finished:
                    self.running = record.component

    def _read(self) -> List[ExecutionRecord]:
        if not os.path.exists(self.spec.metadata_path):
            return []
        try:
            self._store = self._store or open_store(self.spec, readonly=True)
            return latest_run_executions(self.spec, self._store, self._since_ms)
        except Exception:  # noqa: BLE001 - the store is being created or written: read it next time
            self._store = None
            return []

    def _print(self, record: ExecutionRecord) -> None:
        run = ComponentRun(record.component, max(0.0, record.updated - record.started), record.state == "CACHED")
        self.runs.append(run)
        note = "  (cached)" if run.cached else ""
        print(f"[{len(self.runs):>2}/{self.total}] {run.name:<28} {run.seconds:6.1f}s{note}",
              file=self.stream, flush=True)

    def watching(self) -> "ComponentProgress":
        def loop():
            while not self._stop.wait(self.poll_seconds):
                self.poll()

        self._thread = threading.Thread(target=loop, name="lamina-progress", daemon=True)
        self._thread.start()
        return self

    def __enter__(self):
        return self.watching()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.poll()  # what finished since the last look

    @property
    def current(self) -> Optional[str]:
        """The component that failed, else the one running."""
        return self.failed or self.running

    def stopped(self) -> str:
        """The progress line for the component that stopped the run."""
        return f"[{len(self.runs) + 1:>2}/{self.total}] {self.current}: stopped the run"


def check_pretrained_models(spec: Spec) -> None:
    """Reads each pretrained text model's config and vocabulary before anything runs.

    Raises SpecError naming the encoder's key, the file and the key inside it, so a wrong path
    fails in a second, not after ingestion and Transform.
    """
    from lamina.spec import BertEncoder

    problems = []
    for key, enc in spec.model.encoders.items():
        if isinstance(enc, BertEncoder):
            from lamina.models.text import TextModelError, inspect_pretrained, resolve_path

            try:
                inspect_pretrained(resolve_path(enc.path, spec.base_dir))
            except TextModelError as e:
                problems.append(f"model.encoders.{key}.path: {e}")
    if problems:
        raise SpecError(problems)


def prepare_spec(spec: Spec, stream: Optional[TextIO] = None) -> Spec:
    """Checks the data before anything runs and returns the spec the pipeline is built from.

    A CSV is scanned (encoding, header, rows, labels: CsvInputError names the file and line) and
    its columns' roles are inferred where the spec names no features; the roles table goes to
    `stream`. Other formats are returned as they are, once their path exists.
    """
    from lamina.pipeline.profile import format_roles, profile_data, resolve_spec

    problems = []
    for key, path in (("runner.pipeline_root", spec.runner.pipeline_root), ("serving.push_dir", spec.push_dir)):
        try:
            storage.check_filesystem(spec.resolve(path) if path else "")
        except storage.UnsupportedFilesystem as e:
            problems.append(f"{key}: {e}")
    if problems:
        raise SpecError(problems)
    files = spec.check_data_exists()
    if spec.data.is_files:
        folder = spec.resolve(spec.data.path)
        if spec.data.format != "image_csv" and not storage.is_uri(folder):
            from lamina.cells import CsvInputError
            from lamina.pipeline.profile import media_folder_problem

            problem = media_folder_problem(folder, (spec.data.audio if spec.data.is_audio else spec.data.images).extensions)
            if problem:
                raise CsvInputError(f"{problem} (data.format: {spec.data.format}).")
        return spec
    profile = profile_data(spec, files)
    if stream is not None:
        what = "inferred from the data" if spec.data.features is None else "as the spec declares them"
        print(f"Columns of {spec.data.path} ({what}):\n{format_roles(profile)}", file=stream, flush=True)
    return resolve_spec(spec, profile)


# TFX's Beam executors package TFX itself for remote workers (`tfx_ephemeral`, built by
# tfx.utils.dependency_utils.make_beam_dependency_flags: 3.7 s per component on 2 cores, and 42 MB left
# in /tmp every time) unless one of these Beam flags says the workers have their dependencies already.
TFX_DEPENDENCY_FLAGS = ("--extra_packages", "--extra_package", "--setup_file", "--requirements_file",
                        "--worker_harness_container_image", "--sdk_container_image")
# The DirectRunner's workers are this Python process or its subprocesses, which have TFX: this flag says
# so. The DirectRunner starts no container and reads no image, so it changes nothing else.
LOCAL_WORKERS_FLAG = "--sdk_container_image=lamina-local-python-environment"


def local_beam_args(beam_args: List[str]) -> List[str]:
    """The spec's Beam arguments for a local run: on the DirectRunner, with the flag that tells TFX's
    executors not to package TFX for workers, and cloudpickle unless the spec names a pickler; other
    runners (Dataflow, Flink, Spark) keep TFX's and Beam's behaviour.

    >>> local_beam_args(["--direct_num_workers=2"])
    ['--direct_num_workers=2', '--sdk_container_image=lamina-local-python-environment', '--pickle_library=cloudpickle']
    """
    runner = next((a.split("=", 1)[1] for a in beam_args if a.startswith("--runner=")), "DirectRunner")
    if runner not in ("DirectRunner", "direct"):
        return list(beam_args)
    flags = {a.split("=", 1)[0] for a in beam_args}
    out = list(beam_args)
    if not flags & set(TFX_DEPENDENCY_FLAGS):
        out.append(LOCAL_WORKERS_FLAG)
    if "--pickle_library" not in flags:
        out.append(BEAM_PICKLER_FLAG)
    return out


def record_spec(spec: Spec) -> str:
    """Writes the spec the run was built from (roles and all) to `<run dir>/resolved_spec.yaml`."""
    import yaml

    from lamina.models.features import safe_name

    path = os.path.join(spec.run_dir, "resolved_spec.yaml")
    renamed = {f.name: safe_name(f.name) for f in spec.data.features or [] if safe_name(f.name) != f.name}
    header = ["# The spec this run was built from: the features and roles Lamina inferred are written in.",
              "# Edit and pass it to `lamina run` to override any of them."]
    if renamed:
        header.append("# Names inside the model graph (the served model takes the columns' own names):")
        header += [f"#   {name!r} -> {inner}" for name, inner in renamed.items()]
    d = json.loads(spec.to_json())
    d.pop("base_dir", None)
    return storage.write_text(path, "\n".join(header) + "\n" + yaml.safe_dump(d, sort_keys=False, allow_unicode=True))


@contextlib.contextmanager
def callers_warnings_and_absl_level_kept():
    """Puts the warnings filters and the 'absl' logger's level back as they were, whatever the libraries a
    run imports and calls do to them:
    - Beam, TensorFlow and others add warnings filters when first imported;
    - TensorFlow's SavedModel writer sets absl's verbosity to FATAL while it lists a model's children, then
      back to absl's `verbosity` flag (WARNING unless flags were parsed), not to the level the logger had.
    """
    logger = logging.getLogger("absl")
    level = logger.level
    try:
        with warnings.catch_warnings():
            yield
    finally:
        logger.setLevel(level)


def run_pipeline(spec: Spec, stream: Optional[TextIO] = None) -> RunResult:
    """Runs `spec` end to end and returns what it produced.

    Progress lines go to `stream` (standard output). The caller's warnings filters and logging are left as
    they are: `lamina run` quiets TFX's logs in its own entry point (lamina.pipeline.cli.commands).

    Raises:
      SpecError: the data path matches no file, or a pretrained model directory is unusable.
      CsvInputError: a CSV cannot be read as it is (the file, line and problem are named);
        nothing ran.
      DataAnomaliesError: validation found anomalies; nothing was transformed, trained or pushed.
      BadInputFilesError: too many unusable image files; nothing was trained or pushed.
      ModelNotBlessedError: the model missed a threshold; it was not pushed.
    """
    stream = stream or sys.stdout  # looked up now: tests and TFX swap sys.stdout
    with callers_warnings_and_absl_level_kept():
        return _run_pipeline(spec, stream)


def _run_pipeline(spec: Spec, stream: TextIO) -> RunResult:
    # The data and the pretrained models are checked before TFX, Beam and TensorFlow are imported
    # (about 14 s on 2 cores), so a wrong path or a bad file is reported at once.
    spec = prepare_spec(spec, stream)
    check_pretrained_models(spec)
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from lamina.pipeline.beam_dofn_specs import memoize_dofn_specs
    from lamina.pipeline.tfrecord_reader import read_tfrecords_with_tf_data
    from lamina.components.anomaly_gate import DataAnomaliesError
    from lamina.components.image_example_gen import BadInputFilesError
    from lamina.pipeline.pipeline import create_pipeline

    memoize_dofn_specs()  # Beam asks each DoFn the same question about nine times
    read_tfrecords_with_tf_data()  # TFXIO reads examples in C++, not record by record in Python
    os.makedirs(spec.run_dir, exist_ok=True)
    record_spec(spec)
    pipeline = create_pipeline(spec, beam_pipeline_args=local_beam_args(spec.runner.beam_args))
    progress = ComponentProgress(spec, len(pipeline.components), stream)
    print(f"Running pipeline {spec.name!r} ({len(pipeline.components)} components); run directory {spec.run_dir}",
          file=stream, flush=True)
    title = f"Lamina run: {spec.name}"
    try:
        with progress:
            LocalDagRunner().run(pipeline)
    except DataAnomaliesError as e:
        print(progress.stopped(), file=stream, flush=True)
        statistics = latest_run_outputs(spec).get((STATISTICS_GEN, "statistics"))
        e.report = write_report(spec.report_path, title, progress.runs, "stopped: data validation found anomalies",
                                ok=False, anomalies=e.anomalies, artifacts={"anomaly report": e.report_dir},
                                statistics_dir=statistics.uri if statistics else None)
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
    result = summarize_run(spec, progress.runs)
    result.report = write_run_report(result)
    if not result.pushed:
        raise ModelNotBlessedError(result)
    return result
