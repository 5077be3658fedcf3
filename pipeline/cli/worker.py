"""`lamina worker`: one process that has imported TensorFlow, TFX, Beam, TF Transform and TFMA, and runs each
`lamina run` in a fork of itself, so that a run does not pay those imports (about 12 s on 2 cores).

- `lamina worker start` starts it, detached, and returns when it listens. It imports what a run imports and
  listens on a Unix socket in a folder that only its user may open (`worker_dir`). It stops after
  `--idle-minutes` without a run (30 by default), on `lamina worker stop`, or on SIGTERM.
- `lamina run SPEC`, typed at a shell, looks for it. The socket's name is a hash of what the imports
  depended on (`worker_key`): the interpreter, Lamina's source files (path, size, mtime), and the environment
  variables that change what an import does (TF_*, CUDA*, KERAS*, PYTHON*, ...). So a worker started before an
  edit, an upgrade, or with other such variables is simply not found, and the run goes on in the `lamina`
  process as it always did. `-v` runs there too (TensorFlow fixes its C++ log level at import), and so does
  any run with `LAMINA_WORKER=off`.
- The fork takes the caller's stdin, stdout and stderr (passed over the socket), working folder, umask,
  environment and arguments, and calls `commands.main` with them, as the `lamina` process would; at the end
  it runs the interpreter's exit handlers. Its exit status is `lamina`'s. Ctrl-C, SIGTERM and
  SIGHUP are passed on to its process group; the status is then 128 + the signal, as a shell reports a
  `lamina` process that one ended. A fork starts from the parent as it was after the imports, so one run
  leaves nothing behind for the next: no TensorFlow state, logging or warnings filters.
- Only the user who started the worker can connect: the folder is theirs with mode 0700, and the peer's uid is
  checked on each connection. Nothing but Lamina's own command line runs in it.
"""

import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

# What a `lamina run` imports before and during its components; imported once, in the parent.
PRELOAD = ("tensorflow", "keras", "apache_beam", "apache_beam.runners.portability.fn_api_runner", "tfx.v1",
           "tensorflow_transform.beam", "tensorflow_model_analysis", "tensorflow_data_validation",
           "tfx.components.statistics_gen.executor", "tfx.components.transform.executor",
           "tfx.components.trainer.executor", "tfx.components.evaluator.executor",
           "lamina.pipeline.local_runner", "lamina.pipeline.pipeline", "lamina.pipeline.runs.summary",
           "lamina.models.trainer", "lamina.models.preprocessing", "lamina.models.builder", "lamina.models.trees",
           "lamina.models.tfma_metrics", "lamina.models.explain", "lamina.models.distributed",
           "lamina.pipeline.beam_dofn_specs", "lamina.pipeline.profile", "lamina.pipeline.tfrecord_reader",
           "lamina.progress", "sklearn.ensemble", "sklearn.linear_model", "tensorboard.summary",
           "tensorboard.plugins.projector", "apache_beam.testing.test_stream", "pyarrow.dataset", "jinja2",
           "matplotlib.backends.backend_agg", "matplotlib.backends.backend_svg", "PIL.JpegImagePlugin",
           "PIL.ImageOps")
# Environment variables that can change what an import does; the worker's key holds their values.
IMPORT_ENV = ("TF_", "TENSORFLOW", "CUDA", "NVIDIA", "XLA", "KERAS", "PYTHON", "OMP_", "MKL", "OPENBLAS",
              "LD_", "GRPC_", "HF_", "TRANSFORMERS", "LAMINA_")
NOT_KEYED = ("LAMINA_WORKER", "LAMINA_WORKER_DIR")
DEFAULT_IDLE_MINUTES = 30
MAX_MESSAGE = 1 << 20
_LENGTH = struct.Struct("!I")


class WorkerError(Exception):
    """The worker could not be started, reached or stopped; the message says why."""


def worker_dir() -> Path:
    """The folder of the sockets: LAMINA_WORKER_DIR, else $XDG_RUNTIME_DIR/lamina, else /tmp/lamina-worker-UID.
    Created with mode 0700. Raises WorkerError if it belongs to someone else or others may open it."""
    base = os.environ.get("LAMINA_WORKER_DIR")
    if not base:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        base = os.path.join(runtime, "lamina") if runtime else f"/tmp/lamina-worker-{os.getuid()}"
    path = Path(base)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as e:
        raise WorkerError(f"{path}: cannot make the worker's folder there ({e.strerror}); set LAMINA_WORKER_DIR "
                          f"to a folder of your own.") from None
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise WorkerError(f"{path}: the worker's folder must be yours with mode 0700 "
                          f"(it is uid {info.st_uid}, mode {oct(info.st_mode & 0o777)}).")
    return path


def worker_key(environ: Optional[Dict[str, str]] = None) -> str:
    """A hash of what the worker's imports depended on: the interpreter, Lamina's files, and the variables of
    `IMPORT_ENV`. The client and the worker compute it alike; a worker is used only where they agree."""
    from importlib.util import find_spec

    environ = os.environ if environ is None else environ
    digest = hashlib.sha256()
    digest.update(f"{sys.executable}\0{sys.version}\0".encode())
    roots = set()
    for name in ("lamina", "lamina.pipeline", "lamina.components", "lamina.models", "lamina.serving"):
        roots.update(Path(p).resolve() for p in find_spec(name).submodule_search_locations)  # found, not imported
    for root in sorted(roots):
        for file in sorted(root.rglob("*.py")):
            info = file.stat()
            digest.update(f"{file}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    for name in sorted(environ):
        if name.startswith(IMPORT_ENV) and name not in NOT_KEYED:
            digest.update(f"{name}={environ[name]}\0".encode())
    return digest.hexdigest()[:20]


def socket_path(key: Optional[str] = None) -> Path:
    return worker_dir() / f"{key or worker_key()}.sock"


def _send(conn: socket.socket, message: dict, fds: Tuple[int, ...] = ()) -> None:
    data = _LENGTH.pack(len(json.dumps(message).encode())) + json.dumps(message).encode()
    sent = socket.send_fds(conn, [data], list(fds)) if fds else 0
    conn.sendall(data[sent:])


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("the connection closed")
        data += chunk
    return data


def _receive(conn: socket.socket, fds: int = 0) -> Tuple[dict, List[int]]:
    """A message, and the file descriptors that came with its first bytes."""
    received: List[int] = []
    if fds:
        head, received, _, _ = socket.recv_fds(conn, _LENGTH.size, fds)
        if not head:
            raise EOFError("the connection closed")
        head += _recv_exactly(conn, _LENGTH.size - len(head))
    else:
        head = _recv_exactly(conn, _LENGTH.size)
    (size,) = _LENGTH.unpack(head)
    if size > MAX_MESSAGE:
        raise ValueError(f"a message of {size} bytes; at most {MAX_MESSAGE}")
    return json.loads(_recv_exactly(conn, size)), received


def _connect(path: Path, timeout: float = 2.0) -> Optional[socket.socket]:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None
    conn.settimeout(None)
    return conn


def _ask(path: Path, command: str) -> Optional[dict]:
    conn = _connect(path)
    if conn is None:
        return None
    with conn:
        _send(conn, {"command": command})
        try:
            return _receive(conn)[0]
        except (EOFError, OSError, ValueError):
            return None


# ---------------------------------------------------------------- the client: `lamina run` and `lamina worker`

def run_in_worker(argv: List[str]) -> Optional[int]:
    """`lamina ARGV` run in the worker, with this process's stdin, stdout and stderr: its exit status, or None
    where no worker is found (the caller runs it itself)."""
    if os.environ.get("LAMINA_WORKER", "").lower() in ("off", "0", "no", "false"):
        return None
    try:
        conn = _connect(socket_path())
    except (WorkerError, OSError):
        return None
    if conn is None:
        return None
    with conn:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            umask = os.umask(0o022)
            os.umask(umask)
            _send(conn, {"command": "run", "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask},
                  (0, 1, 2))
            started, _ = _receive(conn)
        except (EOFError, OSError, ValueError):
            return None  # a worker on its way out: run here
        pid = started["pid"]
        forwarded: List[int] = []

        def forward(signum, _frame=None):  # the run and its children get what this process gets
            forwarded.append(signum)
            try:
                os.killpg(pid, signum)
            except ProcessLookupError:
                pass

        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, forward)
        while True:
            try:
                message, _ = _receive(conn)
                _until_closed(conn)
                return int(message["exit"])
            except KeyboardInterrupt:
                forward(signal.SIGINT)  # the run and its children, as Ctrl-C reaches a `lamina` process
            except (EOFError, OSError, ValueError):
                if forwarded:  # ended by the signal, as a `lamina` process would have been
                    return 128 + forwarded[-1]
                print(f"lamina: the worker's run (pid {pid}) ended without an exit status; its log: "
                      f"{socket_path().with_suffix('.log')}", file=sys.stderr)
                return 1


def _until_closed(conn: socket.socket, seconds: float = 10.0) -> None:
    """Waits for the fork's end of the connection to close, which it does as it exits: `lamina` returns once the
    run's process is gone, as it would by itself. At most `seconds`, should a child of the run hold it open."""
    conn.settimeout(seconds)
    try:
        while conn.recv(4096):
            pass
    except OSError:  # the timeout, or a reset
        pass


def start(idle_minutes: float = DEFAULT_IDLE_MINUTES, wait_seconds: float = 180.0) -> dict:
    """Starts a worker for this code and environment unless one answers; its status once it listens."""
    path = socket_path()
    status = _ask(path, "status")
    if status is not None:
        return {**status, "already": True}
    log = path.with_suffix(".log")
    ready, told = os.pipe()  # the worker writes a byte once it listens; end of file if it exits before
    try:
        with open(log, "ab") as out:
            process = subprocess.Popen([sys.executable, "-c", "import sys; from lamina.pipeline.cli import main; "
                                        "sys.exit(main())", "worker", "serve", "--idle-minutes", str(idle_minutes),
                                        "--ready-fd", str(told)],
                                       stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                       pass_fds=(told,))
        os.close(told)
        if not select.select([ready], [], [], wait_seconds)[0]:
            process.terminate()
            raise WorkerError(f"the worker did not listen within {wait_seconds:.0f} s; its log: {log}")
        if not os.read(ready, 1):
            raise WorkerError(f"the worker exited with status {process.wait()} before it listened; its log: {log}")
    finally:
        os.close(ready)
    return {**_ask(path, "status"), "already": False}


def stop() -> Optional[dict]:
    """Stops the worker for this code and environment: its last status, or None if none answered."""
    return _ask(socket_path(), "stop")


def status() -> Optional[dict]:
    return _ask(socket_path(), "status")


# ---------------------------------------------------------------- the worker

class Worker:
    """The listening loop. `run(argv) -> exit status` is what a fork calls: `commands.main`."""

    def __init__(self, path: Path, idle_seconds: float, key: str, run: Callable[[List[str]], int]):
        self.path, self.idle_seconds, self.key, self.run = path, idle_seconds, key, run
        self.started = time.time()
        self.runs = 0
        self.last = time.monotonic()
        self.children: Dict[int, float] = {}
        self.listener: Optional[socket.socket] = None

    def status(self) -> dict:
        self.reap()
        return {"pid": os.getpid(), "socket": str(self.path), "key": self.key, "started": self.started,
                "runs": self.runs, "running": len(self.children), "idle_seconds": self.idle_seconds,
                "preloaded": len(sys.modules)}

    def listen(self, ready_fd: Optional[int] = None) -> None:
        """Binds the socket; then writes a byte to `ready_fd` (what `start` waits on) and closes it."""
        if _connect(self.path, timeout=1.0) is not None:
            raise WorkerError(f"another worker listens on {self.path}")
        if self.path.exists():
            self.path.unlink()  # left by a worker that was killed
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self.listener.listen(16)
        self.listener.settimeout(1.0)
        if ready_fd is not None:
            os.write(ready_fd, b"1")
            os.close(ready_fd)

    def reap(self) -> None:
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.pop(pid)
                self.last = time.monotonic()

    def serve(self, ready_fd: Optional[int] = None) -> None:
        self.listen(ready_fd)
        print(f"lamina worker {os.getpid()}: listening on {self.path} ({len(sys.modules)} modules imported)",
              flush=True)
        try:
            while True:
                self.reap()
                if not self.children and time.monotonic() - self.last > self.idle_seconds:
                    print(f"lamina worker {os.getpid()}: idle for {self.idle_seconds:.0f} s, stopping", flush=True)
                    return
                try:
                    conn, _ = self.listener.accept()
                except socket.timeout:
                    continue
                if not self.handle(conn):
                    return
        finally:
            self.listener.close()
            if self.path.exists():
                self.path.unlink()

    def handle(self, conn: socket.socket) -> bool:
        """One connection; False once told to stop."""
        with conn:
            uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
            if uid != os.getuid():
                print(f"lamina worker: refused a connection from uid {uid}", flush=True)
                return True
            conn.settimeout(10.0)
            try:
                message, fds = _receive(conn, fds=3)
            except (EOFError, OSError, ValueError) as e:
                print(f"lamina worker: a bad request ({e})", flush=True)
                return True
            command = message.get("command")
            if command in ("status", "stop"):
                for fd in fds:
                    os.close(fd)
                _send(conn, self.status())
                return command == "status"
            if command != "run" or len(fds) != 3 or not isinstance(message.get("argv"), list):
                for fd in fds:
                    os.close(fd)
                print(f"lamina worker: refused a request ({command!r}, {len(fds)} descriptors)", flush=True)
                return True
            self.runs += 1
            self.last = time.monotonic()
            pid = os.fork()
            if pid == 0:
                self.listener.close()
                _child(conn, message, fds, self.run)  # never returns
            for fd in fds:
                os.close(fd)
            self.children[pid] = time.monotonic()
            return True


def _child(conn: socket.socket, message: dict, fds: List[int], run: Callable[[List[str]], int]) -> None:
    """In the fork: become the caller's `lamina` process, run the command, report its status, exit."""
    code = 1
    try:
        conn.settimeout(None)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        sys.stdout.flush()
        sys.stderr.flush()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        # The same stream objects (modules hold them, as print_error's default does), now on the caller's
        # descriptors, buffered as Python buffers a terminal or a file
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
        sys.stderr.reconfigure(line_buffering=True)
        os.environ.clear()
        os.environ.update(message.get("env") or {})
        os.chdir(message.get("cwd") or "/")
        os.umask(int(message.get("umask", 0o022)) & 0o777)
        sys.argv = ["lamina", *message["argv"]]
        os.setpgid(0, 0)
        _send(conn, {"pid": os.getpid()})
        try:
            code = run(list(message["argv"]))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=sys.stderr)
        except KeyboardInterrupt:
            print("\nlamina: interrupted", file=sys.stderr)
            code = 130
        except BaseException:  # noqa: BLE001 - the traceback the `lamina` process would print
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()  # what the interpreter runs at exit (logging's flush among them); os._exit does not
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - the caller's terminal may be gone
            pass
        try:
            _send(conn, {"exit": int(code or 0)})
        except OSError:
            pass
        os._exit(int(code or 0) & 0xFF)


def serve(run: Callable[[List[str]], int], idle_minutes: float = DEFAULT_IDLE_MINUTES,
          ready_fd: Optional[int] = None) -> int:
    """The worker's own process (`lamina worker serve`, which `start` runs): its key first, on the environment
    as the client sees it, then the imports, then the loop. `run`: what each fork calls with the argv."""
    key = worker_key()
    path = socket_path(key)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as `lamina run` without -v sets it before its imports
    began = time.monotonic()
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except ImportError as e:
                print(f"lamina worker: could not import {name}: {e}", flush=True)
    print(f"lamina worker {os.getpid()}: imports took {time.monotonic() - began:.1f} s", flush=True)
    worker = Worker(path, idle_minutes * 60.0, key, run)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        worker.serve(ready_fd)
    except SystemExit:
        pass
    except WorkerError as e:
        print(f"lamina worker: {e}", flush=True)
        return 1
    return 0

