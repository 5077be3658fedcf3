"""A server that speaks TensorFlow Serving's protocol, on tensorflow-serving-api's servicers.

gRPC: PredictionService (Predict, Classify, Regress, MultiInference, GetModelMetadata) and
ModelService (GetModelStatus, HandleReloadConfigRequest). REST on a second port with TF
Serving's paths and JSON (serving/rest.py), and the Prometheus metrics there. A request's
ModelSpec names a model by name, version or version label. Bad requests get
INVALID_ARGUMENT or NOT_FOUND with a message naming what was wrong, and the server stays up.

Secure defaults: binds 127.0.0.1 unless told otherwise, requests are size-bounded, TLS
from a certificate and key when given. SIGTERM stops accepting, finishes what is in flight
and returns.

Example:
    >>> server = LaminaServer("serving_models", port=0, rest_port=0).start()
    >>> server.target, server.rest_url  # the ports actually bound
"""

import hmac
import ipaddress
import logging
import signal
import threading
import time
from concurrent import futures
from typing import Callable, Optional

import grpc
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

from lamina.serving.batching import Batcher, BatchingParameters
from lamina.serving.http_server import HttpLimits
from lamina.serving.inference import Inference, InputLimits, Observed, check_multi_inference
from lamina.serving.metrics import ServingMetrics
from lamina.constants import DEFAULT_MAX_REQUEST_BYTES, GRPC_PORT, LOOPBACK
from lamina.serving.protocol import ServingError, invalid_argument, permission_denied
from lamina.serving.registry import ConfigError, LoadedModel, ModelRegistry, configs_from_proto
from lamina.serving.rest import RestServer

log = logging.getLogger("lamina.serving")


class _Servicers(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    """Both gRPC services; every call is timed, counted, and mapped to a gRPC status."""

    def __init__(self, server: "LaminaServer"):
        self.server = server
        self.inference = server.inference

    def _call(self, method: str, request, context, handler: Callable, model_spec=None):
        observed = Observed(self.server.metrics, method, "grpc", model_spec.name if model_spec is not None else "",
                            known=self.server.registry.knows)
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None and remaining < 1e6 else None
        self.server.request_started()
        try:
            if model_spec is None:
                return handler(request)
            with self.inference.resolve(model_spec) as model:
                observed.version = model.version
                return handler(model, request, deadline)
        except ServingError as e:
            observed.status = e.code
            context.abort(getattr(grpc.StatusCode, e.code), str(e))
        except Exception as e:
            if _is_abort(e):
                raise
            observed.status = "INTERNAL"
            log.exception("internal error in %s", method)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
        finally:
            observed.finish()
            self.server.request_finished()

    def Predict(self, request, context):
        return self._call("Predict", request, context, self.inference.predict, request.model_spec)

    def Classify(self, request, context):
        return self._call("Classify", request, context, self.inference.classify, request.model_spec)

    def Regress(self, request, context):
        return self._call("Regress", request, context, self.inference.regress, request.model_spec)

    def MultiInference(self, request, context):
        if not request.tasks:
            return self._call("MultiInference", request, context, check_multi_inference)
        return self._call("MultiInference", request, context, self.inference.multi_inference,
                          request.tasks[0].model_spec)

    def GetModelMetadata(self, request, context):
        return self._call("GetModelMetadata", request, context,
                          lambda model, req, _deadline: self.inference.metadata(model, req), request.model_spec)

    def GetModelStatus(self, request, context):
        return self._call("GetModelStatus", request, context, self.inference.model_status)

    def HandleReloadConfigRequest(self, request, context):
        return self._call("HandleReloadConfigRequest", request, context,
                          lambda req: self.server.reload_config(req, context))


def _is_abort(exc: BaseException) -> bool:
    # context.abort raises a plain Exception subclass inside grpc; let it through untouched.
    return type(exc).__module__.startswith("grpc")


def is_loopback(host: str) -> bool:
    """Whether `host` (an address to bind, or a gRPC peer's address) is this machine only."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _peer_host(peer: str) -> str:
    """'ipv4:127.0.0.1:5000' / 'ipv6:[::1]:5000' / 'unix:...' -> the address part."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit("]", 1)[0].lstrip("[")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return "localhost" if kind == "unix" else rest


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{what} {path}: {e.strerror}") from None


class LaminaServer:
    """The gRPC server, the optional REST server, the model registry that feeds them, and metrics.

    `source`: a folder of pushed models (`<name>/<version>/`) or a TF Serving models.config.
    `rest_port`: None for no REST; 0 for any free port. `batching`: None for no batching.
    `tls_client_ca`: with TLS, clients must show a certificate this CA signed (both ports).
    `allow_config_reload`: HandleReloadConfigRequest is refused unless set; then it is taken from
    loopback peers only, or, with client certificates on, from callers with `admin_token`.
    """

    def __init__(self, source: str, port: int = GRPC_PORT, host: str = LOOPBACK, rest_port: Optional[int] = None,
                 poll_seconds: float = 1.0, max_workers: int = 64,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, batching: Optional[BatchingParameters] = None,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None, tls_client_ca: Optional[str] = None,
                 input_limits: InputLimits = InputLimits(), rest_limits: Optional[HttpLimits] = None,
                 allow_config_reload: bool = False, admin_token: Optional[str] = None,
                 config_poll_seconds: float = 0.0):
        if bool(tls_cert) != bool(tls_key):
            raise ValueError("TLS needs both a certificate (--tls-cert) and its private key (--tls-key).")
        if tls_client_ca and not tls_cert:
            raise ValueError("Client certificates (--tls-client-ca) need TLS: give --tls-cert and --tls-key too.")
        if admin_token is not None and not tls_client_ca:
            raise ValueError("An admin token is only sent safely over TLS with client certificates; give "
                             "--tls-client-ca (and --tls-cert/--tls-key), or leave the token out and reload from "
                             "loopback.")
        self.metrics = ServingMetrics()
        self.batcher = Batcher(batching, on_batch=self._on_batch, on_expire=self._on_expire,
                               on_call=self._on_batch_call) if batching else None
        self.registry = ModelRegistry(source, poll_seconds=poll_seconds, config_poll_seconds=config_poll_seconds,
                                      warmup=self._warmup,
                                      on_event=self._on_load_event)
        self.inference = Inference(self.registry, self.metrics, self.batcher, input_limits)
        self.tls_client_ca = tls_client_ca
        self.rest_limits = rest_limits or HttpLimits(max_body_bytes=max_request_bytes)
        self.allow_config_reload = allow_config_reload
        self.admin_token = admin_token
        self.host = host
        self.requested_port = port
        self.requested_rest_port = rest_port
        self.max_request_bytes = max_request_bytes
        self.tls = (_read(tls_cert, "TLS certificate"), _read(tls_key, "TLS key")) if tls_cert else None
        self.tls_files = (tls_cert, tls_key) if tls_cert else None
        self.port: Optional[int] = None
        self.rest = None
        self.answered = 0
        self.in_flight = 0
        self._signalled: Optional[threading.Event] = None
        self._count_lock = threading.Lock()
        options = [("grpc.max_receive_message_length", max_request_bytes),
                   ("grpc.max_send_message_length", max_request_bytes)]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
        servicers = _Servicers(self)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicers, self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicers, self._server)

    # -- hooks -----------------------------------------------------------------------------

    def _warmup(self, model: LoadedModel) -> int:
        started, ok = time.monotonic(), False
        try:
            count = self.inference.warmup(model)
            ok = True
            return count
        finally:
            self.metrics.observe_warmup(model.path, ok, time.monotonic() - started)

    def _on_batch(self, key, rows: int) -> None:
        self.inference.observe_batch(key, rows)

    def _on_expire(self, key) -> None:
        model, signature = key
        self.metrics.observe_expired(model.name, model.version, signature)

    def _on_batch_call(self, call) -> None:
        model, _ = call.key
        self.metrics.observe_queue(self.batcher.params.thread_pool_name, call.waited, call.rows, call.processed,
                                   call.padding)
        for api in call.apis:
            self.metrics.observe_runtime(model.name, api, call.seconds)

    def _on_load_event(self, event: str, name: str, version: int) -> None:
        if not name:  # the model config itself was read again
            return
        self.metrics.load_event(event, name, version)
        self.metrics.available.labels(name).set(len(self.registry.versions(name)))

    def request_started(self) -> None:
        with self._count_lock:
            self.in_flight += 1

    def request_finished(self) -> None:
        with self._count_lock:
            self.in_flight -= 1
            self.answered += 1

    def authorize_admin(self, context) -> None:
        """Raises PERMISSION_DENIED unless this caller may change what the server serves."""
        if not self.allow_config_reload:
            raise permission_denied("Reloading the model config is off; start lamina serve with "
                                    "--allow-config-reload to allow it.")
        peer = _peer_host(context.peer())
        if self.tls_client_ca:
            sent = dict(context.invocation_metadata()).get("authorization", "")
            if not self.admin_token or not hmac.compare_digest(sent.encode(), f"Bearer {self.admin_token}".encode()):
                raise permission_denied(f"Reloading the model config needs the admin token (metadata "
                                        f"'authorization: Bearer <token>'); {peer} sent none that matches.")
        elif not is_loopback(peer):
            raise permission_denied(f"Reloading the model config is accepted from loopback only; the call came "
                                    f"from {peer}.")

    def reload_config(self, request, context) -> model_management_pb2.ReloadConfigResponse:
        self.authorize_admin(context)
        try:
            configs = configs_from_proto(request.config, "ReloadConfigRequest", self.registry.root)
        except ConfigError as e:
            raise invalid_argument(str(e)) from None
        self.registry.reload_config(configs)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response

    # -- life cycle ------------------------------------------------------------------------

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def rest_url(self) -> Optional[str]:
        if self.rest is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.rest.port}"

    def start(self) -> "LaminaServer":
        if not self.tls and not is_loopback(self.host):
            log.warning("binding %s without TLS: anyone who can reach this address can query the models, read "
                        "their signatures and see every request and answer in clear text. Give --tls-cert and "
                        "--tls-key (and --tls-client-ca to require client certificates), or bind 127.0.0.1.",
                        self.host)
        if self.batcher:
            self.batcher.start()
        self.registry.start()
        host = f"[{self.host}]" if ":" in self.host else self.host
        address = f"{host}:{self.requested_port}"
        try:
            if self.tls:
                key_cert = [(self.tls[1], self.tls[0])]
                client_ca = _read(self.tls_client_ca, "TLS client CA") if self.tls_client_ca else None
                credentials = grpc.ssl_server_credentials(key_cert, root_certificates=client_ca,
                                                          require_client_auth=client_ca is not None)
                self.port = self._server.add_secure_port(address, credentials)
            else:
                self.port = self._server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"could not bind {address}: {e}") from None
        if not self.port:
            raise OSError(f"could not bind {address}")
        self._server.start()
        if self.requested_rest_port is not None:
            self.rest = RestServer(self, self.host, self.requested_rest_port, self.rest_limits).start()
        log.info("serving %s on %s%s", self.registry.source, self.target,
                 f" and {self.rest_url}" if self.rest else "")
        return self

    def stop(self, grace: float = 30.0) -> None:
        """Stops accepting, lets in-flight requests finish (up to `grace` seconds), then stops."""
        stopped = self._server.stop(grace)
        if self.rest:
            self.rest.stop()
        stopped.wait()
        if self.batcher:
            self.batcher.stop()
        self.registry.stop()
        log.info("stopped after %d requests (%d in flight)", self.answered, self.in_flight)

    def catch_signals(self) -> threading.Event:
        """From now on SIGINT and SIGTERM set the returned event instead of killing the process."""
        if self._signalled is None:
            self._signalled = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self._signalled.set())
        return self._signalled

    def wait(self) -> None:
        """Blocks until SIGINT or SIGTERM, then stops gracefully."""
        self.catch_signals().wait()
        self.stop()

