"""ImageExampleGen: images or audio files on disk -> split TFRecords of tf.Example, on Beam.

Three layouts:
  image_folder  <root>/<class>/<file>: one subfolder per class, named after it.
  image_csv     a CSV with a header, whose image column holds paths relative to the CSV's
                folder and whose label column holds the class.
  audio_folder  <root>/<class>/<file> of WAV, FLAC or Ogg files.

Every example holds the encoded bytes (under the feature's name), the label, the
path relative to the root (`source_path`, which also decides the split, so a file never
moves between splits), and what the header says of it: an image's decoded height and width, an
audio clip's seconds, rate and channels (so StatisticsGen shows them). Audio examples hold WAV
bytes: FLAC and Ogg files are turned into WAV here (`lamina.components.audio_files`).

Files are checked on the workers with the same decoder the model uses (tf.io.decode_image; for
audio, the WAV header). Bad files (empty, not an image or audio, corrupt, missing) are skipped and listed in
`<examples>/ingest_report.json` (`ImageExampleGen/stopped/<id>-ingest_report.json` when the run
stops) and in the run report; with `bad_files: fail`, or when more
than `max_bad_fraction` of the files are bad, the run stops. Paths that leave the root
(`..`, absolute paths, symlinks pointing out) and empty class folders always stop the run.

It is a FileBasedExampleGen with its own executor, so TFX's driver fingerprints the input
files (a changed image folder is not served from the cache) and TFX's splitting and writing
are reused.
"""

import csv
import dataclasses
import json
import os
import posixpath
from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen import driver, input_processor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from lamina import storage
from lamina.components.audio_files import audio_features, check_audio_bytes
from lamina.components.example_writer import BoundedMemoryExecutor
from lamina.components.image_paths import resolve_inside
from lamina.constants import AUDIO_EXTENSIONS, DEFAULT_MAX_AUDIO_SECONDS, DEFAULT_MAX_IMAGE_PIXELS, IMAGE_EXTENSIONS
from lamina.image_headers import ImageTooLarge, check_image, image_format

REPORT_FILE = "ingest_report.json"
_BAD_PREFIX = "bad_files"
# Problems that stop the run whatever the bad-file policy says.
STRUCTURAL = ("outside_root", "empty_class", "bad_csv")


@dataclasses.dataclass(frozen=True)
class ImageFile:
    path: str  # absolute
    relpath: str  # relative to the data root; the example's source_path
    label: str


@dataclasses.dataclass(frozen=True)
class BadFile:
    path: str  # relative to the root when it is inside, else as written
    problem: str  # empty | unsupported | corrupt | too_large | too_long | missing | unreadable | bad_name | outside_root | empty_class | bad_csv
    detail: str


class BadInputFilesError(RuntimeError):
    """The input images failed the ingestion policy; `bad` lists every problem found."""

    def __init__(self, bad: List[BadFile], total: int, reason: str, report_path: str = "", kind: str = "Image"):
        self.bad = bad
        self.total = total
        self.report_path = report_path
        self.report = ""  # the HTML run report, once the runner has written it
        lines = [f"{kind} ingestion stopped the run: {reason}"]
        lines += [f"  {b.path}: {b.problem}: {b.detail}" for b in bad[:20]]
        if len(bad) > 20:
            lines.append(f"  ... and {len(bad) - 20} more")
        if report_path:
            lines.append(f"Ingestion report: {report_path}")
        super().__init__("\n".join(lines))


# -- listing (driver side) -------------------------------------------------------------------


def _utf8(name: str) -> bool:
    """Whether a listed name is valid UTF-8 (Python keeps other bytes as lone surrogates)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _escaped(name: str) -> str:
    """A file name with its undecodable bytes shown as \\xNN, printable and JSON-safe."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _extension_problem(name: str, extensions: List[str]) -> Optional[str]:
    ext = os.path.splitext(name)[1].lower()
    if ext not in extensions:
        return f"unsupported file extension {ext or '(none)'!r}; expected one of: {', '.join(extensions)}"
    return None


def list_image_folder(root: str, extensions: List[str], noun: str = "images"
                      ) -> Tuple[List[ImageFile], List[BadFile]]:
    """Files (`noun`: images, audio files) under `<root>/<class>/`, and the problems found while listing.

    Hidden files and folders (starting with '.') are ignored.
    """
    files, bad = [], []
    for entry in sorted(storage.listdir(root)):
        path = os.path.join(root, entry)
        if entry.startswith("."):
            continue
        if not _utf8(entry):
            bad.append(BadFile(_escaped(entry), "bad_name", "the folder name is not valid UTF-8; rename the folder"))
            continue
        if not storage.inside(root, path):
            bad.append(BadFile(entry, "outside_root", f"links to {storage.resolve(path)}, outside the data root {root}"))
            continue
        if not storage.isdir(path):
            bad.append(BadFile(entry, "unsupported", f"a file directly in the data root; {noun} go in one folder per class"))
            continue
        count = 0
        for name in sorted(storage.listdir(path)):
            if name.startswith("."):
                continue
            file_path = os.path.join(path, name)
            rel = f"{entry}/{name}"
            if not _utf8(rel):
                bad.append(BadFile(_escaped(rel), "bad_name", "the file name is not valid UTF-8; rename the file"))
                continue
            if not storage.inside(root, file_path):
                bad.append(BadFile(rel, "outside_root",
                                   f"links to {storage.resolve(file_path)}, outside the data root {root}"))
                continue
            if storage.isdir(file_path):
                bad.append(BadFile(rel, "unsupported", f"a folder inside a class folder; class folders hold {noun}"))
                continue
            problem = _extension_problem(name, extensions)
            if problem:
                bad.append(BadFile(rel, "unsupported", problem))
                continue
            files.append(ImageFile(file_path, rel, entry))
            count += 1
        if count == 0:
            bad.append(BadFile(entry + "/", "empty_class", f"class folder {entry!r} has no {noun}; add {noun} or remove it"))
    return files, bad


def list_image_csv(csv_path: str, image_column: str, label_column: str,
                   extensions: List[str]) -> Tuple[List[ImageFile], List[BadFile]]:
    """Images named by a CSV (paths relative to its folder), and the problems found while listing."""
    root = storage.parent(storage.absolute(csv_path))
    name = posixpath.basename(csv_path)
    with storage.open_text(csv_path, "utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in (image_column, label_column) if c not in columns]
        if missing:
            return [], [BadFile(name, "bad_csv", f"missing column(s) {', '.join(map(repr, missing))}; the header has "
                                                 f"{', '.join(map(repr, columns)) or 'no columns'}")]
        files, bad = [], []
        for row_number, row in enumerate(reader, start=2):  # row 1 is the header
            rel = (row.get(image_column) or "").strip()
            label = (row.get(label_column) or "").strip()
            where = f"{name} row {row_number}"
            if not rel:
                bad.append(BadFile(where, "missing", f"empty {image_column!r} column"))
                continue
            if not label:
                bad.append(BadFile(where, "missing", f"{rel}: empty {label_column!r} column"))
                continue
            path, inside = resolve_inside(rel, root)
            if not inside:
                bad.append(BadFile(rel, "outside_root",
                                   f"{where}: resolves to {storage.resolve(path)}, outside the data root {root}"))
                continue
            relpath = storage.relative(path, root)
            if not storage.isfile(path):
                bad.append(BadFile(relpath, "missing", f"{where}: no such file"))
                continue
            problem = _extension_problem(path, extensions)
            if problem:
                bad.append(BadFile(relpath, "unsupported", f"{where}: {problem}"))
                continue
            files.append(ImageFile(path, relpath, label))
    return files, bad


def check_image_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
                      ) -> Tuple[Optional[Tuple[int, int]], Optional[Tuple[str, str]]]:
    """((height, width), None) for an image TensorFlow can decode, else (None, (problem, detail)).

    An image whose header declares more than `max_pixels` is 'too_large' and never decoded.
    """
    import tensorflow as tf

    if not data:
        return None, ("empty", "the file is empty (0 bytes)")
    kind = image_format(data)
    if kind is None:
        return None, ("unsupported", f"not a JPEG, PNG, GIF or BMP image (starts with {data[:8]!r})")
    try:
        check_image(data, max_pixels, "the file")
    except ImageTooLarge as e:
        return None, ("too_large", str(e).replace(" (lamina serve --max-image-pixels)", " (data.images.max_pixels)"))
    except ValueError as e:
        return None, ("corrupt", str(e))
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.OpError as e:
        return None, ("corrupt", f"{kind} data cannot be decoded: {e.message.split(' [Op:')[0].split('}} ')[-1]}")
    return (int(image.shape[0]), int(image.shape[1])), None


# -- Beam ------------------------------------------------------------------------------------


class _ReadImage(beam.DoFn):
    """ImageFile (an image or an audio file, by `audio`) -> tf.Example, or a BadFile on the 'bad' output."""

    def __init__(self, image_key: str, label_key: str, max_pixels: int, audio: bool = False,
                 max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS):
        self.image_key = image_key
        self.label_key = label_key
        self.max_pixels = max_pixels
        self.audio = audio
        self.max_seconds = max_seconds

    def _check(self, data: bytes):
        """(the bytes to keep, {feature: number} beside them, None) or (None, None, problem)."""
        if self.audio:
            wav, info, problem = check_audio_bytes(data, self.max_seconds)
            return wav, (audio_features(info) if info else None), problem
        size, problem = check_image_bytes(data, self.max_pixels)
        return data, ({"image_height": size[0], "image_width": size[1]} if size else None), problem

    def process(self, item: ImageFile):
        import tensorflow as tf

        try:
            with tf.io.gfile.GFile(item.path, "rb") as f:
                data = f.read()
        except (OSError, tf.errors.OpError) as e:
            yield beam.pvalue.TaggedOutput("bad", BadFile(item.relpath, "unreadable", str(e)))
            return
        data, numbers, problem = self._check(data)
        if problem:
            yield beam.pvalue.TaggedOutput("bad", BadFile(item.relpath, *problem))
            return
        feature = {
            self.image_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
            self.label_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[item.label.encode("utf-8")])),
            "source_path": tf.train.Feature(bytes_list=tf.train.BytesList(value=[item.relpath.encode("utf-8")])),
        }
        for key, number in numbers.items():
            feature[key] = (tf.train.Feature(float_list=tf.train.FloatList(value=[number])) if isinstance(number, float)
                            else tf.train.Feature(int64_list=tf.train.Int64List(value=[number])))
        yield tf.train.Example(features=tf.train.Features(feature=feature))


@beam.ptransform_fn
def _ImagesToExamples(pipeline, files: List[ImageFile], image_key: str, label_key: str, bad_prefix: str,  # pylint: disable=invalid-name
                      max_pixels: int, audio: bool = False, max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS):
    read = _ReadImage(image_key, label_key, max_pixels, audio, max_seconds)
    results = (pipeline
               | "ListedFiles" >> beam.Create(files, reshuffle=True)
               | "ReadAndCheck" >> beam.ParDo(read).with_outputs("bad", main="examples"))
    _ = (results.bad
         | "BadToJson" >> beam.Map(lambda b: json.dumps(dataclasses.asdict(b), sort_keys=True))
         | "WriteBad" >> beam.io.WriteToText(bad_prefix, file_name_suffix=".jsonl"))
    return results.examples


# -- executor and component ------------------------------------------------------------------


def settings_to_custom_config(settings: Dict[str, Any]) -> example_gen_pb2.CustomConfig:
    struct = struct_pb2.Struct()
    struct.update(settings)
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(struct)
    return config


def settings_from_config(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], config)
    struct = struct_pb2.Struct()
    config.custom_config.Unpack(struct)
    return json_format.MessageToDict(struct)


def enforce_policy(bad: List[BadFile], total: int, bad_files: str, max_bad_fraction: float,
                   audio: bool = False) -> Optional[str]:
    """Why the run must stop, or None. `total` counts every file listed, good or bad."""
    section = "data.audio" if audio else "data.images"
    structural = [b for b in bad if b.problem in STRUCTURAL]
    if structural:
        kinds = sorted({b.problem for b in structural})
        return f"{len(structural)} problem(s) that always stop the run ({', '.join(kinds)})."
    if total == 0:
        return f"no {'audio' if audio else 'image'} files found."
    if bad and bad_files == "fail":
        return f"{len(bad)} of {total} files are bad and {section}.bad_files is 'fail'."
    if bad and len(bad) / total > max_bad_fraction:
        return (f"{len(bad)} of {total} files are bad ({len(bad) / total:.1%}), more than "
                f"{section}.max_bad_fraction {max_bad_fraction:.1%}.")
    return None


def read_report(examples_uri: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(examples_uri, REPORT_FILE)
    return storage.read_json(path) if storage.isfile(path) else None


class Executor(BoundedMemoryExecutor):
    """Lists the images, then reads, checks and splits them on Beam (in memory bounded whatever the
    number of files: `lamina.components.example_writer`)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        def to_examples(exec_properties, split_pattern):  # pylint: disable=unused-argument
            s = settings_from_config(exec_properties)
            return _ImagesToExamples(self._files, s["image_key"], s["label_key"], self._bad_prefix,  # pylint: disable=no-value-for-parameter
                                     s.get("max_pixels", DEFAULT_MAX_IMAGE_PIXELS), s["format"] == "audio_folder",
                                     s.get("max_seconds", DEFAULT_MAX_AUDIO_SECONDS))
        return to_examples

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        s = settings_from_config(exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        root = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        report_path = os.path.join(examples.uri, REPORT_FILE)
        self._bad_prefix = os.path.join(examples.uri, "ingest", _BAD_PREFIX)
        audio = s["format"] == "audio_folder"
        if s["format"] in ("image_folder", "audio_folder"):
            self._files, bad = list_image_folder(root, s["extensions"], "audio files" if audio else "images")
        else:
            self._files, bad = list_image_csv(os.path.join(root, s["csv_file"]), s["image_key"], s["label_key"],
                                              s["extensions"])
        total = len(self._files) + len(bad)
        reason = enforce_policy(bad, total, s["bad_files"], s["max_bad_fraction"], audio)
        if reason is None and self._files:
            self._expected_examples = len(self._files)
            super().Do(input_dict, output_dict, exec_properties)
            bad = bad + self._read_bad_files()
            reason = enforce_policy(bad, total, s["bad_files"], s["max_bad_fraction"], audio)
        classes: Dict[str, int] = {}
        good = {f.relpath for f in self._files} - {b.path for b in bad}
        for f in self._files:
            if f.relpath in good:
                classes[f.label] = classes.get(f.label, 0) + 1
        report = {"root": root, "media": "audio" if audio else "images", "files": total, "examples": len(good),
                  "bad": len(bad),
                  "classes": dict(sorted(classes.items())), "stopped": reason,
                  "bad_files": [dataclasses.asdict(b) for b in sorted(bad, key=lambda b: b.path)]}
        if reason:
            # TFX removes a failed execution's outputs; the report goes next to them instead.
            report_path = os.path.join(storage.parent(storage.parent(examples.uri)), "stopped",
                                       f"{posixpath.basename(examples.uri)}-{REPORT_FILE}")
        storage.write_json(report_path, report)
        if reason:
            raise BadInputFilesError(sorted(bad, key=lambda b: b.path), total, reason, report_path,
                                     "Audio" if audio else "Image")

    def _read_bad_files(self) -> List[BadFile]:
        import tensorflow as tf

        bad = []
        for path in tf.io.gfile.glob(self._bad_prefix + "*"):
            with tf.io.gfile.GFile(path) as f:
                bad += [BadFile(**json.loads(line)) for line in f if line.strip()]
        return bad


class MediaFolderInputProcessor(input_processor.FileBasedInputProcessor):
    """TFX's file-based input processor, fingerprinting the input with `lamina.storage`."""

    def resolve_span_and_version(self):
        """TFX's fingerprint (`tfx.utils.io_utils.generate_fingerprint`: file count, bytes and mtimes) of each
        split's pattern, from `lamina.storage.fingerprint`: TFX's own listing (`tf.io.gfile.glob`) raises
        UnicodeDecodeError on a local file name that is not UTF-8 before the executor, which lists it as a
        bad file, runs. The pattern has no span or version."""
        parts = []
        for split in self._splits:
            files, size, xor, added = storage.fingerprint(os.path.join(self._input_base_uri, split.pattern))
            parts.append(f"split:{split.name},num_files:{files},total_bytes:{size},xor_checksum:{xor},"
                         f"sum_checksum:{added}")
        self._fingerprint = "\n".join(parts)
        return 0, None


class MediaFolderDriver(driver.FileBasedDriver):
    def get_input_processor(self, splits, range_config=None, input_base_uri=None):
        return MediaFolderInputProcessor(input_base_uri, splits, range_config)


class ImageExampleGen(FileBasedExampleGen):
    """Images in class folders or listed in a CSV, or audio files in class folders, to split tf.Example
    TFRecords.

    Args:
      root: the data root (the class folders' parent, or the CSV's folder).
      format: 'image_folder', 'image_csv' or 'audio_folder'.
      image_key / label_key: feature names for the encoded bytes and the label (and the CSV's columns).
      csv_file: the CSV's file name in `root` (image_csv only).
      bad_files, max_bad_fraction, extensions, max_pixels, max_seconds: the ingestion policy (see the
        module docstring); max_seconds is for audio, max_pixels for images.
      output_config: the split, which should partition by `source_path`.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = MediaFolderDriver

    def __init__(self, root: str, format: str, image_key: str, label_key: str,  # pylint: disable=redefined-builtin
                 output_config: example_gen_pb2.Output, csv_file: str = "", bad_files: str = "skip",
                 max_bad_fraction: float = 0.05, extensions: Optional[List[str]] = None,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS):
        if format not in ("image_folder", "image_csv", "audio_folder"):
            raise ValueError(f"format must be 'image_folder', 'image_csv' or 'audio_folder'. Received: {format!r}")
        # The driver fingerprints what this pattern matches: every file one folder down, or the CSV.
        pattern = csv_file if format == "image_csv" else "*/*"
        default_extensions = AUDIO_EXTENSIONS if format == "audio_folder" else IMAGE_EXTENSIONS
        settings = {"format": format, "image_key": image_key, "label_key": label_key, "csv_file": csv_file,
                    "bad_files": bad_files, "max_bad_fraction": max_bad_fraction, "max_pixels": max_pixels,
                    "max_seconds": max_seconds, "extensions": list(extensions or default_extensions)}
        super().__init__(
            input_base=root,
            input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="images", pattern=pattern)]),
            output_config=output_config,
            custom_config=settings_to_custom_config(settings),
        )
