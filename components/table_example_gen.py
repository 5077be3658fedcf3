"""TableExampleGen: a user's table files (CSV, JSON Lines, Parquet, TFRecord) -> split TFRecords of
tf.Example, on Beam.

TFX's own CsvExampleGen reads line by line (a quoted cell with a line break breaks it), keeps a
byte-order mark in the first column's name, reads a repeated column name as another column's
values, and stops with a traceback on a row with a field too many or on Latin-1 bytes; its
Parquet and Import ExampleGens keep integer columns int64. This one reads every format with
`lamina.components.table_source` and types every format alike:

- Before Beam starts, `scan_table` checks every file (encoding, header, field counts, labels) and
  the run stops with a message naming the file and line, or skips bad rows by the spec's policy.
- Each column gets one type on the wire: numbers (declared or inferred `numeric`, and any
  column whose cells are all numbers) are float32, written from `parse_number` (`$1,234.50`,
  `12%`); integer columns the spec declares categorical, or excludes (IDs), stay int64 (one
  with a value past int64, such as a 20-digit ID, is written as strings, its digits exact); the
  rest, and a classification label, are strings. A declared numeric column with a cell that is
  not a number is written as strings, so schema validation reports it instead of training on it.
- Examples keep the header's names as they are (spaces, symbols, any script); the model's
  internal names are derived later (`lamina.models.features.safe_name`).
- Rows without a label are left out and counted; `ingest_report.json` beside the examples says
  how many rows were read, skipped and kept, and each column's type.
- A CSV or Parquet file of numbers, integers and strings without bad rows is read by pyarrow and serialized in
  vectorized steps (components/table_arrow.py), to the same bytes `record_to_example` gives; the
  rest goes through `record_to_example` row by row. Either way the examples travel through Beam in
  batches, and `SplitBatches` puts each where TFX's own hash split would.

It is a FileBasedExampleGen with its own executor, so TFX's driver fingerprints the input files
and TFX's splitting and writing are reused.
"""

import itertools
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from lamina.components import table_arrow
from lamina.components.table_arrow import BYTES, FLOAT, INT
from lamina.components.example_writer import BoundedMemoryExecutor
from lamina.cells import CsvInputError, is_missing_number, parse_number, parse_sequence
from lamina import storage
from lamina.constants import DEFAULT_MAX_AUDIO_SECONDS, DEFAULT_MAX_IMAGE_PIXELS, EXAMPLE_GEN_IDS
from lamina.components.image_paths import audio_cell_wav, image_cell_path
from lamina.components.table_source import TablePolicy, TableScan, iter_records, scan_table
from lamina.components.image_example_gen import settings_from_config, settings_to_custom_config

REPORT_FILE = "ingest_report.json"
# float, int, bytes: one value of that type (table_arrow.py defines them);
# floats: a sequence feature's list; image_file: a path whose file's bytes are written; audio_file: a
# path whose file is written as WAV bytes
FLOATS, IMAGE_FILE, AUDIO_FILE = "floats", "image_file", "audio_file"


def policy_from_settings(s: Dict[str, Any], profile: bool = True) -> TablePolicy:
    return TablePolicy(format=s.get("format", "csv"), delimiter=s.get("delimiter") or None,
                       encoding=s.get("encoding", "utf-8"),
                     bad_rows=s.get("bad_rows", "fail"), max_bad_rows=float(s.get("max_bad_rows", 0.01)),
                     label=s["label"], max_missing_labels=float(s.get("max_missing_labels", 0.5)), profile=profile,
                     sequences=tuple(sorted((s.get("sequences") or {}).items())),
                     images=tuple(s.get("images") or ()), image_root=s.get("image_root", ""),
                     max_pixels=int(s.get("max_pixels") or DEFAULT_MAX_IMAGE_PIXELS),
                     audio=tuple(s.get("audio") or ()),
                     max_seconds=float(s.get("max_seconds") or DEFAULT_MAX_AUDIO_SECONDS))


def wire_types(scans: List[TableScan], features: Optional[Dict[str, Optional[str]]], label: str, task: str,
               exclude: List[str]) -> Dict[str, str]:
    """Each column's type in the examples: 'float', 'int' or 'bytes' (see the module docstring).

    Raises CsvInputError when the files' headers differ.
    """
    first = scans[0]
    for scan in scans[1:]:
        if scan.names != first.names:
            raise CsvInputError(f"{scan.path}: its header differs from {first.path}'s; every file matched by "
                                f"data.path must have the same columns. {first.path}: {first.names}; "
                                f"{scan.path}: {scan.names}")
    declared = features or {}
    types = {}
    for name in first.names:
        stats = [s.column(name) for s in scans]
        numbers = all(c.all_numbers or c.present == 0 for c in stats) and any(c.all_numbers for c in stats)
        integers = numbers and all(c.all_integers or c.present == 0 for c in stats)
        wide = any(c.wide_integers for c in stats)  # a 20-digit ID: kept exactly, as its digits
        kind = declared.get(name)
        lists = [(s.path, c.first_list_line) for s, c in zip(scans, stats) if c.lists]
        if lists and kind != "sequence":
            raise CsvInputError(f"{lists[0][0]}, row {lists[0][1]}: column {name!r} holds a list of values; "
                                f"declare it a sequence feature ({{name: {name!r}, type: sequence}} in data.features) "
                                f"or leave it out (data.exclude).")
        if kind == "sequence":
            types[name] = FLOATS
        elif kind == "image":
            types[name] = IMAGE_FILE
        elif kind == "audio":
            types[name] = AUDIO_FILE
        elif name == label:
            types[name] = FLOAT if task == "regression" and numbers else BYTES
        elif kind in ("categorical",) or name in exclude:
            types[name] = BYTES if wide else INT if integers else FLOAT if numbers and name in exclude else BYTES
        elif kind in ("text", "date", "image"):
            types[name] = BYTES
        else:  # numeric, or undeclared
            types[name] = FLOAT if numbers else BYTES
    return types


def record_to_example(record: Dict[str, str], types: Dict[str, str],
                      delimiters: Optional[Dict[str, str]] = None, image_root: str = "",
                      max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS):
    """One row's cells -> tf.Example; a blank (or, in a number column, 'NA'-like) cell is left out.

    A sequence cell becomes a float list of its values (NaN where a value is missing), split by
    `delimiters[name]` (default: any of SEQUENCE_SEPARATORS). An image cell's file (a path relative
    to `image_root`, checked by the scan) becomes its encoded bytes; an audio cell's file, its WAV bytes.
    """
    import tensorflow as tf

    feature = {}
    for name, cell in record.items():
        kind = types[name]
        text = cell.strip()
        if kind == IMAGE_FILE:
            path, problem = image_cell_path(cell, image_root, f"column {name!r}")
            if path is None:
                raise CsvInputError(f"image column {name!r}: {problem}")
            with storage.open_binary(path) as f:
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[f.read()]))
            continue
        if kind == AUDIO_FILE:
            wav, problem = audio_cell_wav(cell, image_root, f"column {name!r}", max_seconds)
            if wav is None:
                raise CsvInputError(f"audio column {name!r}: {problem}")
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[wav]))
            continue
        if kind == FLOATS:
            values = parse_sequence(cell, (delimiters or {}).get(name) or None)
            if values:
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
            continue
        if not text or (kind != BYTES and is_missing_number(text)):
            continue
        if kind == FLOAT:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[parse_number(text)]))
        elif kind == INT:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(text)]))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode("utf-8")]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


class ReadTable(beam.DoFn):
    """A file path -> its accepted rows as serialized tf.Examples (deterministic: features sorted by name),
    in batches of up to a block of rows: one Beam element per batch, not per row."""

    PYTHON_BATCH = 1000  # rows per batch on the Python path: also how often progress is counted

    def __init__(self, fmt: str, names: List[str], dialect: str, encoding: str, label: str, types: Dict[str, str],
                 total: Optional[int] = None, component: str = "ExampleGen", policy: Optional[TablePolicy] = None,
                 arrow_files: Tuple[str, ...] = ()):
        self.fmt, self.names, self.dialect, self.encoding = fmt, names, dialect, encoding
        self.label, self.types, self.policy = label, types, policy or TablePolicy(format=fmt, encoding=encoding)
        self.total, self.component = total, component
        self.arrow_files = arrow_files  # the files converted on the Arrow path (components/table_arrow.py)
        self._progress = None
        self._done = 0

    def process(self, path: str):
        from lamina.progress import Progress

        if self._progress is None:
            self._progress = Progress(self.component, self.total, "rows")
        if path in self.arrow_files:
            batches = table_arrow.examples(path, self.names, self.dialect, self.encoding, self.label, self.types,
                                           self._serialize, self.fmt)
        else:
            batches = self._python(path)
        for batch in batches:
            if batch:
                yield batch
            self._done += len(batch)
            self._progress.update(self._done)

    def _serialize(self, record: Dict[str, str]) -> bytes:
        return record_to_example(record, self.types, dict(self.policy.sequences), self.policy.image_root,
                                 self.policy.max_seconds).SerializeToString(deterministic=True)

    def _python(self, path: str):
        batch = []
        for _, record in iter_records(path, self.names, self.label, self.fmt, self.dialect, self.encoding,
                                      policy=self.policy):
            batch.append(self._serialize(record))
            if len(batch) == self.PYTHON_BATCH:
                yield batch
                batch = []
        yield batch


class SplitBatches(beam.DoFn):
    """Batches of serialized examples -> batches per split, each example where TFX's own split puts it."""

    def __init__(self, names: List[str], split_config: example_gen_pb2.SplitConfig):
        self.names, self.split_config = names, split_config
        self.buckets = list(itertools.accumulate(s.hash_buckets for s in split_config.splits))

    def process(self, batch: List[bytes]):
        import tensorflow as tf
        from tfx.components.example_gen.base_example_gen_executor import _PartitionFn

        by_feature = self.split_config.HasField("partition_feature_name")
        out = [[] for _ in self.names]
        for record in batch:
            key = tf.train.Example.FromString(record) if by_feature else record
            out[_PartitionFn(key, len(self.buckets), self.buckets, self.split_config)].append(record)
        for name, records in zip(self.names, out):
            if records:
                yield beam.pvalue.TaggedOutput(name, records)


@beam.ptransform_fn
def _TableToExamples(pipeline, files: List[str], read: ReadTable):  # pylint: disable=invalid-name
    return (pipeline
            | "Files" >> beam.Create(files)
            | "ReadRows" >> beam.ParDo(read))


def read_report(examples_uri: str) -> Optional[Dict[str, Any]]:
    import tensorflow as tf

    path = os.path.join(examples_uri, REPORT_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


class Executor(BoundedMemoryExecutor):
    """Scans the files (the run stops here on bad input), then converts and splits them on Beam, in
    memory bounded whatever the size of the data (`lamina.components.example_writer`)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        def to_examples(exec_properties, split_pattern):  # pylint: disable=unused-argument
            return _TableToExamples(self._files, self._read)  # pylint: disable=no-value-for-parameter
        return to_examples

    def GenerateExamplesByBeam(self, pipeline, exec_properties):
        """TFX's split, applied to batches of examples (`SplitBatches`) rather than one element per row."""
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        split_config = output_config.split_config
        if not split_config.splits:
            return super().GenerateExamplesByBeam(pipeline, exec_properties)
        names = [s.name for s in split_config.splits]
        splits = (pipeline
                  | "InputToRecord" >> self.GetInputSourceToExamplePTransform()(exec_properties, "")
                  | "SplitData" >> beam.ParDo(SplitBatches(names, split_config)).with_outputs(*names))
        return {name: splits[name] for name in names}

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        import tensorflow as tf

        s = settings_from_config(exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        root = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        pattern = s["pattern"]
        self._files = sorted(tf.io.gfile.glob(os.path.join(root, pattern)))
        if not self._files:
            raise CsvInputError(f"data.path: no file matches {os.path.join(root, pattern)!r}.")
        policy = policy_from_settings({**s, "image_root": root})
        scans = [scan_table(f, policy) for f in self._files]
        self._delimiter, self._encoding = scans[0].delimiter, policy.encoding
        if any(sc.delimiter != self._delimiter for sc in scans):
            raise CsvInputError(f"the files of data.path use different delimiters "
                                f"({', '.join(f'{sc.path}: {sc.delimiter!r}' for sc in scans)}); set data.delimiter.")
        self._types = wire_types(scans, s.get("features"), s["label"], s["task"], s.get("exclude", []))
        arrow_files = tuple(sc.path for sc in scans if table_arrow.applies(sc, self._types))
        self._read = ReadTable(policy.format, scans[0].names, self._delimiter, self._encoding, s["label"],
                               self._types, total=sum(sc.kept_rows for sc in scans),
                               component=EXAMPLE_GEN_IDS.get(policy.format, "ExampleGen"), policy=policy,
                               arrow_files=arrow_files)
        self._expected_examples = sum(sc.kept_rows for sc in scans)
        super().Do(input_dict, output_dict, exec_properties)
        report = {
            "files": [sc.path for sc in scans], "format": policy.format, "delimiter": self._delimiter,
            "encoding": self._encoding,
            "rows": sum(sc.rows for sc in scans), "examples": sum(sc.kept_rows for sc in scans),
            "bad_rows": sum(sc.bad_row_count for sc in scans),
            "bad_row_lines": [{"file": sc.path, "line": line, "problem": p} for sc in scans for line, p in sc.bad_rows],
            "missing_label": sum(sc.missing_label for sc in scans), "label": s["label"], "columns": self._types,
        }
        with tf.io.gfile.GFile(os.path.join(examples.uri, REPORT_FILE), "w") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)


class TableExampleGen(FileBasedExampleGen):
    """A user's table files (a file or a glob in one folder) to split tf.Example TFRecords.

    Args:
      input_base: the folder of the files.
      pattern: the file name or glob inside it.
      format: 'csv', 'jsonl', 'parquet' or 'tfrecord' (lamina.constants.TABLE_FORMATS).
      label / task: the label column and 'classification' or 'regression'.
      features: declared feature types by column name (None: none declared).
      exclude: columns that are not features (IDs stay integers).
      sequences: the sequence features' cell delimiters by column name ('' for the default).
      images: the image features: columns of image file paths relative to the table's folder (the data root).
      max_pixels: the most pixels an image may declare (data.images.max_pixels).
      audio: the audio features: columns of audio file paths relative to the table's folder.
      max_seconds: the most seconds a WAV file may declare (data.audio.max_seconds).
      delimiter, encoding, bad_rows, max_bad_rows, max_missing_labels: the spec's data section.
      output_config: the split.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, input_base: str, pattern: str, label: str, task: str,
                 output_config: example_gen_pb2.Output, format: str = "csv",  # pylint: disable=redefined-builtin
                 features: Optional[Dict[str, Optional[str]]] = None,
                 exclude: Optional[List[str]] = None, delimiter: Optional[str] = None, encoding: str = "utf-8",
                 bad_rows: str = "fail", max_bad_rows: float = 0.01, max_missing_labels: float = 0.5,
                 sequences: Optional[Dict[str, str]] = None, images: Optional[List[str]] = None,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, audio: Optional[List[str]] = None,
                 max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS):
        if format not in EXAMPLE_GEN_IDS:
            raise ValueError(f"format must be one of {sorted(EXAMPLE_GEN_IDS)}. Received: {format!r}")
        settings = {"pattern": pattern, "format": format, "label": label, "task": task, "features": features,
                    "exclude": list(exclude or []), "delimiter": delimiter or "", "encoding": encoding,
                    "bad_rows": bad_rows, "max_bad_rows": max_bad_rows, "max_missing_labels": max_missing_labels,
                    "sequences": dict(sequences or {}), "images": list(images or []), "max_pixels": max_pixels,
                    "audio": list(audio or []), "max_seconds": max_seconds}
        super().__init__(
            input_base=input_base,
            input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="data", pattern=pattern)]),
            output_config=output_config,
            custom_config=settings_to_custom_config(settings),
        )
        self._id = EXAMPLE_GEN_IDS[format]
