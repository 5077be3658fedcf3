"""An image's pixel count read from its header, before anything decodes it.

A 400 KB PNG can declare 20000x20000 pixels and take gigabytes to decode. `image_size` reads the
width and height from the first bytes of a PNG, JPEG, GIF or BMP (the formats TensorFlow's
`decode_image` takes); `check_image` refuses an image above a pixel bound. The server runs it
on every string input that is an image, and on the bytes features of tf.Examples, before the
model is called; ImageExampleGen runs it on every file before decoding (the same default bound,
`data.images.max_pixels` in the spec).
"""

import struct
from typing import Optional, Tuple


class ImageTooLarge(ValueError):
    """An image whose header declares more pixels than the bound."""


_PNG = b"\x89PNG\r\n\x1a\n"
# What every image `image_format` knows starts with: bytes that contain none of these hold no image.
IMAGE_MARKERS = (_PNG[:4], b"\xff\xd8\xff", b"GIF8", b"BM")
# JPEG start-of-frame markers (SOF0-SOF15 but DHT C4, JPG C8 and DAC CC), which carry the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_format(data: bytes) -> Optional[str]:
    """'PNG', 'JPEG', 'GIF' or 'BMP' from the magic bytes; None for anything else."""
    if data.startswith(_PNG):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(b"BM") and len(data) >= 26:
        return "BMP"
    return None


def image_size(data: bytes) -> Optional[Tuple[str, int, int]]:
    """(format, width, height) from the header; None when `data` is not an image of a known format.

    Raises ValueError for an image whose header is cut short or holds no size.
    """
    kind = image_format(data)
    if kind is None:
        return None
    if kind == "PNG":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("a PNG without its IHDR header")
        width, height = struct.unpack(">II", data[16:24])
        return kind, width, height
    if kind == "GIF":
        if len(data) < 10:
            raise ValueError("a GIF cut short in its header")
        width, height = struct.unpack("<HH", data[6:10])
        return kind, width, height
    if kind == "BMP":
        width, height = struct.unpack("<ii", data[18:26])
        return kind, abs(width), abs(height)
    return (kind, *_jpeg_size(data))


def _jpeg_size(data: bytes) -> Tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"a JPEG with a broken marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _SOF:
            if i + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        i += 2 + length
    raise ValueError("a JPEG without a frame header (SOF)")


def check_image(data: bytes, max_pixels: int, where: str) -> None:
    """Raises ImageTooLarge naming `where` when `data` is an image above `max_pixels`, ValueError for a
    broken header."""
    try:
        size = image_size(data)
    except ValueError as e:
        raise ValueError(f"{where} is {e}.") from None
    if size is None:
        return
    kind, width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(f"{where} is a {width}x{height} {kind} ({width * height:,} pixels); the limit is "
                         f"{max_pixels:,} pixels (lamina serve --max-image-pixels).")
