"""TFLite (LiteRT) export of a trained model: float, dynamic-range and full-integer int8.

What the TFLite file holds is the Keras model on *transformed* inputs, the same tensors the
Trainer fed it; the Transform graph (vocabulary lookups, z-scores, image decoding, WordPiece
tokenization) is not inside, because TFLite's built-in ops cannot run it. `input_spec.json`,
written beside the files, says exactly what to feed each input and how to make it from a raw
value: the z-score's mean and standard deviation, the vocabulary file (copied beside it), the
image size and pixel range, the tokenizer's vocabulary and length. `lamina predict --tflite`
applies it.

Each form is evaluated on the eval split through the TFLite interpreter, beside the Keras
model on the same examples; a form whose metric drops by more than the bound is not exported.
"""

import dataclasses
import json
import os
from typing import Dict, Iterable, List, Optional

import numpy as np
import tensorflow as tf

from lamina.cells import normalize_category
from lamina.constants import DEFAULT_SIGNATURE
from lamina.models.features import (AUDIO, CATEGORICAL, DATE, IMAGE, NUMERIC, SEQUENCE, TEXT, FeatureInfo, safe_name,
                                    vocabulary_name)

FORMS = ("float", "dynamic_range", "int8")
INPUT_SPEC_FILE = "input_spec.json"
REPORT_FILE = "tflite_report.json"


def file_name(form: str) -> str:
    return f"model_{form}.tflite"


@dataclasses.dataclass
class FormResult:
    """One TFLite form: its size, its metric on the eval split, and whether it was exported."""

    form: str
    exported: bool
    size_bytes: int = 0
    metric: Optional[float] = None
    drop: Optional[float] = None  # how much worse than the Keras model (>= 0 is worse)
    reason: str = ""
    path: str = ""


def output_key(task: str) -> str:
    return "scores" if task == "classification" else "outputs"


def write_saved_model(model, features: List[FeatureInfo], task: str, path: str) -> str:
    """model(transformed inputs) as a SavedModel with one signature: one named input per feature, any batch.

    Through keras.export.ExportArchive, which tracks Keras 3 variables: converting a plain
    concrete function instead aborts the converter ("missing attribute 'value'").
    """
    import keras

    signature = {f.key: tf.TensorSpec([None, *f.shape], tf.as_dtype(f.dtype), name=f.key) for f in features}

    def serve(inputs):
        y = tf.cast(model(inputs, training=False), tf.float32)
        return {output_key(task): y if task == "classification" else tf.reshape(y, [-1])}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(DEFAULT_SIGNATURE, serve, input_signature=[signature])
    archive.write_out(path, verbose=False)
    return path


class ExportError(RuntimeError):
    """A form that cannot be made from this model; the message says why."""


def convert(model, features: List[FeatureInfo], task: str, form: str,
            representative: Optional[Iterable[Dict[str, np.ndarray]]] = None) -> bytes:
    """The TFLite flatbuffer of `model` in `form` ('float', 'dynamic_range' or 'int8').

    int8 is full-integer: every op runs in int8, calibrated on `representative` (dicts of one
    example's inputs); the file still takes and returns float32 (quantized at the edges), so
    it is fed exactly as the float file is.
    """
    if form not in FORMS:
        raise ValueError(f"unknown TFLite form {form!r}; expected one of: {', '.join(FORMS)}")
    import shutil
    import tempfile

    staging = tempfile.mkdtemp(prefix="lamina_tflite_")
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(
            write_saved_model(model, features, task, os.path.join(staging, "model")))
        return _convert(converter, features, form, representative)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _convert(converter, features: List[FeatureInfo], form: str, representative) -> bytes:
    if form in ("dynamic_range", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if any(f.kind == SEQUENCE for f in features) and form != "int8":
        # Keras 3's masked recurrent loops are TensorList ops, which TFLite's builtins lack: they run as
        # TF ops (the Flex delegate, built into TensorFlow's tf.lite.Interpreter; on a phone, add
        # tensorflow-lite-select-tf-ops).
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        converter._experimental_lower_tensor_list_ops = False  # pylint: disable=protected-access
        converter.experimental_enable_resource_variables = True
    if form == "int8":
        if representative is None:
            raise ValueError("int8 needs a representative sample of training examples")
        samples = list(representative)
        converter.representative_dataset = lambda: ({k: v for k, v in s.items()} for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        return converter.convert()
    except Exception as e:  # noqa: BLE001 - the converter's own errors are long MLIR dumps
        first = next((line.strip() for line in str(e).splitlines() if "error:" in line), str(e).splitlines()[0])
        kinds = sorted({f.kind for f in features})
        raise ExportError(f"the {'/'.join(kinds)} model cannot be converted to {form}: {first}") from None


def run_interpreter(content: bytes, batches: Iterable[Dict[str, np.ndarray]], task: str) -> np.ndarray:
    """The TFLite model's outputs for each batch of inputs, concatenated."""
    interpreter = tf.lite.Interpreter(model_content=content)
    runner = interpreter.get_signature_runner()
    out = [runner(**{k: np.asarray(v) for k, v in batch.items()})[output_key(task)] for batch in batches]
    return np.concatenate(out) if out else np.zeros((0,))


def metric(task: str, predictions: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy for classification, mean absolute error for regression."""
    if task == "classification":
        return float(np.mean(np.argmax(predictions, axis=-1) == labels.reshape(-1)))
    return float(np.mean(np.abs(predictions.reshape(-1) - labels.reshape(-1))))


def metric_name(task: str) -> str:
    return "accuracy" if task == "classification" else "mean_absolute_error"


def worse_by(task: str, reference: float, value: float) -> float:
    """How much worse `value` is than `reference` (accuracy: lower is worse; MAE: higher)."""
    return reference - value if task == "classification" else value - reference


def _numeric_affine(tft_layer, raw_spec: Dict, feature: str) -> Dict[str, float]:
    """mean and std of a z-scored numeric feature, read off the Transform graph by probing it at 1 and 2."""
    from lamina.models.export import raw_to_tft_format
    from lamina.models.features import transformed_name

    probe = {}
    for k, v in raw_spec.items():
        if k == feature:
            value = tf.constant([1.0, 2.0], v.dtype)
        elif v.dtype == tf.string:
            value = tf.constant(["", ""])
        else:
            value = tf.fill([2], tf.constant(float("nan"), v.dtype)) if v.dtype.is_floating else tf.zeros([2], v.dtype)
        probe[k] = raw_to_tft_format(k, value, v)
    z1, z2 = tft_layer(probe)[transformed_name(feature)].numpy().reshape(-1)[:2]
    scale = float(z2 - z1)  # 1 / std
    if not scale:
        return {"mean": 0.0, "std": 1.0}
    std = 1.0 / scale
    return {"mean": float(1.0 - z1 * std), "std": float(std)}


def input_spec(features: List[FeatureInfo], tf_transform_output, out_dir: str, task: str,
               classes: Optional[List[str]]) -> dict:
    """What each input of the TFLite file takes, and how to make it from a raw value.

    Copies the vocabulary files it names into `out_dir`.
    """
    tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    inputs = []
    for f in features:
        entry = {"name": f.key, "column": f.name, "dtype": f.dtype, "shape": [-1, *f.shape]}
        if f.kind == NUMERIC and f.part == "missing":
            entry["how"] = f"1.0 when {f.name!r} is missing, else 0.0"
        elif f.kind == NUMERIC:
            affine = _numeric_affine(tft_layer, raw_spec, f.name)
            entry.update(affine)
            entry["how"] = (f"(x - mean) / std with mean={affine['mean']:.6g}, std={affine['std']:.6g}; "
                            f"a missing value is 0.0 (the mean)")
        elif f.kind == CATEGORICAL:
            vocab = tf_transform_output.vocabulary_file_by_name(vocabulary_name(f.name))
            local = f"{safe_name(f.name)}_vocabulary.txt"
            tf.io.gfile.copy(vocab, os.path.join(out_dir, local), overwrite=True)
            entry["vocabulary"] = local
            entry["how"] = (f"the 0-based line number of the value in {local}, stripped (a missing value or marker "
                            f"such as '?' or 'NA' is '', and yes/no/true/false are lower-case); a value "
                            f"not in it takes an id from its line count up to {f.vocab_size - 1}")
        elif f.kind == IMAGE:
            h, w = f.image_size
            entry["how"] = (f"RGB pixels as float32 in [0, 255], decoded from PNG/JPEG and resized to {h}x{w} "
                            f"(bilinear); scaling happens inside the model")
        elif f.kind == TEXT:
            local = f"{safe_name(f.name)}_wordpiece_vocab.txt"
            tf.io.gfile.copy(f.vocabulary, os.path.join(out_dir, local), overwrite=True)
            entry.update({"vocabulary": local, "lowercase": f.lowercase, "max_length": f.max_length})
            entry["how"] = (f"WordPiece token ids (int32) from {local}: [CLS] tokens [SEP], cut and padded with "
                            f"the pad id to {f.max_length}; lowercase={f.lowercase}")
        elif f.kind == AUDIO:
            entry["how"] = (f"mono float32 samples in [-1, 1] at {f.sample_rate} Hz, the clip's first {f.max_length} "
                            f"(zero-padded), as lamina.models.audio.decode_wav makes them from a WAV file")
        elif f.kind == SEQUENCE:
            entry["how"] = (f"the last {f.max_length} values, each z-scored as Lamina's Transform does "
                            f"(lamina.models.preprocessing.sequence_values), then NaN up to {f.max_length}")
        elif f.kind == DATE:
            entry["how"] = "the calendar parts Lamina's Transform computes (lamina.models.preprocessing.calendar_parts)"
        inputs.append(entry)
    return {
        "preprocessing": "not inside: feed the transformed inputs below (see 'how' for each)",
        "inputs": inputs,
        "output": {"name": output_key(task),
                   "what": "class probabilities, one per class below" if classes else "the predicted value",
                   **({"classes": classes} if classes else {})},
        "signature": "serving_default (tf.lite.Interpreter(...).get_signature_runner())",
    }


def evaluate_forms(model, features: List[FeatureInfo], task: str, forms: List[str],
                   eval_batches: List[tuple], representative: List[Dict[str, np.ndarray]], max_drop: float,
                   out_dir: str) -> tuple:
    """Converts each form, measures it against the Keras model on `eval_batches` ((inputs, labels)
    pairs), and writes those within `max_drop` to `out_dir`. Returns (reference metric, [FormResult])."""
    labels = np.concatenate([np.asarray(y) for _, y in eval_batches]) if eval_batches else np.zeros(0)
    keep = labels >= 0 if task == "classification" else np.ones(labels.shape[0], bool)
    keep = keep.reshape(-1)
    reference_out = np.concatenate([np.asarray(model(x, training=False)) for x, _ in eval_batches])
    reference = metric(task, reference_out[keep], labels.reshape(-1)[keep])
    results = []
    for form in forms:
        try:
            content = convert(model, features, task, form, representative if form == "int8" else None)
        except ExportError as e:
            results.append(FormResult(form, False, reason=str(e)))
            continue
        predictions = run_interpreter(content, (x for x, _ in eval_batches), task)
        value = metric(task, predictions[keep], labels.reshape(-1)[keep])
        drop = worse_by(task, reference, value)
        result = FormResult(form, drop <= max_drop, len(content), value, drop)
        if result.exported:
            result.path = os.path.join(out_dir, file_name(form))
            with tf.io.gfile.GFile(result.path, "wb") as f:
                f.write(content)
        else:
            result.reason = (f"{metric_name(task)} {value:.4f} against the SavedModel's {reference:.4f}: "
                             f"worse by {drop:.4f}, more than the allowed {max_drop:g}; not exported")
        results.append(result)
    return reference, results


def write_report(out_dir: str, task: str, reference: float, examples: int, results: List[FormResult]) -> str:
    path = os.path.join(out_dir, REPORT_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"metric": metric_name(task), "reference": reference, "examples": examples,
                   "forms": [dataclasses.asdict(r) for r in results]}, f, indent=1)
    return path


def read_report(out_dir: str) -> Optional[dict]:
    from lamina import storage

    return storage.read_json_if_exists(os.path.join(out_dir, REPORT_FILE))


class InputError(ValueError):
    """A row that cannot be fed to the TFLite file; the message names the row and the column."""


def read_input_spec(tflite_path: str) -> dict:
    path = os.path.join(os.path.dirname(tflite_path), INPUT_SPEC_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: no input spec beside the TFLite file (TFLiteExporter writes one)")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value.strip())


def rows_to_inputs(rows: List[dict], input_spec: dict, folder: str) -> Dict[str, np.ndarray]:
    """Raw rows (column -> value; an image column names a file) -> the TFLite file's inputs, as its
    input spec says: z-scores, vocabulary ids, decoded and resized pixels, WordPiece ids."""
    out = {}
    for entry in input_spec["inputs"]:
        column, name = entry["column"], entry["name"]
        values = []
        for i, row in enumerate(rows, start=1):
            if column not in row and "how" in entry and not entry["name"].endswith("_missing"):
                raise InputError(f"row {i}: no column {column!r}; the model takes: "
                                 f"{', '.join(sorted({e['column'] for e in input_spec['inputs']}))}")
            values.append(row.get(column))
        if "mean" in entry:
            try:
                x = np.array([np.nan if _missing(v) else float(v) for v in values], np.float32)
            except (TypeError, ValueError):
                bad = next(i for i, v in enumerate(values, 1) if not _missing(v) and not _is_number(v))
                raise InputError(f"row {bad}: column {column!r} is numeric; received {values[bad - 1]!r}") from None
            z = (x - entry["mean"]) / entry["std"]
            out[name] = np.where(np.isnan(z), 0.0, z).astype(np.float32).reshape(-1, 1)
        elif name.endswith("_missing") and entry["dtype"] == "float32" and "vocabulary" not in entry:
            out[name] = np.array([[1.0 if _missing(v) else 0.0] for v in values], np.float32)
        elif "max_length" in entry:
            from lamina.models.text import tokenizer_for

            vocab = os.path.join(folder, entry["vocabulary"])
            tokens = tokenizer_for(vocab, entry["lowercase"], entry["max_length"])(
                tf.constant(["" if _missing(v) else str(v) for v in values]))
            out[name] = tokens.numpy().astype(np.int32)
        elif "vocabulary" in entry:
            with tf.io.gfile.GFile(os.path.join(folder, entry["vocabulary"])) as f:
                ids = {line.rstrip("\n"): i for i, line in enumerate(f)}
            out[name] = np.array([[ids.get("" if _missing(v) else normalize_category(v) if isinstance(v, str)
                                            else str(v), len(ids))] for v in values], np.int64)
        elif len(entry["shape"]) == 4:  # an image: [batch, H, W, 3]
            h, w = entry["shape"][1:3]
            pixels = []
            for i, v in enumerate(values, 1):
                path = v if os.path.isabs(str(v)) else os.path.join(os.getcwd(), str(v))
                try:
                    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
                except (tf.errors.OpError, ValueError) as e:
                    raise InputError(f"row {i}: column {column!r}: cannot read an image from {v!r}: "
                                     f"{getattr(e, 'message', e)}") from None
                pixels.append(tf.image.resize(tf.cast(image, tf.float32), [h, w]).numpy())
            out[name] = np.stack(pixels).astype(np.float32)
        else:
            raise InputError(f"input {name!r} ({entry.get('how', 'unknown')}) cannot be made from a raw row here")
    return out


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def predict_rows(tflite_path: str, rows: List[dict]) -> List[dict]:
    """Answers for raw rows from a TFLite file, through the interpreter and the input spec beside it."""
    spec = read_input_spec(tflite_path)
    inputs = rows_to_inputs(rows, spec, os.path.dirname(tflite_path))
    with tf.io.gfile.GFile(tflite_path, "rb") as f:
        content = f.read()
    key = spec["output"]["name"]
    outputs = run_interpreter(content, [inputs], "classification" if key == "scores" else "regression")
    classes = spec["output"].get("classes")
    if classes:
        return [{"class": classes[int(np.argmax(p))], "scores": {c: round(float(s), 6) for c, s in zip(classes, p)}}
                for p in outputs]
    return [{"prediction": float(p)} for p in outputs.reshape(-1)]
