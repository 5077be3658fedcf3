"""create_pipeline(spec): the components, their order and their wiring, without running anything."""

import pytest

from lamina.pipeline.pipeline import create_pipeline, eval_config
from tests.helpers import make_spec


def _upstream(component):
    return sorted(c.id for c in component.upstream_nodes)


def test_components_and_dependencies(tmp_path):
    p = create_pipeline(make_spec(tmp_path, gated=True))
    by_id = {c.id: c for c in p.components}
    assert sorted(by_id) == sorted(["CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "AnomalyGate",
                                    "Transform", "Trainer", "LatestBlessedModelResolver", "EvaluationSchema",
                                    "Evaluator", "Explainer", "TFLiteExporter", "Baselines", "PushGate", "Pusher"])
    assert _upstream(by_id["StatisticsGen"]) == ["CsvExampleGen"]
    assert _upstream(by_id["ExampleValidator"]) == ["SchemaGen", "StatisticsGen"]
    assert _upstream(by_id["AnomalyGate"]) == ["ExampleValidator", "SchemaGen"]
    # Transform depends on the gate, so anomalies stop the run before it.
    assert _upstream(by_id["Transform"]) == ["AnomalyGate", "CsvExampleGen"]
    assert _upstream(by_id["Trainer"]) == ["AnomalyGate", "CsvExampleGen", "Transform"]
    # Transform writes the graph only: the Trainer and the components below read ExampleGen's splits through it.
    assert "transformed_examples" not in by_id["Transform"].outputs
    # Gradient-boosted trees and a linear model on the same split and graph, for the report (no gate set).
    assert _upstream(by_id["Baselines"]) == ["CsvExampleGen", "Transform"]
    assert _upstream(by_id["Evaluator"]) == ["CsvExampleGen", "EvaluationSchema", "LatestBlessedModelResolver",
                                             "Trainer"]
    # TFMA reads the label's and the slices' columns only (the example slices by island and sex).
    assert _upstream(by_id["EvaluationSchema"]) == ["AnomalyGate"]
    assert by_id["EvaluationSchema"].exec_properties["columns"] == '["island", "sex", "species"]'
    # The baseline resolver reads the candidate, to leave it out (components.baseline_resolver).
    assert _upstream(by_id["LatestBlessedModelResolver"]) == ["Trainer"]
    assert by_id["LatestBlessedModelResolver"].exec_properties["resolver_class"].__name__ == \
        "PreviousBlessedModelStrategy"
    # The Pusher copies the TFLite files the exporter made from the blessed model into the version it pushes.
    # The example sets slice, fairness, per-class and baseline gates: the PushGate's blessing is the final word.
    assert _upstream(by_id["PushGate"]) == ["Baselines", "Evaluator", "Trainer", "Transform"]
    assert _upstream(by_id["Pusher"]) == ["CsvExampleGen", "PushGate", "TFLiteExporter", "Trainer"]
    assert _upstream(by_id["TFLiteExporter"]) == ["CsvExampleGen", "PushGate", "Trainer", "Transform"]
    # The Explainer reads the Trainer's model and the eval split through the graph, after the Evaluator.
    assert _upstream(by_id["Explainer"]) == ["CsvExampleGen", "Evaluator", "Trainer", "Transform"]
    assert p.pipeline_info.pipeline_name == "penguins"
    assert p.pipeline_info.pipeline_root == str(tmp_path / "lamina_runs" / "penguins" / "pipeline")
    assert p.enable_cache is True


def test_curated_schema_uses_import_schema_gen(tmp_path):
    (tmp_path / "schema.pbtxt").write_text("")
    p = create_pipeline(make_spec(tmp_path, data={"schema_path": "schema.pbtxt"}))
    by_id = {c.id: c for c in p.components}
    assert "ImportSchemaGen" in by_id and "SchemaGen" not in by_id
    assert by_id["ImportSchemaGen"].exec_properties["schema_file"] == str(tmp_path / "schema.pbtxt")


def test_bulk_inferrer_is_optional(tmp_path):
    p = create_pipeline(make_spec(tmp_path, inference={"enabled": True}))
    by_id = {c.id: c for c in p.components}
    assert _upstream(by_id["BulkInferrer"]) == ["CsvExampleGen", "Evaluator", "Trainer"]


def test_eval_config_carries_thresholds_and_slices(tmp_path):
    config = eval_config(make_spec(tmp_path))
    spec = config.model_specs[0]
    assert (spec.signature_name, spec.label_key, spec.prediction_key) == ("serving_default", "species_xf", "scores")
    assert list(spec.preprocessing_function_names) == ["transform_label"]
    assert [list(s.feature_keys) for s in config.slicing_specs] == [[], ["island"], ["sex"]]
    metrics = {m.class_name: m for m in config.metrics_specs[0].metrics}
    assert sorted(metrics) == ["ExampleCount", "LaminaMultiClassConfusionMatrixPlot", "SparseCategoricalAccuracy",
                               "SparseCategoricalCrossentropy"]  # the confusion matrix is for the report
    (gate,) = metrics["SparseCategoricalAccuracy"].per_slice_thresholds
    assert [list(s.feature_keys) for s in gate.slicing_specs] == [[]]  # overall only
    threshold = gate.threshold
    assert threshold.value_threshold.lower_bound.value == pytest.approx(0.9)
    assert threshold.change_threshold.absolute.value == pytest.approx(-0.05)


def test_create_pipeline_is_pure(tmp_path):
    spec = make_spec(tmp_path)
    create_pipeline(spec)
    assert list(tmp_path.iterdir()) == []  # no folders made, nothing read


def test_image_spec_ingests_with_image_example_gen(tmp_path):
    import json

    from tests.helpers import digits_spec

    spec = digits_spec(tmp_path)
    p = create_pipeline(spec)
    by_id = {c.id: c for c in p.components}
    assert "ImageExampleGen" in by_id and "CsvExampleGen" not in by_id
    assert _upstream(by_id["StatisticsGen"]) == ["ImageExampleGen"]
    gen = by_id["ImageExampleGen"]
    assert gen.exec_properties["input_base"] == str(tmp_path / "data" / "digits")
    output = json.loads(gen.exec_properties["output_config"])
    assert output["split_config"]["partition_feature_name"] == "source_path"
    assert json.loads(gen.exec_properties["input_config"])["splits"][0]["pattern"] == "*/*"
    declared = json.loads(by_id["SchemaGen"].exec_properties["declared_types"])
    assert declared == {"image": "image", "source_path": "identifier"}


def test_tuning_and_gates_add_the_tuner_and_the_push_gate(tmp_path):
    spec = make_spec(tmp_path, tuning={"space": {"learning_rate": {"low": 1e-4, "high": 0.1, "log": True}}},
                     evaluation={"metrics": ["accuracy", "auc", "ece"], "slices": [["island"]],
                                 "thresholds": {"accuracy": {"lower_bound": 0.9}},
                                 "fairness": [{"feature": "sex", "max_gap": 0.1}],
                                 "baseline": {"must_beat": "best"}})
    p = create_pipeline(spec)
    by_id = {c.id: c for c in p.components}
    assert _upstream(by_id["Tuner"]) == ["AnomalyGate", "CsvExampleGen", "Transform"]
    assert by_id["Tuner"].exec_properties["tuner_fn"] == "lamina.models.tuning.tuner_fn"
    # The Trainer consumes the Tuner's best hyperparameters: no tuning code of its own.
    assert _upstream(by_id["Trainer"]) == ["AnomalyGate", "CsvExampleGen", "Transform", "Tuner"]
    assert "hyperparameters" in by_id["Trainer"].inputs
    assert _upstream(by_id["PushGate"]) == ["Baselines", "Evaluator", "Trainer", "Transform"]
    # Everything that acts on a blessed model acts on the PushGate's blessing.
    assert "PushGate" in _upstream(by_id["Pusher"]) and "PushGate" in _upstream(by_id["TFLiteExporter"])
    resolver = by_id["LatestBlessedModelResolver"]
    assert resolver.raw_inputs["model_blessing"].producer_component_id == "PushGate"
    # The fairness feature is sliced even though evaluation.slices does not list it.
    config = eval_config(spec)
    assert [list(s.feature_keys) for s in config.slicing_specs] == [[], ["island"], ["sex"]]
    plain, positive = config.metrics_specs
    # Accuracy is Lamina's numpy metric (models/tfma_metrics.py), not Keras's run as a TensorFlow graph; the
    # confusion matrix and the AUC are TFMA's, from Lamina's module, which reads each example directly.
    assert [(m.class_name, m.module) for m in plain.metrics] == [
        ("ExampleCount", ""), ("SparseCategoricalAccuracy", "lamina.models.tfma_metrics"),
        ("LaminaMultiClassConfusionMatrixPlot", "lamina.models.tfma_metrics")]
    assert [(m.class_name, m.module) for m in positive.metrics] == [
        ("LaminaAUC", "lamina.models.tfma_metrics"), ("ExpectedCalibrationError", "lamina.models.tfma_metrics")]
    assert list(positive.binarize.class_ids.values) == [1]


def test_no_tuning_no_tuner_and_no_extra_gate_no_push_gate(tmp_path):
    plain = {"metrics": ["accuracy"], "thresholds": {"accuracy": {"lower_bound": 0.9}}}
    by_id = {c.id: c for c in create_pipeline(make_spec(tmp_path, evaluation=plain)).components}
    assert "Tuner" not in by_id and "PushGate" not in by_id
    assert "hyperparameters" not in by_id["Trainer"].inputs or by_id["Trainer"].inputs.get("hyperparameters") is None
    assert by_id["LatestBlessedModelResolver"].raw_inputs["model_blessing"].producer_component_id == "Evaluator"
    off = {c.id for c in create_pipeline(make_spec(tmp_path, evaluation=dict(plain, baseline={"enabled": False})))
           .components}
    assert "Baselines" not in off
