"""Spec validation: every message names the key path, the bad value and what is allowed."""

import copy
import os

import pytest
import yaml

from lamina.spec import DataSpec, HeadSpec, ModelSpec, Spec, SpecError, TrainingSpec, load_spec
from tests.helpers import example_spec_dict, make_spec


def problems_for(tmp_path, mutate):
    d = example_spec_dict()
    mutate(d)
    with pytest.raises(SpecError) as info:
        Spec.from_dict(d, base_dir=str(tmp_path))
    return info.value.problems


def test_example_spec_is_valid(tmp_path):
    spec = make_spec(tmp_path)
    assert spec.data.label == "species"
    assert spec.data.feature_types == {
        "bill_length_mm": "numeric", "bill_depth_mm": "numeric", "flipper_length_mm": "numeric",
        "body_mass_g": "numeric", "island": "categorical", "sex": "categorical"}
    assert spec.task == "classification"
    assert spec.run_dir == str(tmp_path / "lamina_runs" / "penguins")
    assert spec.push_dir == str(tmp_path / "serving_models")


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["model"]["head"].update(units=-3),
     "model.head.units: Received -3; expected an integer >= 1."),
    (lambda d: d["model"].update(hed={}),
     "model.hed: unknown key. Did you mean 'head'? Allowed keys: combiner, encoders, head, type."),
    (lambda d: d.update(trainig={}),
     "trainig: unknown key. Did you mean 'training'? Allowed keys: data, evaluation, explain, export, forecast, inference, kubeflow, model, "
     "name, runner, serving, split, training, tuning."),
    (lambda d: d["model"]["head"].update(type="clasification"),
     "model.head.type: Received 'clasification'; expected one of: 'classification', 'regression' or 'forecast'. "
     "Did you mean 'classification'?"),
    (lambda d: d["model"]["encoders"].update(island={"type": "embeding"}),
     "model.encoders.island.type: Received 'embeding'; expected one of: 'audio_cnn', 'audio_resnet', 'bert', 'calendar', 'conv1d', 'dense', "
     "'embedding', 'gru', 'lstm', 'normalized', 'one_hot', 'resnet', 'transformer'. Did you mean 'embedding'?"),
    (lambda d: d["model"]["encoders"].update(island={"type": "embedding", "dimm": 3}),
     "model.encoders.island.dimm: unknown key. Did you mean 'dim'? Allowed keys: dim, num_oov_buckets, top_k, type."),
    (lambda d: d["model"]["encoders"].update(island={"type": "normalized"}),
     "model.encoders.island.type: Received 'normalized'; a categorical feature expects one of: 'embedding', "
     "'one_hot'."),
    (lambda d: d["training"].update(epochs="many"),
     "training.epochs: Received 'many'; expected an integer."),
    (lambda d: d["training"].update(learning_rate=0),
     "training.learning_rate: Received 0; expected a number > 0.0."),
    (lambda d: d["training"].update(optimizer="adamm"),
     "training.optimizer: Received 'adamm'; expected one of: 'adam', 'adamw', 'sgd' or 'rmsprop'. "
     "Did you mean 'adam'?"),
    (lambda d: d["training"].update(distribution={"strategy": "multiworker"}),
     "training.distribution.strategy: Received 'multiworker'; expected one of: 'auto', 'one_device', 'mirrored' or "
     "'multi_worker'. Did you mean 'multi_worker'?"),
    (lambda d: d["training"].update(distribution={"strategy": "multi_worker", "workers": 0}),
     "training.distribution.workers: Received 0; expected an integer >= 1."),
    (lambda d: d["training"].update(distribution={"strategy": "mirrored", "launcher": "slurm"}),
     "training.distribution.launcher: Received 'slurm'; expected one of: 'processes', 'kubernetes' or 'vertex'."),
    (lambda d: d["split"].update(train=0),
     "split.train: Received 0; expected an integer >= 1."),
    (lambda d: d["data"].pop("label"),
     "data.label: required key is missing."),
    (lambda d: d["data"]["features"].update(notes="video"),
     "data.features.6.type: Received 'video'; expected one of: 'numeric', 'categorical', 'text', 'image', 'date', "
     "'sequence' or 'audio'."),
    (lambda d: (d["data"]["features"].update(notes="text"), d["model"]["encoders"].update(notes={"type": "resnet"})),
     "model.encoders.notes.type: Received 'resnet'; a text feature expects one of: 'bert', 'transformer', 'lstm', 'gru', 'conv1d'."),
    (lambda d: (d["data"]["features"].update(notes="text"),
                d["model"]["encoders"].update(notes={"type": "bert", "path": "m", "freeze_epochs": 25})),
     "model.encoders.notes.freeze_epochs: 25 leaves no epoch to fine-tune the encoder; training.epochs is 25."),
    (lambda d: (d["data"]["features"].update(notes="text"),
                d["model"]["encoders"].update(notes={"type": "transformer", "hidden_dim": 100, "num_heads": 3})),
     "model.encoders.notes: hidden_dim (100) must be a multiple of num_heads (3)."),
    (lambda d: (d["data"].update(format="tfrecord"), d["data"]["features"].update(photo="image")),
     "data.features: image feature 'photo' in a table is a column of image file paths; format 'tfrecord' holds no "
     "paths. Use csv, jsonl or parquet."),
    (lambda d: d["data"]["features"].update(island="categorial"),
     "data.features.4.type: Received 'categorial'; expected one of: 'numeric', 'categorical', 'text', 'image', "
     "'date', 'sequence' or 'audio'. Did you mean 'categorical'?"),
    (lambda d: d["data"]["features"].update(species="categorical"),
     "data.features: the label 'species' must not also be an input feature."),
    (lambda d: d["evaluation"].update(metrics=["acuracy"], thresholds={}),
     "evaluation.metrics.0: Received 'acuracy'; for a classification head expected one of: 'accuracy', "
     "'crossentropy', 'auc', 'pr_auc', 'precision', 'recall', 'tpr', 'fpr', 'ece', 'class_recall'. "
     "Did you mean 'accuracy'?"),
    (lambda d: d["evaluation"]["thresholds"].update(crossentropy={}),
     "evaluation.thresholds.crossentropy: expected at least one of lower_bound, upper_bound, max_regression."),
    (lambda d: d["evaluation"].update(slices=[["iland"]]),
     "evaluation.slices.0: unknown feature 'iland'; expected one of: 'bill_length_mm', 'bill_depth_mm', "
     "'flipper_length_mm', 'body_mass_g', 'island', 'sex', 'species'. Did you mean 'island'?"),
    (lambda d: d["serving"].update(model_name="../evil"),
     "serving.model_name: expected letters, digits, '_', '.' or '-'. Received: '../evil'"),
], ids=["negative_units", "typo_section", "typo_top_level", "bad_literal", "encoder_type_typo",
        "encoder_key_typo", "encoder_wrong_kind", "not_an_int", "zero_learning_rate", "optimizer_typo", "strategy_typo", "zero_workers", "unknown_launcher",
        "zero_split", "missing_label", "unsupported_type", "text_encoder_kind", "freeze_all_epochs",
            "heads_width", "image_in_csv", "feature_type_typo", "label_as_feature",
        "unknown_metric", "empty_threshold", "unknown_slice", "unsafe_model_name"])
def test_spec_error_messages(tmp_path, mutate, expected):
    assert problems_for(tmp_path, mutate) == [expected]


def test_all_problems_are_reported_at_once(tmp_path):
    def mutate(d):
        d["model"]["head"]["units"] = 0
        d["training"]["batch_size"] = -1
    assert problems_for(tmp_path, mutate) == [
        "model.head.units: Received 0; expected an integer >= 1.",
        "training.batch_size: Received -1; expected an integer >= 1.",
    ]


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "spec.yaml"
    bad.write_text("name: x\ndata: {path: a.csv, label: y}\nmodel: {head: {units: -1}}\n")
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert str(info.value) == f"Invalid spec in {bad}:\n  - model.head.units: Received -1; expected an integer >= 1."
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"not valid YAML at line 2, column 1"):
        load_spec(broken)
    with pytest.raises(SpecError, match=r"spec file not found: '.*missing.yaml'"):
        load_spec(tmp_path / "missing.yaml")


def test_python_api_validates_like_yaml():
    with pytest.raises(SpecError) as info:
        HeadSpec(units=-3)
    assert info.value.problems == ["units: Received -3; expected an integer >= 1."]
    with pytest.raises(SpecError) as info:
        TrainingSpec(epocs=3)
    assert info.value.problems == ["epocs: unknown key. Did you mean 'epochs'? Allowed keys: batch_size, "
                                   "class_weights, distribution, early_stopping, epochs, fine_tune, jit_compile, "
                                   "learning_rate, lr_schedule, "
                                   "mixed_precision, optimizer, seed, steps_per_epoch, tensorboard, warmup_fraction, "
                                   "weight_decay."]
    spec = Spec(name="p", data=DataSpec(path="p.csv", label="species", features={"island": "categorical"}),
                model=ModelSpec(head=HeadSpec(type="classification")))
    assert spec.data.feature_types == {"island": "categorical"}


def test_round_trip_through_json(tmp_path):
    spec = make_spec(tmp_path)
    again = Spec.from_json(spec.to_json())
    assert again == spec
    assert again.base_dir == spec.base_dir


def test_data_path_must_match_a_file(tmp_path):
    spec = make_spec(tmp_path, data={"path": "nowhere/*.csv"})
    with pytest.raises(SpecError, match=r"data.path: no file matches '.*nowhere/\*.csv'"):
        spec.check_data_exists()


def test_cli_rejects_a_bad_spec_before_anything_runs(tmp_path, capsys):
    from lamina.pipeline.cli.commands import main

    bad = tmp_path / "spec.yaml"
    bad.write_text("name: x\ndata: {path: a.csv, label: y}\ntraining: {epochs: 0}\n")
    for verb in ("validate", "run"):
        assert main([verb, str(bad)]) == 2
        assert capsys.readouterr().err == (f"Invalid spec in {bad}:\n"
                                           "  - training.epochs: Received 0; expected an integer >= 1.\n")
    assert not (tmp_path / "lamina_runs").exists()
    good = tmp_path / "good.yaml"
    good.write_text("name: x\ndata: {path: a.csv, label: y}\n")
    assert main(["validate", str(good)]) == 2  # the spec is fine; its data file is not there
    assert capsys.readouterr().err == f"Invalid spec:\n  - data.path: no file matches '{tmp_path / 'a.csv'}'.\n"
    (tmp_path / "a.csv").write_text("x,y\n1,a\n2,b\n")
    assert main(["validate", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"{good}: valid. Pipeline 'x', label 'y', 0 declared feature(s) (1 inferred), " \
                                   f"classification head."
    assert "  x       numeric      numeric      numbers" in out


DIGITS = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "digits", "spec.yaml")))


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["model"]["encoders"]["image"].update(architecture="resnet50", image_size=[16, 16], weights="random"),
     "model.encoders.image.image_size: resnet50 expects images of at least 32x32. Received: [16, 16]"),
    (lambda d: d["model"]["encoders"]["image"].update(weights="imagenet"),
     "model.encoders.image.weights: 'resnet_small' has no ImageNet weights; expected 'random', a weights file or "
     "a Lamina model directory."),
    (lambda d: d["training"].update(fine_tune={"epochs": 3}),
     "training.fine_tune: needs an image encoder with pretrained weights; with weights: random the whole backbone "
     "trains from the start."),
    (lambda d: d["data"].update(features={"image": "image", "size": "numeric"}),
     "data.features: format 'image_folder' expects exactly one feature, of type 'image'. Received: "
     "{'image': 'image', 'size': 'numeric'}. For several images, or images with text and numbers, use format 'csv' "
     "with a column of image paths per image feature."),
    (lambda d: d["data"]["images"].update(extensions=[".tiff"]),
     "data.images.extensions: expected a non-empty list from ['.png', '.jpg', '.jpeg', '.gif', '.bmp']. "
     "Received: ['.tiff']"),
    (lambda d: d["model"]["encoders"]["image"].update(architecture="resnet51"),
     "model.encoders.image.architecture: Received 'resnet51'; expected one of: 'resnet50', 'resnet101', "
     "'resnet152', 'resnet50v2', 'resnet101v2', 'resnet152v2' or 'resnet_small'. Did you mean 'resnet50'?"),
    (lambda d: d["data"].update(label="source_path"),
     "data: 'source_path' is the column that holds each file's path; name the label and features otherwise."),
    (lambda d: d["model"]["encoders"].update(image={"type": "embedding"}),
     "model.encoders.image.type: Received 'embedding'; an image feature expects 'resnet'."),
], ids=["small_for_resnet50", "small_has_no_imagenet", "fine_tune_random", "image_plus_tabular", "extension",
        "architecture_typo", "reserved_column", "wrong_encoder"])
def test_image_spec_error_messages(tmp_path, mutate, expected):
    d = copy.deepcopy(DIGITS)
    mutate(d)
    with pytest.raises(SpecError) as info:
        Spec.from_dict(d, base_dir=str(tmp_path))
    assert info.value.problems == [expected]


def test_image_spec_defaults(tmp_path):
    d = copy.deepcopy(DIGITS)
    d["data"].pop("features")
    spec = Spec.from_dict(d, base_dir=str(tmp_path))
    assert spec.data.feature_types == {"image": "image"} and spec.data.is_images
    assert spec.image_encoder("image").architecture == "resnet_small"
    with pytest.raises(SpecError, match="is not a folder; format image_folder expects a folder"):
        spec.check_data_exists()


TEXT = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "text", "spec.yaml")))


def test_text_example_spec_and_text_defaults(tmp_path):
    spec = Spec.from_dict(copy.deepcopy(TEXT), base_dir=str(tmp_path))
    enc = spec.text_encoder("text")
    assert (enc.type, enc.max_length, enc.pooling, enc.freeze_epochs) == ("bert", 32, "mean", 0)
    assert enc.path == "~/.cache/lamina/models/all-MiniLM-L6-v2"
    assert spec.resolve(enc.path) == os.path.expanduser("~/.cache/lamina/models/all-MiniLM-L6-v2")
    assert spec.lr_schedule == "linear_warmup_decay" and spec.training.optimizer == "adamw"
    # A text feature with no encoder gets a small Transformer trained from scratch.
    d = copy.deepcopy(TEXT)
    d["model"]["encoders"] = {}
    scratch = Spec.from_dict(d, base_dir=str(tmp_path)).text_encoder("text")
    assert (scratch.type, scratch.num_layers, scratch.hidden_dim, scratch.vocabulary) == ("transformer", 2, 128, None)
    assert make_spec(tmp_path).lr_schedule == "constant"


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["model"]["encoders"]["text"].pop("path"),
     "model.encoders.text.path: required key is missing."),
    (lambda d: d["model"]["encoders"]["text"].update(pooling="max"),
     "model.encoders.text.pooling: Received 'max'; expected one of: 'cls' or 'mean'."),
    (lambda d: d["model"]["encoders"]["text"].update(max_length=2),
     "model.encoders.text.max_length: Received 2; expected an integer >= 4."),
    (lambda d: d["training"].update(lr_schedule="cosine"),
     "training.lr_schedule: Received 'cosine'; expected one of: 'constant' or 'linear_warmup_decay'."),
    (lambda d: d["model"].update(type="blend"),
     "model.type: 'blend' takes tabular features only (numbers, categories, dates, sequences); 'text' (text) need "
     "the network. Use 'network' or 'auto' (which then trains the network)."),
], ids=["no_path", "pooling", "max_length", "schedule", "blend_with_text"])
def test_text_spec_error_messages(tmp_path, mutate, expected):
    d = copy.deepcopy(TEXT)
    mutate(d)
    with pytest.raises(SpecError) as info:
        Spec.from_dict(d, base_dir=str(tmp_path))
    assert info.value.problems == [expected]


def test_encoders_are_registered_once():
    """Every encoder spec is in ENCODERS, has a builder, and each feature type has one default."""
    from lamina.models.encoders import ENCODER_BUILDERS
    from lamina.spec import ENCODERS, FeatureType, default_encoder, encoder_names

    assert set(ENCODER_BUILDERS) == set(ENCODERS)
    assert {t.value: encoder_names(t) for t in FeatureType} == {
        "numeric": ["normalized", "dense"], "categorical": ["embedding", "one_hot"],
        "text": ["bert", "transformer", "lstm", "gru", "conv1d"], "image": ["resnet"], "date": ["calendar"],
        "sequence": ["transformer", "lstm", "gru", "conv1d"], "audio": ["audio_cnn", "audio_resnet"]}
    assert [type(default_encoder(t)).__name__ for t in FeatureType] == [
        "NumericEncoder", "CategoricalEncoder", "TransformerEncoder", "ImageEncoder", "CalendarEncoder",
        "SequenceEncoder", "AudioEncoder"]


SEQUENCE_DATA = {"path": "m.csv", "label": "status", "features": {"log": {"type": "sequence", "delimiter": ";"},
                                                                    "note": "text", "size": "numeric"}}


@pytest.mark.parametrize("change, expected", [
    ({"model": {"encoders": {"size": {"type": "lstm"}}}},
     "model.encoders.size.type: Received 'lstm'; a numeric feature expects one of: 'normalized', 'dense'."),
    ({"model": {"encoders": {"log": {"type": "bert", "path": "x"}}}},
     "model.encoders.log.type: Received 'bert'; a sequence feature expects one of: 'transformer', 'lstm', 'gru', "
     "'conv1d'."),
    ({"model": {"encoders": {"log": {"type": "conv1d", "bidirectional": True}}}},
     "model.encoders.log: `bidirectional` is for 'lstm' and 'gru'; a convolution already sees both sides."),
    ({"model": {"encoders": {"log": {"type": "lstm", "units": 0}}}},
     "model.encoders.log.units: Received 0; expected an integer >= 1."),
    ({"data": {**SEQUENCE_DATA, "features": {"log": {"type": "numeric", "delimiter": ";"}}}},
     "data.features.0: `delimiter` is for sequence features only. Received: type='numeric'"),
    ({"data": {**SEQUENCE_DATA, "features": {"log": {"type": "sequence", "delimiter": "."}}}},
     "data.features.0: `delimiter`: expected one character that is not a quote, a line break, '.', '-' or '+' "
     "(they are parts of numbers). Received: '.'"),
])
def test_sequence_spec_errors(change, expected):
    d = {"data": SEQUENCE_DATA, **change}
    with pytest.raises(SpecError) as info:
        Spec.from_dict(d, base_dir="/tmp")
    assert info.value.problems == [expected]


def test_sequence_and_text_encoders_share_the_recurrent_types():
    spec = Spec.from_dict({"data": SEQUENCE_DATA, "model": {"encoders": {
        "note": {"type": "gru", "vocabulary_size": 500}, "sequence": {"type": "conv1d", "layers": 2}}}},
        base_dir="/tmp")
    assert spec.encoder_for("log", "sequence").type == "conv1d"  # by feature type
    assert (spec.encoder_for("note", "text").type, spec.encoder_for("note", "text").vocabulary_size) == ("gru", 500)
    assert spec.data.sequence_delimiters == {"log": ";"}
    # A type default that cannot encode the feature is not used for it: text keeps its own default.
    other = Spec.from_dict({"data": SEQUENCE_DATA, "model": {"encoders": {"sequence": {"type": "lstm"}}}},
                           base_dir="/tmp")
    assert other.encoder_for("note", "text").type == "transformer"


def test_a_named_encoder_of_the_wrong_type_for_an_inferred_feature(tmp_path):
    """Without declared features the type is only known from the data; the lookup then names it."""
    d = example_spec_dict()
    d["data"].pop("features")
    d["evaluation"]["slices"] = []
    d["model"]["encoders"]["bill_depth_mm"] = {"type": "embedding"}
    spec = Spec.from_dict(d, base_dir=str(tmp_path))
    assert spec.encoder_for("island", "categorical").dim == 3  # the `categorical` default of the spec
    with pytest.raises(ValueError) as info:
        spec.encoder_for("bill_depth_mm", "numeric")
    assert str(info.value) == ("model.encoders.bill_depth_mm.type: Received 'embedding'; feature 'bill_depth_mm' "
                               "is numeric in the data, and a numeric feature expects one of: 'normalized', 'dense'.")


def test_export_section_lists_tflite_forms_once_each():
    from lamina.spec import SpecError
    from tests.helpers import example_spec_dict

    d = example_spec_dict()
    d["export"] = {"tflite": ["int8", "float"], "max_metric_drop": 0.01}
    spec = Spec.from_dict(d, base_dir="/tmp")
    assert spec.export.tflite == ["int8", "float"] and spec.export.calibration_examples == 200
    d["export"] = {"tflite": ["float", "int4", "float"]}
    with pytest.raises(SpecError) as info:
        Spec.from_dict(d, base_dir="/tmp")
    assert info.value.problems == [
        "export.tflite.1: Received 'int4'; expected one of: 'float', 'dynamic_range' or 'int8'. Did you mean 'int8'?"]
    d["export"] = {"tflite": ["float", "float"]}
    with pytest.raises(SpecError) as info:
        Spec.from_dict(d, base_dir="/tmp")
    assert info.value.problems == ["export.tflite: each form at most once. Received 'float' twice"]


FORECAST = {"task": "forecast", "data": {"path": "sales.csv", "label": "Units sold"},
            "forecast": {"timestamp": "Date", "series_id": "Store", "frequency": "D", "lookback": 28, "horizon": 7,
                         "known_future": ["Promo"], "past_only": ["Temp"]}}


def test_task_forecast_sets_the_head_and_its_metrics():
    spec = Spec.from_dict(FORECAST, base_dir="/tmp")
    assert (spec.task, spec.model.head.type, spec.forecast.season) == ("forecast", "forecast", 7)
    assert spec.evaluation.metrics == ["mase", "mae", "rmse", "smape"] and not spec.has_tabular_features
    assert spec.encoder_for("Units sold", "sequence").type == "lstm"


@pytest.mark.parametrize("change, expected", [
    ({"forecast": None, "model": {"head": {"type": "forecast"}}},
     "forecast: task forecast needs this section: timestamp, frequency, lookback and horizon (and series_id when "
     "the table holds several series)."),
    ({"forecast": {**FORECAST["forecast"], "past_only": ["Promo"]}},
     "forecast: 'Promo' is in both known_future and past_only; a covariate is one or the other."),
    ({"forecast": {**FORECAST["forecast"], "frequency": "Q"}},
     "forecast.frequency: Received 'Q'; expected one of: 'H', 'D', 'W' or 'M'."),
    ({"forecast": {**FORECAST["forecast"], "timestamp": ["year"]}},
     "forecast.timestamp: a list names 2 to 4 columns: the year, month, day and hour, in that order. Received 1 "
     "column(s): ['year']"),
    ({"forecast": {**FORECAST["forecast"], "timestamp": ["year", "month"]}},
     "forecast: a daily series' timestamp split over columns names its year, month, day; timestamp names 2 (year, "
     "month), the year, month."),
    ({"data": {**FORECAST["data"], "features": {"Temp": "numeric"}}},
     "data.features: a forecast makes its own inputs from the target's history and forecast.known_future / "
     "forecast.past_only; remove data.features."),
    ({"evaluation": {"metrics": ["mase"], "baseline": {"must_beat": "gbt"}}},
     "evaluation.baseline.must_beat: a forecast's baselines are 'seasonal_naive' and 'last_value' (or 'best', "
     "both). Received: 'gbt'"),
    ({"evaluation": {"metrics": ["mase"], "thresholds": {"mase": {"max_regression": 0.1}}}},
     "evaluation.thresholds.mase.max_regression: a forecast is gated on bounds and its baselines, not against the "
     "last pushed model; use lower_bound or upper_bound."),
    ({"evaluation": {"metrics": ["accuracy"]}},
     "evaluation.metrics.0: Received 'accuracy'; for a forecast head expected one of: 'mae', 'rmse', 'mape', "
     "'smape', 'mase'."),
    ({"model": {"encoders": {"Units sold": {"type": "embedding"}}}},
     "model.encoders.Units sold.type: Received 'embedding'; a sequence feature expects one of: 'transformer', "
     "'lstm', 'gru', 'conv1d'."),
])
def test_forecast_spec_errors(change, expected):
    d = {**FORECAST, **change}
    if d.get("forecast") is None:
        d.pop("forecast")
        d.pop("task")
    with pytest.raises(SpecError) as info:
        Spec.from_dict(d, base_dir="/tmp")
    assert info.value.problems == [expected]


def test_a_frozen_encoder_takes_no_freeze_epochs():
    d = {"data": {"path": "t.csv", "label": "y", "features": {"note": "text"}},
         "model": {"encoders": {"note": {"type": "bert", "path": "m", "frozen": True, "freeze_epochs": 2}}}}
    with pytest.raises(SpecError) as info:
        Spec.from_dict(d, base_dir="/tmp")
    assert info.value.problems == ["model.encoders.note: `frozen: true` keeps the encoder frozen for every epoch; "
                                   "drop freeze_epochs, or frozen to fine-tune it after freeze_epochs."]
