"""Pusher that adds TF Serving warmup requests to the model it pushes.

TFX's Pusher, with one more (optional) input: the raw `examples`. Before the copy to the
serving directory, the blessed model is staged in the executor's temporary folder and
`assets.extra/tf_serving_warmup_requests` is written into it from the first
`warmup_examples` examples of the eval split (a Predict request and a Classify or Regress
request on `serving_default`; lamina.serving.warmup). With `tflite_models` (TFLiteExporter's
output), the TFLite files and their input spec go into `assets.extra/lamina/tflite/`. The trained model artifact itself is
left as it is. TFX's Pusher then copies saved_model.pb last, as before, and an unblessed model is
still never pushed.
"""

import logging
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional

import tensorflow as tf
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.components.pusher.component import Pusher
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, json_utils

from lamina.components.tflite_export import TFLiteModels
from lamina.serving.warmup import write_warmup_requests

EXAMPLES_KEY = "examples"
TFLITE_KEY = "tflite_models"
# Inside the pushed version: TF Serving ignores assets.extra/, and the files travel with the version.
TFLITE_DIR = os.path.join("assets.extra", "lamina", "tflite")
WARMUP_EXAMPLES_KEY = "warmup_examples"
DEFAULT_WARMUP_EXAMPLES = 8


class WarmupPusherSpec(standard_component_specs.PusherSpec):
    PARAMETERS = {**standard_component_specs.PusherSpec.PARAMETERS,
                  WARMUP_EXAMPLES_KEY: ExecutionParameter(type=int, optional=True)}
    INPUTS = {**standard_component_specs.PusherSpec.INPUTS,
              EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
              TFLITE_KEY: ChannelParameter(type=TFLiteModels, optional=True)}


def first_examples(examples: types.Artifact, split: str, count: int) -> List[bytes]:
    """The first `count` serialized tf.Examples of `split` (GZIP TFRecords, as ExampleGen writes)."""
    uri = artifact_utils.get_split_uri([examples], split)
    files = sorted(tf.io.gfile.glob(os.path.join(uri, "*")))
    if not files:
        return []
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    return [bytes(r) for r in dataset.as_numpy_iterator()]


class Executor(pusher_executor.Executor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._warmup_source = (input_dict.get(EXAMPLES_KEY) or [None])[0]
        self._warmup_count = exec_properties.get(WARMUP_EXAMPLES_KEY) or DEFAULT_WARMUP_EXAMPLES
        self._tflite = (input_dict.get(TFLITE_KEY) or [None])[0]
        # The staged copy lives on this worker's local disk for the length of the push only.
        self._staging = tempfile.mkdtemp(prefix="lamina-warmup-")
        try:
            super().Do(input_dict, output_dict, exec_properties)
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)

    def GetModelPath(self, input_dict: Dict[str, List[types.Artifact]]) -> str:
        model_path = super().GetModelPath(input_dict)
        if self._warmup_source is None and self._tflite is None:
            return model_path
        staged = os.path.join(self._staging, "model_with_warmup")
        io_utils.copy_dir(model_path, staged)
        if self._tflite is not None and tf.io.gfile.listdir(self._tflite.uri):
            io_utils.copy_dir(self._tflite.uri, os.path.join(staged, TFLITE_DIR))
        if self._warmup_source is None:
            return staged
        examples = first_examples(self._warmup_source, "eval", self._warmup_count)
        if examples:
            write_warmup_requests(staged, examples)
        else:
            # The server then loads the model cold; say so rather than push it silently.
            uri = artifact_utils.get_split_uri([self._warmup_source], "eval")
            logging.warning("No examples found in %s: the model is pushed without warmup requests.", uri)
            print(f"    warning: no examples in the eval split ({uri}); the model is pushed without "
                  f"warmup requests", flush=True)
        return staged


class WarmupPusher(Pusher):
    """`Pusher(model, model_blessing, push_destination, examples=..., warmup_examples=8)`."""

    SPEC_CLASS = WarmupPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, model_blessing: Optional[types.BaseChannel] = None,
                 push_destination: Optional[pusher_pb2.PushDestination] = None,
                 examples: Optional[types.BaseChannel] = None, warmup_examples: int = DEFAULT_WARMUP_EXAMPLES,
                 tflite_models: Optional[types.BaseChannel] = None):
        spec = WarmupPusherSpec(
            model=model, model_blessing=model_blessing, push_destination=push_destination,
            custom_config=json_utils.dumps({}), examples=examples, warmup_examples=warmup_examples,
            tflite_models=tflite_models,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel))
        base_component.BaseComponent.__init__(self, spec=spec)
