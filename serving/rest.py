"""TF Serving's REST API on a second port, over the same inference code as the gRPC server.

  GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            model status
  GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   signature defs
  POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict    {"instances": [...]} or {"inputs": ...}
  POST /v1/models/{m}[...]:classify | :regress              {"examples": [...], "context": {...}}
  GET  /monitoring/prometheus/metrics                       Prometheus metrics

JSON follows TF Serving's: `{"b64": "..."}` for bytes, row format answers `predictions`,
columnar format answers `outputs`, errors are `{"error": "..."}` with 400 (bad input), 404
(unknown model, version, label or signature), 411/413 (no or too large a body), 504
(deadline). Bodies larger than the server's request limit are refused unread.
"""

import base64
import binascii
import http.server
import json
import logging
import math
import re
import socket
import ssl
import threading
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, get_model_status_pb2, regression_pb2

from lamina.serving.inference import Observed, check_arrays, check_input_names, expected_inputs
from lamina.serving.protocol import DEFAULT_SIGNATURE, METRICS_PATH, RAW_SIGNATURE, ServingError, invalid_argument

log = logging.getLogger("lamina.serving")

MODEL_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                        r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                        r"(?P<rest>/metadata|:predict|:classify|:regress)?$")
HTTP_STATUS = {"OK": 200, "INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "DEADLINE_EXCEEDED": 504,
               "UNAVAILABLE": 503, "RESOURCE_EXHAUSTED": 413, "INTERNAL": 500}


class RestError(ServingError):
    def __init__(self, http_status: int, message: str, code: str = "INVALID_ARGUMENT"):
        super().__init__(code, message)
        self.http_status = http_status


# -- JSON <-> arrays ----------------------------------------------------------------------


def _decode_b64(value, where: str) -> bytes:
    if not isinstance(value.get("b64"), str) or len(value) != 1:
        raise invalid_argument(f"{where}: an object value must be {{\"b64\": \"<base64 string>\"}}; got keys "
                               f"{sorted(value)}.")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise invalid_argument(f"{where}: invalid base64 in {{\"b64\": ...}}: {e}.") from None


def _element(value, dtype: tf.DType, where: str):
    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            return _decode_b64(value, where)
        raise invalid_argument(f"{where}: value {value!r} is not a string (or {{\"b64\": ...}}); "
                               f"the input is {dtype.name}.")
    if dtype == tf.bool:
        if isinstance(value, bool):
            return value
        raise invalid_argument(f"{where}: value {value!r} is not a bool; the input is bool.")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_argument(f"{where}: value {value!r} is not a number; the input is {dtype.name}.")
    if dtype.is_integer and not float(value).is_integer():
        raise invalid_argument(f"{where}: value {value!r} is not an integer; the input is {dtype.name}.")
    return value


def json_to_array(value, dtype: tf.DType, where: str) -> np.ndarray:
    """A JSON value (nested lists of scalars, {"b64": ...} for bytes) as an array of `dtype`."""
    def convert(v):
        if isinstance(v, list):
            return [convert(x) for x in v]
        return _element(v, dtype, where)

    converted = convert(value)
    try:
        if dtype == tf.string:
            array = np.array(converted, dtype=object)
            if array.dtype != object or any(isinstance(x, list) for x in array.reshape(-1)):
                raise ValueError
        else:
            array = np.array(converted, dtype=dtype.as_numpy_dtype)
    except (ValueError, OverflowError):
        raise invalid_argument(f"{where}: the values do not form a rectangular {dtype.name} array "
                               "(all rows must have the same shape).") from None
    return array


def _json_value(value):
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return value  # json writes NaN/Infinity, as TF Serving does
    return value


def array_to_json(array: np.ndarray):
    if array.dtype == object:
        return np.vectorize(_json_value, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def predict_arrays(body: dict, fn, signature: str) -> (Dict[str, np.ndarray], bool):
    """The input arrays of a :predict body and whether it used the row format."""
    expected = expected_inputs(fn)
    if ("instances" in body) == ("inputs" in body):
        raise invalid_argument("The request must have exactly one of 'instances' (row format) or 'inputs' "
                               "(columnar format).")
    unknown = sorted(set(body) - {"instances", "inputs", "signature_name"})
    if unknown:
        raise invalid_argument(f"Unknown request key {unknown}; allowed: instances, inputs, signature_name.")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid_argument("'instances' must be a non-empty list.")
        named = all(isinstance(r, dict) and "b64" not in r for r in instances)
        if named:
            columns = {}
            for n, row in enumerate(instances):
                if set(row) != set(expected):
                    try:
                        check_input_names(expected, row, signature)
                    except ServingError as e:
                        raise invalid_argument(f"instances[{n}]: {e}") from None
                for key in expected:
                    columns.setdefault(key, []).append(row[key])
        elif len(expected) == 1:
            columns = {next(iter(expected)): instances}
        else:
            raise invalid_argument(f"Signature {signature!r} has {len(expected)} inputs "
                                   f"({', '.join(sorted(expected))}); each instance must be an object naming them.")
        arrays = {k: json_to_array(v, expected[k].dtype, f"Input {k!r}") for k, v in columns.items()
                  if k in expected}
        return arrays, True
    inputs = body["inputs"]
    if isinstance(inputs, dict) and not (len(inputs) == 1 and "b64" in inputs):
        check_input_names(expected, inputs, signature)
        return {k: json_to_array(v, expected[k].dtype, f"Input {k!r}") for k, v in inputs.items()}, False
    if len(expected) != 1:
        raise invalid_argument(f"Signature {signature!r} has {len(expected)} inputs ({', '.join(sorted(expected))}); "
                               "'inputs' must be an object naming them.")
    key = next(iter(expected))
    return {key: json_to_array(inputs, expected[key].dtype, f"Input {key!r}")}, False


def predict_answer(outputs: Dict[str, np.ndarray], rows: bool) -> dict:
    if not rows:
        if len(outputs) == 1:
            return {"outputs": array_to_json(next(iter(outputs.values())))}
        return {"outputs": {k: array_to_json(v) for k, v in sorted(outputs.items())}}
    names = sorted(outputs)
    if len(names) == 1:
        return {"predictions": array_to_json(outputs[names[0]])}
    lists = {k: array_to_json(v) for k, v in outputs.items()}
    count = len(next(iter(lists.values())))
    return {"predictions": [{k: lists[k][i] for k in names} for i in range(count)]}


def _feature(example: tf.train.Example, name: str, value, dtype: Optional[int], where: str) -> None:
    values = value if isinstance(value, list) else [value]
    feature = example.features.feature[name]
    feature.Clear()
    if not values:
        return
    if all(isinstance(v, (str, dict)) for v in values):
        feature.bytes_list.value.extend(v.encode("utf-8") if isinstance(v, str) else _decode_b64(v, where)
                                        for v in values)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        floats = dtype in (tf.float32.as_datatype_enum, tf.float64.as_datatype_enum) or (
            dtype is None and not all(isinstance(v, int) for v in values))
        if floats:
            feature.float_list.value.extend(float(v) for v in values)
        else:
            if not all(float(v).is_integer() for v in values):
                raise invalid_argument(f"{where}: feature {name!r} has non-integer values {values}; the model "
                                       "reads it as an integer.")
            feature.int64_list.value.extend(int(v) for v in values)
    else:
        raise invalid_argument(f"{where}: feature {name!r} has value {value!r}; a feature is a string, a number, "
                               "{\"b64\": ...} or a list of one kind.")


def examples_from_json(body: dict, raw_dtypes: Dict[str, int]) -> list:
    """tf.Examples from a :classify/:regress body; numbers follow the model's raw input dtypes."""
    unknown = sorted(set(body) - {"examples", "context", "signature_name"})
    if unknown:
        raise invalid_argument(f"Unknown request key {unknown}; allowed: examples, context, signature_name.")
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid_argument("'examples' must be a non-empty list of objects.")
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise invalid_argument("'context' must be an object of feature names to values.")
    out = []
    for n, row in enumerate(examples):
        if not isinstance(row, dict):
            raise invalid_argument(f"examples[{n}] is not an object of feature names to values.")
        example = tf.train.Example()
        for name, value in {**context, **row}.items():
            _feature(example, name, value, raw_dtypes.get(name), f"examples[{n}]")
        out.append(example)
    return out


def model_status_json(response) -> dict:
    return {"model_version_status": [
        {"version": str(s.version), "state": type(s).State.Name(s.state),
         "status": {"error_code": "OK" if s.status.error_code == 0 else "UNKNOWN",
                    "error_message": s.status.error_message}}
        for s in response.model_version_status]}


# -- the HTTP server ----------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "Lamina"
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection is closed after this many seconds
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    lamina = None  # the LaminaServer, set on a subclass per server
    busy = False  # answering a request (not waiting for the next one on a keep-alive connection)

    def setup(self):
        super().setup()
        self.server.handlers.add(self)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.handlers.discard(self)

    def log_message(self, fmt, *args):  # access log at debug level, not on stderr
        log.debug("rest %s - %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"))

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, http_method: str) -> None:
        self.busy = True
        try:
            if http_method == "GET" and self.path == METRICS_PATH:
                self._send(200, self.lamina.metrics.render(), self.lamina.metrics.content_type)
            else:
                self._route(http_method)
        finally:
            self.busy = False
            if self.server.stopping:
                self.close_connection = True

    def _route(self, http_method: str) -> None:
        match = MODEL_PATH.match(self.path.split("?", 1)[0])
        suffix = (match.group("rest") or "") if match else ""
        method = {"": "GetModelStatus", "/metadata": "GetModelMetadata", ":predict": "Predict",
                  ":classify": "Classify", ":regress": "Regress"}.get(suffix, "Unknown")
        observed = Observed(self.lamina.metrics, method, "rest", match.group("name") if match else "")
        self.lamina.request_started()
        try:
            if not match:
                raise RestError(404, f"Malformed request: {http_method} {self.path}; paths: /v1/models/<model>"
                                     "[/versions/<n>|/labels/<label>][/metadata|:predict|:classify|:regress].",
                                "NOT_FOUND")
            wants_post = suffix.startswith(":")
            if (http_method == "POST") != wants_post:
                raise RestError(405, f"{http_method} is not allowed on {self.path}; use "
                                     f"{'POST' if wants_post else 'GET'}.", "INVALID_ARGUMENT")
            body = self._body() if wants_post else None
            answer = self._answer(match, suffix, body, observed)
            self._send_json(200, answer)
        except ServingError as e:
            observed.status = e.code
            self._send_json(getattr(e, "http_status", HTTP_STATUS.get(e.code, 500)), {"error": str(e)})
        except Exception as e:  # noqa: BLE001 - answered as INTERNAL, logged with its traceback
            observed.status = "INTERNAL"
            log.exception("internal error in REST %s", self.path)
            self._send_json(500, {"error": f"{type(e).__name__}: {e}"})
        finally:
            observed.finish()
            self.lamina.request_finished()

    def _body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise RestError(411, "The request needs a Content-Length header.")
        try:
            length = int(length)
        except ValueError:
            self.close_connection = True
            raise RestError(400, f"Content-Length {length!r} is not a number.") from None
        limit = self.lamina.max_request_bytes
        if length > limit:
            self.close_connection = True  # the body stays unread
            raise RestError(413, f"The request body is {length} bytes; the limit is {limit} bytes.",
                            "RESOURCE_EXHAUSTED")
        raw = self.rfile.read(length)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RestError(400, f"The request body is not valid UTF-8 (byte {e.start}).") from None
        try:
            body = json.loads(text)
        except json.JSONDecodeError as e:
            raise RestError(400, f"The request body is not valid JSON: {e.msg} at line {e.lineno} "
                                 f"column {e.colno}.") from None
        if not isinstance(body, dict):
            raise RestError(400, "The request body must be a JSON object.")
        return body

    def _answer(self, match, suffix: str, body, observed: Observed):
        lamina = self.lamina
        name, version, label = match.group("name"), match.group("version"), match.group("label")
        if version is not None and not version.isdigit():
            raise invalid_argument(f"Version {version!r} is not a number.")
        version = int(version) if version is not None else None
        if suffix == "":
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = name
            if version is not None:
                request.model_spec.version.value = version
            if label:
                request.model_spec.version_label = label
            return model_status_json(lamina.inference.model_status(request))
        with lamina.registry.acquire(name, version=version, label=label) as model:
            observed.version = model.version
            if suffix == "/metadata":
                request = get_model_metadata_pb2.GetModelMetadataRequest()
                request.metadata_field.append("signature_def")
                response = lamina.inference.metadata(model, request)
                sig_map = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(sig_map)
                return {"model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
                        "metadata": {"signature_def": json_format.MessageToDict(
                            sig_map, preserving_proto_field_name=True)}}
            signature = body.get("signature_name") or DEFAULT_SIGNATURE
            if not isinstance(signature, str):
                raise invalid_argument("'signature_name' must be a string.")
            if suffix == ":predict":
                fn = model.signature(signature)
                arrays, rows = predict_arrays(body, fn, signature)
                tensors = check_arrays(fn, arrays, signature)
                return predict_answer(lamina.inference.run(model, signature, tensors), rows)
            raw = model.signature_defs.get(RAW_SIGNATURE)
            raw_dtypes = {k: v.dtype for k, v in raw.inputs.items()} if raw is not None else {}
            examples = examples_from_json(body, raw_dtypes)
            if suffix == ":classify":
                request = classification_pb2.ClassificationRequest()
                request.model_spec.signature_name = signature
                request.input.example_list.examples.extend(examples)
                result = lamina.inference.classify(model, request).result
                return {"results": [[[c.label, c.score] for c in row.classes] for row in result.classifications]}
            request = regression_pb2.RegressionRequest()
            request.model_spec.signature_name = signature
            request.input.example_list.examples.extend(examples)
            result = lamina.inference.regress(model, request).result
            return {"results": [r.value for r in result.regressions]}


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # shutdown waits for the requests in flight
    block_on_close = True
    request_queue_size = 128

    def __init__(self, *args, **kwargs):
        self.handlers = set()
        self.stopping = False
        super().__init__(*args, **kwargs)


class RestServer:
    """Runs the REST API for a LaminaServer on its own thread."""

    def __init__(self, lamina, host: str, port: int):
        handler = type("LaminaRestHandler", (_Handler,), {"lamina": lamina})
        host = host.strip("[]")
        server_class = type("LaminaHTTPServer", (_HTTPServer,),
                            {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
        self.httpd = server_class((host, port), handler)
        if lamina.tls_files:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*lamina.tls_files)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "RestServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="rest", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops accepting, closes idle keep-alive connections, waits for the requests being answered."""
        self.httpd.stopping = True
        self.httpd.shutdown()
        for handler in list(self.httpd.handlers):
            if not handler.busy:
                try:
                    handler.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.httpd.server_close()
        if self._thread:
            self._thread.join(timeout=30)
