"""What every front end does with a request once it has one: check it, run the model, build the answer.

The gRPC servicers (serving/server.py), the REST handler (serving/rest.py) and warmup replay
all call `Inference`; neither front end imports the other. Inputs are checked against the
signature (names, dtypes, shapes, one batch size) before the model runs; what the model itself
rejects comes back as INVALID_ARGUMENT with TensorFlow's one useful line.
"""

import dataclasses
import functools
import math
import os
import re
import time
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, predict_pb2, regression_pb2, status_pb2)

from lamina.serving.batching import Batcher
from lamina.audio_headers import WAV_MARKER, check_wav, is_wav
from lamina.constants import (DEFAULT_MAX_AUDIO_SECONDS, DEFAULT_MAX_IMAGE_PIXELS, API_OF_METHOD, CLASSIFY_METHOD, DEFAULT_MAX_REQUEST_ELEMENTS,
                              DEFAULT_SIGNATURE, MAX_WARMUP_RECORDS, REGRESS_METHOD, WARMUP_FILE)
from lamina.image_headers import IMAGE_MARKERS, check_image, image_format
from lamina.serving.metrics import ServingMetrics
from lamina.serving.protocol import ServingError, invalid_argument
from lamina.serving.registry import LoadedModel, ModelRegistry
from lamina.serving.signature import InputSpec, ServedSignature
from lamina.serving.warmup import iter_warmup_requests


@dataclasses.dataclass(frozen=True)
class InputLimits:
    """What one request may make the server allocate: tensor elements, pixels per image, seconds per
    WAV file."""

    max_elements: int = DEFAULT_MAX_REQUEST_ELEMENTS  # over all input tensors of a request
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # per encoded image, read from its header
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS  # per WAV file, read from its header


# The TensorProto field that carries each dtype's values when tensor_content is empty.
_VALUE_FIELDS = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val", types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val", types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val", types_pb2.DT_STRING: "string_val",
    types_pb2.DT_HALF: "half_val", types_pb2.DT_BFLOAT16: "half_val",
}


_INTEGER_TYPES = frozenset({types_pb2.DT_INT8, types_pb2.DT_INT16, types_pb2.DT_INT32, types_pb2.DT_INT64,
                            types_pb2.DT_UINT8, types_pb2.DT_UINT16, types_pb2.DT_UINT32})


# numpy dtypes whose TensorProto is the array's bytes in tensor_content (little-endian, as TF writes them).
_CONTENT_TYPES = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.float64): types_pb2.DT_DOUBLE,
                  np.dtype(np.int32): types_pb2.DT_INT32, np.dtype(np.int64): types_pb2.DT_INT64}


def tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A model output as a TensorProto, the same as `tf.make_tensor_proto` gives, in a few
    microseconds for the common dtypes (tf.make_tensor_proto spends ~25 µs on its checks, twice
    per penguins request); other dtypes go through it."""
    array = np.asarray(array)
    dtype = _CONTENT_TYPES.get(array.dtype)
    strings = array.dtype == object and all(isinstance(v, bytes) for v in array.flat)
    if dtype is None and not strings:
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING if strings else dtype)
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape)
    if strings:
        proto.string_val.extend(array.flat)
    else:
        proto.tensor_content = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return proto


def _signature_key(model_spec) -> str:
    return model_spec.signature_name or DEFAULT_SIGNATURE


def _dtype_name(dtype: tf.DType) -> str:
    """TF Serving's spelling of a dtype: DT_FLOAT, DT_INT64, DT_STRING."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def expected_inputs(fn) -> Dict[str, tf.TensorSpec]:
    return fn.structured_input_signature[1]


def check_input_names(expected, given, signature: str) -> None:
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    if missing:
        raise invalid_argument(f"Missing input {', '.join(repr(m) for m in missing)} for signature {signature!r}; "
                               f"expected inputs: {', '.join(sorted(expected))}.")
    if extra:
        raise invalid_argument(f"Unknown input {', '.join(repr(m) for m in extra)} for signature {signature!r}; "
                               f"expected inputs: {', '.join(sorted(expected))}.")


def check_arrays(fn: ServedSignature, arrays: Dict[str, np.ndarray], signature: str,
                 limits: InputLimits = InputLimits()) -> Dict[str, tf.Tensor]:
    """Shapes, batch sizes and images of already-typed arrays against the signature; returns tensors."""
    check_input_names(fn.inputs, arrays, signature)
    tensors, sizes = {}, {}
    for key, spec in fn.inputs.items():
        value = arrays[key]
        if not spec.accepts(value.shape):
            raise invalid_argument(f"Input {key!r} has shape {list(value.shape)}; signature {signature!r} expects "
                                   f"{spec.describe()} (None: any size).")
        if spec.enum == types_pb2.DT_STRING:
            check_files(key, value, limits, examples=fn.takes_examples)
        tensors[key] = tf.constant(value, dtype=spec.dtype)
        if value.ndim:
            sizes[key] = int(value.shape[0])
    if len(set(sizes.values())) > 1:
        raise invalid_argument(f"Inputs have different batch sizes: {dict(sorted(sizes.items()))}.")
    return tensors


def check_file(data: bytes, limits: InputLimits, where: str) -> bool:
    """Whether `data` is an encoded image or a WAV file, checked against `limits` from its header before
    anything decodes it (ValueError naming `where` when it is over them or broken)."""
    if image_format(data):
        check_image(data, limits.max_image_pixels, where)
        return True
    if is_wav(data):
        check_wav(data, limits.max_audio_seconds, where)
        return True
    return False


# A serialized tf.Example holding none of these bytes holds no image or WAV file: it is not parsed.
_FILE_MARKERS = IMAGE_MARKERS + (WAV_MARKER,)


def check_files(key: str, values: np.ndarray, limits: InputLimits, examples: bool = False) -> None:
    """Every encoded image and WAV file in a string input (or, with `examples`, in the bytes features of
    serialized tf.Examples) within `limits`."""
    for i, item in enumerate(np.reshape(values, [-1])):
        if not isinstance(item, bytes) or (examples and not any(m in item for m in _FILE_MARKERS)):
            continue
        try:
            if not check_file(item, limits, f"Input {key!r} element {i}") and examples:
                check_example_files(tf.train.Example.FromString(item), limits, f"Input {key!r} example {i}")
        except ValueError as e:
            raise invalid_argument(str(e)) from None
        except Exception:  # noqa: BLE001 - not an Example: the model's own parsing reports it
            continue


def check_example_files(example, limits: InputLimits, where: str) -> None:
    for name, feature in example.features.feature.items():
        for value in feature.bytes_list.value:
            check_file(value, limits, f"{where} feature {name!r}")


@functools.lru_cache(maxsize=None)
def _itemsize(dtype_enum: int) -> int:
    return tf.dtypes.as_dtype(dtype_enum).size


def _declared_size(key: str, proto, spec: InputSpec, signature: str) -> int:
    """The element count a TensorProto declares, checked against the signature and the values it carries."""
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument(f"Input {key!r} has no shape; signature {signature!r} expects "
                               f"{spec.describe()}.")
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise invalid_argument(f"Input {key!r} declares shape {dims}, with a negative dimension.")
    if not spec.accepts(dims):
        raise invalid_argument(f"Input {key!r} has shape {dims}; signature {signature!r} expects "
                               f"{spec.describe()} (None: any size).")
    count = math.prod(dims)
    if proto.tensor_content:
        itemsize = _itemsize(proto.dtype)
        if len(proto.tensor_content) != count * itemsize:
            raise invalid_argument(f"Input {key!r} declares shape {dims} ({count} values of {itemsize} bytes) but "
                                   f"carries {len(proto.tensor_content)} bytes of tensor_content.")
        return count
    sent = len(getattr(proto, _VALUE_FIELDS.get(proto.dtype, "float_val")))
    # TF fills a whole tensor from one value; anything else must carry every value.
    if sent != count and not (sent == 1 and count > 0):
        raise invalid_argument(f"Input {key!r} declares shape {dims} ({count} values) but carries {sent}.")
    return count


def tensor_inputs(fn: ServedSignature, inputs, signature: str,
                  limits: InputLimits = InputLimits()) -> Dict[str, tf.Tensor]:
    """Checks a request's TensorProtos against the signature and the limits, then converts them.

    Declared shapes are checked against the signature, the values actually sent and the element
    bound before any array is made: a few bytes cannot make the server allocate gigabytes.
    """
    check_input_names(fn.inputs, inputs, signature)
    total = 0
    for key, spec in fn.inputs.items():
        proto = inputs[key]
        # Integers for a float input are converted (a numeric column is float32 on the wire).
        if proto.dtype != spec.enum and not (spec.dtype.is_floating and proto.dtype in _INTEGER_TYPES):
            got = tf.dtypes.as_dtype(proto.dtype) if proto.dtype else None
            raise invalid_argument(f"Input {key!r} has dtype {_dtype_name(got) if got else 'DT_INVALID'}; "
                                   f"signature {signature!r} expects {_dtype_name(spec.dtype)}.")
        total += _declared_size(key, proto, spec, signature)
        if total > limits.max_elements:
            raise invalid_argument(f"The request's inputs declare {total:,} elements; the limit is "
                                   f"{limits.max_elements:,} (lamina serve --max-request-elements).")
    arrays = {}
    for key in fn.inputs:
        try:
            arrays[key] = _proto_array(inputs[key])
        except Exception as e:
            raise invalid_argument(f"Input {key!r} is not a valid tensor: {e}") from None
    return check_arrays(fn, arrays, signature, limits)


def _proto_array(proto) -> np.ndarray:
    """`tf.make_ndarray(proto)`; strings that carry every value (serialized tf.Examples, encoded files)
    are taken as they are, without its per-dtype dispatch."""
    if proto.dtype == types_pb2.DT_STRING:
        dims = [d.size for d in proto.tensor_shape.dim]
        values = proto.string_val
        if len(values) == math.prod(dims):
            return np.array(values, dtype=object).reshape(dims)
    return tf.make_ndarray(proto)


def tf_error_summary(error: Exception) -> str:
    """The line of a TF runtime error that says what was wrong, without graph and stack noise (and
    without the ' [Op:...]' a direct function call appends to that line)."""
    message = getattr(error, "message", None) or str(error)
    lines = [l.strip() for l in message.splitlines()]
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[")
    useful = [l for l in lines if l and not l.startswith(noise)]
    summary = useful[0] if useful else lines[0]
    summary = re.sub(r"\s*\[Op:[^\]]*\]$", "", summary)
    return summary.replace("Name: <unknown>, ", "")[:500]


def call_signature(fn, tensors: Dict[str, tf.Tensor]) -> Dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in fn(**tensors).items()}


def examples_from_input(request_input, limits: InputLimits = InputLimits()) -> list:
    """Serialized tf.Examples from a Classify/Regress `Input`, context merged into each example,
    every image and WAV file in them within `limits`."""
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
    for n, example in enumerate(examples):
        try:
            check_example_files(example, limits, f"Example {n}")
        except ValueError as e:
            raise invalid_argument(str(e)) from None
    return [ex.SerializeToString() for ex in examples]


def _example_signature(model: LoadedModel, signature: str, method: str, api: str):
    sig_def = model.signature_defs.get(signature)
    fn = model.signature(signature)
    if sig_def is not None and sig_def.method_name != method:
        raise invalid_argument(f"Signature {signature!r} of model {model.name!r} has method "
                               f"{sig_def.method_name!r}; {api} needs {method!r}.")
    if not fn.takes_examples:
        raise invalid_argument(f"Signature {signature!r} does not take serialized tf.Examples under 'inputs'.")
    return fn


def version_choice(model_spec) -> dict:
    """{'version': N or None, 'label': L or None} from a ModelSpec's version_choice."""
    choice = model_spec.WhichOneof("version_choice")
    return {"version": model_spec.version.value if choice == "version" else None,
            "label": model_spec.version_label if choice == "version_label" else None}


def _set_spec(target, model: LoadedModel, signature: Optional[str] = None) -> None:
    target.name = model.name
    target.version.value = model.version
    if signature is not None:
        target.signature_name = signature


def classification_result(outputs: Dict[str, np.ndarray], rows: int) -> classification_pb2.ClassificationResult:
    scores, classes = outputs.get("scores"), outputs.get("classes")
    if scores is None and classes is None:
        raise invalid_argument(f"The signature has no 'scores' or 'classes' output; outputs: {sorted(outputs)}.")
    result = classification_pb2.ClassificationResult()
    for i in range(rows):
        row = result.classifications.add()
        width = (scores if scores is not None else classes).shape[1]
        for j in range(width):
            c = row.classes.add()
            if classes is not None:
                c.label = classes[i][j].decode("utf-8")
            if scores is not None:
                c.score = float(scores[i][j])
    return result


def regression_result(outputs: Dict[str, np.ndarray]) -> regression_pb2.RegressionResult:
    if "outputs" not in outputs:
        raise invalid_argument(f"The signature has no 'outputs' output; outputs: {sorted(outputs)}.")
    result = regression_pb2.RegressionResult()
    for v in np.reshape(outputs["outputs"], [-1]):
        result.regressions.add(value=float(v))
    return result


class Inference:
    """What every API does once the model version is resolved: shared by gRPC, REST and warmup."""

    def __init__(self, registry: ModelRegistry, metrics: ServingMetrics, batcher: Optional[Batcher] = None,
                 limits: InputLimits = InputLimits()):
        self.registry = registry
        self.metrics = metrics
        self.batcher = batcher
        self.limits = limits

    def resolve(self, model_spec) -> LoadedModel:
        """The version a ModelSpec names (by number or label), counted in flight until released."""
        return self.registry.acquire(model_spec.name, **version_choice(model_spec))

    def run(self, model: LoadedModel, signature: str, tensors: Dict[str, tf.Tensor],
            deadline: Optional[float] = None, batch: bool = True, api: str = "Predict") -> Dict[str, np.ndarray]:
        fn = model.signature(signature)
        if deadline is not None and time.monotonic() > deadline:
            raise ServingError("DEADLINE_EXCEEDED", "The request's deadline passed before it ran.")
        try:
            if self.batcher is not None and batch:
                return self.batcher.run(fn, tensors, key=(model, signature), deadline=deadline, api=api)
            started = time.monotonic()
            outputs = call_signature(fn, tensors)
            if batch:
                self.metrics.observe_runtime(model.name, api, time.monotonic() - started)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise invalid_argument(f"Model {model.name!r} rejected the input: {tf_error_summary(e)}") from None
        if batch:  # warmup calls (batch=False) are not traffic
            rows = {int(t.shape[0]) for t in tensors.values() if t.shape.rank}
            self.observe_batch((model, signature), rows.pop() if len(rows) == 1 else 1)
        return outputs

    def observe_batch(self, key, rows: int) -> None:
        model, signature = key
        self.metrics.observe_batch(model.name, model.version, signature, rows)

    def predict(self, model, request, deadline=None, batch=True) -> predict_pb2.PredictResponse:
        signature = _signature_key(request.model_spec)
        fn = model.signature(signature)
        outputs = self.run(model, signature, tensor_inputs(fn, request.inputs, signature, self.limits), deadline,
                           batch, "Predict")
        wanted = list(request.output_filter) or sorted(outputs)
        unknown = [k for k in wanted if k not in outputs]
        if unknown:
            raise invalid_argument(f"output_filter names unknown output {unknown}; outputs: {sorted(outputs)}.")
        response = predict_pb2.PredictResponse()
        _set_spec(response.model_spec, model, signature)
        for key in wanted:
            response.outputs[key].CopyFrom(tensor_proto(outputs[key]))
        return response

    def _examples(self, model, signature, method, api, request_input, deadline, batch):
        _example_signature(model, signature, method, api)
        serialized = examples_from_input(request_input, self.limits)
        if batch:
            self.metrics.observe_examples(model.name, len(serialized))
        outputs = self.run(model, signature, {"inputs": tf.constant(serialized, tf.string)}, deadline, batch, api)
        return serialized, outputs

    def classify(self, model, request, deadline=None, batch=True) -> classification_pb2.ClassificationResponse:
        signature = _signature_key(request.model_spec)
        serialized, outputs = self._examples(model, signature, CLASSIFY_METHOD, "Classify", request.input,
                                             deadline, batch)
        response = classification_pb2.ClassificationResponse()
        _set_spec(response.model_spec, model, signature)
        response.result.CopyFrom(classification_result(outputs, len(serialized)))
        return response

    def regress(self, model, request, deadline=None, batch=True) -> regression_pb2.RegressionResponse:
        signature = _signature_key(request.model_spec)
        _, outputs = self._examples(model, signature, REGRESS_METHOD, "Regress", request.input, deadline, batch)
        response = regression_pb2.RegressionResponse()
        _set_spec(response.model_spec, model, signature)
        response.result.CopyFrom(regression_result(outputs))
        return response

    def multi_inference(self, model, request, deadline=None, batch=True) -> inference_pb2.MultiInferenceResponse:
        check_multi_inference(request)
        response = inference_pb2.MultiInferenceResponse()
        for task in request.tasks:
            signature = _signature_key(task.model_spec)
            api = API_OF_METHOD[task.method_name]
            serialized, outputs = self._examples(model, signature, task.method_name, api, request.input,
                                                 deadline, batch)
            result = response.results.add()
            _set_spec(result.model_spec, model, signature)
            if task.method_name == CLASSIFY_METHOD:
                result.classification_result.CopyFrom(classification_result(outputs, len(serialized)))
            else:
                result.regression_result.CopyFrom(regression_result(outputs))
        return response

    def metadata(self, model, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise invalid_argument(f"Metadata field {fields!r} is not supported; the only field is 'signature_def'.")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _set_spec(response.model_spec, model)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in model.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sig)
        packed = any_pb2.Any()
        packed.Pack(sig_map)
        response.metadata["signature_def"].CopyFrom(packed)
        return response

    def model_status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
        statuses = self.registry.status(request.model_spec.name, **version_choice(request.model_spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, status in statuses:
            entry = response.model_version_status.add()
            entry.version = version
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(status.state)
            entry.status.CopyFrom(status_pb2.StatusProto(error_code=2 if status.error else 0,
                                                         error_message=status.error))
        return response

    def warmup(self, model: LoadedModel) -> int:
        """Replays `assets.extra/tf_serving_warmup_requests` against `model`; any failure fails the load."""
        path = os.path.join(model.path, WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            return 0
        count = 0
        for n, entry in enumerate(iter_warmup_requests(path, MAX_WARMUP_RECORDS), 1):
            try:
                kind = entry.WhichOneof("log_type")
                handler = {"predict_log": self.predict, "classify_log": self.classify,
                           "regress_log": self.regress, "multi_inference_log": self.multi_inference}.get(kind)
                if handler is None:
                    raise ValueError(f"log type {kind!r} is not replayed (predict, classify, regress, "
                                     "multi_inference are)")
                handler(model, getattr(entry, kind).request, batch=False)
            except Exception as e:
                raise ValueError(f"warmup request {n} in {WARMUP_FILE} failed: {e}") from None
            count += 1
        return count


def check_multi_inference(request) -> None:
    if not request.tasks:
        raise invalid_argument("MultiInference request has no tasks.")
    names = sorted({t.model_spec.name for t in request.tasks})
    if len(names) > 1:
        raise invalid_argument(f"All MultiInference tasks must name the same model; got {', '.join(names)}.")
    versions = {(t.model_spec.WhichOneof("version_choice"), t.model_spec.version.value, t.model_spec.version_label)
                for t in request.tasks}
    if len(versions) > 1:
        raise invalid_argument("All MultiInference tasks must ask for the same version.")
    signatures = [_signature_key(t.model_spec) for t in request.tasks]
    if len(set(signatures)) != len(signatures):
        raise invalid_argument(f"MultiInference tasks repeat a signature: {signatures}.")
    for task in request.tasks:
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise invalid_argument(f"MultiInference task method {task.method_name!r} is not supported; allowed: "
                                   f"{CLASSIFY_METHOD!r}, {REGRESS_METHOD!r}.")


class Observed:
    """Times one request and records it in the metrics with the status it ended with."""

    def __init__(self, metrics: ServingMetrics, method: str, api: str, model_name: str = "",
                 known: Callable[[str], bool] = lambda name: False):
        self.metrics, self.method, self.api = metrics, method, api
        self.model_name, self.version, self.status = model_name, None, "OK"
        self.known = known
        self.start = time.perf_counter()

    def finish(self) -> None:
        # Only models the server knows become label values: a client naming random models cannot
        # grow the metrics without bound. The rest count under model="".
        name = self.model_name if self.model_name and self.known(self.model_name) else ""
        self.metrics.observe_request(name, self.version, self.method, self.api, self.status,
                                     time.perf_counter() - self.start)
