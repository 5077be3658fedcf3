"""TensorFlow's in-memory `ram://` filesystem, for tests that must not touch the local disk.

`ram://` is a real non-local filesystem: `tf.io.gfile` reads and writes it, while `open`,
`os.listdir` and `glob` raise or find nothing, as they would on `gs://`. Beam has no `ram://`
of its own, so `RamFileSystem` gives it one over `tf.io.gfile` (Beam finds FileSystem subclasses
by their scheme once they are defined); TFX's ExampleGen then writes its TFRecords there like
any other URI. In-process runners only: the files live in this process's memory.

Where ram:// differs from gs://:
- It renames files but not folders, while TensorFlow's gs:// and s3:// rename a folder object by
  object (TF Transform renames its output folder). `rename_folders_as_gcs_does` fills that gap.
- Writing a file that exists appends to it instead of replacing it (gs:// replaces the object),
  so Lamina rewrites a file by writing a new one and renaming it over the old.
- Listing `x/assets` also lists `x/assets.extra` as `.extra` (names are matched as prefixes);
  `list_folders_as_gcs_does` leaves out such entries, which name nothing.
"""

import posixpath
import uuid

import tensorflow as tf
from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes, FileMetadata, FileSystem


def ram_root(name: str = "t") -> str:
    """A fresh, empty ram:// folder."""
    root = f"ram://{name}-{uuid.uuid4().hex[:8]}"
    tf.io.gfile.makedirs(root)
    return root


def rename_folders_as_gcs_does(monkeypatch) -> None:
    """tf.io.gfile.rename of a ram:// folder copies each file and removes the source, as on gs://."""
    original = tf.io.gfile.rename

    def rename(src, dst, overwrite=False):
        src, dst = str(src), str(dst)
        if not (src.startswith("ram://") and tf.io.gfile.isdir(src)):
            return original(src, dst, overwrite)
        for folder, _, names in tf.io.gfile.walk(src):
            target = dst + folder[len(src):]
            tf.io.gfile.makedirs(target)
            for name in names:
                tf.io.gfile.copy(posixpath.join(folder, name), posixpath.join(target, name), overwrite=overwrite)
        tf.io.gfile.rmtree(src)

    monkeypatch.setattr(tf.io.gfile, "rename", rename)


def list_folders_as_gcs_does(monkeypatch) -> None:
    """tf.io.gfile.listdir (and walk) of a ram:// folder lists only what is in it."""
    from tensorflow.python.lib.io import file_io

    original = file_io.list_directory_v2

    def list_directory(path):
        names = original(path)
        if not str(path).startswith("ram://"):
            return names
        folder = str(path).rstrip("/")
        return [n for n in names if file_io.file_exists(f"{folder}/{n}")]

    monkeypatch.setattr(file_io, "list_directory", list_directory)
    monkeypatch.setattr(file_io, "list_directory_v2", list_directory)
    monkeypatch.setattr(tf.io.gfile, "listdir", list_directory)


def as_gcs(monkeypatch) -> None:
    """ram:// with gs://'s folder semantics (see the module docstring)."""
    rename_folders_as_gcs_does(monkeypatch)
    list_folders_as_gcs_does(monkeypatch)


def ram_tree(root: str):
    """{relative path: bytes} of every file under `root`."""
    files = {}
    for folder, _, names in tf.io.gfile.walk(root):
        for name in names:
            path = posixpath.join(folder, name)
            with tf.io.gfile.GFile(path, "rb") as f:
                files[path[len(root) + 1:]] = f.read()
    return files


class _Writer:
    """A GFile opened for writing, with the `tell` Beam's writers ask for (ram:// has none)."""

    def __init__(self, f):
        self._f, self._position, self.closed, self.mode = f, 0, False, "wb"

    def write(self, data):
        self._f.write(data)
        self._position += len(data)
        return len(data)

    def tell(self):
        return self._position

    def flush(self):
        self._f.flush()

    def close(self):
        self._f.close()
        self.closed = True


class RamFileSystem(FileSystem):
    @classmethod
    def scheme(cls):
        return "ram"

    def join(self, basepath, *paths):
        return posixpath.join(basepath, *paths)

    def split(self, path):
        return posixpath.split(path)

    def mkdirs(self, path):
        tf.io.gfile.makedirs(path)

    def has_dirs(self):
        return True

    def _list(self, dir_or_prefix):
        if not tf.io.gfile.exists(dir_or_prefix):
            return
        for folder, _, names in tf.io.gfile.walk(dir_or_prefix):
            for name in names:
                path = posixpath.join(folder, name)
                yield FileMetadata(path, tf.io.gfile.stat(path).length)

    def _open(self, path, mode, compression_type):
        compression_type = FileSystem._get_compression_type(path, compression_type)
        raw = tf.io.gfile.GFile(path, mode)
        raw = _Writer(raw) if "w" in mode else raw
        return raw if compression_type == CompressionTypes.UNCOMPRESSED else CompressedFile(raw, compression_type)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        tf.io.gfile.makedirs(posixpath.dirname(path))
        return self._open(path, "wb", compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._open(path, "rb", compression_type)

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            tf.io.gfile.copy(source, destination, overwrite=True)

    def rename(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            tf.io.gfile.makedirs(posixpath.dirname(destination))
            tf.io.gfile.rename(source, destination, overwrite=True)

    def exists(self, path):
        return tf.io.gfile.exists(path)

    def size(self, path):
        return tf.io.gfile.stat(path).length

    def last_updated(self, path):
        return tf.io.gfile.stat(path).mtime_nsec / 1e9

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        if not self.exists(path):
            raise BeamIOError(f"Path does not exist: {path}")
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        for path in paths:
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            elif tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
