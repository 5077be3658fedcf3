"""TF Serving's REST API on a second port, over the same inference code as the gRPC server.

  GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            model status
  GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   signature defs
  POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict    {"instances": [...]} or {"inputs": ...}
  POST /v1/models/{m}[...]:classify | :regress              {"examples": [...], "context": {...}}
  GET  /monitoring/prometheus/metrics                       Prometheus metrics

JSON is TF Serving's (serving/rest_json.py). Errors are `{"error": "..."}` with 400 (bad input),
404 (unknown model, version, label or signature), 405 with an `Allow` header (wrong method),
411/413 (no body, or too large a one; chunked bodies are read within the same limit), 503 (too many connections) and 504 (deadline). The HTTP side
(serving/http_server.py) bounds connections, threads and the time a client may take.
"""

import logging
import re
import ssl
from typing import Optional

from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, get_model_status_pb2, regression_pb2

from lamina.serving.http_server import HttpLimits, HttpServer, Request, Response, json_response
from lamina.serving.inference import Observed, check_arrays
from lamina.constants import DEFAULT_SIGNATURE, METRICS_PATH, RAW_SIGNATURE
from lamina.serving.protocol import ServingError, invalid_argument
from lamina.serving.rest_json import examples_from_json, model_status_json, parse_body, predict_answer, predict_arrays

log = logging.getLogger("lamina.serving")

MODEL_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                        r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                        r"(?P<rest>/metadata|:predict|:classify|:regress)?$")
HTTP_STATUS = {"OK": 200, "INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "DEADLINE_EXCEEDED": 504,
               "UNAVAILABLE": 503, "RESOURCE_EXHAUSTED": 413, "PERMISSION_DENIED": 403, "INTERNAL": 500}
METHODS = {"": "GetModelStatus", "/metadata": "GetModelMetadata", ":predict": "Predict", ":classify": "Classify",
           ":regress": "Regress"}


class RestError(ServingError):
    def __init__(self, http_status: int, message: str, code: str = "INVALID_ARGUMENT", headers=None):
        super().__init__(code, message)
        self.http_status = http_status
        self.headers = headers or {}


class RestApi:
    """The REST API of one LaminaServer: `handle(Request) -> Response`, called on a worker thread."""

    def __init__(self, lamina):
        self.lamina = lamina

    def handle(self, request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        if path == METRICS_PATH:
            if request.method != "GET":
                return json_response(405, {"error": f"{request.method} is not allowed on {path}; use GET."},
                                     headers={"Allow": "GET"})
            return Response(200, self.lamina.metrics.render(), self.lamina.metrics.content_type)
        return self._route(request, path)

    def _route(self, request: Request, path: str) -> Response:
        match = MODEL_PATH.match(path)
        suffix = (match.group("rest") or "") if match else ""
        observed = Observed(self.lamina.metrics, METHODS.get(suffix, "Unknown"), "rest",
                            match.group("name") if match else "", known=self.lamina.registry.knows)
        self.lamina.request_started()
        try:
            if not match:
                raise RestError(404, f"Malformed request: {request.method} {path[:200]}; paths: /v1/models/<model>"
                                     "[/versions/<n>|/labels/<label>][/metadata|:predict|:classify|:regress].",
                                "NOT_FOUND")
            allowed = "POST" if suffix.startswith(":") else "GET"
            if request.method != allowed:
                raise RestError(405, f"{request.method} is not allowed on {path}; use {allowed}.",
                                headers={"Allow": allowed})
            body = None
            if allowed == "POST":
                if "content-length" not in request.headers and "transfer-encoding" not in request.headers:
                    raise RestError(411, "The request needs a Content-Length header or a chunked body.")
                body = parse_body(request.body)
            return json_response(200, self._answer(match, suffix, body, observed))
        except ServingError as e:
            observed.status = e.code
            return json_response(getattr(e, "http_status", HTTP_STATUS.get(e.code, 500)), {"error": str(e)},
                                 headers=getattr(e, "headers", {}))
        except Exception as e:  # noqa: BLE001 - answered as INTERNAL, logged with its traceback
            observed.status = "INTERNAL"
            log.exception("internal error in REST %s", path)
            return json_response(500, {"error": f"{type(e).__name__}: {e}"})
        finally:
            observed.finish()
            self.lamina.request_finished()

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
                tensors = check_arrays(fn, arrays, signature, lamina.inference.limits)
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


def server_tls_context(cert: str, key: str, client_ca: Optional[str] = None) -> ssl.SSLContext:
    """TLS for the REST port; with `client_ca`, every client must show a certificate it signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


class RestServer:
    """The REST API of a LaminaServer on its own port (serving/http_server.py does the HTTP)."""

    def __init__(self, lamina, host: str, port: int, limits: Optional[HttpLimits] = None):
        limits = limits or HttpLimits(max_body_bytes=lamina.max_request_bytes)
        tls = server_tls_context(*lamina.tls_files, client_ca=lamina.tls_client_ca) if lamina.tls_files else None
        self.api = RestApi(lamina)
        self.http = HttpServer(self.api.handle, host, port, limits, tls)

    @property
    def port(self) -> Optional[int]:
        return self.http.port

    def start(self) -> "RestServer":
        self.http.start()
        return self

    def stop(self, grace: float = 30.0) -> None:
        """Stops accepting, closes idle keep-alive connections, waits for the requests being answered."""
        self.http.stop(grace)
