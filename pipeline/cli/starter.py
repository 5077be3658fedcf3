"""`lamina init DATA`: a commented starter spec.yaml that a person can read, edit and run.

For a CSV it checks the file as a run would (`lamina.pipeline.profile`), infers each column's
role, and writes the features with the reason for each as a comment, the split, the task's
metrics and a gate suited to the class balance, and the serving name. For a folder with one
subfolder of images per class it writes an image spec (a small ResNet trained from scratch for
small images; ImageNet weights for larger ones); for one of audio files, an audio spec whose clip
length covers most files. `lamina run` on what it writes works unchanged.
"""

import json
import math
import os
import re
from typing import Dict, List, Optional

from lamina.constants import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from lamina.spec import Spec

# Images at most this many pixels on their longer side get a small ResNet trained from scratch.
SMALL_IMAGE_SIDE = 64
_PRETRAINED_FILES = ("config.json", "model.safetensors", "vocab.txt")


def cached_text_model() -> Optional[str]:
    """A BERT-family model in Hugging Face format in Lamina's model cache (`make minilm` puts
    all-MiniLM-L6-v2 there), or None. Nothing is downloaded."""
    from lamina.pipeline.cli.datasets import MINILM_NAME, model_cache_dir

    root = model_cache_dir()
    if not os.path.isdir(root):
        return None
    names = sorted(os.listdir(root), key=lambda n: (n != MINILM_NAME, n))
    for name in names:
        folder = os.path.join(root, name)
        if all(os.path.isfile(os.path.join(folder, f)) for f in _PRETRAINED_FILES):
            return folder
    return None


class InitError(ValueError):
    """The data cannot be made into a starter spec; the message says why and what to pass."""


def _scalar(value) -> str:
    """A YAML scalar: bare when it is a plain name, else double-quoted (JSON's quoting is YAML's)."""
    text = str(value)
    if re.match(r"^[A-Za-z_][A-Za-z0-9_.\-]*$", text) and text.lower() not in ("yes", "no", "true", "false", "null",
                                                                              "on", "off", "y", "n", "~"):
        return text
    return json.dumps(text, ensure_ascii=False)


def spec_name(path: str) -> str:
    stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-") or "lamina"
    return name if name[0].isalnum() else f"m{name}"


# Past this share of the most common class, accuracy is no gate: answering that class always scores it.
DOMINANT_CLASS_SHARE = 0.8


def _classification_gate(shares: List[float]) -> List[str]:
    if shares and max(shares) >= DOMINANT_CLASS_SHARE:
        import math

        prior = -sum(p * math.log(p) for p in shares if p > 0)
        return [f"  # One class is {max(shares):.0%} of the rows, so accuracy says little (always answering it scores",
                f"  # that much). The gate asks for a lower log loss than knowing only the class shares ({prior:.3f}).",
                "  thresholds:",
                f"    crossentropy: {{upper_bound: {math.floor(prior * 1000) / 1000}, max_regression: 0.05}}"]
    majority = max(shares) if shares else 0.0
    bound = round(majority + 0.5 * (1.0 - majority), 2)
    return [f"  # Always answering the most common class scores {majority:.2f}; the gate asks for clearly more.",
            "  thresholds:",
            f"    accuracy: {{lower_bound: {bound}, max_regression: 0.05}}"]


# A pretrained model from the cache (all-MiniLM is English) is chosen for a text column only when at
# least this share of its cells are ASCII; other scripts get the small Transformer from scratch.
PRETRAINED_MIN_ASCII_SHARE = 0.9
# Feature types the Baselines component (and gradient-boosted trees) can read.
TABULAR_TYPES = ("numeric", "categorical", "date", "sequence")
# Slices are written for categorical columns with at most this many values.
MAX_SLICE_VALUES = 20


def csv_starter(data_path: str, label: str, spec_dir: str, name: Optional[str] = None,
                text_model: Optional[str] = "auto", stream=None) -> str:
    """The starter spec for a table (CSV, JSON Lines, Parquet, TFRecord), as YAML text with comments.

    Free-text columns get the pretrained BERT-family model `text_model` ('auto': the one in
    Lamina's model cache, if any, for text that is mostly ASCII; None: none), else a small
    Transformer trained from scratch. The roles table is printed to `stream`, when given.
    """
    from lamina.pipeline.profile import format_roles, profile_data, profile_notes, resolve_spec

    rel = os.path.relpath(os.path.abspath(data_path), os.path.abspath(spec_dir))
    name = name or spec_name(data_path)
    spec = Spec.from_dict({"name": name, "data": {"path": rel, "label": label}}, base_dir=spec_dir)
    profile = profile_data(spec)
    if profile.task == "regression":
        from lamina.pipeline.series import guess_series, read_records

        records = read_records(profile.scans, label, spec.data.format, spec.data.encoding)
        guess = guess_series(profile.scans[0].names, records, label,
                             [r.name for r in profile.roles if r.role in ("categorical", "boolean", "id")],
                             [r.name for r in profile.roles if r.type == "numeric"])
        if guess is not None:
            return forecast_starter(spec, profile, guess, rel, name, stream)
    if stream is not None:
        print(format_roles(profile), file=stream)
    if not any(r.type for r in profile.roles):
        left = "; ".join(f"{r.name!r}: {r.role}, {r.reason}" for r in profile.roles if r.role != "label")
        raise InitError(f"{data_path}: no column besides {label!r} can be a feature ({left or 'no other columns'}). "
                        f"Name a column's type in the spec's data.features to use it anyway.")
    resolved = resolve_spec(spec, profile)
    lines = [f"# Starter spec written by `lamina init` for {rel} ({profile.rows} labelled rows).",
             "# Every role below was inferred from the data; change a feature's type, delete a line to",
             "# drop a feature, or move a column to `exclude`. `lamina validate` prints the roles again.",
             f"name: {_scalar(name)}"]
    lines += _data_lines(spec, rel, label, profile, f"                # {profile.task}: {profile.task_reason}")
    lines.append("  features:")
    for role in profile.roles:
        if role.type is None:
            continue
        entry = role.type
        extras = []
        if role.missing_indicator:
            extras.append("missing_indicator: true")
        if role.format:
            extras.append(f"format: {json.dumps(role.format)}")
        if extras:
            entry = "{" + ", ".join([f"type: {role.type}"] + extras) + "}"
        lines.append(f"    {_scalar(role.name)}: {entry}    # {role.role}: {role.reason}")
    excluded = [r for r in profile.roles if r.excluded]
    if excluded:
        lines.append("  exclude:                      # kept in the examples (for slicing), never a feature")
        lines += [f"    - {_scalar(r.name)}    # {r.role}: {r.reason}" for r in excluded]
    lines.append("split: {train: 4, eval: 1}     # hash buckets: 80% train, 20% eval")
    lines.append("model:")
    encoders = resolved.model.encoders
    if encoders:
        lines.append("  type: auto    # text needs the network; gradient-boosted trees take tables without text")
    else:
        lines.append("  type: auto    # the network and gradient-boosted trees: the better on the eval split is pushed")
    pretrained = cached_text_model() if text_model == "auto" else text_model
    if pretrained and text_model == "auto" and encoders:
        stats = [c for key in encoders for c in (s.column(key) for s in profile.scans)]
        ascii_share = sum(c.ascii_cells for c in stats) / max(sum(c.present for c in stats), 1)
        if ascii_share < PRETRAINED_MIN_ASCII_SHARE:
            pretrained = None
            lines.append(f"# The text is {1 - ascii_share:.0%} non-ASCII and the cached pretrained model "
                         f"({os.path.basename(cached_text_model())}) reads English:")
            lines.append("# a small Transformer learns from this data instead.")
    if encoders:
        lines.append("  encoders:")
        for key, enc in encoders.items():
            if pretrained:
                from lamina.pipeline.profile import average_word_count

                words = max(average_word_count(c) for c in (s.column(key) for s in profile.scans))
                length = min(128, max(16, 8 * round(2 * words / 8 + 1)))
                lines.append(f"    {_scalar(key)}: {{type: bert, path: {_scalar(pretrained)}, max_length: {length}, "
                             f"pooling: mean}}   # a pretrained encoder, fine-tuned")
                continue
            values = enc.model_dump()
            fields = ", ".join(f"{k}: {values[k]}" for k in ("type", "num_layers", "num_heads", "hidden_dim",
                                                             "intermediate_dim", "max_length", "vocabulary_size")
                               if k in values)
            lines.append(f"    {_scalar(key)}: {{{fields}}}   # or {{type: bert, path: <a Hugging Face model dir>}}")
    lines.append("  combiner: {hidden_units: [32, 16], dropout: 0.1, skip: true}   # skip: a linear path beside the "
                 "dense layers (wide & deep)")
    if encoders:
        lines.append(f"  head: {{type: {profile.task}}}")
    else:
        lines.append(f"  head: {{type: {profile.task}, linear_start: true}}   # the network starts as the linear "
                     "model and learns what it misses")
    lines.append("training:")
    if pretrained and encoders:
        lines.append("  epochs: 3                      # fine-tuning a pretrained text encoder needs few")
        lines.append("  batch_size: 16")
        lines.append("  optimizer: adamw               # with linear warmup and decay, the text default")
        lines.append("  learning_rate: 1.0e-4")
    else:
        lines.append("  epochs: 30")
        lines.append("  batch_size: 32")
        lines.append("  learning_rate: 0.003")
        lines.append("  early_stopping: {monitor: val_loss, patience: 5}")
    if profile.task == "classification" and profile.imbalanced:
        lines.append("  class_weights: auto            # the rare class counts as much as the common one")
    lines.append("evaluation:")
    lines += _table_gate(profile, label, any(r.type in TABULAR_TYPES for r in profile.roles))
    few = {r.name for r in profile.roles
           if all(not c.distinct_overflow and c.n_distinct <= MAX_SLICE_VALUES for c in (s.column(r.name)
                                                                                     for s in profile.scans))}
    slices = [r.name for r in profile.roles
              if r.type == "categorical" and r.role in ("categorical", "boolean") and r.name in few][:2]
    if slices:
        lines.append("  slices: [" + ", ".join(f"[{_scalar(s)}]" for s in slices) + "]   # metrics per value too")
    lines.append("serving:")
    lines.append(f"  model_name: {_scalar(name)}")
    lines.append("  push_dir: serving_models")
    lines.append("runner:")
    lines.append("  root: lamina_runs")
    text = "\n".join(lines) + "\n"
    comment = "\n".join("#   " + note for note in profile_notes(profile))
    return text + "# What the data looked like:\n" + comment + "\n"


def _data_lines(spec: Spec, rel: str, label: str, profile, comment: str = "") -> List[str]:
    lines = ["data:", f"  path: {_scalar(rel)}", f"  label: {_scalar(label)}" + comment]
    if spec.data.format != "csv":
        lines.append(f"  format: {spec.data.format}")
    elif profile.scans[0].delimiter != ",":
        lines.append(f"  delimiter: {json.dumps(profile.scans[0].delimiter)}")
    return lines


def forecast_starter(spec: Spec, profile, guess, rel: str, name: str, stream=None) -> str:
    """The starter spec of a table that is a time series (pipeline.series.guess_series): a forecast of the
    label, a season ahead, with the other numbers as covariates known up to the forecast origin."""
    import yaml

    from lamina.pipeline.profile import format_roles, profile_data, profile_notes
    from lamina.spec.forecast import FREQUENCIES

    label = spec.data.label
    timestamp = guess.timestamp if isinstance(guess.timestamp, str) else "[" + ", ".join(
        _scalar(c) for c in guess.timestamp) + "]"
    lines = [f"# Starter spec written by `lamina init` for {rel} ({profile.rows} rows with a {label!r} value):",
             f"# a time series. {guess.reason}.",
             "# Every choice below was inferred from the data; `lamina validate` prints the roles again.",
             f"name: {_scalar(name)}", "task: forecast"] + _data_lines(spec, rel, label, profile)
    lines += ["forecast:",
              f"  timestamp: {timestamp if isinstance(guess.timestamp, list) else _scalar(timestamp)}"]
    if guess.series_id:
        lines.append(f"  series_id: {_scalar(guess.series_id)}      # {guess.series} series, a median of "
                     f"{guess.median_length} steps each")
    lines += [f"  frequency: {guess.frequency}     # {FREQUENCIES[guess.frequency]}; the season is {guess.season} steps",
              f"  lookback: {guess.lookback}     # steps of history each forecast reads",
              f"  horizon: {guess.horizon}      # steps each forecast answers"]
    if guess.past_only:
        lines.append("  past_only: [" + ", ".join(_scalar(c) for c in guess.past_only) + "]   # known up to the "
                     "forecast origin; move a column to known_future if it is known ahead (a planned promotion)")
    lines.append(f"  gaps: mask     # {guess.gaps} missing step(s): masked in the history, left out of the metrics")
    if guess.backtest >= 2:
        lines.append(f"  backtest: {guess.backtest}    # score {guess.backtest} rolling origins, a horizon apart, "
                     f"after the cut-off")
    lines += ["training:", "  epochs: 30", "  batch_size: 64", "  learning_rate: 0.003",
              "  early_stopping: {monitor: val_loss, patience: 5}",
              "evaluation:", "  metrics: [mase, mae, rmse, smape]",
              "  baseline: {must_beat: best, tolerance: 0.0}     # no push unless it beats seasonal naive and last value",
              "serving:", f"  model_name: {_scalar(name)}", "  push_dir: serving_models",
              "runner:", "  root: lamina_runs"]
    text = "\n".join(lines) + "\n"
    forecast = Spec.from_dict(yaml.safe_load(text), base_dir=spec.base_dir)
    checked = profile_data(forecast)  # every row's time, target and covariates, as ForecastExampleGen reads them
    if stream is not None:
        print(f"A time series: {guess.reason}. Writing a forecast spec (task: forecast).", file=stream)
        print(format_roles(checked), file=stream)
    comment = "\n".join("#   " + note for note in profile_notes(checked))
    return text + "# What the data looked like:\n" + comment + "\n"


def _table_gate(profile, label: str, tabular: bool = True) -> List[str]:
    """A table's metrics and its gate, relative rather than guessed: the model must score within a tolerance
    of the linear baseline (logistic or ridge regression, fit on the same split by the Baselines component,
    when the table has tabular features) and no worse than the model last pushed by more than
    `max_regression`. An imbalanced binary label is gated on AUC, which no decision threshold moves;
    accuracy is still reported beside it."""
    def gate(metric: str, linear: str, tolerance, regression) -> List[str]:
        if not tabular:
            return ["  # The gate: no worse than the model last pushed (text only: no linear baseline to compare).",
                    "  thresholds:", f"    {metric}: {{max_regression: {regression}}}"]
        return [f"  # The gate: {metric} within {tolerance} of the linear baseline's ({linear} on the same split),",
                f"  # and no worse than the model last pushed by more than {regression}.",
                "  thresholds:", f"    {metric}: {{max_regression: {regression}}}",
                f"  baseline: {{must_beat: linear, tolerance: {tolerance}}}"]

    if profile.task != "classification":
        slack = _regression_slack(profile, label)
        return ["  metrics: [mae, rmse]", "  # Tolerances: 5% of the label's spread."] + gate(
            "mae", "ridge regression", slack, slack)
    total = sum(profile.classes.values()) or 1
    shares = {k: v / total for k, v in profile.classes.items()}
    majority, share = max(shares.items(), key=lambda kv: kv[1])
    if len(shares) == 2 and profile.imbalanced:
        rare = min(shares, key=shares.get)
        return ["  metrics: [auc, accuracy, crossentropy]",
                f"  # {rare!r} is {shares[rare]:.0%} of the rows: always answering {majority!r} is {share:.0%} accurate and",
                "  # finds none of them. AUC, which no decision threshold moves, comes first and is gated.",
                f"  # The class weights make the model answer {rare!r} where its probability passes "
                f"{shares[rare]:.2f}, not 0.5:",
                f"  # more {rare!r} found, and accuracy below {share:.0%} (training.class_weights: none answers at 0.5).",
                f"  positive_class: {_scalar(rare)}"] + gate("auc", "logistic regression", 0.01, 0.02)
    first = "crossentropy" if share >= DOMINANT_CLASS_SHARE else "accuracy"
    return [f"  metrics: [{first}, {'accuracy' if first == 'crossentropy' else 'crossentropy'}]",
            f"  # Always answering {majority!r} scores {share:.2f}."] + gate(first, "logistic regression", 0.01, 0.05)


def _regression_slack(profile, label: str) -> float:
    stats = [s.column(label) for s in profile.scans]
    n = sum(c.sum_count for c in stats)
    if not n:
        return 1.0
    mean = sum(c.total for c in stats) / n
    var = max(sum(c.total_sq for c in stats) / n - mean * mean, 0.0)
    return round(max(0.05 * var ** 0.5, 1e-6), 6)


def _class_files(folder: str, extensions) -> Dict[str, List[str]]:
    """Class folder -> its files with one of `extensions` (hidden ones left out)."""
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))
    return {c: sorted(f for f in os.listdir(os.path.join(folder, c))
                      if not f.startswith(".") and os.path.splitext(f)[1].lower() in extensions) for c in classes}


def is_audio_folder(folder: str) -> bool:
    """Whether the class folders under `folder` hold more audio files than images."""
    audio = sum(len(v) for v in _class_files(folder, AUDIO_EXTENSIONS).values())
    return audio > sum(len(v) for v in _class_files(folder, IMAGE_EXTENSIONS).values())


def check_media_folder(folder: str) -> None:
    """Raises InitError when the class subfolders of `folder` hold no image or audio file, saying what they
    hold instead and what is supported."""
    from lamina.pipeline.profile import media_folder_problem

    problem = media_folder_problem(folder, IMAGE_EXTENSIONS + AUDIO_EXTENSIONS)
    if problem:
        raise InitError(f"{problem}, or a table: lamina init FILE --label COLUMN.")


def _check_classes(folder: str, files: Dict[str, List[str]], noun: str) -> None:
    if len(files) < 2:
        raise InitError(f"{folder}: expected one subfolder of {noun} per class (at least 2); found "
                        f"{len(files)}: {sorted(files)}")


def audio_folder_starter(folder: str, spec_dir: str, name: Optional[str] = None) -> str:
    """The starter spec for `<folder>/<class>/<audio file>`, as YAML text with comments: clips as long as
    most files (the 90th percentile of a sample's durations, read from their headers)."""
    import soundfile

    files = _class_files(folder, AUDIO_EXTENSIONS)
    _check_classes(folder, files, "audio files")
    durations, rates = [], []
    for c, names in files.items():
        for f in names[:20]:
            try:
                info = soundfile.info(os.path.join(folder, c, f))
            except (RuntimeError, soundfile.LibsndfileError):
                continue
            durations.append(info.duration)
            rates.append(info.samplerate)
    durations.sort()
    typical = durations[int(0.9 * (len(durations) - 1))] if durations else 1.0
    seconds = min(10.0, max(0.5, math.ceil(typical * 2) / 2))
    rate = 16000 if not rates or min(rates) >= 16000 else min(rates)
    counts = {c: len(v) for c, v in files.items()}
    total = sum(counts.values())
    rel = os.path.relpath(os.path.abspath(folder), os.path.abspath(spec_dir))
    name = name or spec_name(folder)
    lines = [f"# Starter spec written by `lamina init` for {rel}: {total} audio files in {len(files)} classes",
             f"# ({', '.join(f'{c}: {n}' for c, n in list(counts.items())[:10])}{', ...' if len(counts) > 10 else ''}).",
             f"# 90% of the {len(durations)} files sampled last at most {typical:.2f} s.",
             f"name: {_scalar(name)}",
             "data:",
             "  format: audio_folder",
             f"  path: {_scalar(rel)}",
             "  label: label",
             "  features: {audio: audio}",
             "  audio: {bad_files: skip, max_bad_fraction: 0.01}   # corrupt files are skipped and listed",
             "split: {train: 4, eval: 1}",
             "model:",
             "  encoders:",
             "    audio:",
             "      type: audio_cnn             # log-mel spectrogram, then a small CNN from scratch",
             f"      sample_rate: {rate}",
             f"      seconds: {seconds:g}                # longer clips are cut, shorter ones padded with silence",
             "      mel_bins: 64",
             "      augmentation: {time_shift: 0.1, freq_mask: 8, time_mask: 10}",
             "      dropout: 0.2",
             "  combiner: {hidden_units: []}",
             "  head: {type: classification, dropout: 0.1}",
             "training:",
             "  epochs: 20",
             "  batch_size: 32",
             "  learning_rate: 0.003",
             "  lr_schedule: linear_warmup_decay   # settles the last epochs",
             "evaluation:",
             "  metrics: [accuracy, crossentropy]"]
    lines += _classification_gate([n / total for n in counts.values()] if total else [])
    lines += ["serving:", f"  model_name: {_scalar(name)}", "  push_dir: serving_models",
              "runner:", "  root: lamina_runs"]
    return "\n".join(lines) + "\n"


def image_folder_starter(folder: str, spec_dir: str, name: Optional[str] = None) -> str:
    """The starter spec for `<folder>/<class>/<image>`, as YAML text with comments."""
    from PIL import Image

    by_class = _class_files(folder, IMAGE_EXTENSIONS)
    _check_classes(folder, by_class, "images")
    classes = list(by_class)
    counts, side = {}, 0
    for c in classes:
        files = by_class[c]
        counts[c] = len(files)
        for f in files[:5]:
            try:
                with Image.open(os.path.join(folder, c, f)) as im:  # the header only
                    side = max(side, *im.size)
            except OSError:
                continue
    rel = os.path.relpath(os.path.abspath(folder), os.path.abspath(spec_dir))
    name = name or spec_name(folder)
    small = side <= SMALL_IMAGE_SIDE
    size = max(8, side) if small else 224
    encoder = ([f"      architecture: resnet_small   # images are at most {side}px: a small ResNet from scratch",
                "      weights: random"] if small else
               [f"      architecture: resnet50       # images up to {side}px: transfer from ImageNet",
                "      weights: imagenet            # offline: put the Keras weights file in ~/.keras/models"])
    total = sum(counts.values())
    lines = [f"# Starter spec written by `lamina init` for {rel}: {total} images in {len(classes)} classes",
             f"# ({', '.join(f'{c}: {n}' for c, n in list(counts.items())[:10])}{', ...' if len(counts) > 10 else ''}).",
             f"name: {_scalar(name)}",
             "data:",
             "  format: image_folder",
             f"  path: {_scalar(rel)}",
             "  label: label",
             "  features: {image: image}",
             "  images: {bad_files: skip, max_bad_fraction: 0.01}   # corrupt files are skipped and listed",
             "split: {train: 4, eval: 1}",
             "model:",
             "  encoders:",
             "    image:",
             "      type: resnet",
             *encoder,
             f"      image_size: [{size}, {size}]",
             "      augmentation: {rotation: 0.03, zoom: 0.1}",
             "  combiner: {hidden_units: []}",
             "  head: {type: classification, dropout: 0.1}",
             "training:",
             "  epochs: 8",
             "  batch_size: 32",
             "  learning_rate: 0.003",
             "evaluation:",
             "  metrics: [accuracy, crossentropy]"]
    shares = [n / total for n in counts.values()] if total else []
    lines += _classification_gate(shares)
    lines += ["serving:", f"  model_name: {_scalar(name)}", "  push_dir: serving_models",
              "runner:", "  root: lamina_runs"]
    return "\n".join(lines) + "\n"


def write_starter_spec(data: str, output: str, label: Optional[str] = None, name: Optional[str] = None,
                       force: bool = False, text_model: Optional[str] = "auto", stream=None) -> str:
    """Writes the starter spec for `data` (a table, or a folder of images or audio files) to `output`; returns
    its text. A table's roles table is printed to `stream`, when given."""
    if os.path.exists(output) and not force:
        raise InitError(f"{output} exists; pass --force to replace it, or -o to write elsewhere.")
    spec_dir = os.path.dirname(os.path.abspath(output))
    if os.path.isdir(data):
        check_media_folder(data)
        starter = audio_folder_starter if is_audio_folder(data) else image_folder_starter
        text = starter(data, spec_dir, name)
    elif os.path.isfile(data):
        if not label:
            from lamina.spec import DataSpec
            from lamina.tables import ROW_SOURCES, TableOptions

            fmt = DataSpec(path=data, label="?").format
            _, header = ROW_SOURCES[fmt].header(data, TableOptions())
            raise InitError(f"name the column to predict: lamina init {data} --label COLUMN; the columns are "
                            f"{', '.join(repr(h) for h in header)}.")
        text = csv_starter(data, label, spec_dir, name, text_model, stream)
    else:
        raise InitError(f"{data}: no such file or folder; expected a CSV file or a folder of class subfolders.")
    os.makedirs(spec_dir, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    Spec.from_yaml(output)  # what was written is a valid spec
    return text
