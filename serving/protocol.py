"""TensorFlow Serving's protocol names, and the errors a client is told about: one home for each.

A leaf module (the standard library only): the export in `lamina.models.export` writes these
names into SavedModels, the Pusher writes warmup requests with them, and the gRPC and REST front
ends answer by them.
"""

import os

# Signature keys. `serving_default` is TF Serving's default; `serving_raw` is Lamina's
# one-tensor-per-feature signature (lamina.models.export).
DEFAULT_SIGNATURE = "serving_default"
RAW_SIGNATURE = "serving_raw"

# SignatureDef method names TF Serving dispatches Predict, Classify and Regress by.
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
API_OF_METHOD = {CLASSIFY_METHOD: "Classify", REGRESS_METHOD: "Regress"}

# Warmup requests inside a SavedModel version, and TF Serving's cap on how many are replayed.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000

# TF Serving's default Prometheus path (monitoring.config), on the REST port.
METRICS_PATH = "/monitoring/prometheus/metrics"

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
# Elements the input tensors of one request may declare, together (64 MB as float32).
DEFAULT_MAX_REQUEST_ELEMENTS = 16 * 1024 * 1024


class ServingError(Exception):
    """An error for the client; `code` is a grpc.StatusCode name (REST maps it to an HTTP status)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def invalid_argument(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def permission_denied(message: str) -> ServingError:
    return ServingError("PERMISSION_DENIED", message)
