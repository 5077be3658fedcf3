"""SpecSchemaGen: schema inference that also enforces the feature types the spec declares.

Plain SchemaGen infers types from the very data it is meant to check, so a string in a
numeric column just turns the column into BYTES and a dropped column simply vanishes.
This component infers the schema from the train split with TFDV, then writes the spec's
declarations over it: a `numeric` feature must be INT or FLOAT and a declared feature
must be present. ExampleValidator then reports any violation as an anomaly.

Image features must be bytes in every example and get an `image_domain` instead of an
inferred string domain; audio features (WAV bytes) must be bytes in every example and keep no domain; `identifier` columns (an image's source path) keep no domain, so
unseen values in the eval split are not anomalies.
"""

import json
import os
from typing import Dict, Optional

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleStatistics, Schema
from tfx.utils import io_utils

SCHEMA_FILE = "schema.pbtxt"
NUMERIC_TYPES = (schema_pb2.INT, schema_pb2.FLOAT)


def apply_declared_types(schema: schema_pb2.Schema, declared: Dict[str, Optional[str]], label: str,
                         task: str, max_unseen_share: float = 0.0) -> schema_pb2.Schema:
    """Returns a copy of `schema` with the spec's declarations enforced.

    A categorical feature's values that the train split lacks are an anomaly only past `max_unseen_share`
    of its values (TFDV's `min_domain_mass`); below it they are rare categories, which the vocabulary's
    out-of-vocabulary bucket takes, as at serving time. The label's values are never allowed to be new.

    Args:
      schema: the inferred schema.
      declared: feature name -> 'numeric' | 'categorical' | 'image' | 'audio' | 'text' | 'identifier' | None
        (None: keep the inferred type).
      label: the label column, which must be present in every example.
      task: 'classification' or 'regression'; a regression label must be numeric.
    """
    schema = schema_pb2.Schema.FromString(schema.SerializeToString())
    by_name = {f.name: f for f in schema.feature}
    required = dict(declared)
    required[label] = "numeric" if task == "regression" else None
    for name, kind in required.items():
        feature = by_name.get(name)
        if feature is None:
            # Declared but absent from the data: keep it in the schema as required so that
            # ExampleValidator reports the dropped column instead of training without it.
            feature = schema.feature.add(name=name)
            feature.type = schema_pb2.FLOAT if kind in ("numeric", "sequence") else schema_pb2.BYTES
            feature.presence.min_count = 1
            feature.presence.min_fraction = 1.0 if name == label or kind in ("image", "audio") else 0.0
            by_name[name] = feature
            continue
        if kind in ("image", "audio", "identifier", "text"):
            feature.ClearField("domain")
            feature.ClearField("string_domain")
            if kind == "text":
                # Free text: any string is valid, so no inferred vocabulary may flag new sentences;
                # an absent text is the empty string (VarLen), as a blank CSV cell is.
                feature.type = schema_pb2.BYTES
                feature.natural_language_domain.SetInParent()
                feature.ClearField("shape")
                feature.value_count.min = 1
                feature.value_count.max = 1
                feature.presence.min_fraction = 0.0
            if kind in ("image", "audio"):
                feature.type = schema_pb2.BYTES
                if kind == "image":
                    feature.image_domain.SetInParent()
                feature.presence.min_fraction = 1.0
                feature.presence.min_count = 1
        if kind == "sequence":
            # Any number of values, each a float: a fixed length inferred from the train split would
            # make a longer or shorter sequence an anomaly, and Transform pads and truncates anyway.
            feature.type = schema_pb2.FLOAT
            for field in ("shape", "value_count", "domain", "float_domain", "int_domain"):
                feature.ClearField(field)
            feature.presence.min_fraction = 0.0
        if kind == "numeric" and feature.type not in NUMERIC_TYPES:
            feature.type = schema_pb2.FLOAT
            feature.ClearField("domain")
            feature.ClearField("string_domain")
        if name == label:
            feature.presence.min_fraction = 1.0
            feature.presence.min_count = 1
    for feature in schema.feature:
        if (feature.name != label and required.get(feature.name) not in ("image", "audio")
                and [d.size for d in feature.shape.dim] == [1]):
            # Present in every train example, but a blank may come in any split (credit data's `Marital`
            # is blank in 1 eval row of 700): one value or none, as a column with blanks in the train
            # split is inferred. Transform imputes a missing value, and serving does the same. A column
            # absent from a whole split still breaks presence.min_count.
            feature.ClearField("shape")
            feature.value_count.min = 1
            feature.value_count.max = 1
            feature.presence.min_fraction = 0.0
        if feature.name != label and feature.WhichOneof("domain_info") in ("domain", "string_domain"):
            if max_unseen_share > 0:
                feature.distribution_constraints.min_domain_mass = round(1.0 - max_unseen_share, 6)
            else:
                feature.ClearField("distribution_constraints")
    return schema


@component
def SpecSchemaGen(  # pylint: disable=invalid-name
    statistics: InputArtifact[ExampleStatistics],
    schema: OutputArtifact[Schema],
    declared_types: Parameter[str],
    label: Parameter[str],
    task: Parameter[str],
    max_unseen_share: Parameter[float] = 0.0,
):
    """Infers a schema from the train split and enforces the spec's feature types.

    Args:
      statistics: StatisticsGen output.
      schema: where schema.pbtxt is written.
      declared_types: JSON object, feature name -> 'numeric' | 'categorical' | null.
      label: the label column.
      task: 'classification' or 'regression'.
      max_unseen_share: see `apply_declared_types`.
    """
    splits = artifact_utils.decode_split_names(statistics.split_names)
    split = "train" if "train" in splits else splits[0]
    stats = stats_artifact_utils.load_statistics(statistics, split).proto()
    inferred = tfdv.infer_schema(stats, infer_feature_shape=True)
    enforced = apply_declared_types(inferred, json.loads(declared_types), label, task, max_unseen_share)
    io_utils.write_pbtxt_file(os.path.join(schema.uri, SCHEMA_FILE), enforced)
