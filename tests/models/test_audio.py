"""Audio decoding and features in the graph, against references computed independently (NumPy, SciPy)."""

import struct

import numpy as np
import pytest
import scipy.io.wavfile
import scipy.signal

from lamina.audio_headers import AudioTooLong, check_wav, to_wav, wav_bytes, wav_info
from lamina.spec import AudioEncoder

tf = pytest.importorskip("tensorflow")
from lamina.models import audio  # noqa: E402  (needs TensorFlow)

RATE = 22050


def _signal(frames: int, channels: int, seed: int = 0) -> np.ndarray:
    """A chirp per channel plus noise, in [-0.9, 0.9]."""
    t = np.arange(frames) / RATE
    rng = np.random.default_rng(seed)
    out = [0.6 * np.sin(2 * np.pi * (200 + 800 * c + 3000 * t) * t) + 0.1 * rng.standard_normal(frames)
           for c in range(channels)]
    return np.clip(np.stack(out, axis=1), -0.9, 0.9)


def _encoded(x: np.ndarray, bits: int, float_format: bool = False) -> bytes:
    if float_format:
        return wav_bytes(x, RATE, bits, float_format=True)
    scale = {8: 127, 16: 32767, 24: 2 ** 23 - 1, 32: 2 ** 31 - 1}[bits]
    return wav_bytes(np.round(x * scale).astype(np.int64), RATE, bits)


def _reference(data: bytes) -> np.ndarray:
    """scipy.io.wavfile's samples, scaled to [-1, 1] and mixed down to mono."""
    import io

    _, x = scipy.io.wavfile.read(io.BytesIO(data))
    if x.dtype == np.uint8:
        x = (x.astype(np.float64) - 128) / 128
    elif x.dtype == np.int16:
        x = x / 2 ** 15
    elif x.dtype == np.int32:  # 24-bit files come back in the top three bytes of an int32
        x = x / 2 ** 31
    x = np.asarray(x, np.float64)
    return x.mean(axis=1) if x.ndim == 2 else x


@pytest.mark.parametrize("bits,float_format", [(8, False), (16, False), (24, False), (32, False), (32, True),
                                               (64, True)], ids=["pcm8", "pcm16", "pcm24", "pcm32", "float32",
                                                                 "float64"])
def test_decode_matches_scipy_for_every_sample_format(bits, float_format):
    data = _encoded(_signal(RATE // 2, 2), bits, float_format)
    info = wav_info(data)
    assert (info.channels, info.sample_rate, info.bits, info.frames) == (2, RATE, bits, RATE // 2)
    # At the file's own rate the decoder only mixes down and pads: 0.5 s of audio in a 1 s clip.
    got = audio.decode_wav(tf.constant(data), RATE, 1.0).numpy()
    want = _reference(data)
    np.testing.assert_allclose(got[:RATE // 2], want, atol=1e-6)
    np.testing.assert_array_equal(got[RATE // 2:], 0.0)


def test_resampling_matches_scipy_signal_resample():
    data = _encoded(_signal(RATE, 1), 16)
    clip = _reference(data)
    for rate in (16000, 8000, 44100, 11025):
        got = audio.decode_wav(tf.constant(data), rate, 1.0).numpy()
        np.testing.assert_allclose(got, scipy.signal.resample(clip, rate), atol=2e-5, err_msg=f"{rate} Hz")
    # A longer file is cut to `seconds` at its own rate before resampling.
    got = audio.decode_wav(tf.constant(data), 16000, 0.5).numpy()
    np.testing.assert_allclose(got, scipy.signal.resample(clip[:RATE // 2], 8000), atol=2e-5)


def test_extensible_format_and_chunks_before_the_data_are_read():
    x = np.round(_signal(1000, 3) * 32767).astype(np.int16)
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 3, RATE, RATE * 6, 6, 16, 22, 16, 0b111) + struct.pack("<H", 1) + \
        b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    raw = x.tobytes()
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 5) + b"INFOx\x00"
            + b"data" + struct.pack("<I", len(raw)) + raw)
    data = b"RIFF" + struct.pack("<I", len(body)) + body
    assert wav_info(data).channels == 3
    got = audio.decode_wav(tf.constant(data), RATE, 1000 / RATE).numpy()
    np.testing.assert_allclose(got, (x / 32768).mean(axis=1), atol=1e-6)


def _mel_reference(n_mels, n_bins, rate, fmin, fmax):
    """HTK mel triangles over the linear bins, the DC bin left out (TensorFlow's documented layout)."""
    def mel(f):
        return 1127.0 * np.log1p(np.asarray(f) / 700.0)
    edges = np.linspace(mel(fmin), mel(fmax), n_mels + 2)
    bins = mel(np.linspace(0, rate / 2, n_bins)[1:])[:, None]
    up = (bins - edges[:-2]) / (edges[1:-1] - edges[:-2])
    down = (edges[2:] - bins) / (edges[2:] - edges[1:-1])
    return np.vstack([np.zeros((1, n_mels)), np.maximum(0, np.minimum(up, down))])


def test_log_mel_matches_a_numpy_reference():
    config = AudioEncoder(sample_rate=16000, seconds=0.5, frame_ms=25, hop_ms=10, mel_bins=40, fmin=60, fmax=7600)
    x = _signal(8000, 1, seed=3)[:, 0].astype(np.float32)
    got = audio.log_mel_layer(config, "spec")(x[None])[0].numpy()
    frame, hop, fft = 400, 160, 512
    assert audio.frame_settings(config) == (frame, hop, fft) and got.shape == (audio.frames(config), 40)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)  # periodic Hann
    starts = range(0, len(x) - frame + 1, hop)
    power = np.abs(np.stack([np.fft.rfft(x[s:s + frame] * window, fft) for s in starts])) ** 2
    want = np.log(power @ _mel_reference(40, fft // 2 + 1, 16000, 60, 7600) + 1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-3)


def test_header_bound_refuses_a_file_claiming_ten_hours_without_reading_it():
    header = wav_bytes(np.zeros(10, np.int16), 44100)[:44]
    claimed = header[:40] + struct.pack("<I", 44100 * 2 * 36000)  # ten hours of 16-bit mono
    with pytest.raises(AudioTooLong, match=r"^Input 'audio' element 0 is a WAV file of 36,000\.0 seconds \(1 "
                       r"channel\(s\) at 44100 Hz, by its header\); the limit is 600 seconds"):
        check_wav(claimed, 600, "Input 'audio' element 0")
    with pytest.raises(ValueError, match="cut short: its header declares 20 bytes of samples and 10 follow"):
        check_wav(wav_bytes(np.zeros(10, np.int16), 44100)[:-10], 600, "x.wav")
    with pytest.raises(ValueError, match=r"^a\.wav is a 12-bit PCM WAV file; Lamina decodes PCM 8, 16, 24"):
        check_wav(header[:34] + struct.pack("<H", 12) + header[36:] + b"\0" * 20, 600, "a.wav")
    with pytest.raises(ValueError, match=r"^b\.wav is not a WAV file"):
        check_wav(b"ID3\x03" + b"\0" * 40, 600, "b.wav")


def test_ogg_and_flac_become_wav_with_soundfile():
    import io

    soundfile = pytest.importorskip("soundfile")
    x = _signal(4000, 2, seed=1)
    for fmt in ("FLAC", "OGG"):
        buf = io.BytesIO()
        soundfile.write(buf, x, RATE, format=fmt)
        wav = to_wav(buf.getvalue(), f"clip.{fmt.lower()}")
        info = wav_info(wav)
        assert (info.channels, info.sample_rate, info.bits, info.frames) == (2, RATE, 16, 4000)
        decoded = _reference(wav)
        tolerance = 1e-4 if fmt == "FLAC" else 0.05  # FLAC is lossless at 16 bits; Vorbis is not
        assert np.abs(decoded - x.mean(axis=1)).mean() < tolerance
    with pytest.raises(ValueError, match=r"^notes\.ogg cannot be decoded as audio"):
        to_wav(b"OggS but not really", "notes.ogg")
