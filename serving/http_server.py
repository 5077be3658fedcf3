"""A small HTTP/1.1 server on asyncio, for the REST API: bounded connections, bounded threads.

An open connection costs no thread: one event-loop thread accepts, runs TLS handshakes (with a
timeout), reads each request (the head and the body each under a deadline, so a slow client
is dropped) and writes the answers. A fixed pool of worker threads runs the handler, one
request per connection at a time. Past `max_connections` open connections a new one is
answered 503 and closed; the listen backlog is sized for the maximum, so a burst of clients
queues instead of being reset.

Example:
    >>> server = HttpServer(lambda request: Response(200, b"{}"), "127.0.0.1", 0).start()
    >>> server.port
"""

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import socket
import ssl
import threading
from typing import Callable, Dict, Optional, Tuple

log = logging.getLogger("lamina.serving")

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           411: "Length Required", 413: "Content Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
           504: "Gateway Timeout", 505: "HTTP Version Not Supported"}


@dataclasses.dataclass(frozen=True)
class HttpLimits:
    """What one client may hold of the server. Times are seconds."""

    max_connections: int = 512  # open connections; past it, 503 and close
    worker_threads: int = 16  # threads answering requests (connections hold none)
    max_body_bytes: int = 16 * 1024 * 1024
    max_head_bytes: int = 64 * 1024  # request line and headers
    head_timeout: float = 10.0  # to send the request line and headers of a new connection's first request
    body_timeout: float = 30.0  # to send the body once the head is in
    idle_timeout: float = 30.0  # between requests on a keep-alive connection
    handshake_timeout: float = 10.0  # TLS

    def __post_init__(self):
        for name in ("max_connections", "worker_threads", "max_body_bytes", "max_head_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"Received an invalid value for `{name}`, expected a positive integer. "
                                 f"Received: {name}={getattr(self, name)}")


@dataclasses.dataclass
class Request:
    method: str
    path: str
    headers: Dict[str, str]  # names lower-cased
    body: bytes
    client: Tuple[str, int]


@dataclasses.dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Dict[str, str] = dataclasses.field(default_factory=dict)
    close: bool = False  # close the connection after this answer


def json_response(status: int, payload, **kwargs) -> Response:
    return Response(status, json.dumps(payload).encode("utf-8"), **kwargs)


class _Refused(Exception):
    """A request that is answered with `response` and then its connection closed."""

    def __init__(self, response: Response):
        self.response = response


class HttpServer:
    """Serves `handler(Request) -> Response` on `host:port` until `stop()`."""

    def __init__(self, handler: Callable[[Request], Response], host: str, port: int,
                 limits: HttpLimits = HttpLimits(), ssl_context: Optional[ssl.SSLContext] = None):
        self.handler = handler
        self.host = host.strip("[]")
        self.requested_port = port
        self.limits = limits
        self.ssl_context = ssl_context
        self.port: Optional[int] = None
        self.open_connections = 0
        self.rejected = 0  # connections answered 503 because the server was full
        self.in_flight = 0
        self._idle: Dict[asyncio.StreamWriter, bool] = {}  # open connections -> waiting for a request
        self._tasks: set = set()  # the coroutines serving open connections
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=limits.worker_threads,
                                                           thread_name_prefix="rest")
        self._loop = asyncio.new_event_loop()
        self._thread: Optional[threading.Thread] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._stopping = False
        self._drained: Optional[asyncio.Event] = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> "HttpServer":
        ready = threading.Event()
        failure = []

        def run():
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._listen())
            except OSError as e:
                failure.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="rest-loop", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise OSError(f"could not bind {self.host}:{self.requested_port}: {failure[0]}")
        return self

    async def _listen(self) -> None:
        self._drained = asyncio.Event()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._server = await asyncio.start_server(
            self._connection, self.host, self.requested_port, family=family, ssl=self.ssl_context,
            ssl_handshake_timeout=self.limits.handshake_timeout if self.ssl_context else None,
            backlog=max(128, self.limits.max_connections), limit=self.limits.max_head_bytes, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self, grace: float = 30.0) -> None:
        """Stops accepting, closes idle connections, lets requests being answered finish (up to `grace` s)."""
        if self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(grace), self._loop)
        try:
            future.result(timeout=grace + 5)
        except concurrent.futures.TimeoutError:
            log.warning("REST: requests still running after %.0f s; stopping anyway", grace)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)
        self._thread = None

    async def _shutdown(self, grace: float) -> None:
        self._stopping = True
        self._server.close()
        for writer, idle in list(self._idle.items()):
            if idle:
                writer.close()
        if self.in_flight:
            try:
                await asyncio.wait_for(self._drained.wait(), grace)
            except asyncio.TimeoutError:
                pass
        for writer in list(self._idle):
            writer.close()
        pending = [t for t in self._tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    # -- one connection --------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            writer.close()
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.limits.max_connections or self._stopping:
            self.rejected += 1
            await self._refuse(reader, writer)
            return
        self.open_connections += 1
        self._idle[writer] = True
        try:
            first = True
            while not self._stopping:
                try:
                    request = await self._read_request(reader, writer, first)
                except _Refused as refused:
                    await self._write(writer, refused.response, close=True)
                    break
                if request is None:
                    break  # the client closed, or stayed idle past the keep-alive timeout
                first = False
                self._idle[writer] = False
                self.in_flight += 1
                try:
                    response = await self._loop.run_in_executor(self._pool, self._call, request)
                finally:
                    self.in_flight -= 1
                    if self._stopping and not self.in_flight:
                        self._drained.set()
                close = (response.close or self._stopping or request.headers.get("connection", "").lower() == "close"
                         or request.headers.get(":version") == "HTTP/1.0")
                await self._write(writer, response, close)
                self._idle[writer] = True
                if close:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass  # the client went away
        finally:
            self.open_connections -= 1
            self._idle.pop(writer, None)
            writer.close()

    def _call(self, request: Request) -> Response:
        try:
            return self.handler(request)
        except Exception as e:  # noqa: BLE001 - a handler bug is a 500, never a dropped connection
            log.exception("REST handler failed on %s %s", request.method, request.path)
            return json_response(500, {"error": f"{type(e).__name__}: {e}"})

    async def _read_request(self, reader, writer, first: bool) -> Optional[Request]:
        limits = self.limits
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                          limits.head_timeout if first else limits.idle_timeout)
        except asyncio.TimeoutError:
            return None
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            raise _Refused(json_response(431, {"error": f"The request line and headers exceed "
                                                        f"{limits.max_head_bytes} bytes."})) from None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Refused(json_response(400, {"error": f"Malformed request line: {lines[0][:200]!r}."}))
        method, path, version = parts
        headers = {":version": version}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _Refused(json_response(400, {"error": f"Malformed header line: {line[:200]!r}."}))
            headers[name.lower()] = value.strip()
        body = b""
        if "transfer-encoding" in headers:
            raise _Refused(json_response(411, {"error": "Chunked bodies are not accepted; send a Content-Length "
                                                        "header."}))
        length_text = headers.get("content-length")
        if length_text is not None:
            if not length_text.isdigit() or not length_text.isascii():
                raise _Refused(json_response(400, {"error": f"Content-Length {length_text!r} is not a "
                                                            f"non-negative integer."}))
            length = int(length_text)
            if length > limits.max_body_bytes:
                raise _Refused(json_response(413, {"error": f"The request body is {length} bytes; the limit is "
                                                            f"{limits.max_body_bytes} bytes."}))
            try:
                body = await asyncio.wait_for(reader.readexactly(length), limits.body_timeout)
            except asyncio.TimeoutError:
                raise _Refused(json_response(408, {"error": f"The body did not arrive within "
                                                            f"{limits.body_timeout:g} s."})) from None
        peer = writer.get_extra_info("peername") or ("", 0)
        return Request(method, path, headers, body, tuple(peer[:2]))

    async def _write(self, writer: asyncio.StreamWriter, response: Response, close: bool) -> None:
        head = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}",
                f"Content-Type: {response.content_type}", f"Content-Length: {len(response.body)}",
                f"Connection: {'close' if close else 'keep-alive'}"]
        head += [f"{k}: {v}" for k, v in response.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
        try:
            await asyncio.wait_for(writer.drain(), self.limits.body_timeout)
        except asyncio.TimeoutError:
            writer.close()

    async def _refuse(self, reader, writer) -> None:
        """503 for a connection past the limit, then a short read of what the client sent (closing a
        socket with unread data would reset it, and the client would never see the answer)."""
        try:
            await self._write(writer, json_response(503, {"error": f"The server has "
                                                                   f"{self.limits.max_connections} open connections, "
                                                                   f"its limit; retry later."}), close=True)
            if writer.can_write_eof():
                writer.write_eof()
            for _ in range(4):  # at most ~2 s and 256 KB per refused connection
                if not await asyncio.wait_for(reader.read(65536), 0.5):
                    break
        except (asyncio.TimeoutError, ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            writer.close()
