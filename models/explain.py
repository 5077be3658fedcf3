"""Why the model answers what it answers: Integrated Gradients, Grad-CAM (models.gradcam) and, for the
models without gradients, Shapley values (models.shapley); the record, its files and `lamina explain`.

- **Integrated Gradients** (Sundararajan et al., 2017) for tabular and text features. The path
  runs in each feature's *encoded* space: the output of its encoder layer for a tabular feature
  (a z-score, an embedding, a one-hot vector), the token embeddings for a text feature. So a
  category or a token, which cannot be interpolated as an id, still gets an attribution, and
  completeness holds: the attributions add up to f(x) - f(baseline), where f is the probability
  of the explained class (the prediction, for regression). The baseline is the zero vector or the
  sample's mean (`explain.baseline`); the integral is the trapezoid rule over `explain.steps`.
- **Grad-CAM** (Selvaraju et al., 2017) for image features: the last convolutional block's
  activations, weighted by the mean gradient of the explained class over each channel.

Both intercept a layer's output during one eager forward pass (models.attribution's `replaced_output`),
so they need no second model. Gradient-boosted trees and the linear model have no gradients: their
tabular features get Shapley values. So does a network that starts from the linear model, whose answer
also reads the raw inputs, a path that Integrated Gradients on the encoders' outputs would not see.
"""

import contextlib
import dataclasses
import os
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from lamina.constants import DEFAULT_SIGNATURE, RAW_SIGNATURE
from lamina.models.attribution import Attributions, explained_score, replaced_output, walk_layers
from lamina.models.features import AUDIO, IMAGE, SEQUENCE, TEXT, FeatureInfo
from lamina.models.gradcam import grad_cam, overlay_png, spectrogram_pictures


INTEGRATED_GRADIENTS = "Integrated Gradients"
COMPLETENESS_TARGET = 0.005  # attributions add up to f(x) - f(baseline) within 0.5%
MAX_STEP_GROWTH = 8  # tabular models: up to 8x explain.steps to get there


def explained_layers(model, features: List[FeatureInfo]) -> Dict[str, object]:
    """Feature key -> the layer whose output Integrated Gradients interpolates (images excluded)."""
    from lamina.models.text import TextEncoder

    backbone = model.get_layer("backbone")
    out = {}
    for f in features:
        if f.kind in (IMAGE, SEQUENCE, AUDIO):
            continue
        if f.kind == TEXT:
            encoder = next(l for l in walk_layers(backbone) if isinstance(l, TextEncoder) and l.name.startswith(f"{f.key}_"))
            out[f.key] = encoder.backbone.get_layer("token_embedding")
        else:  # the encoder the feature's input feeds
            out[f.key] = backbone.get_layer(f.key)._outbound_nodes[0].operation
    return out


def integrated_gradients(model, inputs: Dict[str, np.ndarray], features: List[FeatureInfo], task: str,
                         targets: Optional[np.ndarray] = None, steps: int = 128,
                         baseline: str = "zeros", max_rows: int = 64) -> Attributions:
    """Integrated Gradients of every tabular and text feature of `inputs` (a batch of model inputs).

    `targets`: the class explained per example (default: the predicted one). The path's points run
    through the model `max_rows` rows at a time, so memory stays bounded whatever `steps` is.
    """
    layers = explained_layers(model, features)
    if not layers:
        raise ValueError("no tabular or text feature to attribute (images are explained with Grad-CAM)")
    recorded = {}
    stack = contextlib.ExitStack()
    with stack:
        for key, layer in layers.items():
            stack.enter_context(replaced_output(layer, lambda out, key=key: recorded.setdefault(key, out)))
        outputs = model(inputs, training=False)
    if task == "classification" and targets is None:
        targets = np.argmax(np.asarray(outputs), axis=-1)
    encoded = {k: tf.cast(v, tf.float32) for k, v in recorded.items()}
    if baseline == "mean":
        base = {k: tf.broadcast_to(tf.reduce_mean(v, axis=0, keepdims=True), tf.shape(v)) for k, v in encoded.items()}
    else:
        base = {k: tf.zeros_like(v) for k, v in encoded.items()}
    n = next(iter(encoded.values())).shape[0]
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    weights = np.full(steps + 1, 1.0 / steps, np.float32)  # the trapezoid rule
    weights[[0, -1]] /= 2
    total = {k: tf.zeros_like(v) for k, v in encoded.items()}
    ends = {}
    # A few alphas at a time: batch rows = n per alpha, bounded so a Transformer's backward pass fits.
    per_chunk = max(1, max_rows // n)
    for start in range(0, steps + 1, per_chunk):
        chunk = alphas[start:start + per_chunk]
        m = len(chunk)
        interpolated = {}
        for k, v in encoded.items():
            shape = [m] + [1] * len(v.shape)
            path = base[k][None] + tf.reshape(chunk, shape) * (v - base[k])[None]
            interpolated[k] = tf.reshape(path, [m * n, *v.shape[1:]])
        tiled = {k: np.concatenate([np.asarray(v)] * m) for k, v in inputs.items()}
        tiled_targets = np.concatenate([targets] * m) if targets is not None else None
        with tf.GradientTape() as tape:
            tape.watch(list(interpolated.values()))
            stack = contextlib.ExitStack()
            with stack:
                for key, layer in layers.items():
                    stack.enter_context(replaced_output(
                        layer, lambda out, key=key: tf.cast(interpolated[key], out.dtype)))
                scores = explained_score(model(tiled, training=False), tiled_targets, task)
        grads = tape.gradient(scores, interpolated)
        w = weights[start:start + m]
        for k, g in grads.items():
            g = tf.reshape(g, [m, n, *g.shape[1:]])
            total[k] += tf.tensordot(tf.constant(w), g, axes=1)
        scores = tf.reshape(scores, [m, n]).numpy()
        if start == 0:
            ends["baseline"] = scores[0]
        if start + m == steps + 1:
            ends["input"] = scores[-1]
    values = {}
    for k, mean_grad in total.items():
        attribution = (mean_grad * (encoded[k] - base[k])).numpy()
        # One number per feature (its encoded vector summed), or per token (its embedding summed).
        values[k] = attribution.sum(axis=-1) if attribution.ndim == 3 else attribution.reshape(n, -1).sum(axis=1)
    return Attributions(values, targets, ends["input"], ends["baseline"])


def token_strings(token_ids: np.ndarray, vocabulary: str) -> List[str]:
    with tf.io.gfile.GFile(vocabulary) as f:
        vocab = [line.rstrip("\n") for line in f]
    return [vocab[i] if 0 <= i < len(vocab) else f"[{i}]" for i in token_ids]


# -- explaining examples and writing what people read ------------------------------------------------

EXPLANATIONS_FILE = "explanations.json"
TEXT_FILE = "text.html"
GRADCAM_DIR = "gradcam"


def explained_by_shapley(model) -> bool:
    """Gradient-boosted trees, the linear model, a network that starts from the linear model
    (`model.head.linear_start`), and the network and trees averaged (`model.type: blend`, or `auto`'s choice):
    explained with Shapley values (models.shapley), from the model's answers alone.
    Trees have no gradients. A linear start reads the raw inputs beside the encoders, and Integrated Gradients,
    which follows the encoders' outputs, would miss that part of the answer."""
    from lamina.models.linear import LinearScores
    from lamina.models.trees import TreeEnsemble

    return any(isinstance(layer, (TreeEnsemble, LinearScores)) for layer in walk_layers(model))


@dataclasses.dataclass
class ShapleyAttributions(Attributions):
    how: str = "exact"  # or "sampled" (models.shapley)


def shapley_attributions(model, inputs: Dict[str, np.ndarray], features: List[FeatureInfo], task: str,
                         targets: Optional[np.ndarray], baseline: str = "zeros") -> ShapleyAttributions:
    """Shapley values of every tabular feature of `inputs` (trees, the linear model, a linear start)."""
    from lamina.models.shapley import shapley_values
    from lamina.models.trees import column_categories

    players = [f.key for f in features]
    categorical = [f.key for f, n in zip(features, column_categories(features)) if n > 0]

    def score(batch, rows_targets):
        return explained_score(model(batch, training=False), rows_targets, task).numpy()

    values, full, empty, how = shapley_values(score, inputs, players, categorical, targets, baseline)
    return ShapleyAttributions(values, targets, full, empty, how)


def display_name(f: FeatureInfo) -> str:
    return f.name + (f" ({f.part})" if f.part else "")


def _predicted(model, inputs) -> np.ndarray:
    return np.asarray(model(inputs, training=False), np.float32)


def explain(model, features: List[FeatureInfo], task: str, classes: Optional[List[str]],
            inputs: Dict[str, np.ndarray], labels: Optional[np.ndarray], steps: int = 128,
            baseline: str = "zeros", names: Optional[List[str]] = None) -> dict:
    """Explains a batch: Integrated Gradients over its tabular and text features, Grad-CAM over its
    images. Returns a JSON-able record; Grad-CAM heatmaps ride along under '_heatmaps' (key -> [n, H, W])."""
    n = next(iter(inputs.values())).shape[0]
    outputs = _predicted(model, inputs)
    predicted = np.argmax(outputs, axis=-1) if task == "classification" else outputs.reshape(-1)

    def label_name(i):
        return classes[int(i)] if classes is not None and 0 <= int(i) < len(classes) else float(i)

    examples = []
    for i in range(n):
        row = {"name": names[i] if names else f"example {i + 1}", "predicted": label_name(predicted[i]),
               "score": float(outputs[i].max() if task == "classification" else outputs[i].reshape(-1)[0])}
        if labels is not None:
            row["label"] = label_name(labels[i])
            if task == "classification":
                row["correct"] = bool(int(labels[i]) == int(predicted[i]))
        examples.append(row)
    record = {"task": task, "examples": examples, "tabular": None, "text": {}, "_heatmaps": {}}
    # Images get Grad-CAM; a sequence's NaN padding has no straight path from a baseline, so it gets none.
    attributed = [f for f in features if f.kind not in (IMAGE, SEQUENCE, AUDIO)]
    if attributed:
        targets = predicted.astype(np.int64) if task == "classification" else None
        if explained_by_shapley(model):
            ig = shapley_attributions(model, inputs, attributed, task, targets, baseline)
            error = ig.completeness_error()
            record["method"] = f"Shapley values ({ig.how})"
        else:
            # A sharp model (ReLUs, a large learning rate) needs a finer path: tabular models double the steps
            # until the attributions add up within COMPLETENESS_TARGET (text is costly: it keeps the spec's steps).
            most = steps * (1 if any(f.kind == TEXT for f in attributed) else MAX_STEP_GROWTH)
            while True:
                ig = integrated_gradients(model, inputs, features, task, targets, steps=steps, baseline=baseline)
                error = ig.completeness_error()
                if error <= COMPLETENESS_TARGET or steps * 2 > most:
                    break
                steps *= 2
            record["method"] = INTEGRATED_GRADIENTS
            record["steps"] = steps
        record["completeness_error"] = error
        record["baseline"] = baseline
        tabular = [f for f in attributed if f.kind != TEXT]
        for i, row in enumerate(examples):
            row["baseline_score"] = float(ig.baseline_score[i])
            row["attributions"] = {display_name(f): float(ig.values[f.key][i]) for f in tabular}
        if tabular:
            importance = {display_name(f): float(np.mean(np.abs(ig.values[f.key]))) for f in tabular}
            record["tabular"] = sorted(({"feature": k, "importance": v} for k, v in importance.items()),
                                       key=lambda r: -r["importance"])
        for f in attributed:
            if f.kind != TEXT:
                continue
            pad = f.tokenizer().pad_id
            rows = []
            for i in range(n):
                ids = np.asarray(inputs[f.key][i])
                keep = ids != pad
                rows.append({"tokens": token_strings(ids[keep], f.vocabulary),
                             "attributions": [float(a) for a in ig.values[f.key][i][keep]]})
            record["text"][f.name] = rows
    for f in features:
        if f.kind in (IMAGE, AUDIO):
            targets = predicted.astype(np.int64) if task == "classification" else None
            record["_heatmaps"][f.key] = grad_cam(model, inputs, f, task, targets)[0]
            if f.kind == AUDIO:  # drawn over the spectrogram the encoder looks at
                record.setdefault("_pictures", {})[f.key] = spectrogram_pictures(model, f, inputs[f.key])
    return record


def write_explanations(record: dict, inputs: Dict[str, np.ndarray], features: List[FeatureInfo],
                       out_dir: str) -> dict:
    """explanations.json, one Grad-CAM PNG per image and example, and text.html; returns the record written."""
    import json

    tf.io.gfile.makedirs(out_dir)
    heatmaps = record.pop("_heatmaps", {})
    pictures = record.pop("_pictures", {})
    images = []
    for f in features:
        if f.key not in heatmaps:
            continue
        tf.io.gfile.makedirs(os.path.join(out_dir, GRADCAM_DIR))
        for i, heat in enumerate(heatmaps[f.key]):
            example = record["examples"][i]
            stem = (f"{i + 1:03d}_" + (f"{_slug(str(example['label']))}_" if "label" in example else "")
                    + f"as_{_slug(str(example['predicted']))}")
            path = f"{GRADCAM_DIR}/{_slug(f.name)}_{stem}.png"
            with tf.io.gfile.GFile(os.path.join(out_dir, path), "wb") as fh:
                fh.write(overlay_png(np.asarray(pictures[f.key][i] if f.key in pictures else inputs[f.key][i]), heat))
            images.append({"feature": f.name, "file": path, "example": i})
    record["images"] = images
    if record.get("text"):
        with tf.io.gfile.GFile(os.path.join(out_dir, TEXT_FILE), "w") as fh:
            fh.write(text_html(record))
    with tf.io.gfile.GFile(os.path.join(out_dir, EXPLANATIONS_FILE), "w") as fh:
        json.dump(record, fh, indent=1, ensure_ascii=False)
    return record


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]+", "-", text)[:40] or "x"


def token_spans(tokens: List[str], attributions: List[float]) -> List[tuple]:
    """(token, CSS background) per token: red pushes toward the answer, blue away, by strength."""
    top = max([abs(a) for a in attributions] + [1e-12])
    spans = []
    for token, a in zip(tokens, attributions):
        alpha = min(1.0, abs(a) / top)
        color = f"rgba(220,50,47,{alpha:.2f})" if a >= 0 else f"rgba(38,139,210,{alpha:.2f})"
        spans.append((token, color, a))
    return spans


def text_html(record: dict) -> str:
    """A standalone page: each explained text with its tokens highlighted by attribution."""
    import html

    parts = ["<!doctype html><meta charset=utf-8><title>Token attributions</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:2em}span.t{padding:0 .15em;border-radius:3px}"
             "p{line-height:1.9}</style><h1>Token attributions (Integrated Gradients)</h1>",
             "<p>Red pushes toward the predicted answer, blue away from it.</p>"]
    for feature, rows in record["text"].items():
        parts.append(f"<h2>{html.escape(feature)}</h2>")
        for example, row in zip(record["examples"], rows):
            spans = "".join(f"<span class=t style='background:{c}' title='{a:+.4f}'>{html.escape(t)}</span> "
                            for t, c, a in token_spans(row["tokens"], row["attributions"]))
            parts.append(f"<p><b>{html.escape(str(example['predicted']))}</b>"
                         + (f" (label {html.escape(str(example['label']))})" if "label" in example else "")
                         + f": {spans}</p>")
    return "\n".join(parts)


def top_attributions(record: dict, i: int, k: int = 5) -> List[tuple]:
    """The k strongest (name, attribution) of example i, tabular features and tokens together."""
    pairs = list(record["examples"][i].get("attributions", {}).items())
    for feature, rows in (record.get("text") or {}).items():
        pairs += [(f"{feature}:{t}", a) for t, a in zip(rows[i]["tokens"], rows[i]["attributions"])]
    return sorted(pairs, key=lambda p: -abs(p[1]))[:k]


def explain_pushed(model_dir: str, rows: List[dict], out_dir: str, steps: int = 128, baseline: str = "zeros",
                   names: Optional[List[str]] = None) -> dict:
    """Explains raw rows (column -> value; an image column holds the file's bytes) against a pushed
    SavedModel that Lamina wrote: its Transform graph makes the inputs, its Keras model is explained."""
    import json

    from lamina.models.export import TRANSFORM_FEATURES, model_inputs
    from lamina.models.images import BACKBONE_DIR
    from lamina.models.artifacts import FEATURES_FILE, load_keras_model, read_features
    from lamina.rows import row_to_example

    with tf.io.gfile.GFile(os.path.join(model_dir, BACKBONE_DIR, FEATURES_FILE)) as f:
        meta = json.load(f)
    features = read_features(model_dir)
    model = load_keras_model(model_dir)
    saved = tf.saved_model.load(model_dir)
    dtypes = {k: v.dtype.as_datatype_enum
              for k, v in saved.signatures[RAW_SIGNATURE].structured_input_signature[1].items()}
    examples = [row_to_example(row, dtypes, n=i) for i, row in enumerate(rows, start=1)]
    probe = saved.signatures[DEFAULT_SIGNATURE](inputs=tf.constant([examples[0].SerializeToString()]))
    task = "classification" if "scores" in probe else "regression"
    classes = [c.decode() for c in probe["classes"].numpy()[0]] if task == "classification" else None
    if all(f.kind == IMAGE for f in features):  # Transform passes the bytes through: decode as the model does
        from lamina.models.images import decode_images

        inputs = {f.key: decode_images(tf.constant([row[f.name] for row in rows]), f.image_size).numpy()
                  for f in features}
        record = explain(model, features, task, classes, inputs, None, steps=steps, baseline=baseline, names=names)
        return write_explanations(record, inputs, features, out_dir)
    # Transform's graph parses every column it was built from, the label and unused columns too: each
    # absent one gets a placeholder (a class name for the label) that no model input depends on.
    placeholders = {"string": b"", "float32": 0.0, "float64": 0.0, "int64": 0}
    for example in examples:
        fields = example.features.feature
        for column, dtype in meta.get("raw_columns", {}).items():
            if column in fields or column in dtypes:
                continue
            value = classes[0].encode() if column == meta["label"] and classes else placeholders.get(dtype, b"")
            if isinstance(value, bytes):
                fields[column].bytes_list.value.append(value)
            elif isinstance(value, float):
                fields[column].float_list.value.append(value)
            else:
                fields[column].int64_list.value.append(value)
    transformed = saved.signatures[TRANSFORM_FEATURES](examples=tf.constant([e.SerializeToString() for e in examples]))
    inputs = {k: np.asarray(v) for k, v in model_inputs(transformed, features).items()}
    record = explain(model, features, task, classes, inputs, None, steps=steps, baseline=baseline, names=names)
    return write_explanations(record, inputs, features, out_dir)
