"""EvaluationSchema: the columns the Evaluator reads from each eval example, and only those.

Without a schema, TFMA decodes every column of every eval example into its features and then splits
them into one dict per example (`util.split_extracts`): at 40k rows of 26 columns that was the largest
share of the Evaluator's time. TFMA needs few of them: the model reads the serialized example itself,
and the label comes from the model's `transform_label` signature. What TFMA reads from the features is
the slices' columns (`evaluation.slices` and the fairness gates') and, for the report, the label.

So this schema names those columns, each with the type the validated schema gives it and nothing else
(no shape, no presence): TFXIO reads each as a list, as it reads every column without a schema.
"""

import json
import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Schema
from tfx.utils import io_utils

from lamina.components.anomaly_gate import SCHEMA_FILE


def cut_schema(full: schema_pb2.Schema, columns) -> schema_pb2.Schema:
    """`full`'s features named in `columns`, each with its name and type only, in `full`'s order."""
    keep = set(columns)
    out = schema_pb2.Schema()
    for feature in full.feature:
        if feature.name in keep:
            out.feature.add(name=feature.name, type=feature.type)
    return out


@component
def EvaluationSchema(  # pylint: disable=invalid-name
    schema: InputArtifact[Schema],
    evaluation_schema: OutputArtifact[Schema],
    columns: Parameter[str],
):
    """Writes the validated schema cut to `columns` (a JSON list of column names)."""
    full = io_utils.SchemaReader().read(os.path.join(schema.uri, SCHEMA_FILE))
    tf.io.gfile.makedirs(evaluation_schema.uri)  # on Kubeflow nothing creates it beforehand
    io_utils.write_pbtxt_file(os.path.join(evaluation_schema.uri, SCHEMA_FILE),
                              cut_schema(full, json.loads(columns)))
