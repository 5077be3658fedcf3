"""TF Serving warmup requests: `assets.extra/tf_serving_warmup_requests` in a SavedModel.

The file is a TFRecord of `PredictionLog`s. TF Serving (and `lamina serve`) replays each one
against a newly loaded version before it takes traffic, so the first real request does not
pay for graph tracing and kernel set-up. Lamina's Pusher writes one from a few validation
examples (components/warmup_pusher.py): a Predict and a Classify or Regress request on
`serving_default`.
"""

import os
from typing import Dict, Iterable, Iterator, List, Optional

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from lamina.constants import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, WARMUP_FILE
from lamina.serving.saved_model import read_signature_defs


def iter_warmup_requests(path: str, limit: Optional[int] = None) -> Iterator[prediction_log_pb2.PredictionLog]:
    """The PredictionLogs in a tf_serving_warmup_requests file, the first `limit` of them."""
    dataset = tf.data.TFRecordDataset(path)
    for record in (dataset.take(limit) if limit else dataset).as_numpy_iterator():
        yield prediction_log_pb2.PredictionLog.FromString(record)


def read_warmup_requests(path: str) -> List[prediction_log_pb2.PredictionLog]:
    return list(iter_warmup_requests(path))


def predict_log(inputs: Dict[str, np.ndarray], signature: str = DEFAULT_SIGNATURE) -> prediction_log_pb2.PredictionLog:
    entry = prediction_log_pb2.PredictionLog()
    entry.predict_log.request.model_spec.signature_name = signature
    for key, value in inputs.items():
        entry.predict_log.request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return entry


def examples_log(serialized: List[bytes], method: str, signature: str = DEFAULT_SIGNATURE
                 ) -> prediction_log_pb2.PredictionLog:
    entry = prediction_log_pb2.PredictionLog()
    request = entry.classify_log.request if method == CLASSIFY_METHOD else entry.regress_log.request
    request.model_spec.signature_name = signature
    for record in serialized:
        request.input.example_list.examples.add().ParseFromString(record)
    return entry


def write_warmup_requests(export_dir: str, serialized_examples: List[bytes],
                          predict_inputs: Optional[Dict[str, np.ndarray]] = None,
                          extra: Iterable[prediction_log_pb2.PredictionLog] = ()) -> str:
    """Writes the warmup file into `export_dir` and returns its path.

    With serialized examples and a `serving_default` that reads them (a Lamina export), the
    file holds a Predict request with them and a Classify or Regress request as the
    signature's method says; `predict_inputs` adds a Predict request with those tensors.
    """
    signatures = read_signature_defs(export_dir)
    default = signatures.get(DEFAULT_SIGNATURE)
    logs = []
    if serialized_examples and default is not None and list(default.inputs) == ["inputs"]:
        logs.append(predict_log({"inputs": np.array(serialized_examples, dtype=object)}))
        if default.method_name in (CLASSIFY_METHOD, REGRESS_METHOD):
            logs.append(examples_log(serialized_examples, default.method_name))
    elif serialized_examples:
        for key, sig in sorted(signatures.items()):
            if sig.method_name in (CLASSIFY_METHOD, REGRESS_METHOD):
                logs.append(examples_log(serialized_examples, sig.method_name, key))
    if predict_inputs is not None:
        logs.append(predict_log(predict_inputs))
    logs.extend(extra)
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for entry in logs:
            writer.write(entry.SerializeToString())
    return path
