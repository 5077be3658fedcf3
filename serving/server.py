"""A gRPC server that speaks TensorFlow Serving's protocol, on tensorflow-serving-api's servicers.

PredictionService: Predict, Classify, Regress, GetModelMetadata. ModelService: GetModelStatus.
Bad requests get INVALID_ARGUMENT or NOT_FOUND with a message naming what was wrong, and
the server stays up. Binds to 127.0.0.1 unless told otherwise; requests are size-bounded.

Example:
    >>> server = LaminaServer("serving_models", port=0).start()
    >>> server.port  # the port actually bound
"""

import logging
import signal
import threading
from concurrent import futures
from typing import Dict, Optional

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)
from tensorflow_serving.apis import status_pb2

from serving.registry import LoadedModel, ModelRegistry, ServingError, invalid_argument

log = logging.getLogger("lamina.serving")

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024


def _version(model_spec) -> Optional[int]:
    return model_spec.version.value if model_spec.HasField("version") else None


def _signature_key(model_spec) -> str:
    return model_spec.signature_name or DEFAULT_SIGNATURE


def _dtype_name(dtype: tf.DType) -> str:
    """TF Serving's spelling of a dtype: DT_FLOAT, DT_INT64, DT_STRING."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def tensor_inputs(fn, inputs, signature: str) -> Dict[str, tf.Tensor]:
    """Checks a request's TensorProtos against the signature and converts them."""
    expected = fn.structured_input_signature[1]
    missing = sorted(set(expected) - set(inputs))
    extra = sorted(set(inputs) - set(expected))
    if missing:
        raise invalid_argument(f"Missing input {', '.join(repr(m) for m in missing)} for signature {signature!r}; "
                               f"expected inputs: {', '.join(sorted(expected))}.")
    if extra:
        raise invalid_argument(f"Unknown input {', '.join(repr(m) for m in extra)} for signature {signature!r}; "
                               f"expected inputs: {', '.join(sorted(expected))}.")
    tensors = {}
    for key, spec in expected.items():
        proto = inputs[key]
        if proto.dtype != spec.dtype.as_datatype_enum:
            got = tf.dtypes.as_dtype(proto.dtype) if proto.dtype else None
            raise invalid_argument(f"Input {key!r} has dtype {_dtype_name(got) if got else 'DT_INVALID'}; "
                                   f"signature {signature!r} expects {_dtype_name(spec.dtype)}.")
        try:
            value = tf.make_ndarray(proto)
        except Exception as e:
            raise invalid_argument(f"Input {key!r} is not a valid tensor: {e}") from None
        if not spec.shape.is_compatible_with(value.shape):
            raise invalid_argument(f"Input {key!r} has shape {list(value.shape)}; signature {signature!r} expects "
                                   f"{spec.shape.as_list()} (None: any size).")
        tensors[key] = tf.constant(value, dtype=spec.dtype)
    sizes = {k: int(t.shape[0]) for k, t in sorted(tensors.items()) if t.shape.rank}
    if len(set(sizes.values())) > 1:
        raise invalid_argument(f"Inputs have different batch sizes: {sizes}.")
    return tensors


def run_signature(model: LoadedModel, signature: str, tensors: Dict[str, tf.Tensor]) -> Dict[str, np.ndarray]:
    fn = model.signature(signature)
    try:
        outputs = fn(**tensors)
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
        raise invalid_argument(f"Model {model.name!r} rejected the input: {_tf_error_summary(e)}") from None
    return {k: v.numpy() for k, v in outputs.items()}


def _tf_error_summary(error: Exception) -> str:
    """The line of a TF runtime error that says what was wrong, without graph and stack noise."""
    message = getattr(error, "message", None) or str(error)
    lines = [l.strip() for l in message.splitlines()]
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[")
    useful = [l for l in lines if l and not l.startswith(noise)]
    summary = useful[0] if useful else lines[0]
    return summary.replace("Name: <unknown>, ", "")[:500]


def examples_from_input(request_input) -> list:
    """Serialized tf.Examples from a Classify/Regress `Input`, context merged into each example."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples = list(request_input.example_list.examples)
    elif kind == "example_list_with_context":
        ctx = request_input.example_list_with_context.context
        examples = []
        for ex in request_input.example_list_with_context.examples:
            merged = type(ex)()
            merged.CopyFrom(ctx)
            merged.MergeFrom(ex)
            examples.append(merged)
    else:
        raise invalid_argument("Input is empty: set example_list or example_list_with_context.")
    if not examples:
        raise invalid_argument("Input has no examples.")
    return [ex.SerializeToString() for ex in examples]


def _example_signature(model: LoadedModel, signature: str, method: str, api: str):
    sig_def = model.signature_defs.get(signature)
    fn = model.signature(signature)
    if sig_def is not None and sig_def.method_name != method:
        raise invalid_argument(f"Signature {signature!r} of model {model.name!r} has method "
                               f"{sig_def.method_name!r}; {api} needs {method!r}.")
    inputs = fn.structured_input_signature[1]
    if list(inputs) != ["inputs"] or inputs["inputs"].dtype != tf.string:
        raise invalid_argument(f"Signature {signature!r} does not take serialized tf.Examples under 'inputs'.")
    return fn


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def Predict(self, request, context):
        with _status(context):
            model = self.registry.get(request.model_spec.name, _version(request.model_spec))
            signature = _signature_key(request.model_spec)
            fn = model.signature(signature)
            outputs = run_signature(model, signature, tensor_inputs(fn, request.inputs, signature))
            wanted = list(request.output_filter) or sorted(outputs)
            unknown = [k for k in wanted if k not in outputs]
            if unknown:
                raise invalid_argument(f"output_filter names unknown output {unknown}; outputs: {sorted(outputs)}.")
            response = predict_pb2.PredictResponse()
            response.model_spec.name = model.name
            response.model_spec.version.value = model.version
            response.model_spec.signature_name = signature
            for key in wanted:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
            return response

    def Classify(self, request, context):
        with _status(context):
            model = self.registry.get(request.model_spec.name, _version(request.model_spec))
            signature = _signature_key(request.model_spec)
            _example_signature(model, signature, CLASSIFY_METHOD, "Classify")
            serialized = examples_from_input(request.input)
            outputs = run_signature(model, signature, {"inputs": tf.constant(serialized, tf.string)})
            scores, classes = outputs.get("scores"), outputs.get("classes")
            response = classification_pb2.ClassificationResponse()
            response.model_spec.name = model.name
            response.model_spec.version.value = model.version
            response.model_spec.signature_name = signature
            for i in range(len(serialized)):
                row = response.result.classifications.add()
                width = (scores if scores is not None else classes).shape[1]
                for j in range(width):
                    c = row.classes.add()
                    if classes is not None:
                        c.label = classes[i][j].decode("utf-8")
                    if scores is not None:
                        c.score = float(scores[i][j])
            return response

    def Regress(self, request, context):
        with _status(context):
            model = self.registry.get(request.model_spec.name, _version(request.model_spec))
            signature = _signature_key(request.model_spec)
            _example_signature(model, signature, REGRESS_METHOD, "Regress")
            serialized = examples_from_input(request.input)
            outputs = run_signature(model, signature, {"inputs": tf.constant(serialized, tf.string)})
            values = np.reshape(outputs["outputs"], [-1])
            response = regression_pb2.RegressionResponse()
            response.model_spec.name = model.name
            response.model_spec.version.value = model.version
            response.model_spec.signature_name = signature
            for v in values:
                response.result.regressions.add(value=float(v))
            return response

    def GetModelMetadata(self, request, context):
        with _status(context):
            model = self.registry.get(request.model_spec.name, _version(request.model_spec))
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise invalid_argument(f"Metadata field {fields!r} is not supported; the only field is 'signature_def'.")
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = model.name
            response.model_spec.version.value = model.version
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for key, sig in model.signature_defs.items():
                sig_map.signature_def[key].CopyFrom(sig)
            packed = any_pb2.Any()
            packed.Pack(sig_map)
            response.metadata["signature_def"].CopyFrom(packed)
            return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def GetModelStatus(self, request, context):
        with _status(context):
            model = self.registry.get(request.model_spec.name, _version(request.model_spec))
            response = get_model_status_pb2.GetModelStatusResponse()
            status = response.model_version_status.add()
            status.version = model.version
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            status.status.CopyFrom(status_pb2.StatusProto(error_code=0, error_message=""))
            return response


class _status:
    """Maps ServingError to its gRPC status; any other error becomes INTERNAL, logged."""

    def __init__(self, context):
        self.context = context

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        if isinstance(exc, ServingError):
            self.context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        if isinstance(exc, Exception) and not _is_abort(exc):
            log.exception("internal error")
            self.context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        return False


def _is_abort(exc: BaseException) -> bool:
    # context.abort raises a plain Exception subclass inside grpc; let it through untouched.
    return type(exc).__module__.startswith("grpc")


class LaminaServer:
    """The gRPC server plus the model registry that feeds it."""

    def __init__(self, model_dir: str, port: int = 8500, host: str = "127.0.0.1", poll_seconds: float = 1.0,
                 max_workers: int = 8, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
        self.registry = ModelRegistry(model_dir, poll_seconds=poll_seconds)
        self.host = host
        self.requested_port = port
        self.port: Optional[int] = None
        options = [
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", max_request_bytes),
        ]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self.registry),
                                                                             self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.registry), self._server)

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> "LaminaServer":
        self.registry.start()
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.port = self._server.add_insecure_port(f"{host}:{self.requested_port}")
        if not self.port:
            raise OSError(f"could not bind {host}:{self.requested_port}")
        self._server.start()
        log.info("serving %s on %s", self.registry.root, self.target)
        return self

    def stop(self, grace: float = 5.0) -> None:
        self._server.stop(grace).wait()
        self.registry.stop()

    def wait(self) -> None:
        """Blocks until SIGINT or SIGTERM, then stops gracefully."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        done.wait()
        self.stop()
