"""A small HTTP/1.1 server on asyncio, for the REST API: bounded connections, bounded threads.

HTTP/1.1 is parsed by h11 (framing, keep-alive, chunked bodies, `Expect: 100-continue`). Framing
that two parsers could read two ways is refused with 400 before any body is read (RFC 9112 §6.3):
two different Content-Length values, Content-Length beside Transfer-Encoding, whitespace between a
header's name and its colon; so is a second Host, Content-Type or Authorization header. Other
repeated headers are combined with ", " (RFC 9110 §5.3), never last-wins.

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
from typing import Callable, Dict, List, Optional, Tuple

import h11

from lamina.constants import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_REQUEST_BYTES

log = logging.getLogger("lamina.serving")

REASONS = {100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout",
           411: "Length Required", 413: "Content Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
           504: "Gateway Timeout", 505: "HTTP Version Not Supported"}


@dataclasses.dataclass(frozen=True)
class HttpLimits:
    """What one client may hold of the server. Times are seconds."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS  # open connections; past it, 503 and close
    worker_threads: int = 16  # threads answering requests (connections hold none)
    max_body_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # after chunked decoding, for chunked bodies
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES  # request line and headers
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


def _refused(status: int, error: str) -> _Refused:
    return _Refused(json_response(status, {"error": error}))


# Headers a request may carry once: a second one is ambiguous (which host? which body type?).
SINGLE_HEADERS = ("host", "content-type", "authorization")


def framing_problem(head: bytes) -> Optional[Tuple[int, str]]:
    """(status, message) for a request head whose framing is malformed or ambiguous; None when h11 may read it.

    The exact reason, for the client, where h11 only says that it refused: the request line, a header
    line without a colon or with whitespace before it, a Content-Length that is not a number or that
    disagrees with another, Content-Length beside Transfer-Encoding.
    """
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return 400, f"Malformed request line: {lines[0][:200]!r}."
    lengths: List[str] = []
    chunked = False
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            hint = " (no whitespace is allowed between a header's name and its colon)" if sep and name.strip() else ""
            return 400, f"Malformed header line: {line[:200]!r}{hint}."
        if name.lower() == "content-length":
            lengths += [v.strip() for v in value.split(",")]
        elif name.lower() == "transfer-encoding":
            chunked = True
    for length in lengths:
        if not length.isdigit() or not length.isascii():
            return 400, f"Content-Length {length!r} is not a non-negative integer."
    if len(set(int(v) for v in lengths)) > 1:
        return 400, (f"Content-Length is given as {' and '.join(sorted(set(lengths), key=int))}: the body's length is "
                     f"ambiguous (RFC 9112 section 6.3). Send one Content-Length.")
    if lengths and chunked:
        return 400, ("Content-Length and Transfer-Encoding are both given: the body's length is ambiguous "
                     "(RFC 9112 section 6.3). Send one of them.")
    return None


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
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_bytes)
        try:
            first = True
            while not self._stopping:
                try:
                    request = await self._read_request(conn, reader, writer, first)
                except _Refused as refused:
                    await self._write_raw(writer, refused.response)
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
                await self._write(conn, writer, response, close=response.close or self._stopping)
                self._idle[writer] = True
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break  # the client asked to close (Connection: close, HTTP/1.0), or the server did
                conn.start_next_cycle()
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

    async def _next_event(self, conn: h11.Connection, reader, deadline: float, head: Optional[bytearray] = None):
        """h11's next event, reading from the client until `deadline` (loop time); asyncio.TimeoutError past it.
        `head`: the bytes of the request head so far, kept to say exactly what was wrong with it."""
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError
            data = await asyncio.wait_for(reader.read(65536), remaining)
            if head is not None and len(head) <= self.limits.max_head_bytes:
                head.extend(data)
            conn.receive_data(data)  # b"": the client closed its side

    async def _read_request(self, conn: h11.Connection, reader, writer, first: bool) -> Optional[Request]:
        limits = self.limits
        head = bytearray(conn.trailing_data[0])  # a pipelined request's first bytes may be in already
        try:
            event = await self._next_event(conn, reader, self._loop.time() + (limits.head_timeout if first
                                                                                else limits.idle_timeout), head)
        except asyncio.TimeoutError:
            return None
        except h11.RemoteProtocolError as e:
            problem = framing_problem(bytes(head))
            if e.error_status_hint == 431 or len(head) > limits.max_head_bytes and problem is None:
                raise self._head_too_large() from None
            status, message = problem or (e.error_status_hint, f"Malformed request: {e}.")
            raise _refused(status, message) from None
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed: the client is gone
        start, head = event, bytes(head)
        end = head.find(b"\r\n\r\n")
        if end < 0 or end + 4 > limits.max_head_bytes:  # h11 bounds only a head that arrives in pieces
            raise self._head_too_large()
        problem = framing_problem(head)  # what h11 accepts but reads one way of two
        if problem is not None:
            raise _refused(*problem)
        headers: Dict[str, str] = {":version": "HTTP/" + event.http_version.decode("ascii")}
        for raw_name, raw_value in event.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if name in headers and name in SINGLE_HEADERS:
                raise _refused(400, f"The {name!r} header is given twice; send it once.")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        length = int(headers["content-length"]) if "content-length" in headers else None
        if length is not None and length > limits.max_body_bytes:
            raise _refused(413, f"The request body is {length} bytes; the limit is {limits.max_body_bytes} bytes.")
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")))
        body = bytearray()
        deadline = self._loop.time() + limits.body_timeout
        try:
            while True:
                event = await self._next_event(conn, reader, deadline)
                if isinstance(event, h11.Data):
                    body.extend(event.data)
                    if len(body) > limits.max_body_bytes:
                        raise _refused(413, f"The request body exceeds {limits.max_body_bytes} bytes, the limit.")
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return None  # the client closed in the middle of its body
        except asyncio.TimeoutError:
            raise _refused(408, f"The body did not arrive within {limits.body_timeout:g} s.") from None
        except h11.RemoteProtocolError as e:
            raise _refused(400, f"Malformed request body: {e}.") from None
        peer = writer.get_extra_info("peername") or ("", 0)
        return Request(start.method.decode("ascii"), start.target.decode("latin-1"), headers, bytes(body),
                       tuple(peer[:2]))

    def _head_too_large(self) -> _Refused:
        return _refused(431, f"The request line and headers exceed {self.limits.max_head_bytes} bytes.")

    def _head(self, response: Response, close: bool) -> List[Tuple[str, str]]:
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body))),
                   ("Connection", "close" if close else "keep-alive")]
        return headers + [(k, str(v)) for k, v in response.headers.items()]

    async def _write(self, conn: h11.Connection, writer: asyncio.StreamWriter, response: Response,
                     close: bool) -> None:
        """The answer to a request h11 read; h11 closes the connection after it when either side asked."""
        reason = REASONS.get(response.status, "Unknown").encode("latin-1")
        data = conn.send(h11.Response(status_code=response.status, headers=self._head(response, close), reason=reason))
        data += conn.send(h11.Data(data=response.body)) + conn.send(h11.EndOfMessage())
        await self._drain(writer, data)

    async def _write_raw(self, writer: asyncio.StreamWriter, response: Response) -> None:
        """An answer to a request h11 could not (or may not) read: written as is, then the connection closes."""
        head = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}"]
        head += [f"{k}: {v}" for k, v in self._head(response, close=True)]
        await self._drain(writer, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)

    async def _drain(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        try:
            await asyncio.wait_for(writer.drain(), self.limits.body_timeout)
        except asyncio.TimeoutError:
            writer.close()

    async def _refuse(self, reader, writer) -> None:
        """503 for a connection past the limit, then a short read of what the client sent (closing a
        socket with unread data would reset it, and the client would never see the answer)."""
        try:
            await self._write_raw(writer, json_response(503, {"error": f"The server has "
                                                                       f"{self.limits.max_connections} open "
                                                                       f"connections, its limit; retry later."}))
            if writer.can_write_eof():
                writer.write_eof()
            for _ in range(4):  # at most ~2 s and 256 KB per refused connection
                if not await asyncio.wait_for(reader.read(65536), 0.5):
                    break
        except (asyncio.TimeoutError, ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            writer.close()
