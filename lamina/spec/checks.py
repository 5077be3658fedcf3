"""The rules that involve several fields: small named checks, each with a readable message.

`cross_field_problems(spec)` runs them all and returns every problem, so a user sees all of
them at once. Each message starts with the key path it is about. Each check takes the `Spec`
being validated (not imported here: `root` imports this module).
"""

from typing import List

from lamina.constants import TRAINER, TUNER, SOURCE_PATH_KEY
from lamina.spec.data import FeatureType
from lamina.spec.encoders import BertEncoder, ImageEncoder, encoder_names
from lamina.spec.errors import did_you_mean, one_of
from lamina.spec.kubeflow import REMOTE_SCHEMES



def _check_label_not_feature(spec) -> List[str]:
    if spec.data.features and spec.data.label in spec.data.feature_types:
        return [f"data.features: the label {spec.data.label!r} must not also be an input feature."]
    return []


def _check_data_format(spec) -> List[str]:
    data = spec.data
    images = [f.name for f in data.features or [] if f.type == FeatureType.IMAGE]
    audio = [f.name for f in data.features or [] if f.type == FeatureType.AUDIO]
    if not data.is_files:
        if data.format == "tfrecord":
            return [f"data.features: {kind} feature {n!r} in a table is a column of {kind} file paths; format "
                    f"'tfrecord' holds no paths. Use csv, jsonl or parquet."
                    for kind, names in (("image", images), ("audio", audio)) for n in names]
        return []  # a table whose image and audio columns hold file paths, with any other features
    problems = []
    kind = FeatureType.IMAGE if data.is_images else FeatureType.AUDIO
    ours = images if data.is_images else audio
    if len(ours) != 1 or len(data.features) != 1:
        problems.append(f"data.features: format {data.format!r} expects exactly one feature, of type "
                        f"'{kind.value}'. Received: {data.feature_types}."
                        + (" For several images, or images with text and numbers, use format 'csv' with a column "
                           "of image paths per image feature." if data.is_images else ""))
    if SOURCE_PATH_KEY in (data.label, *data.feature_types):
        problems.append(f"data: {SOURCE_PATH_KEY!r} is the column that holds each file's path; "
                        f"name the label and features otherwise.")
    return problems


def _check_fine_tune(spec) -> List[str]:
    problems = []
    for key, enc in spec.model.encoders.items():
        if not isinstance(enc, ImageEncoder):
            continue
        if enc.architecture == "resnet_small" and enc.weights == "imagenet":
            problems.append(f"model.encoders.{key}.weights: 'resnet_small' has no ImageNet weights; expected "
                            f"'random', a weights file or a Lamina model directory.")
        if enc.architecture != "resnet_small" and min(enc.image_size) < 32:
            problems.append(f"model.encoders.{key}.image_size: {enc.architecture} expects images of at least "
                            f"32x32. Received: {enc.image_size}")
    image_features = [f.name for f in spec.data.features or [] if f.type == FeatureType.IMAGE]
    if spec.training.fine_tune and spec.training.fine_tune.epochs:
        if not any(spec.image_encoder(n).pretrained for n in image_features):
            problems.append("training.fine_tune: needs an image encoder with pretrained weights; with "
                            "weights: random the whole backbone trains from the start.")
    return problems


GPU_COMPONENTS = (TRAINER, TUNER)


def _check_kubeflow(spec) -> List[str]:
    kf = spec.kubeflow
    if kf is None:
        return []
    problems = []
    for key in ("pipeline_root", "push_dir"):
        path = getattr(kf, key)
        if path is not None and not kf.shared(path):
            problems.append(
                f"kubeflow.{key}: {path!r} is a local path; on Kubeflow each component runs in its own pod, "
                f"which cannot see this machine's disk. Use {', '.join(REMOTE_SCHEMES)} storage"
                + (f" or a path under kubeflow.volume_mount ({kf.volume_mount!r})." if kf.volume_mount
                   else ", or set kubeflow.volume_mount to a shared volume's mount path."))
    for name, res in kf.resources.items():
        if res.gpu and name not in GPU_COMPONENTS:
            problems.append(f"kubeflow.resources.{name}.gpu: only {' and '.join(GPU_COMPONENTS)} use GPUs; "
                            f"the data components run on Beam workers.")
    if spec.training.distribution.strategy == "multi_worker" and kf.volume_mount and not kf.volume_claim:
        problems.append("kubeflow.volume_claim: required with kubeflow.volume_mount when "
                        "training.distribution.strategy is multi_worker: the Trainer's worker pods mount the same "
                        "PersistentVolumeClaim, and Lamina needs its name.")
    return problems


def _check_metrics(spec) -> List[str]:
    allowed = spec.metric_names()
    problems = []
    for i, m in enumerate(spec.evaluation.metrics):
        if m not in allowed:
            problems.append(
                f"evaluation.metrics.{i}: Received {m!r}; for a {spec.task} head {one_of(m, list(allowed))}"
            )
    return problems


def _check_thresholds(spec) -> List[str]:
    problems = []
    ev = spec.evaluation
    for m, gate in ev.thresholds.items():
        if m not in ev.metrics:
            problems.append(
                f"evaluation.thresholds.{m}: no such metric in evaluation.metrics; "
                f"{one_of(m, ev.metrics)}"
            )
        elif m == "class_recall" and gate.max_regression is not None:
            problems.append("evaluation.thresholds.class_recall.max_regression: the per-class recall takes "
                            "lower_bound and upper_bound only.")
    for m in ev.slice_thresholds:
        if m not in ev.metrics or m == "class_recall":
            problems.append(f"evaluation.slice_thresholds.{m}: no such metric in evaluation.metrics; "
                            f"{one_of(m, [x for x in ev.metrics if x != 'class_recall'])}")
    for i, f in enumerate(ev.fairness):
        if f.metric not in ev.metrics or f.metric == "class_recall":
            problems.append(f"evaluation.fairness.{i}.metric: Received {f.metric!r}, which is not in "
                            f"evaluation.metrics; {one_of(f.metric, [x for x in ev.metrics if x != 'class_recall'])}")
        if spec.data.features and f.feature not in spec.data.feature_types and f.feature != spec.data.label:
            known = list(spec.data.feature_types)
            problems.append(f"evaluation.fairness.{i}.feature: unknown feature {f.feature!r}; {one_of(f.feature, known)}")
    if ev.baseline.metric is not None and ev.baseline.metric not in ev.metrics:
        problems.append(f"evaluation.baseline.metric: Received {ev.baseline.metric!r}, which is not in "
                        f"evaluation.metrics; {one_of(ev.baseline.metric, ev.metrics)}")
    if ev.baseline.must_beat and ev.baseline_metric == "class_recall":
        problems.append("evaluation.baseline.metric: the baselines are compared on one number; expected a metric "
                        "other than 'class_recall'.")
    if ev.baseline.must_beat and not ev.baseline.enabled:
        problems.append("evaluation.baseline.must_beat: the baselines are off (evaluation.baseline.enabled: false); "
                        "turn them on or drop must_beat.")
    return problems


def _check_slices(spec) -> List[str]:
    if not spec.data.features:
        return []  # feature names are only known from the data; checked when the pipeline runs.
    known = list(spec.data.feature_types) + [spec.data.label]
    problems = []
    for i, keys in enumerate(spec.evaluation.slices):
        for k in keys:
            if k not in known:
                problems.append(
                    f"evaluation.slices.{i}: unknown feature {k!r}; {one_of(k, known)}"
                )
    return problems


def _check_encoders(spec) -> List[str]:
    types = spec.data.feature_types
    if spec.task == "forecast" and spec.forecast is not None:  # the windows' inputs
        fc = spec.forecast
        types = {spec.data.label: "sequence", **{c: "sequence" for c in fc.covariates},
                 **({fc.series_id: "categorical"} if fc.series_id else {})}
    kinds = [t.value for t in FeatureType]
    problems = []
    for key, enc in spec.model.encoders.items():
        wanted = types.get(key) or (key if key in kinds else None)
        if key not in types and key not in kinds:
            if spec.data.features is None and spec.task != "forecast":
                continue  # features come from the data; checked when the pipeline runs.
            choices = list(types) + kinds
            problems.append(
                f"model.encoders.{key}: not a feature name or feature type; expected one of: "
                f"{', '.join(repr(c) for c in choices)}.{did_you_mean(key, choices)}"
            )
            continue
        if wanted is not None and not enc.encodes(wanted):
            names = encoder_names(wanted)
            allowed = f"one of: {', '.join(repr(n) for n in names)}" if len(names) > 1 else repr(names[0])
            article = "an" if wanted[0] in "aeiou" else "a"
            problems.append(f"model.encoders.{key}.type: Received {enc.type!r}; {article} {wanted} feature "
                            f"expects {allowed}.")
        if isinstance(enc, BertEncoder) and enc.freeze_epochs and enc.freeze_epochs >= spec.training.epochs:
            problems.append(f"model.encoders.{key}.freeze_epochs: {enc.freeze_epochs} leaves no epoch to fine-tune "
                            f"the encoder; training.epochs is {spec.training.epochs}.")
    return problems


def _check_date_references(spec) -> List[str]:
    features = spec.data.features or []
    dates = [f.name for f in features if f.type == FeatureType.DATE]
    problems = []
    for i, f in enumerate(features):
        if f.reference is not None and (f.reference not in dates or f.reference == f.name):
            others = [d for d in dates if d != f.name]
            problems.append(f"data.features.{i}.reference: Received {f.reference!r}; expected another date feature"
                            + (f": {', '.join(repr(d) for d in others)}." if others else ", and there is none."))
    return problems


def _check_tuning(spec) -> List[str]:
    tuning = spec.tuning
    if tuning is None:
        return []
    problems = []
    allowed = spec.metric_names()
    if tuning.objective is not None and tuning.objective not in allowed:
        problems.append(f"tuning.objective: Received {tuning.objective!r}; for a {spec.task} head "
                        f"{one_of(tuning.objective, list(allowed))}")
    for name in ("unfreeze_blocks", "fine_tune_learning_rate"):
        if name in tuning.space and not (spec.training.fine_tune and spec.training.fine_tune.epochs):
            problems.append(f"tuning.space.{name}: tunes the fine-tuning phase, and training.fine_tune sets none; "
                            f"set training.fine_tune.epochs or drop {name!r}.")
    for name in ("width", "depth"):
        p = tuning.space.get(name)
        values = (p.choices or [p.low, p.high]) if p else []
        if any(v < 1 for v in values):
            problems.append(f"tuning.space.{name}: expected values >= 1. Received: {values}")
    return problems


def _check_forecast(spec) -> List[str]:
    fc = spec.forecast
    if spec.task != "forecast":
        return ["forecast: this section is for a forecast (task: forecast); model.head.type is "
                f"{spec.task!r}."] if fc is not None else []
    if fc is None:
        return ["forecast: task forecast needs this section: timestamp, frequency, lookback and horizon (and "
                "series_id when the table holds several series)."]
    problems = []
    if spec.data.format not in ("csv", "jsonl", "parquet"):
        problems.append(f"data.format: a forecast reads a table of rows (csv, jsonl or parquet). "
                        f"Received: {spec.data.format!r}")
    if spec.data.features is not None:
        problems.append("data.features: a forecast makes its own inputs from the target's history and "
                        "forecast.known_future / forecast.past_only; remove data.features.")
    for key in ("slices", "slice_thresholds", "fairness"):
        if getattr(spec.evaluation, key):
            problems.append(f"evaluation.{key}: not available for a forecast; its metrics are over every series "
                            f"and step.")
    for name, gate in spec.evaluation.thresholds.items():
        if gate.max_regression is not None:
            problems.append(f"evaluation.thresholds.{name}.max_regression: a forecast is gated on bounds and its "
                            f"baselines, not against the last pushed model; use lower_bound or upper_bound.")
    if spec.evaluation.baseline.must_beat in ("gbt", "linear"):
        problems.append(f"evaluation.baseline.must_beat: a forecast's baselines are 'seasonal_naive' and "
                        f"'last_value' (or 'best', both). Received: {spec.evaluation.baseline.must_beat!r}")
    if spec.tuning is not None:
        problems.append("tuning: not available for a forecast yet; set model and training by hand.")
    if spec.inference.enabled:
        problems.append("inference.enabled: BulkInferrer is not available for a forecast; `lamina predict` "
                        "answers a CSV of recent history.")
    if spec.training.fine_tune and spec.training.fine_tune.epochs:
        problems.append("training.fine_tune: a forecast has no pretrained encoder to fine-tune.")
    return problems


def _check_baseline_kind(spec) -> List[str]:
    if spec.task != "forecast" and spec.evaluation.baseline.must_beat in ("seasonal_naive", "last_value"):
        return [f"evaluation.baseline.must_beat: {spec.evaluation.baseline.must_beat!r} is a forecast's baseline; "
                f"a {spec.task} head's are 'gbt', 'linear' or 'best'."]
    return []


def _check_model_type(spec) -> List[str]:
    kind = spec.model.type
    if kind == "network":
        return []
    if spec.task == "forecast":
        return [f"model.type: {kind!r} is for classification and regression; a forecast is a network."]
    if kind in ("gbt", "blend"):
        media = [f"{name!r} ({t})" for name, t in spec.data.feature_types.items() if t in ("text", "image", "audio")]
        if media:
            return [f"model.type: {kind!r} takes tabular features only (numbers, categories, dates, sequences); "
                    f"{', '.join(media)} need the network. Use 'network' or 'auto' (which then trains the network)."]
    return []


# Every cross-field rule, in the order their problems are reported.
CHECKS = (_check_label_not_feature, _check_date_references, _check_data_format, _check_metrics, _check_thresholds, _check_slices,
          _check_encoders, _check_fine_tune, _check_kubeflow, _check_tuning, _check_forecast, _check_baseline_kind,
          _check_model_type)


def cross_field_problems(spec) -> List[str]:
    """Every problem the rules find, collected before any is reported."""
    return [problem for check in CHECKS for problem in check(spec)]
