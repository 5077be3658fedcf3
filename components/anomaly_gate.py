"""AnomalyGate: stops the run when ExampleValidator found anomalies.

ExampleValidator only writes anomalies down. Transform consumes the schema this gate
re-emits, so no transform or training runs on data that failed validation.
"""

import dataclasses
import os
from typing import List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies, Schema

ANOMALIES_FILE = "SchemaDiff.pb"
SCHEMA_FILE = "schema.pbtxt"


@dataclasses.dataclass(frozen=True)
class Anomaly:
    split: str
    feature: str
    anomaly: str
    description: str


class DataAnomaliesError(RuntimeError):
    """Raised when the data failed validation; `anomalies` lists what was found."""

    def __init__(self, anomalies: List[Anomaly], report_dir: str = ""):
        self.anomalies = anomalies
        self.report_dir = report_dir
        self.report: str = ""  # the HTML run report, once the runner has written it
        super().__init__(format_anomalies(anomalies, report_dir))


def read_anomalies(anomalies_artifact) -> List[Anomaly]:
    """Reads every split's SchemaDiff.pb into readable rows, sorted by split and feature."""
    rows = []
    for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies_artifact], split), ANOMALIES_FILE)
        if not tf.io.gfile.exists(path):
            continue
        proto = anomalies_pb2.Anomalies()
        with tf.io.gfile.GFile(path, "rb") as f:
            proto.ParseFromString(f.read())
        for feature, info in sorted(proto.anomaly_info.items()):
            rows.append(Anomaly(split, feature, info.short_description, _describe(info)))
        if proto.HasField("dataset_anomaly_info"):
            info = proto.dataset_anomaly_info
            rows.append(Anomaly(split, "<dataset>", info.short_description, _describe(info)))
    return rows


def _describe(info: anomalies_pb2.AnomalyInfo) -> str:
    parts = [r.description for r in info.reason if r.description] or [info.description]
    return "; ".join(p for p in parts if p)


def format_anomalies(anomalies: List[Anomaly], report_dir: str = "") -> str:
    header = ("split", "feature", "anomaly", "description")
    table = [header] + [(a.split, a.feature, a.anomaly, a.description) for a in anomalies]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    lines = [
        f"Data validation found {len(anomalies)} anomal{'y' if len(anomalies) == 1 else 'ies'}; "
        "the run stopped before Transform and training."
    ]
    for r in table:
        lines.append("  " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    if report_dir:
        lines.append(f"Anomaly report: {report_dir}")
    return "\n".join(lines)


@component
def AnomalyGate(  # pylint: disable=invalid-name
    anomalies: InputArtifact[ExampleAnomalies],
    schema: InputArtifact[Schema],
    validated_schema: OutputArtifact[Schema],
):
    """Raises DataAnomaliesError if any split has anomalies; else passes the schema on."""
    found = read_anomalies(anomalies)
    if found:
        raise DataAnomaliesError(found, anomalies.uri)
    # On Kubeflow nothing creates the output folder beforehand (a shared volume needs it; gs:// does not).
    tf.io.gfile.makedirs(validated_schema.uri)
    tf.io.gfile.copy(os.path.join(schema.uri, SCHEMA_FILE), os.path.join(validated_schema.uri, SCHEMA_FILE),
                     overwrite=True)
