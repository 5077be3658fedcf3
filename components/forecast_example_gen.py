"""ForecastExampleGen: a long table of time series -> lookback/horizon windows, split by time, on Beam.

The rows are read as TableExampleGen reads them (`table_source`: encodings, byte-order marks,
odd headers, bad rows), keyed by series, grouped (one series at a time: a GroupByKey holds the
rows of the data, never its windows, which are L + H times larger), put on their grid of steps and
cut into windows (`forecast_windows`). Training windows and eval windows go to the `train` and
`eval` splits by time, not by hash, through the same bounded-memory writer as TableExampleGen.

Before Beam starts, one streaming pass checks every row (a timestamp that is not a time, a target
that is not a number, a missing column), so the run stops with a message naming the file, line
and column. `forecast_report.json` beside the examples holds each series' length, gaps, cutoff
time and MASE scale (the in-sample seasonal-naive error before the cutoff), which the
ForecastEvaluator reads.
"""

import json
import math
import os
from typing import Any, Dict, List

import apache_beam as beam
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from lamina.constants import FORECAST_EXAMPLE_GEN
from lamina.components.example_writer import BoundedMemoryExecutor
from lamina.components.forecast_windows import (WindowSettings, build_series, check_columns, cutoff_index,
                                                file_points, seasonal_scale, series_windows, too_short, window_example)
from lamina.components.image_example_gen import settings_from_config, settings_to_custom_config
from lamina.cells import CsvInputError
from lamina.components.table_example_gen import policy_from_settings
from lamina.components.table_source import scan_table

REPORT_FILE = "forecast_report.json"


def settings_from_dict(s: Dict[str, Any]) -> WindowSettings:
    """WindowSettings from the component's settings (a protobuf Struct: numbers are floats, lists lists)."""
    import dataclasses

    w = dict(s["windows"])
    for field in dataclasses.fields(WindowSettings):
        if field.type is int or field.type == "int":
            w[field.name] = int(w[field.name])
    for key in ("known_future", "past_only"):
        w[key] = tuple(w.get(key) or ())
    w["timestamp"] = w["timestamp"] if isinstance(w["timestamp"], str) else tuple(w["timestamp"])
    return WindowSettings(**w)


class _Points(beam.DoFn):
    """A table file -> (series ID, Point) for each of its rows."""

    def __init__(self, settings: WindowSettings, fmt: str, encoding: str, names: List[str], delimiter: str):
        self.settings, self.fmt, self.encoding, self.names, self.delimiter = settings, fmt, encoding, names, delimiter

    def process(self, path: str):
        yield from file_points(path, self.names, self.delimiter, self.settings, self.fmt, self.encoding)


def _windows(item, settings: WindowSettings):
    """(split, example) for each window of one series, and ('report', its JSON line)."""
    key, points = item
    series = build_series(key, list(points), settings)
    yield "report", json.dumps(series_report(series, settings), ensure_ascii=False)
    if too_short(series, settings):
        return
    for split, fold, origin, values in series_windows(series, settings):
        yield split, window_example(series, origin, fold, values, settings)


def series_report(series, settings: WindowSettings) -> Dict[str, Any]:
    """One series' line of forecast_report.json: its steps, gaps, cut-off and MASE scale."""
    short = too_short(series, settings)
    scale = math.nan if short else seasonal_scale(series, settings)
    return {"series": series.key, "steps": len(series), "gaps": series.gaps, "too_short": short,
            "first": series.time(0, settings.frequency), "last": series.time(len(series) - 1, settings.frequency),
            "cutoff": None if short else series.time(cutoff_index(len(series), settings), settings.frequency),
            "mase_scale": None if math.isnan(scale) else scale}


@beam.ptransform_fn
def _SeriesWindows(pipeline, files: List[str], read: _Points, settings: WindowSettings):  # pylint: disable=invalid-name
    """Table files -> ('train' | 'eval', example) for every window, and ('report', a JSON line) per series."""
    return (pipeline
            | "Files" >> beam.Create(files)
            | "ReadRows" >> beam.ParDo(read)
            | "BySeries" >> beam.GroupByKey()
            | "Windows" >> beam.FlatMap(_windows, settings))


class Executor(BoundedMemoryExecutor):
    """Checks the rows, then windows and splits them by time on Beam (see the module docstring)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        """The windows of every series, each tagged with its split (or 'report')."""
        def to_windows(exec_properties, split_pattern):  # pylint: disable=unused-argument
            read = _Points(self._windows, self._format, self._encoding, self._names, self._delimiter)
            return _SeriesWindows(self._files, read, self._windows)  # pylint: disable=no-value-for-parameter
        return to_windows

    def GenerateExamplesByBeam(self, pipeline, exec_properties):
        """The splits by time (not TFX's hash of each example), and the series' reports on the side."""
        windows = pipeline | "SeriesWindows" >> self.GetInputSourceToExamplePTransform()(exec_properties, "")
        train, evaluation, reports = windows | "SplitByTime" >> beam.Partition(
            lambda kv, n: {"train": 0, "eval": 1}.get(kv[0], 2), 3)
        _ = (reports | "ReportLines" >> beam.Map(lambda kv: kv[1])
             | "WriteReports" >> beam.io.WriteToText(os.path.join(self._report_dir, "series"), ".jsonl"))
        return {"train": train | "TrainExamples" >> beam.Map(lambda kv: kv[1]),
                "eval": evaluation | "EvalExamples" >> beam.Map(lambda kv: kv[1])}

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        import tensorflow as tf

        s = settings_from_config(exec_properties)
        settings = self._windows = settings_from_dict(s)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        root = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        self._files = sorted(tf.io.gfile.glob(os.path.join(root, s["pattern"])))
        if not self._files:
            raise CsvInputError(f"data.path: no file matches {os.path.join(root, s['pattern'])!r}.")
        policy = policy_from_settings({**s, "label": ""}, profile=False)
        scans = [scan_table(f, policy) for f in self._files]
        for scan in scans:
            check_columns(scan.names, settings, scan.path)
        self._format, self._encoding = policy.format, policy.encoding
        self._names, self._delimiter = scans[0].names, scans[0].delimiter
        # One streaming pass before Beam: every cell is checked, and each series' first and last step kept.
        spans: Dict[str, list] = {}
        points = (p for scan in scans for p in file_points(scan.path, scan.names, scan.delimiter, settings,
                                                             policy.format, policy.encoding))
        for key, point in points:
            span = spans.setdefault(key, [point.step, point.step])
            span[0], span[1] = min(span[0], point.step), max(span[1], point.step)
        need = settings.lookback + settings.horizon * (settings.eval_origins + 1)
        steps = {k: b - a + 1 for k, (a, b) in spans.items()}
        if max(steps.values()) < need:
            raise CsvInputError(f"no series is long enough for a forecast: each needs at least {need} steps "
                                f"(lookback {settings.lookback}, one training horizon and {settings.eval_origins} "
                                f"eval horizon(s) of {settings.horizon}); the longest has {max(steps.values())}.")
        self._expected_examples = sum((n - need) // settings.stride + 1 + settings.eval_origins
                                      for n in steps.values() if n >= need)
        self._report_dir = os.path.join(examples.uri, ".series_reports")
        super().Do(input_dict, output_dict, exec_properties)
        reports = []
        for path in sorted(tf.io.gfile.glob(os.path.join(self._report_dir, "series*"))):
            with tf.io.gfile.GFile(path) as f:
                reports += [json.loads(line) for line in f if line.strip()]
        tf.io.gfile.rmtree(self._report_dir)
        reports.sort(key=lambda r: r["series"])
        usable = [r for r in reports if not r["too_short"]]
        report = {"frequency": settings.frequency, "lookback": settings.lookback, "horizon": settings.horizon,
                  "season": settings.season, "backtest": settings.backtest, "series": reports,
                  "examples": getattr(self, "split_counts", {}),
                  "skipped_series": [r["series"] for r in reports if r["too_short"]]}
        with tf.io.gfile.GFile(os.path.join(examples.uri, REPORT_FILE), "w") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
        counts = report["examples"]
        print(f"    {len(usable)} series, {counts.get('train', 0)} training and {counts.get('eval', 0)} eval windows"
              + (f"; {len(report['skipped_series'])} series too short, left out" if report["skipped_series"] else ""),
              flush=True)


def read_report(examples_uri: str) -> Dict[str, Any]:
    from lamina import storage

    return storage.read_json_if_exists(os.path.join(examples_uri, REPORT_FILE))


class ForecastExampleGen(FileBasedExampleGen):
    """A long table of time series (a file or a glob in one folder) to train/eval windows.

    Args:
      input_base, pattern: the folder of the files and the file name or glob inside it.
      windows: WindowSettings as a dict (lamina.components.forecast_windows).
      format, delimiter, encoding, bad_rows, max_bad_rows: the spec's data section.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, input_base: str, pattern: str, windows: Dict[str, Any], format: str = "csv",  # pylint: disable=redefined-builtin
                 delimiter: str = "", encoding: str = "utf-8", bad_rows: str = "fail", max_bad_rows: float = 0.01):
        windows = {k: list(v) if isinstance(v, tuple) else v for k, v in windows.items()}
        settings = {"pattern": pattern, "format": format, "windows": windows, "delimiter": delimiter or "",
                    "encoding": encoding, "bad_rows": bad_rows, "max_bad_rows": max_bad_rows}
        super().__init__(
            input_base=input_base,
            input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="data", pattern=pattern)]),
            output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=1),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1)])),
            custom_config=settings_to_custom_config(settings),
        )
        self._id = FORECAST_EXAMPLE_GEN
