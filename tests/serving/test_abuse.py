"""`lamina serve` under abuse, on loopback: every probe gets its status code, the server keeps
answering normal requests, and its memory and threads stay within stated bounds.

One real `lamina serve` process (default limits) serves a toy tensor model and a toy image model
that decodes images for real. Memory is read from /proc/<pid>/status: VmHWM (peak RSS) may grow
at most MEMORY_BOUND over the server's resident size once warm, across every probe here.
"""

import asyncio
import base64
import json
import os
import random
import resource
import socket
import ssl
import string
import subprocess
import sys
import threading
import time
import struct
import zlib

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from tests.serving.toy import expected_y, write_image_model, write_toy_model

MEMORY_BOUND = 200 * 1024 * 1024  # bytes of peak RSS over the warm server's
REST_THREADS = 16  # lamina serve's default --rest-threads
X = [[1.0, 2.0, 3.0]]


def _status(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        rows = dict(line.split(":", 1) for line in f if ":" in line)
    kb = lambda key: int(rows[key].split()[0]) * 1024  # noqa: E731
    return {"rss": kb("VmRSS"), "peak": kb("VmHWM"), "threads": int(rows["Threads"])}


class Served:
    def __init__(self, proc, grpc_target: str, rest_url: str):
        self.proc, self.target, self.url = proc, grpc_target, rest_url
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(grpc_target))
        self.host, self.port = rest_url.split("//")[1].split(":")[0], int(rest_url.rsplit(":", 1)[1])
        self.baseline = None

    def status(self) -> dict:
        return _status(self.proc.pid)

    def assert_still_serving(self):
        """A normal request is answered right, and the peak RSS is within the bound."""
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "toy"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(X, np.float32)))
        np.testing.assert_array_equal(tf.make_ndarray(self.stub.Predict(request, 10.0).outputs["y"]),
                                      expected_y(X, 1.0, 1))
        answer = requests.post(f"{self.url}/v1/models/toy:predict", json={"instances": X}, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"predictions": expected_y(X, 1.0, 1).tolist()}
        grown = self.status()["peak"] - self.baseline["rss"]
        assert grown <= MEMORY_BOUND, f"peak RSS grew {grown / 2**20:.0f} MB over the warm server's"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:  # 1000 client sockets here, 1000 in the server (which inherits the limit)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    root = tmp_path_factory.mktemp("abuse")
    write_toy_model(str(root / "models" / "toy"), 1)
    write_image_model(str(root / "models" / "images"), 1)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, "-m", "lamina.pipeline.cli.commands", "serve", "--model-dir",
                             str(root / "models"), "--port", "0", "--rest-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    line = ""
    while "gRPC on" not in line and proc.poll() is None:
        line = proc.stdout.readline()
    target = line.split("gRPC on ")[1].split(",")[0]
    url = line.split("REST on ")[1].split(" ")[0]
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
    server = Served(proc, target, url)
    server.baseline = {"rss": 1 << 62}  # no memory bound while warming up
    for _ in range(3):  # warm: both models traced and called, both front ends used
        server.assert_still_serving()
        requests.post(f"{url}/v1/models/images:predict",
                      json={"instances": [{"b64": base64.b64encode(_png(8, 8)).decode()}]}, timeout=30)
    server.baseline = server.status()
    yield server
    end = server.status()
    print(f"lamina serve: warm RSS {server.baseline['rss'] / 2**20:.0f} MB, peak over all probes "
          f"{end['peak'] / 2**20:.0f} MB")
    proc.terminate()
    proc.wait(timeout=60)


def _png(width: int, height: int) -> bytes:
    """A real PNG of black gray pixels, written row by row (a huge one costs little memory here)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor, parts, row = zlib.compressobj(9), [], b"\x00" * (width + 1)
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
            + chunk(b"IEND", b""))


def _raw_http(served, request: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection((served.host, served.port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks):
                head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")]
                if length and len(body) >= length[0]:
                    break
        return b"".join(chunks)


def _tensor(shape, dtype=types_pb2.DT_FLOAT, **values) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape]))
    for field, value in values.items():
        if field == "tensor_content":
            proto.tensor_content = value
        else:
            getattr(proto, field).extend(value)
    return proto


def _predict_grpc(served, model: str, inputs: dict):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, proto in inputs.items():
        request.inputs[key].CopyFrom(proto)
    with pytest.raises(grpc.RpcError) as info:
        served.stub.Predict(request, 30.0)
    return info.value


def test_a_tiny_tensor_declaring_a_huge_shape_is_refused_before_allocation(served):
    error = _predict_grpc(served, "toy", {"x": _tensor([250_000_000, 3], float_val=[0.0])})
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == ("The request's inputs declare 750,000,000 elements; the limit is 16,777,216 "
                               "(lamina serve --max-request-elements).")
    error = _predict_grpc(served, "toy", {"x": _tensor([2, 3], tensor_content=b"\x00" * 8)})
    assert error.details() == ("Input 'x' declares shape [2, 3] (6 values of 4 bytes) but carries 8 bytes of "
                               "tensor_content.")
    error = _predict_grpc(served, "toy", {"x": _tensor([4, 3], float_val=[1.0, 2.0])})
    assert error.details() == "Input 'x' declares shape [4, 3] (12 values) but carries 2."
    error = _predict_grpc(served, "toy", {"x": _tensor([2, 5], float_val=[1.0] * 10)})
    assert error.details() == "Input 'x' has shape [2, 5]; signature 'serving_default' expects [None, 3] (None: any size)."
    served.assert_still_serving()


@pytest.mark.parametrize("length", ["-1", "abc", "+5", "1e3"])
def test_a_negative_or_malformed_content_length_is_refused_unread(served, length):
    answer = _raw_http(served, (f"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                                f"\r\n").encode() + b"[" * 100_000)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body) == {"error": f"Content-Length {length!r} is not a non-negative integer."}
    served.assert_still_serving()


PREDICT = "POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize("framing, error", [
    ("Content-Length: 17\r\nContent-Length: 18\r\n",
     "Content-Length is given as 17 and 18: the body's length is ambiguous (RFC 9112 section 6.3). Send one "
     "Content-Length."),
    ("Content-Length: 17, 18\r\n",
     "Content-Length is given as 17 and 18: the body's length is ambiguous (RFC 9112 section 6.3). Send one "
     "Content-Length."),
    ("Content-Length: 17\r\nTransfer-Encoding: chunked\r\n",
     "Content-Length and Transfer-Encoding are both given: the body's length is ambiguous (RFC 9112 section 6.3). "
     "Send one of them."),
    ("Content-Length : 17\r\n",
     "Malformed header line: 'Content-Length : 17' (no whitespace is allowed between a header's name and its "
     "colon)."),
], ids=["two-content-lengths", "a-content-length-list", "content-length-and-chunked", "space-before-colon"])
def test_ambiguous_framing_gets_400_and_the_connection_closes(served, framing, error):
    """RFC 9112 section 6.3: a request two parsers could frame two ways is refused, never guessed at (a
    proxy that reads the first Content-Length and a server that reads the last smuggle a request)."""
    body = json.dumps({"instances": X}).encode()  # 17 bytes; the smuggled request follows it
    smuggled = b"GET /v1/models/toy HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = _raw_http(served, (PREDICT + framing + "\r\n").encode() + b"11\r\n" + body + b"\r\n0\r\n\r\n"
                       + smuggled)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in head
    assert json.loads(rest) == {"error": error}
    assert answer.count(b"HTTP/1.1") == 1  # nothing after the refusal is read as a request
    served.assert_still_serving()


def test_a_second_host_or_content_type_gets_400_and_other_repeats_combine(served):
    body = json.dumps({"instances": X}).encode()
    for repeated in ("Host: y\r\n", "Content-Type: text/plain\r\n"):
        answer = _raw_http(served, (PREDICT + repeated + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    # Connection tokens are a list: "keep-alive, close" closes after the answer.
    answer = _raw_http(served, (PREDICT + f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n"
                                          f"Connection: close\r\n\r\n").encode() + body, timeout=5)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in head
    assert json.loads(rest) == {"predictions": expected_y(X, 1.0, 1).tolist()}


def test_chunked_bodies_within_the_limit_are_answered_and_above_it_get_413(served):
    body = json.dumps({"instances": X}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5]), body[i:i + 5]) for i in range(0, len(body), 5))
    answer = _raw_http(served, (PREDICT + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
                       + chunks + b"0\r\n\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(rest) == {"predictions": expected_y(X, 1.0, 1).tolist()}
    # 17 MB in 1 MB chunks: the server stops reading at the 16 MB limit (lamina serve --max-request-bytes).
    with socket.create_connection((served.host, served.port), timeout=30) as s:
        s.sendall((PREDICT + "Transfer-Encoding: chunked\r\n\r\n").encode())
        chunk = b"100000\r\n" + b" " * 0x100000 + b"\r\n"
        try:
            for _ in range(17):
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-body: the answer is already waiting
        answer = s.recv(65536)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(rest) == {"error": f"The request body exceeds {16 * 1024 * 1024} bytes, the limit."}
    served.assert_still_serving()


def test_expect_100_continue_is_answered_before_the_body(served):
    body = json.dumps({"instances": X}).encode()
    with socket.create_connection((served.host, served.port), timeout=5) as s:
        s.sendall((PREDICT + f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n"
                             f"\r\n").encode())
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # at once: no second's wait, as curl's timer
        s.sendall(body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"predictions": expected_y(X, 1.0, 1).tolist()}
    # Too large a body is refused without the 100: the client never sends it.
    with socket.create_connection((served.host, served.port), timeout=5) as s:
        s.sendall((PREDICT + "Content-Length: 99999999999\r\nExpect: 100-continue\r\n\r\n").encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 413 ")
    served.assert_still_serving()


def test_image_bombs_are_refused_from_the_header(served):
    bomb = _png(20000, 20000)  # ~400 KB declaring 400 million pixels
    assert len(bomb) < 1_000_000
    results = []

    def send(i):
        if i % 2:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "images"
            request.inputs["image"].CopyFrom(tf.make_tensor_proto([bomb], dtype=tf.string))
            try:
                served.stub.Predict(request, 30.0)
                results.append(("grpc", "OK", ""))
            except grpc.RpcError as e:
                results.append(("grpc", e.code().name, e.details()))
        else:
            answer = requests.post(f"{served.url}/v1/models/images:predict",
                                   json={"instances": [{"b64": base64.b64encode(bomb).decode()}]}, timeout=30)
            results.append(("rest", answer.status_code, answer.json()["error"]))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    message = ("Input 'image' element 0 is a 20000x20000 PNG (400,000,000 pixels); the limit is 16,777,216 "
               "pixels (lamina serve --max-image-pixels).")
    assert sorted(results) == [("grpc", "INVALID_ARGUMENT", message)] * 2 + [("rest", 400, message)] * 2
    fine = requests.post(f"{served.url}/v1/models/images:predict",
                         json={"instances": [{"b64": base64.b64encode(_png(64, 64)).decode()}]}, timeout=30)
    assert fine.status_code == 200 and fine.json() == {"predictions": [0.0]}
    served.assert_still_serving()


def test_deeply_nested_json_gets_400(served):
    answer = requests.post(f"{served.url}/v1/models/toy:predict", data="[" * 100_000 + "]" * 100_000,
                           headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 400
    assert answer.json() == {"error": "The request body nests lists or objects too deeply; the limit is 64 levels."}
    shallow_but_deep = '{"instances": ' + "[" * 70 + "1" + "]" * 70 + "}"
    answer = requests.post(f"{served.url}/v1/models/toy:predict", data=shallow_but_deep, timeout=30)
    assert answer.status_code == 400
    assert answer.json() == {"error": "The request body nests lists or objects more than 64 levels deep."}
    served.assert_still_serving()


def test_nan_and_infinity_are_accepted_as_tf_serving_does_and_overflow_is_refused(served):
    url = f"{served.url}/v1/models/toy:predict"
    answer = requests.post(url, data='{"instances": [[NaN, 1, 2], [Infinity, 1, 2], [-Infinity, 0, 0]]}', timeout=10)
    assert answer.status_code == 200
    assert answer.text == '{"predictions": [NaN, Infinity, -Infinity]}'
    answer = requests.post(url, data='{"instances": [[1e400, 1, 2]]}', timeout=10)
    assert answer.status_code == 400
    assert answer.json() == {"error": "The number 1e400 is outside the float64 range; send Infinity or -Infinity "
                                      "for an infinite value."}
    served.assert_still_serving()


def test_a_wrong_method_gets_405_json_with_allow(served):
    for method, path, allow in [("PUT", "/v1/models/toy:predict", "POST"), ("DELETE", "/v1/models/toy", "GET"),
                                ("GET", "/v1/models/toy:predict", "POST"), ("POST", "/monitoring/prometheus/metrics",
                                                                             "GET")]:
        answer = requests.request(method, served.url + path, timeout=10)
        assert answer.status_code == 405, (method, path)
        assert answer.headers["Allow"] == allow
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.json() == {"error": f"{method} is not allowed on {path}; use {allow}."}
    served.assert_still_serving()


def test_unknown_model_names_do_not_grow_the_metrics(served):
    names = ["".join(random.Random(i).choices(string.ascii_lowercase, k=12)) for i in range(500)]
    for name in names:
        assert requests.post(f"{served.url}/v1/models/{name}:predict", json={"instances": X},
                             timeout=10).status_code == 404
    for name in names[:50]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        with pytest.raises(grpc.RpcError):
            served.stub.Predict(request, 10.0)
    text = requests.get(f"{served.url}/monitoring/prometheus/metrics", timeout=10).text
    labels = {part.split('model="')[1].split('"')[0] for part in text.splitlines()
              if part.startswith("lamina_requests_total{")}
    assert labels <= {"", "toy", "images"}
    assert 'lamina_requests_total{api="rest",method="Predict",model="",status="NOT_FOUND",version=""} 500.0' in text
    served.assert_still_serving()


def test_an_anonymous_config_reload_is_refused_and_changes_nothing(served, tmp_path):
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(served.target))
    request = model_management_pb2.ReloadConfigRequest()
    config = request.config.model_config_list.config.add()
    config.name, config.base_path, config.model_platform = "etc", "/etc", "tensorflow"
    with pytest.raises(grpc.RpcError) as info:
        stub.HandleReloadConfigRequest(request, 10.0)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == ("Reloading the model config is off; start lamina serve with "
                                    "--allow-config-reload to allow it.")
    served.assert_still_serving()


def test_1000_concurrent_rest_clients_get_200_or_503_and_threads_stay_bounded(served):
    body = json.dumps({"instances": X}).encode()
    request = (f"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    idle_threads = served.status()["threads"]
    peak_threads = [idle_threads]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.02):
            peak_threads.append(served.status()["threads"])

    async def client():
        try:
            reader, writer = await asyncio.open_connection(served.host, served.port)
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 60)
            writer.close()
            return int(answer.split(b" ", 2)[1]) if answer else "EOF"
        except ConnectionResetError:
            return "reset"
        except Exception as e:  # noqa: BLE001 - counted as what it was
            return type(e).__name__

    async def burst():
        return await asyncio.gather(*(client() for _ in range(1000)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        outcomes = asyncio.run(burst())
    finally:
        sampling.set()
        sampler.join()
    counts = {o: outcomes.count(o) for o in set(outcomes)}
    print(f"1000 concurrent REST clients: {counts}; server threads idle {idle_threads}, peak {max(peak_threads)}")
    assert set(counts) <= {200, 503}, counts
    assert counts.get(200, 0) >= 16  # at the very least the worker threads' worth got through
    assert max(peak_threads) <= idle_threads + REST_THREADS, (idle_threads, max(peak_threads))
    served.assert_still_serving()


def test_slow_clients_are_timed_out_and_do_not_block_others(served):
    slow = []
    for _ in range(200):
        s = socket.create_connection((served.host, served.port), timeout=30)
        s.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        slow.append(s)
    try:
        started = time.monotonic()
        for _ in range(5):
            served.assert_still_serving()
        assert time.monotonic() - started < 10
        # The head timeout (10 s) closes them: the server answers nothing and hangs up.
        assert all(s.recv(1) == b"" for s in slow)
    finally:
        for s in slow:
            s.close()
    served.assert_still_serving()


def test_tls_handshake_of_a_silent_client_blocks_no_one(tmp_path):
    from lamina.serving.client import RestClient
    from lamina.serving.server import LaminaServer
    from tests.serving.certs import self_signed

    write_toy_model(str(tmp_path / "models" / "toy"), 1)
    cert, key = self_signed(tmp_path)
    srv = LaminaServer(str(tmp_path / "models"), port=0, rest_port=0, tls_cert=cert, tls_key=key).start()
    silent = socket.create_connection(("127.0.0.1", srv.rest.port))  # connects, never says hello
    try:
        started = time.monotonic()
        with RestClient(srv.rest_url, verify=cert, timeout=10) as client:
            assert client.predict_instances("toy", X) == expected_y(X, 1.0, 1).tolist()
        assert time.monotonic() - started < 5
    finally:
        silent.close()
        srv.stop()


def test_mutual_tls_on_both_ports_and_the_admin_token(tmp_path):
    from lamina.serving.server import LaminaServer
    from tests.serving.certs import ca_with_server_and_client

    write_toy_model(str(tmp_path / "models" / "toy"), 1)
    pki = ca_with_server_and_client(tmp_path)
    srv = LaminaServer(str(tmp_path / "models"), port=0, rest_port=0, tls_cert=pki["server_cert"],
                       tls_key=pki["server_key"], tls_client_ca=pki["ca"], allow_config_reload=True,
                       admin_token="s3cret").start()
    read = lambda path: open(path, "rb").read()  # noqa: E731
    try:
        url = f"{srv.rest_url}/v1/models/toy:predict"
        answer = requests.post(url, json={"instances": X}, verify=pki["ca"],
                               cert=(pki["client_cert"], pki["client_key"]), timeout=10)
        assert answer.json() == {"predictions": expected_y(X, 1.0, 1).tolist()}
        # No client certificate: the handshake fails (TLS 1.3 reports it as the server hanging up).
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(url, json={"instances": X}, verify=pki["ca"], timeout=10)
        with_cert = grpc.ssl_channel_credentials(read(pki["ca"]), read(pki["client_key"]), read(pki["client_cert"]))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.secure_channel(srv.target, with_cert))
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "toy"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(X, np.float32)))
        assert tf.make_ndarray(stub.Predict(request, 10.0).outputs["y"]).tolist() == expected_y(X, 1.0, 1).tolist()
        without = grpc.ssl_channel_credentials(read(pki["ca"]))
        with pytest.raises(grpc.RpcError) as info:
            prediction_service_pb2_grpc.PredictionServiceStub(grpc.secure_channel(srv.target, without)).Predict(
                request, 10.0)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # Admin: a client certificate is not enough; the token is needed too.
        admin = model_service_pb2_grpc.ModelServiceStub(grpc.secure_channel(srv.target, with_cert))
        reload = model_management_pb2.ReloadConfigRequest()
        config = reload.config.model_config_list.config.add()
        config.name, config.base_path, config.model_platform = "toy", str(tmp_path / "models" / "toy"), "tensorflow"
        with pytest.raises(grpc.RpcError) as info:
            admin.HandleReloadConfigRequest(reload, 10.0)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert info.value.details().startswith("Reloading the model config needs the admin token")
        admin.HandleReloadConfigRequest(reload, 10.0, metadata=[("authorization", "Bearer s3cret")])
    finally:
        srv.stop()


def test_reload_from_loopback_when_allowed(tmp_path):
    from lamina.serving.server import LaminaServer

    write_toy_model(str(tmp_path / "models" / "toy"), 1)
    write_toy_model(str(tmp_path / "other" / "toy"), 7)
    srv = LaminaServer(str(tmp_path / "models"), port=0, allow_config_reload=True).start()
    try:
        reload = model_management_pb2.ReloadConfigRequest()
        config = reload.config.model_config_list.config.add()
        config.name, config.base_path, config.model_platform = "toy", str(tmp_path / "other" / "toy"), "tensorflow"
        model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(srv.target)).HandleReloadConfigRequest(
            reload, 30.0)
        assert srv.registry.wait_for_version("toy", 7, timeout=30)
    finally:
        srv.stop()


def test_binding_all_interfaces_without_tls_warns(tmp_path, caplog):
    from lamina.serving.server import LaminaServer, is_loopback

    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "0.0.0.0", "10.1.2.3")] == [
        True, True, True, True, False, False]
    write_toy_model(str(tmp_path / "models" / "toy"), 1)
    srv = LaminaServer(str(tmp_path / "models"), port=0, host="0.0.0.0")  # no traffic is sent to it
    with caplog.at_level("WARNING", logger="lamina.serving"):
        srv.start()
    srv.stop()
    assert any(r.getMessage().startswith("binding 0.0.0.0 without TLS: anyone who can reach this address")
               for r in caplog.records)
