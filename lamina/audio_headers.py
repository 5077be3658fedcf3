"""A WAV file's layout and duration read from its header, before anything decodes it.

The served model decodes WAV in its graph (`lamina.models.audio.decode_wav`), because TensorFlow
has ops for it and TF Serving runs nothing else. `wav_info` reads what that decoder needs from the
RIFF chunks: the sample format (PCM 8/16/24/32-bit, IEEE float 32/64-bit, or the same under
WAVE_FORMAT_EXTENSIBLE), the channels, the rate and the number of frames. `check_wav` refuses a
file whose header claims more than a duration bound, without reading or allocating its samples,
and one whose data chunk is cut short. The server runs it on every string input that is a WAV
file and on the bytes features of tf.Examples; ingestion runs it on every file.

FLAC and Ogg (Vorbis, Opus) have no TensorFlow op. Ingestion and `lamina predict` turn them into
WAV with soundfile (libsndfile), `to_wav`, so the served model still takes WAV bytes only.
"""

import dataclasses
import io
import struct

# WAVE format tags: PCM, IEEE float, and EXTENSIBLE, whose sub-format GUID starts with one of them.
PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
# (format, bits per sample) the in-graph decoder takes.
SUPPORTED = {(PCM, 8), (PCM, 16), (PCM, 24), (PCM, 32), (FLOAT, 32), (FLOAT, 64)}
MAX_CHANNELS = 32


class AudioTooLong(ValueError):
    """A WAV file whose header declares more seconds than the bound."""


@dataclasses.dataclass(frozen=True)
class WavInfo:
    format: int  # PCM or FLOAT (an EXTENSIBLE file's sub-format)
    channels: int
    sample_rate: int
    bits: int
    data_offset: int  # where the samples start
    data_bytes: int  # the data chunk's declared size

    @property
    def frames(self) -> int:
        return self.data_bytes // (self.channels * self.bits // 8)

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


WAV_MARKER = b"RIFF"  # bytes that do not contain it hold no WAV file


def is_wav(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == WAV_MARKER and data[8:12] == b"WAVE"


def wav_info(data: bytes) -> WavInfo:
    """The layout of the WAV file in `data`. Raises ValueError saying what is wrong with it."""
    if not is_wav(data):
        raise ValueError(f"not a WAV file (a RIFF/WAVE header); it starts with {data[:12]!r}")
    fmt = None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if chunk == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise ValueError("a WAV file whose fmt chunk is cut short")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[body:body + 16])
            if tag == EXTENSIBLE:
                if size < 40 or body + 26 > len(data):
                    raise ValueError("a WAVE_FORMAT_EXTENSIBLE file without its sub-format")
                tag = struct.unpack("<H", data[body + 24:body + 26])[0]
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            if fmt is None:
                raise ValueError("a WAV file whose data chunk comes before its fmt chunk")
            tag, channels, rate, bits = fmt
            if (tag, bits) not in SUPPORTED:
                kind = {PCM: "PCM", FLOAT: "float"}.get(tag, f"format tag {tag}")
                raise ValueError(f"a {bits}-bit {kind} WAV file; Lamina decodes PCM 8, 16, 24 or 32-bit and "
                                 f"float 32 or 64-bit")
            if not 1 <= channels <= MAX_CHANNELS or rate < 1:
                raise ValueError(f"a WAV file declaring {channels} channel(s) at {rate} Hz")
            return WavInfo(tag, channels, rate, bits, body, size)
        pos = body + size + (size & 1)  # chunks are padded to an even size
    raise ValueError("a WAV file without a data chunk" if fmt else "a WAV file without a fmt chunk")


def check_wav(data: bytes, max_seconds: float, where: str) -> WavInfo:
    """The file's WavInfo; raises AudioTooLong naming `where` above `max_seconds`, ValueError for a broken
    or truncated file."""
    try:
        info = wav_info(data)
    except ValueError as e:
        raise ValueError(f"{where} is {e}.") from None
    if info.seconds > max_seconds:
        raise AudioTooLong(f"{where} is a WAV file of {info.seconds:,.1f} seconds ({info.channels} channel(s) at "
                           f"{info.sample_rate} Hz, by its header); the limit is {max_seconds:g} seconds "
                           f"(lamina serve --max-audio-seconds).")
    if info.data_offset + info.data_bytes > len(data):
        raise ValueError(f"{where} is a WAV file cut short: its header declares {info.data_bytes:,} bytes of "
                         f"samples and {len(data) - info.data_offset:,} follow.")
    if info.frames == 0:
        raise ValueError(f"{where} is a WAV file with no samples.")
    return info


def to_wav(data: bytes, name: str) -> bytes:
    """A FLAC or Ogg file's bytes as a 16-bit PCM WAV file (its rate and channels kept); WAV comes back
    as it is. Raises ValueError naming `name` when soundfile cannot decode it."""
    if is_wav(data):
        return data
    import numpy as np
    import soundfile

    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as e:
        raise ValueError(f"{name} cannot be decoded as audio (libsndfile {soundfile.__libsndfile_version__}): "
                         f"{e}") from None
    if samples.size == 0:
        raise ValueError(f"{name} holds no samples")
    return wav_bytes(np.asarray(samples), rate)


def wav_bytes(samples, rate: int, bits: int = 16, float_format: bool = False) -> bytes:
    """[frames, channels] (or [frames]) samples as a WAV file: integers as PCM of `bits`, or floats.

    Integer samples are written as they are (8-bit ones offset to unsigned, as WAV stores them);
    24-bit ones take the low 3 bytes of each int32.
    """
    import numpy as np

    samples = np.asarray(samples)
    if samples.ndim == 1:
        samples = samples[:, None]
    frames, channels = samples.shape
    if float_format:
        raw = samples.astype("<f4" if bits == 32 else "<f8").tobytes()
    elif bits == 8:
        raw = (samples.astype(np.int16) + 128).astype(np.uint8).tobytes()
    elif bits == 24:
        raw = samples.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        raw = samples.astype({16: "<i2", 32: "<i4"}[bits]).tobytes()
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", FLOAT if float_format else PCM, channels, rate, rate * block, block, bits)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(raw)) + raw
            + (b"\0" if len(raw) & 1 else b""))
    return b"RIFF" + struct.pack("<I", len(body)) + body
