"""Paths that may be local or a filesystem URI: gs://, s3://, hdfs://, ram:// and the rest.

An artifact URI, a data path or a push destination can live on any filesystem TensorFlow
knows, so the components, the run summary, the report and the serving registry read and write
through `tf.io.gfile` (or TFX's `io_utils`). This module is the one home of the few calls
that only work on a local disk, each behind `is_uri`:

- `listdir` lists a local folder with `os.listdir`, which keeps a file name that is not valid
  UTF-8 (as lone surrogates, so it can be reported), where `tf.io.gfile.listdir` raises.
- `resolve` follows symlinks with `os.path.realpath` on a local path. A URI has no symlinks,
  so it is only normalized (`a/./b/../c` -> `a/c`), and `inside` confines a path to a root by
  that normalized prefix.
- `glob`, `isdir` and `isfile` use `glob.glob` and `os.path` on a local path, again without
  importing TensorFlow.
- `fingerprint` lists a local pattern as bytes (`glob.glob`, `os.stat`), for TFX's input fingerprint.
- `open_binary` opens a local file with the builtin `open`, which keeps `lamina validate` free
  of TensorFlow's import time.

tests/test_storage_calls.py fails when any other module of components/, pipeline/ or serving/
calls `open`, `os.listdir`, `os.walk`, `glob.glob` or `os.path.realpath` on such a path.
"""

import glob as _glob
import io
import json
import os
import posixpath
from typing import Any, List, Optional, Tuple


class UnsupportedFilesystem(ValueError):
    """The path's scheme is one TensorFlow here cannot read or write (s3:// without tensorflow-io)."""


# What a scheme TensorFlow 2.16 does not ship needs. s3:// and hdfs:// left TensorFlow's core in
# 2.6; the tensorflow-io package registers them when imported (it is not in Lamina's lock).
_MISSING_SCHEMES = {"s3": "install tensorflow-io (pip install tensorflow-io==0.37.1) and import tensorflow_io "
                          "in every process, or copy the data to gs://",
                    "hdfs": "install tensorflow-io and Hadoop's native libraries (HADOOP_HDFS_HOME), or copy "
                            "the data to gs://"}


def check_filesystem(path: str) -> None:
    """Raises UnsupportedFilesystem, with the fix, when TensorFlow has no filesystem for `path`'s scheme."""
    if not is_uri(path):
        return
    import tensorflow as tf

    try:
        tf.io.gfile.exists(path)
    except tf.errors.UnimplementedError:
        scheme = path.split("://", 1)[0]
        fix = _MISSING_SCHEMES.get(scheme, "use gs://, a local path, or a scheme TensorFlow registers")
        raise UnsupportedFilesystem(f"{path}: TensorFlow here has no {scheme}:// filesystem; {fix}.") from None


def is_uri(path: str) -> bool:
    """Whether `path` names a filesystem by scheme (gs://bucket/x, ram://x), not the local disk."""
    return "://" in path


def _split(path: str) -> Tuple[str, str]:
    scheme, rest = path.split("://", 1)
    return scheme + "://", rest


def normalize(path: str) -> str:
    """`path` with `.`, `..` and doubled separators folded (`gs://b/x/../y` -> `gs://b/y`)."""
    if not is_uri(path):
        return os.path.normpath(path)
    prefix, rest = _split(path)
    return prefix + posixpath.normpath(rest) if rest else prefix


def resolve(path: str) -> str:
    """The canonical form of `path`: symlinks resolved on the local disk; a URI, which has none, normalized."""
    return normalize(path) if is_uri(path) else os.path.realpath(path)


def relative(path: str, root: str) -> str:
    """`path` relative to `root`, with '/' separators (`path` lies inside `root`)."""
    if not is_uri(path):
        return os.path.relpath(path, root).replace(os.sep, "/")
    return posixpath.relpath(_split(normalize(path))[1], _split(normalize(root))[1])


def absolute(path: str) -> str:
    """`path` made absolute when it is local; a URI is already absolute."""
    return path if is_uri(path) else os.path.abspath(path)


def parent(path: str) -> str:
    """The folder holding `path` (`gs://b/data/x.csv` -> `gs://b/data`)."""
    if not is_uri(path):
        return os.path.dirname(path)
    prefix, rest = _split(path)
    return prefix + posixpath.dirname(rest.rstrip("/"))


def inside(root: str, path: str) -> bool:
    """Whether `path`, resolved, lies under `root`, resolved (the root itself counts)."""
    real_root, real = resolve(root).rstrip("/\\"), resolve(path)
    sep = "/" if is_uri(root) else os.sep
    return real == real_root or real.startswith(real_root + sep)


def listdir(path: str) -> List[str]:
    """The entry names of a folder, without the trailing '/' some filesystems give folders."""
    if not is_uri(path):
        return os.listdir(path)
    import tensorflow as tf

    return [name.rstrip("/") for name in tf.io.gfile.listdir(path)]


def glob(pattern: str) -> List[str]:
    """The files `pattern` matches, sorted (`*` stays inside one folder, as on a local disk)."""
    if not is_uri(pattern):
        return sorted(_glob.glob(pattern))  # no TensorFlow import for `lamina validate` on local files
    import tensorflow as tf

    check_filesystem(pattern)
    return sorted(tf.io.gfile.glob(pattern))


def fingerprint(pattern: str) -> Tuple[int, int, int, int]:
    """(files, bytes, xor and sum of their whole-second mtimes) of what `pattern` matches: TFX's input
    fingerprint. A local pattern is listed as bytes, so a file name that is not UTF-8 is counted where
    `tf.io.gfile.glob` raises UnicodeDecodeError."""
    if is_uri(pattern):
        import tensorflow as tf

        stats = [tf.io.gfile.stat(name) for name in tf.io.gfile.glob(pattern)]
        found = [(s.length, s.mtime_nsec // 1_000_000_000) for s in stats]
    else:
        stats = [os.stat(name) for name in _glob.glob(os.fsencode(pattern))]
        found = [(s.st_size, s.st_mtime_ns // 1_000_000_000) for s in stats]
    xor = 0
    for _, mtime in found:
        xor ^= mtime
    return len(found), sum(size for size, _ in found), xor, sum(mtime for _, mtime in found)


def stat(path: str) -> Tuple[int, int]:
    """(bytes, mtime in nanoseconds) of one file, local or at a filesystem URI."""
    if is_uri(path):
        import tensorflow as tf

        s = tf.io.gfile.stat(path)
        return s.length, s.mtime_nsec
    s = os.stat(path)
    return s.st_size, s.st_mtime_ns


def isdir(path: str) -> bool:
    if not is_uri(path):
        return os.path.isdir(path)
    import tensorflow as tf

    check_filesystem(path)
    return tf.io.gfile.isdir(path)


def isfile(path: str) -> bool:
    if not is_uri(path):
        return os.path.isfile(path)
    import tensorflow as tf

    check_filesystem(path)
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def read_text(path: str) -> str:
    """The file's text (UTF-8); a missing or unreadable file raises OSError with its reason in `strerror`."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read().decode("utf-8")
    except tf.errors.NotFoundError:
        raise FileNotFoundError(2, "No such file or directory", path) from None
    except tf.errors.OpError as e:
        raise OSError(5, e.message, path) from None


def read_json(path: str) -> Any:
    return json.loads(read_text(path))


def read_json_if_exists(path: str) -> Optional[Any]:
    """The JSON document at `path`, or None when there is no such file (an artifact a run did not write)."""
    return read_json(path) if isfile(path) else None


def write_text(path: str, text: str) -> str:
    """Writes `text` to `path` (UTF-8), creating its folder; returns the path."""
    import tensorflow as tf

    folder = parent(path)
    if folder:
        tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)
    return path


def write_json(path: str, value: Any) -> str:
    return write_text(path, json.dumps(value, indent=2))


def open_binary(path: str):
    """A binary reader for a local path or a filesystem URI; every URI goes through tf.io.gfile."""
    if not is_uri(path):
        return open(path, "rb")
    import tensorflow as tf

    return tf.io.gfile.GFile(path, "rb")


class _RawReader(io.RawIOBase):
    """tf.io.gfile's file object as a raw stream, so io.TextIOWrapper can decode it."""

    def __init__(self, f):
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._f.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def open_stream(path: str) -> io.BufferedIOBase:
    """`open_binary` as a standard buffered stream (what io.TextIOWrapper and pyarrow read from)."""
    raw = open_binary(path)
    return raw if isinstance(raw, io.BufferedIOBase) else io.BufferedReader(_RawReader(raw), 1 << 20)


def open_text(path: str, encoding: str = "utf-8") -> io.TextIOWrapper:
    """A text reader that keeps line breaks inside quoted cells as they are (`newline=""`, for `csv`)."""
    return io.TextIOWrapper(open_stream(path), encoding=encoding, newline="")
