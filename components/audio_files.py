"""One audio file checked for ingestion: its bytes as the WAV the model decodes, or why it is bad.

The served model decodes WAV in its graph (`lamina.models.audio`), so every example holds WAV
bytes: a .wav file as it is, a FLAC or Ogg file turned into 16-bit PCM WAV by soundfile
(`lamina.audio_headers.to_wav`). The header is checked before anything is decoded: the sample
format, the channels and rate, a data chunk cut short, and the declared duration against
`data.audio.max_seconds`: the same checks the in-graph decoder's assertions make, so a file that
passes here is one the model can read.
"""

from typing import Dict, Optional, Tuple

from lamina.audio_headers import AudioTooLong, WavInfo, check_wav, is_wav, to_wav
from lamina.constants import DEFAULT_MAX_AUDIO_SECONDS

Problem = Tuple[str, str]  # (kind, detail) as ImageExampleGen's BadFile takes them


def check_audio_bytes(data: bytes, max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS
                      ) -> Tuple[Optional[bytes], Optional[WavInfo], Optional[Problem]]:
    """(WAV bytes, their layout, None) for a usable audio file, else (None, None, (problem, detail))."""
    if not data:
        return None, None, ("empty", "the file is empty (0 bytes)")
    if not is_wav(data):
        try:
            data = to_wav(data, "the file")
        except ValueError as e:
            return None, None, ("unsupported" if not data.startswith((b"OggS", b"fLaC")) else "corrupt", str(e))
    try:
        info = check_wav(data, max_seconds, "the file")
    except AudioTooLong as e:
        return None, None, ("too_long", str(e).replace(" (lamina serve --max-audio-seconds)",
                                                       " (data.audio.max_seconds)"))
    except ValueError as e:
        return None, None, ("corrupt", str(e))
    return data, info, None


def audio_features(info: WavInfo) -> Dict[str, float]:
    """What an example says of its clip beside the bytes (StatisticsGen shows them)."""
    return {"audio_seconds": info.seconds, "audio_sample_rate": info.sample_rate, "audio_channels": info.channels}
