"""Reading a SavedModel's signature defs from its saved_model.pb, without loading the model."""

import os
from typing import Dict

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2


def read_signature_defs(path: str) -> Dict[str, meta_graph_pb2.SignatureDef]:
    """Signature defs of the 'serve' meta graph, method names included. `path` may be gs://."""
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
    return {}
