"""Loads the models under `<root>/<name>/<version>/` and keeps the newest version of each.

A background thread polls the root. A new version is loaded completely before it takes
traffic; requests already holding the old version finish on it. A version directory that
is half-written or fails to load is logged and skipped, and the previous version keeps
serving.
"""

import dataclasses
import logging
import os
import threading
import time
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

try:  # registers the tokenizer ops text models call (WordPiece); TF Serving's own build links them in
    import tensorflow_text  # noqa: F401
except ImportError:  # pragma: no cover - a locked install always has it
    tensorflow_text = None

log = logging.getLogger("lamina.serving")


class ServingError(Exception):
    """An error for the client; `code` is a grpc.StatusCode name."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def invalid_argument(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


@dataclasses.dataclass
class LoadedModel:
    """One loaded version of one model, with its signatures."""

    name: str
    version: int
    path: str
    module: object
    signature_defs: Dict[str, meta_graph_pb2.SignatureDef]
    loaded_at: float

    def signature(self, key: str):
        fn = self.module.signatures.get(key)
        if fn is None:
            raise not_found(f"Serving signature key {key!r} not found in model {self.name!r} version "
                            f"{self.version}; available signatures: {', '.join(sorted(self.module.signatures))}.")
        return fn


def read_signature_defs(path: str) -> Dict[str, meta_graph_pb2.SignatureDef]:
    """Signature defs of the 'serve' meta graph, method names included."""
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
    return {}


def version_dirs(model_root: str) -> List[Tuple[int, str]]:
    """(version, path) of every complete-looking version directory, newest first."""
    found = []
    if not os.path.isdir(model_root):
        return found
    for entry in os.listdir(model_root):
        path = os.path.join(model_root, entry)
        if entry.isdigit() and os.path.isfile(os.path.join(path, "saved_model.pb")):
            found.append((int(entry), path))
    return sorted(found, reverse=True)


class ModelRegistry:
    """Serves the newest loadable version of every model under `root`."""

    def __init__(self, root: str, poll_seconds: float = 1.0):
        self.root = os.path.abspath(root)
        self.poll_seconds = poll_seconds
        self._models: Dict[str, LoadedModel] = {}
        self._failed: Dict[str, float] = {}  # version path -> mtime of saved_model.pb when it failed
        self._lock = threading.Lock()
        self._loaded = threading.Condition(self._lock)  # notified whenever a version starts serving
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.events: List[str] = []  # load/skip events, newest last (also logged)

    # -- lookups ---------------------------------------------------------------------------

    def names(self) -> List[str]:
        with self._lock:
            return sorted(self._models)

    def get(self, name: str, version: Optional[int] = None) -> LoadedModel:
        with self._lock:
            model = self._models.get(name)
            available = sorted(self._models)
        if model is None:
            raise not_found(f"Model {name!r} not found; serving: {', '.join(available) or '(no models)'}.")
        if version is not None and version != model.version:
            raise not_found(f"Model {name!r} has no version {version}; serving version {model.version}.")
        return model

    def wait_for_version(self, name: str, version: int, timeout: float) -> bool:
        """Blocks until `name` serves `version` or newer; False if `timeout` seconds pass first."""
        def ready():
            model = self._models.get(name)
            return model is not None and model.version >= version

        with self._loaded:
            return self._loaded.wait_for(ready, timeout=timeout)

    # -- loading ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Loads any version newer than the one served. Called by the poller and at start-up."""
        if not os.path.isdir(self.root):
            return
        for name in sorted(os.listdir(self.root)):
            model_root = os.path.join(self.root, name)
            if not os.path.isdir(model_root):
                continue
            current = self._models.get(name)
            for version, path in version_dirs(model_root):
                if current is not None and version <= current.version:
                    break
                if self._load(name, version, path):
                    break

    def _load(self, name: str, version: int, path: str) -> bool:
        pb = os.path.join(path, "saved_model.pb")
        try:
            mtime = os.path.getmtime(pb)
        except OSError:
            return False
        if self._failed.get(path) == mtime:
            return False  # already failed as it stands; retried only if it changes
        try:
            if not os.path.isfile(os.path.join(path, "variables", "variables.index")):
                raise ValueError("variables/variables.index is missing (push incomplete?)")
            module = tf.saved_model.load(path)
            model = LoadedModel(name, version, path, module, read_signature_defs(path), time.time())
        except Exception as e:  # a broken push must never take the server down
            self._failed[path] = mtime
            self._event(f"skipped {name} version {version} at {path}: {type(e).__name__}: {str(e)[:300]}",
                        logging.WARNING)
            return False
        with self._lock:
            previous = self._models.get(name)
            self._models[name] = model
            self._loaded.notify_all()
        self._event(f"serving {name} version {version}" + (f" (was {previous.version})" if previous else ""))
        return True

    def _event(self, message: str, level: int = logging.INFO) -> None:
        self.events.append(message)
        log.log(level, message)

    # -- polling ---------------------------------------------------------------------------

    def start(self) -> "ModelRegistry":
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="model-poller", daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # keep polling; the error is logged with its traceback
                log.exception("model poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
