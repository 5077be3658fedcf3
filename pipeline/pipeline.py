"""`create_pipeline(spec)`: the one place the TFX pipeline is assembled.

TableExampleGen (CSV, JSON Lines, Parquet, TFRecord) or ImageExampleGen -> StatisticsGen -> SchemaGen (or ImportSchemaGen)
-> ExampleValidator -> AnomalyGate -> Transform -> Tuner (with `tuning:`) -> Trainer, and Baselines (tabular data)
-> Evaluator (baseline: latest blessed model) -> PushGate (slice, fairness, baseline and per-class gates)
-> Explainer (unless `explain.enabled` is false) and TFLiteExporter (when `export.tflite` lists forms) -> Pusher,
plus BulkInferrer when the spec asks for it.

A forecast: ForecastExampleGen (windows, split by time) -> the same checks and Transform -> Trainer
-> ForecastEvaluator (metrics against the seasonal-naive and last-value forecasts, and the gates) -> Pusher.

Pure: it reads nothing but the spec, touches no files and no environment.
"""

import json
import os
from typing import List, Optional

import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
# Direct imports, not `tfx.v1`: that one also imports the cloud extensions (~18 s on 2 cores).
from tfx.components import (BulkInferrer, Evaluator, ExampleValidator, StatisticsGen,
                            Trainer, Transform)
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import bulk_inferrer_pb2, example_gen_pb2, pusher_pb2, trainer_pb2
from tfx.types import Channel, standard_artifacts

from lamina.constants import (ANOMALY_GATE, BASELINES, EVALUATION_SCHEMA, EVALUATOR, EXPLAINER, FORECAST_EVALUATOR,
                              PUSHER, PUSH_GATE, SCHEMA_GEN, TFLITE_EXPORTER, TRAINER, TUNER, FOLD_KEY, HORIZON_KEY,
                              ORIGIN_KEY, SOURCE_PATH_KEY)
from lamina.components.anomaly_gate import AnomalyGate
from lamina.components.evaluation_schema import EvaluationSchema
from lamina.components.baseline_resolver import PreviousBlessedModelStrategy
from lamina.components.baselines import BaselineTrainer
from lamina.components.gates import PushGate
from lamina.components.tuner import SpecTunerComponent
from lamina.components.table_example_gen import TableExampleGen
from lamina.components.image_example_gen import ImageExampleGen
from lamina.components.schema import SpecSchemaGen
from lamina.components.explainer import Explainer
from lamina.components.forecast_evaluator import ForecastEvaluator
from lamina.components.forecast_example_gen import ForecastExampleGen
from lamina.components.forecast_windows import WindowSettings
from lamina.components.tflite_export import TFLiteExporter
from lamina.components.warmup_pusher import WarmupPusher
from lamina.models.export import SERVING_DEFAULT, TRANSFORM_LABEL
from lamina.models.features import transformed_label_key
from lamina.spec import CLASSIFICATION_METRICS, LAMINA_TFMA_METRICS, LOWER_IS_BETTER, POSITIVE_CLASS_METRICS, Spec

PREPROCESSING_FN = "lamina.models.preprocessing.preprocessing_fn"
RUN_FN = "lamina.models.trainer.run_fn"
TUNER_FN = "lamina.models.tuning.tuner_fn"
TFMA_METRICS_MODULE = "lamina.models.tfma_metrics"


def installed_version() -> str:
    """The installed Lamina's version (its package metadata), or 'unknown' when run from bare sources."""
    from importlib import metadata

    try:
        return metadata.version("lamina")
    except metadata.PackageNotFoundError:
        return "unknown"


def input_config(spec: Spec) -> tuple:
    """(input_base, split pattern) for TableExampleGen from the spec's path or glob."""
    path = spec.resolve(spec.data.path)
    return os.path.dirname(path), os.path.basename(path)


def _threshold(metric: str, gate) -> "tfma.MetricThreshold":
    threshold = tfma.MetricThreshold()
    if gate.lower_bound is not None or gate.upper_bound is not None:
        bounds = {}
        if gate.lower_bound is not None:
            bounds["lower_bound"] = {"value": gate.lower_bound}
        if gate.upper_bound is not None:
            bounds["upper_bound"] = {"value": gate.upper_bound}
        threshold.value_threshold.CopyFrom(tfma.GenericValueThreshold(**bounds))
    if gate.max_regression is not None:
        lower_better = metric in LOWER_IS_BETTER
        threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER if lower_better
            else tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": gate.max_regression if lower_better else -gate.max_regression}))
    return threshold


def _metric_config(spec: Spec, metric: str) -> tfma.MetricConfig:
    class_name = spec.metric_names()[metric]
    config = tfma.MetricConfig(class_name=class_name)
    if metric in LAMINA_TFMA_METRICS:
        config.module = TFMA_METRICS_MODULE
    if metric in ("precision", "recall", "tpr", "fpr"):  # at the spec's decision threshold
        config.config = json.dumps({"thresholds": [spec.evaluation.decision_threshold]})
    gate = spec.evaluation.thresholds.get(metric)
    if gate is not None:
        # The gate is on the whole eval split here; per-slice gates (with a minimum slice size) are the PushGate's.
        config.per_slice_thresholds.append(
            tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=_threshold(metric, gate)))
    return config


def eval_config(spec: Spec) -> tfma.EvalConfig:
    """TFMA config: the spec's metrics with their thresholds, overall and per slice.

    The positive-class metrics of binary tasks (auc, pr_auc, precision, recall, tpr, fpr, ece) are
    computed on the label and prediction binarized at the positive class: `evaluation.positive_class`
    (index 0 of the label vocabulary), else the rarer class of the train split (index 1). The
    confusion matrix (and so each class's recall) is computed for every classification.
    """
    metrics = [tfma.MetricConfig(class_name="ExampleCount")]
    positive = []
    for metric in spec.evaluation.metrics:
        if metric == "class_recall":
            continue  # read off the confusion matrix below
        (positive if metric in POSITIVE_CLASS_METRICS else metrics).append(_metric_config(spec, metric))
    if spec.task == "classification":  # for the report and class_recall; computed over the whole split, in Beam
        metrics.append(tfma.MetricConfig(class_name=CLASSIFICATION_METRICS["class_recall"], module=TFMA_METRICS_MODULE))
    specs = [tfma.MetricsSpec(metrics=metrics)]
    if positive:
        specs.append(tfma.MetricsSpec(metrics=positive, binarize=tfma.BinarizationOptions(
            class_ids={"values": [spec.evaluation.positive_index]})))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name=SERVING_DEFAULT,
            label_key=transformed_label_key(spec.data.label),
            prediction_key="scores" if spec.task == "classification" else "outputs",
            preprocessing_function_names=[TRANSFORM_LABEL],
        )],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=keys)
                                              for keys in spec.evaluation.all_slices],
        metrics_specs=specs,
    )


def sqlite_metadata_config(path: str) -> metadata_store_pb2.ConnectionConfig:
    """ML Metadata in SQLite at `path`. (TFX's helper also creates the folder; this stays pure.)"""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config


def split_config(spec: Spec, partition_feature_name: str = "") -> example_gen_pb2.Output:
    """Hash-bucket train/eval split, of the whole example or of one feature's value."""
    config = example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=spec.split.train),
        example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=spec.split.eval)])
    if partition_feature_name:  # a oneof: even '' would count as set
        config.partition_feature_name = partition_feature_name
    return example_gen_pb2.Output(split_config=config)


def vertex_trainer(spec: Spec, custom_config: dict):
    """(TFX's Vertex AI Trainer, its custom_config): a CustomJob of one chief and `workers - 1` workers in the
    spec's image, each on the machine `kubeflow.vertex_training` names with the Trainer's accelerators."""
    from tfx.extensions.google_cloud_ai_platform import constants as vertex
    from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor
    from tfx.extensions.google_cloud_ai_platform.trainer.component import Trainer as VertexTrainer

    kf = spec.kubeflow
    vt = kf.vertex_training
    machine = {"machine_type": vt.machine_type}
    res = kf.resources.get(TRAINER) or kf.resources.get("default")
    if res is not None and res.gpu:
        machine.update(accelerator_type=res.accelerator, accelerator_count=res.gpu)
    workers = spec.training.distribution.workers
    pools = [{"machine_spec": machine, "replica_count": 1, "container_spec": {"image_uri": kf.image}}]
    if workers > 1:
        pools.append({"machine_spec": machine, "replica_count": workers - 1, "container_spec": {"image_uri": kf.image}})
    return VertexTrainer, {**custom_config, vertex.ENABLE_VERTEX_KEY: True, vertex.VERTEX_REGION_KEY: vt.region,
                           vertex_executor.TRAINING_ARGS_KEY: {"project": vt.project, "worker_pool_specs": pools}}


def example_gen(spec: Spec):
    """TableExampleGen for tables (its id names the format: CsvExampleGen, ...); ImageExampleGen (split by
    file path) for images; ForecastExampleGen (windows, split by time) for a forecast."""
    path = spec.resolve(spec.data.path)
    if spec.task == "forecast":
        import dataclasses

        input_base, pattern = input_config(spec)
        return ForecastExampleGen(
            input_base=input_base, pattern=pattern, windows=dataclasses.asdict(WindowSettings.from_spec(spec)),
            format=spec.data.format, delimiter=spec.data.delimiter or "", encoding=spec.data.encoding,
            bad_rows=spec.data.bad_rows, max_bad_rows=spec.data.max_bad_rows)
    if spec.data.is_files:
        policy = spec.data.audio if spec.data.is_audio else spec.data.images
        folder = spec.data.format != "image_csv"
        return ImageExampleGen(
            root=path if folder else os.path.dirname(path), format=spec.data.format,
            image_key=spec.data.file_feature, label_key=spec.data.label,
            csv_file="" if folder else os.path.basename(path), output_config=split_config(spec, SOURCE_PATH_KEY),
            bad_files=policy.bad_files, max_bad_fraction=policy.max_bad_fraction, extensions=policy.extensions,
            max_pixels=spec.data.images.max_pixels, max_seconds=spec.data.audio.max_seconds)
    input_base, pattern = input_config(spec)
    data = spec.data
    return TableExampleGen(
        input_base=input_base, pattern=pattern, label=data.label, task=spec.task, output_config=split_config(spec),
        format=data.format,
        features=data.feature_types if data.features else None, exclude=data.exclude, delimiter=data.delimiter,
        encoding=data.encoding, bad_rows=data.bad_rows, max_bad_rows=data.max_bad_rows,
        max_missing_labels=data.max_missing_labels, sequences=data.sequence_delimiters,
        images=[f.name for f in data.features or [] if f.type.value == "image"], max_pixels=data.images.max_pixels,
        audio=[f.name for f in data.features or [] if f.type.value == "audio"], max_seconds=data.audio.max_seconds)


def create_pipeline(spec: Spec, metadata_connection_config=None,
                    beam_pipeline_args: Optional[List[str]] = None, kubeflow: bool = False) -> Pipeline:
    """Builds the TFX pipeline for `spec`.

    Args:
      spec: a validated Spec.
      metadata_connection_config: ML Metadata connection; default SQLite under the run directory.
      beam_pipeline_args: override of the spec's Beam arguments (runners for other platforms).
      kubeflow: for Kubeflow Pipelines' compiler, which takes only TFX's own resolver strategies: the
        Evaluator's baseline is then TFX's latest blessed model (components.baseline_resolver says why
        Lamina's own leaves the candidate out).
    """
    examples = example_gen(spec)
    statistics_gen = StatisticsGen(examples=examples.outputs["examples"])
    if spec.data.schema_path:
        schema_gen = ImportSchemaGen(schema_file=spec.resolve(spec.data.schema_path))
    else:
        declared = dict(spec.data.feature_types)
        if spec.data.is_files:
            declared[SOURCE_PATH_KEY] = "identifier"
        if spec.task == "forecast":
            declared = forecast_declared_types(spec)
        schema_gen = SpecSchemaGen(
            statistics=statistics_gen.outputs["statistics"],
            declared_types=json.dumps(declared, sort_keys=True),
            label=HORIZON_KEY if spec.task == "forecast" else spec.data.label,
            task=spec.task,
            max_unseen_share=spec.data.max_unseen_share,
        ).with_id(SCHEMA_GEN)
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"],
                               schema=schema_gen.outputs["schema"]).with_id(ANOMALY_GATE)
    validated_schema = anomaly_gate.outputs["validated_schema"]

    # The Lamina version rides along: ML Metadata then records which code made each model.
    custom_config = {"spec": spec.to_json(), "lamina_version": installed_version()}
    transform = Transform(
        examples=examples.outputs["examples"],
        schema=validated_schema,
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=custom_config,
        # StatisticsGen already covers the raw data; TFT's own pre/post statistics double Transform's time.
        disable_statistics=True,
        # The analyzer cache serves incremental runs over new spans; Lamina reads one input whole.
        disable_analyzer_cache=True,
        # The graph only: the Trainer and the components after it read ExampleGen's splits through it
        # (models/datasets.py), as serving does. Writing transformed copies was half of Transform's time.
        materialize=False,
    )
    tuner = None
    if spec.tuning is not None:  # its best trial's values are the Trainer's hyperparameters
        tuner = SpecTunerComponent(
            examples=examples.outputs["examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=validated_schema,
            tuner_fn=TUNER_FN,
            train_args=trainer_pb2.TrainArgs(splits=["train"]),
            eval_args=trainer_pb2.EvalArgs(splits=["eval"]),  # unused: trials are scored on a train holdout
            custom_config=custom_config,
        ).with_id(TUNER)
    trainer_class, trainer_config = Trainer, custom_config
    if spec.training.distribution.launcher == "vertex":  # set by the Kubeflow compile: worker pools on Vertex AI
        trainer_class, trainer_config = vertex_trainer(spec, custom_config)
    trainer = trainer_class(
        run_fn=RUN_FN,
        examples=examples.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=validated_schema,
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        train_args=trainer_pb2.TrainArgs(splits=["train"]),
        eval_args=trainer_pb2.EvalArgs(splits=["eval"]),
        custom_config=trainer_config,
    )
    if spec.task == "forecast":
        evaluator = ForecastEvaluator(model=trainer.outputs["model"], examples=examples.outputs["examples"],
                                      spec_json=spec.to_json()).with_id(FORECAST_EVALUATOR)
        pusher = WarmupPusher(
            model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
            push_destination=pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=os.path.join(spec.push_dir, spec.serving.model_name))),
            examples=examples.outputs["examples"]).with_id(PUSHER)
        return _pipeline(spec, [examples, statistics_gen, schema_gen, example_validator, anomaly_gate, transform,
                                trainer, evaluator, pusher], metadata_connection_config, beam_pipeline_args)
    baselines = None
    if spec.evaluation.baseline.enabled and spec.has_tabular_features:
        baselines = BaselineTrainer(transform_graph=transform.outputs["transform_graph"],
                                    examples=examples.outputs["examples"],
                                    spec_json=spec.to_json()).with_id(BASELINES)
    # The last model the run's final gate blessed (the PushGate's blessing when the spec has one): a
    # model the Evaluator passed but a slice, fairness or baseline gate stopped is never a baseline.
    blessing = Channel(type=standard_artifacts.ModelBlessing, output_key="blessing",
                       producer_component_id=PUSH_GATE if spec.evaluation.gated_beyond_tfma else EVALUATOR)
    if kubeflow:
        model_resolver = Resolver(strategy_class=LatestBlessedModelStrategy, model_blessing=blessing, model=Channel(
            type=standard_artifacts.Model, producer_component_id=TRAINER, output_key="model"))
    else:
        # Not the candidate itself, so that an unchanged re-run is cached through the Pusher. Every model, not the
        # Trainer's channel a second time: TFX's compiler merges two inputs of one producer and output key into
        # one node and then fails to resolve the second. Only the Trainer's models are ever blessed.
        model_resolver = Resolver(strategy_class=PreviousBlessedModelStrategy, model_blessing=blessing,
                                  model=Channel(type=standard_artifacts.Model), candidate=trainer.outputs["model"])
    model_resolver = model_resolver.with_id("LatestBlessedModelResolver")
    # TFMA reads only the label's and the slices' columns into its features (components/evaluation_schema.py).
    evaluation_schema = EvaluationSchema(
        schema=validated_schema,
        columns=json.dumps(sorted({spec.data.label, *(c for keys in spec.evaluation.all_slices for c in keys)})),
    ).with_id(EVALUATION_SCHEMA)
    evaluator = Evaluator(
        examples=examples.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        schema=evaluation_schema.outputs["evaluation_schema"],
        eval_config=eval_config(spec),
        example_splits=["eval"],
    )
    # No thresholds, no gate: the Evaluator then blesses nothing (TFX leaves the blessing unset),
    # so the Pusher and BulkInferrer take the model as it is and the run summary says so.
    blessing = evaluator.outputs["blessing"] if spec.evaluation.thresholds else None
    push_gate = None
    if spec.evaluation.gated_beyond_tfma:
        push_gate = PushGate(model=trainer.outputs["model"], evaluation=evaluator.outputs["evaluation"],
                             transform_graph=transform.outputs["transform_graph"], evaluator_blessing=blessing,
                             baselines=baselines.outputs["baselines"] if baselines else None,
                             spec_json=spec.to_json()).with_id(PUSH_GATE)
        if blessing is None:  # no TFMA threshold: still after the Evaluator
            push_gate.add_upstream_node(evaluator)
        blessing = push_gate.outputs["blessing"]
    tflite = None
    if spec.export.tflite:
        tflite = TFLiteExporter(model=trainer.outputs["model"], transform_graph=transform.outputs["transform_graph"],
                                examples=examples.outputs["examples"],
                                model_blessing=blessing, spec_json=spec.to_json()).with_id(TFLITE_EXPORTER)
        if blessing is None:  # no gate: still after the Evaluator
            tflite.add_upstream_node(evaluator)
    explainer = None
    if spec.explain.enabled:
        explainer = Explainer(model=trainer.outputs["model"], transform_graph=transform.outputs["transform_graph"],
                              examples=examples.outputs["examples"],
                              spec_json=spec.to_json()).with_id(EXPLAINER)
        explainer.add_upstream_node(evaluator)  # after the Evaluator, as people read a run
    pusher = WarmupPusher(
        model=trainer.outputs["model"],
        model_blessing=blessing,
        push_destination=pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
            base_directory=os.path.join(spec.push_dir, spec.serving.model_name))),
        examples=examples.outputs["examples"],  # a few eval examples become TF Serving warmup requests
        tflite_models=tflite.outputs["tflite_models"] if tflite else None,
    ).with_id(PUSHER)
    components = ([examples, statistics_gen, schema_gen, example_validator, anomaly_gate, transform]
                  + [c for c in (tuner, baselines) if c] + [trainer, model_resolver, evaluation_schema, evaluator]
                  + [c for c in (push_gate, explainer, tflite) if c] + [pusher])
    if spec.inference.enabled:
        components.append(BulkInferrer(
            examples=examples.outputs["examples"],
            model=trainer.outputs["model"],
            model_blessing=blessing,
            data_spec=bulk_inferrer_pb2.DataSpec(example_splits=["eval"]),
            model_spec=bulk_inferrer_pb2.ModelSpec(model_signature_name=[SERVING_DEFAULT]),
        ))

    return _pipeline(spec, components, metadata_connection_config, beam_pipeline_args)


def forecast_declared_types(spec: Spec) -> dict:
    """The window examples' types for SchemaGen: every list a sequence, the series ID a category, and the
    origin and fold identifiers (an eval window's origin is never seen in training)."""
    fc = spec.forecast
    declared = {name: "sequence" for name in [spec.data.label, HORIZON_KEY, *fc.covariates]}
    declared.update({ORIGIN_KEY: "identifier", FOLD_KEY: "identifier"})
    if fc.series_id:
        declared[fc.series_id] = "categorical"
    return declared


def _pipeline(spec: Spec, components, metadata_connection_config, beam_pipeline_args) -> Pipeline:
    if metadata_connection_config is None:
        metadata_connection_config = sqlite_metadata_config(spec.metadata_path)
    return Pipeline(
        pipeline_name=spec.name,
        pipeline_root=spec.pipeline_root,
        components=components,
        enable_cache=spec.runner.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args if beam_pipeline_args is not None else spec.runner.beam_args),
    )
