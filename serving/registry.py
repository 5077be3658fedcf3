"""Loads the model versions that a model config asks for, and keeps them serving.

The models come either from a folder (`<root>/<name>/<version>/`, every model folder served
with its newest version) or from TF Serving's `models.config` (`model_config_list`: name,
base_path, model_version_policy latest/all/specific, version_labels), read with
tensorflow-serving-api's own `ModelServerConfig` proto.

A background thread polls the base paths. A new version is loaded, and warmed up with its
`assets.extra/tf_serving_warmup_requests`, before it takes traffic; a version it replaces is
released once the requests holding it have finished. A version directory that is
half-written (no `saved_model.pb` yet) is not touched; one that fails to load or warm up is
reported and skipped, and the versions already serving keep serving. It is retried only
when its files change.
"""

import dataclasses
import logging
import os
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.config import model_server_config_pb2

try:  # registers the tokenizer ops text models call (WordPiece); TF Serving's own build links them in
    import tensorflow_text  # noqa: F401
except ImportError:  # pragma: no cover - a locked install always has it
    tensorflow_text = None

from lamina import storage
from lamina.serving.protocol import not_found
from lamina.serving.saved_model import read_signature_defs
from lamina.serving.signature import ServedSignature

log = logging.getLogger("lamina.serving")

class ConfigError(ValueError):
    """A models.config that cannot be served; names the file and the entry."""


# -- the model config ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One `config { ... }` entry of TF Serving's model_config_list."""

    name: str
    base_path: str
    policy: str = "latest"  # latest | all | specific
    num_versions: int = 1  # for latest
    versions: Tuple[int, ...] = ()  # for specific
    labels: Tuple[Tuple[str, int], ...] = ()

    def select(self, versions: List[int]) -> List[int]:
        """The versions this policy asks for among `versions` (newest first)."""
        if self.policy == "all":
            return list(versions)
        if self.policy == "specific":
            return [v for v in versions if v in self.versions]
        return list(versions[:self.num_versions])


def configs_from_proto(config: model_server_config_pb2.ModelServerConfig, source: str = "config",
                       base_dir: str = ".") -> List[ModelConfig]:
    """ModelConfigs from a ModelServerConfig; relative base paths are taken from `base_dir`."""
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{source}: only model_config_list is supported (custom_model_config is not).")
    configs, seen = [], set()
    for n, entry in enumerate(config.model_config_list.config, 1):
        where = f"{source}: config {n}" + (f" ({entry.name!r})" if entry.name else "")
        if not entry.name:
            raise ConfigError(f"{where}: 'name' is missing.")
        if entry.name in seen:
            raise ConfigError(f"{where}: model name {entry.name!r} appears twice.")
        seen.add(entry.name)
        if not entry.base_path:
            raise ConfigError(f"{where}: 'base_path' is missing.")
        if entry.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"{where}: model_platform {entry.model_platform!r} is not served; "
                              "allowed: 'tensorflow'.")
        kind = entry.model_version_policy.WhichOneof("policy_choice") or "latest"
        policy = entry.model_version_policy
        num_versions = policy.latest.num_versions or 1 if kind == "latest" else 1
        versions = tuple(sorted(policy.specific.versions)) if kind == "specific" else ()
        if kind == "specific" and not versions:
            raise ConfigError(f"{where}: model_version_policy specific lists no versions.")
        labels = tuple(sorted(entry.version_labels.items()))
        if kind == "specific":
            for label, version in labels:
                if version not in versions:
                    raise ConfigError(f"{where}: version label {label!r} points to version {version}, which the "
                                      f"specific policy does not serve; served: {list(versions)}.")
        base = entry.base_path if storage.is_uri(entry.base_path) else os.path.join(base_dir, entry.base_path)
        configs.append(ModelConfig(entry.name, storage.absolute(base), kind, num_versions, versions, labels))
    return configs


def read_models_config(path: str) -> List[ModelConfig]:
    """Parses TF Serving's models.config text format; errors name the file and line."""
    try:
        text = storage.read_text(path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the model config: {e.strerror}.") from None
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ConfigError(f"{path}: not a ModelServerConfig in text format: {e}") from None
    return configs_from_proto(config, path, storage.parent(storage.absolute(path)))


def configs_from_dir(root: str) -> List[ModelConfig]:
    """One latest-version config per model folder under `root`."""
    if not storage.isdir(root):
        return []
    return [ModelConfig(name, os.path.join(root, name)) for name in sorted(storage.listdir(root))
            if storage.isdir(os.path.join(root, name))]


# -- loaded models ------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class LoadedModel:
    """One loaded version of one model, with its signatures and its in-flight count."""

    name: str
    version: int
    path: str
    module: object
    signature_defs: Dict[str, meta_graph_pb2.SignatureDef]
    loaded_at: float
    in_flight: int = 0
    retired: bool = False
    on_released: Optional[Callable[["LoadedModel"], None]] = None
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    _signatures: Dict[str, ServedSignature] = dataclasses.field(default_factory=dict, repr=False)

    def signature(self, key: str) -> ServedSignature:
        served = self._signatures.get(key)
        if served is None:
            fn = self.module.signatures.get(key)
            if fn is None:
                raise not_found(f"Serving signature key {key!r} not found in model {self.name!r} version "
                                f"{self.version}; available signatures: "
                                f"{', '.join(sorted(self.module.signatures))}.")
            served = self._signatures.setdefault(key, ServedSignature(fn, key, self.signature_defs.get(key)))
        return served

    def acquire(self) -> "LoadedModel":
        with self._lock:
            self.in_flight += 1
        return self

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1
            released = self.retired and self.in_flight == 0
        if released and self.on_released:
            self.on_released(self)

    def retire(self) -> None:
        with self._lock:
            self.retired = True
            released = self.in_flight == 0
        if released and self.on_released:
            self.on_released(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def version_dirs(model_root: str) -> List[Tuple[int, str]]:
    """(version, path) of every version directory holding a saved_model.pb, newest first.

    saved_model.pb is written last (TFX's Pusher copies it last), so a folder without it is
    still being written and is left alone.
    """
    found = []
    if not tf.io.gfile.isdir(model_root):
        return found
    for entry in tf.io.gfile.listdir(model_root):
        entry = entry.rstrip("/")
        path = os.path.join(model_root, entry)
        if entry.isdigit() and tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
            found.append((int(entry), path))
    return sorted(found, reverse=True)


def fingerprint(path: str) -> Tuple[int, int, float]:
    """(files, bytes, newest mtime) of a directory tree: changes when a push is rewritten or completed."""
    files, size, newest = 0, 0, 0.0
    for folder, _, names in tf.io.gfile.walk(path):
        for name in names:
            try:
                st = tf.io.gfile.stat(os.path.join(folder, name))
            except tf.errors.OpError:
                continue
            files, size, newest = files + 1, size + st.length, max(newest, st.mtime_nsec / 1e9)
    return files, size, newest


@dataclasses.dataclass
class VersionStatus:
    state: str  # LOADING | AVAILABLE | END
    error: str = ""


class ModelRegistry:
    """Serves the versions each model's policy asks for.

    `source` is a folder of model folders or a models.config file. `warmup` (set by the
    server) replays a version's warmup requests before it serves; `on_event(kind, name,
    version)` hears every load event (loaded, failed, unloaded).
    """

    def __init__(self, source: str, poll_seconds: float = 1.0, config_poll_seconds: float = 0.0,
                 warmup: Optional[Callable[[LoadedModel], int]] = None,
                 on_event: Optional[Callable[[str, str, int], None]] = None):
        self.source = storage.absolute(source)
        self.config_file = self.source if storage.isfile(self.source) else None
        self.root = storage.parent(self.source) if self.config_file else self.source
        self.poll_seconds = poll_seconds
        # TF Serving's --model_config_file_poll_wait_seconds: 0 reads models.config once.
        self.config_poll_seconds = config_poll_seconds
        self._config_read_at = time.monotonic()
        self._config_text: Optional[str] = None
        self.warmup = warmup
        self.on_event = on_event
        self._configs: Dict[str, ModelConfig] = {}
        self._fixed_configs: Optional[List[ModelConfig]] = None  # set by reload_config
        self._models: Dict[str, Dict[int, LoadedModel]] = {}
        self._status: Dict[str, Dict[int, VersionStatus]] = {}
        self._failed: Dict[str, Tuple] = {}  # version path -> fingerprint when it failed
        self._lock = threading.RLock()
        self._loaded = threading.Condition(self._lock)  # notified whenever the served set changes
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.events: List[str] = []  # load/skip/release events, newest last (also logged)
        if self.config_file:
            self._configs = {c.name: c for c in read_models_config(self.config_file)}
            self._config_text = storage.read_text(self.config_file)

    # -- lookups ---------------------------------------------------------------------------

    def names(self) -> List[str]:
        with self._lock:
            return sorted(n for n, versions in self._models.items() if versions)

    def knows(self, name: str) -> bool:
        """Whether `name` is a model of the config (served now or not)."""
        return name in self._configs or name in self._models

    def versions(self, name: str) -> List[int]:
        with self._lock:
            return sorted(self._models.get(name, {}), reverse=True)

    def labels(self, name: str) -> Dict[str, int]:
        config = self._configs.get(name)
        return dict(config.labels) if config else {}

    def get(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> LoadedModel:
        """The version asked for (by number or label), else the newest; NOT_FOUND names what exists."""
        with self._lock:
            versions = self._models.get(name) or {}
            available = sorted(n for n, v in self._models.items() if v)
            if not versions:
                raise not_found(f"Model {name!r} not found; serving: {', '.join(available) or '(no models)'}.")
            serving = ", ".join(str(v) for v in sorted(versions, reverse=True))
            if label:
                labels = self.labels(name)
                if label not in labels:
                    raise not_found(f"Model {name!r} has no version label {label!r}; labels: "
                                    f"{', '.join(f'{k}={v}' for k, v in sorted(labels.items())) or '(none)'}.")
                version = labels[label]
                if version not in versions:
                    raise not_found(f"Version label {label!r} of model {name!r} points to version {version}, "
                                    f"which is not loaded; serving versions: {serving}.")
            if version is not None and version not in versions:
                raise not_found(f"Model {name!r} has no version {version}; serving versions: {serving}.")
            return versions[version if version is not None else max(versions)]

    def acquire(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> LoadedModel:
        """Like get, counted in flight until released (`with registry.acquire(...) as model:`)."""
        with self._lock:
            model = self.get(name, version, label)
            return model.acquire()

    def status(self, name: str, version: Optional[int] = None,
               label: Optional[str] = None) -> List[Tuple[int, VersionStatus]]:
        """(version, status) of every version the registry knows for `name`, newest first."""
        with self._lock:
            statuses = dict(self._status.get(name, {}))
        if not statuses and name not in self._configs:
            raise not_found(f"Model {name!r} not found; serving: {', '.join(self.names()) or '(no models)'}.")
        if label:
            version = self.get(name, label=label).version
        if version is not None:
            if version not in statuses:
                raise not_found(f"Model {name!r} has no version {version}; known versions: "
                                f"{', '.join(str(v) for v in sorted(statuses, reverse=True)) or '(none)'}.")
            return [(version, statuses[version])]
        return sorted(statuses.items(), reverse=True)

    def wait_for_version(self, name: str, version: int, timeout: float) -> bool:
        """Blocks until `name` serves `version` or newer; False if `timeout` seconds pass first."""
        def ready():
            return any(v >= version for v in self._models.get(name, {}))

        with self._loaded:
            return self._loaded.wait_for(ready, timeout=timeout)

    def wait_for_event(self, ready: Callable[[List[str]], bool], timeout: float) -> bool:
        """Blocks until `ready(events)` holds (checked at each new event); False after `timeout` seconds."""
        with self._loaded:
            return self._loaded.wait_for(lambda: ready(self.events), timeout=timeout)

    # -- configuration ---------------------------------------------------------------------

    def reload_config(self, configs: List[ModelConfig]) -> None:
        """Replaces the model config (HandleReloadConfigRequest); models left out are unloaded."""
        self._fixed_configs = list(configs)
        self.refresh()

    def _current_configs(self) -> Dict[str, ModelConfig]:
        if self._fixed_configs is not None:
            configs = self._fixed_configs
        elif self.config_file:
            self._poll_config_file()
            return self._configs
        else:
            configs = configs_from_dir(self.root)
        return {c.name: c for c in configs}

    def _poll_config_file(self) -> None:
        """Re-reads models.config every `config_poll_seconds`; a bad edit keeps the config that serves."""
        if self.config_poll_seconds <= 0 or time.monotonic() - self._config_read_at < self.config_poll_seconds:
            return
        self._config_read_at = time.monotonic()
        try:
            text = storage.read_text(self.config_file)
            if text == self._config_text:
                return
            configs = {c.name: c for c in read_models_config(self.config_file)}
        except (OSError, ConfigError, UnicodeDecodeError) as e:
            self._event("config_error", "", 0, f"kept the model config that serves: {e}", logging.WARNING)
            return
        self._config_text = text
        added, removed = sorted(set(configs) - set(self._configs)), sorted(set(self._configs) - set(configs))
        self._configs = configs
        self._event("config", "", 0, f"read {self.config_file} again: models {', '.join(sorted(configs)) or 'none'}"
                    + (f"; added {', '.join(added)}" if added else "") + (f"; removed {', '.join(removed)}" if removed else ""))

    # -- loading ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Loads what each policy asks for and releases what it no longer does (poller, start-up)."""
        with self._refresh_lock:
            self._configs = self._current_configs()
            for name in list(self._models):
                if name not in self._configs:
                    self._set_served(name, keep=set())
            for config in self._configs.values():
                self._refresh_model(config)

    def _refresh_model(self, config: ModelConfig) -> None:
        on_disk = version_dirs(config.base_path)
        candidates = [(v, p) for v, p in on_disk if p not in self._failed or self._failed[p] != fingerprint(p)]
        wanted = config.select([v for v, _ in candidates])
        served = set(self._models.get(config.name, {}))
        keep = set()
        for version, path in candidates:
            if version not in wanted:
                continue
            if version in served or self._load(config.name, version, path):
                keep.add(version)
            elif config.policy == "latest":
                # The newest failed: the next one down is asked for instead, so a broken push
                # leaves the version before it serving.
                extra = [v for v, _ in candidates if v not in wanted and v < version]
                if extra:
                    wanted.append(extra[0])
        if not keep and served:
            if not on_disk:  # the model folder is gone (or holds nothing): stop serving it
                self._set_served(config.name, keep=set())
            return  # nothing new could be loaded: what serves keeps serving
        self._set_served(config.name, keep)

    def _set_served(self, name: str, keep: set) -> None:
        with self._lock:
            current = self._models.get(name, {})
            retired = [m for v, m in current.items() if v not in keep]
            self._models[name] = {v: m for v, m in current.items() if v in keep}
            self._loaded.notify_all()
        for model in retired:
            self._status.setdefault(name, {})[model.version] = VersionStatus("END")
            self._event("unloading", name, model.version,
                        f"retiring {name} version {model.version}; released when its "
                        f"{model.in_flight} in-flight request(s) finish")
            model.retire()

    def _released(self, model: LoadedModel) -> None:
        self._event("unloaded", model.name, model.version, f"released {model.name} version {model.version}")

    def _load(self, name: str, version: int, path: str) -> bool:
        statuses = self._status.setdefault(name, {})
        statuses[version] = VersionStatus("LOADING")
        try:
            if not tf.io.gfile.exists(os.path.join(path, "variables", "variables.index")):
                raise ValueError("variables/variables.index is missing (push incomplete?)")
            module = tf.saved_model.load(path)
            model = LoadedModel(name, version, path, module, read_signature_defs(path), time.time(),
                                on_released=self._released)
            warmed = self.warmup(model) if self.warmup else 0
        except Exception as e:  # a broken push must never take the server down
            self._failed[path] = fingerprint(path)
            reason = f"{type(e).__name__}: {str(e)[:300]}"
            statuses[version] = VersionStatus("END", reason)
            self._event("failed", name, version, f"skipped {name} version {version} at {path}: {reason}",
                        logging.WARNING)
            return False
        with self._lock:
            versions = self._models.setdefault(name, {})
            previous = max(versions) if versions else None
            versions[version] = model
            statuses[version] = VersionStatus("AVAILABLE")
            self._loaded.notify_all()
        self._event("loaded", name, version, f"serving {name} version {version}"
                    + (f" (was {previous})" if previous is not None else "")
                    + (f" after {warmed} warmup request(s)" if warmed else ""))
        return True

    def _event(self, kind: str, name: str, version: int, message: str, level: int = logging.INFO) -> None:
        with self._loaded:
            self.events.append(message)
            self._loaded.notify_all()
        log.log(level, message)
        if self.on_event:
            self.on_event(kind, name, version)

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
