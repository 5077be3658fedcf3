"""Image and audio files named by a table's cells: resolved against the data root, which they may not leave.

One home for the rule, shared by ImageExampleGen's `image_csv` listing and by image and audio columns
in any table (TableExampleGen): a path is relative to the root; an absolute path, a URI, or one
that climbs out (`..`, a symlink pointing out) is outside it.
"""

import os
from typing import Optional, Tuple

from lamina import storage
from lamina.cells import CsvInputError


def resolve_inside(rel: str, root: str) -> Tuple[str, bool]:
    """(the normalized path of `rel` under `root`, whether it stays inside the root)."""
    path = storage.normalize(os.path.join(root, rel))
    return path, not (os.path.isabs(rel) or storage.is_uri(rel) or not storage.inside(root, path))


def image_cell_path(cell: str, root: str, where: str, kind: str = "image") -> Tuple[Optional[str], str]:
    """(the file's path, '') for a cell naming one relative to `root`, or (None, the problem); `kind` is
    'image' or 'audio', for the messages.

    Raises CsvInputError for a path that leaves the root: it always stops the run.
    """
    rel = cell.strip()
    if not rel:
        return None, f"no {kind} path (a blank cell)"
    path, inside = resolve_inside(rel, root)
    if not inside:
        raise CsvInputError(f"{where}: {kind} path {rel!r} resolves to {storage.resolve(path)}, outside the data "
                            f"root {root}; {kind} paths are relative to the table's folder and stay inside it.")
    if not storage.isfile(path):
        return None, f"{rel}: no such file"
    return path, ""


def image_cell_problem(cell: str, root: str, where: str, max_pixels: int) -> str:
    """'' when the cell names an image file inside `root` whose header reads, else the problem."""
    from lamina.image_headers import check_image, image_format

    path, problem = image_cell_path(cell, root, where)
    if path is None:
        return problem
    with storage.open_binary(path) as f:
        data = f.read()
    if not data:
        return f"{cell.strip()}: the file is empty (0 bytes)"
    if image_format(data) is None:
        return f"{cell.strip()}: not a JPEG, PNG, GIF or BMP image"
    try:
        check_image(data, max_pixels, cell.strip())
    except ValueError as e:  # ImageTooLarge included
        return str(e).replace(" (lamina serve --max-image-pixels)", " (data.images.max_pixels)")
    return ""


def audio_cell_wav(cell: str, root: str, where: str, max_seconds: float) -> Tuple[Optional[bytes], str]:
    """(the WAV bytes of the audio file a cell names inside `root`, '') or (None, the problem). FLAC and
    Ogg files are turned into WAV (lamina.components.audio_files)."""
    from lamina.components.audio_files import check_audio_bytes

    path, problem = image_cell_path(cell, root, where, "audio")
    if path is None:
        return None, problem
    with storage.open_binary(path) as f:
        wav, _, problem = check_audio_bytes(f.read(), max_seconds)
    if problem:
        detail = problem[1].replace("the file", cell.strip(), 1) if problem[1].startswith("the file") else problem[1]
        return None, detail
    return wav, ""
