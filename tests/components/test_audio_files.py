"""Audio ingestion's checks, the spec's audio settings and the schema of an audio feature, without a pipeline."""

import io
import struct

import numpy as np
import pytest

from lamina.audio_headers import wav_bytes, wav_info
from lamina.components.audio_files import audio_features, check_audio_bytes
from lamina.components.image_example_gen import BadFile, enforce_policy, list_image_folder
from lamina.constants import AUDIO_EXTENSIONS
from lamina.spec import Spec, SpecError


def _tone(seconds=0.5, rate=8000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    return np.round(np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * channels, axis=1) * 32767).astype(np.int16)


def test_check_audio_bytes_keeps_wav_and_transcodes_flac():
    soundfile = pytest.importorskip("soundfile")
    wav = wav_bytes(_tone(channels=2), 8000)
    data, info, problem = check_audio_bytes(wav)
    assert problem is None and data is wav and (info.channels, info.sample_rate, info.frames) == (2, 8000, 4000)
    assert audio_features(info) == {"audio_seconds": 0.5, "audio_sample_rate": 8000, "audio_channels": 2}
    buf = io.BytesIO()
    soundfile.write(buf, _tone(), 8000, format="FLAC")
    data, info, problem = check_audio_bytes(buf.getvalue())
    assert problem is None and wav_info(data).bits == 16 and info.frames == 4000


@pytest.mark.parametrize("data,problem,detail", [
    (b"", "empty", "the file is empty (0 bytes)"),
    (b"fLaC" + b"\0" * 30, "corrupt", "the file cannot be decoded as audio (libsndfile"),
    (b"just some notes", "unsupported", "the file cannot be decoded as audio (libsndfile"),
], ids=["empty", "broken-flac", "text"])
def test_check_audio_bytes_names_what_is_wrong(data, problem, detail):
    pytest.importorskip("soundfile")
    _, _, found = check_audio_bytes(data)
    assert found[0] == problem and found[1].startswith(detail)


def test_a_header_over_the_bound_is_too_long_and_a_short_data_chunk_is_corrupt():
    header = wav_bytes(_tone(0.01), 8000)
    claimed = header[:40] + struct.pack("<I", 8000 * 2 * 3600) + header[44:]
    assert check_audio_bytes(claimed, max_seconds=60)[2] == (
        "too_long", "the file is a WAV file of 3,600.0 seconds (1 channel(s) at 8000 Hz, by its header); the limit "
                    "is 60 seconds (data.audio.max_seconds).")
    assert check_audio_bytes(header[:-40])[2] == (
        "corrupt", "the file is a WAV file cut short: its header declares 160 bytes of samples and 120 follow.")


def test_listing_an_audio_folder_names_empty_classes_and_stray_files(tmp_path):
    (tmp_path / "yes").mkdir()
    (tmp_path / "no").mkdir()
    (tmp_path / "yes" / "a.wav").write_bytes(wav_bytes(_tone(), 8000))
    (tmp_path / "yes" / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "readme.txt").write_text("hello")
    files, bad = list_image_folder(str(tmp_path), AUDIO_EXTENSIONS, "audio files")
    assert [f.relpath for f in files] == ["yes/a.wav"]
    assert sorted((b.path, b.problem, b.detail.split(";")[0]) for b in bad) == [
        ("no/", "empty_class", "class folder 'no' has no audio files"),
        ("readme.txt", "unsupported", "a file directly in the data root"),
        ("yes/cover.jpg", "unsupported", "unsupported file extension '.jpg'")]
    assert enforce_policy([BadFile("x.wav", "corrupt", "")], 10, "fail", 0.05, audio=True) == (
        "1 of 10 files are bad and data.audio.bad_files is 'fail'.")
    assert enforce_policy([], 0, "skip", 0.05, audio=True) == "no audio files found."


def _spec(**data):
    return Spec.from_dict({"name": "a", "data": {"path": "x", "label": "label", **data}})


def test_spec_audio_folder_defaults_and_checks():
    spec = _spec(format="audio_folder")
    assert spec.data.feature_types == {"audio": "audio"} and spec.data.is_audio and spec.data.is_files
    enc = spec.audio_encoder("audio")
    assert (enc.type, enc.sample_rate, enc.samples) == ("audio_cnn", 16000, 16000)
    with pytest.raises(SpecError, match=r"model\.encoders\.audio: .*fmax \(9000 Hz\) must be at most half the "
                                        r"sample rate \(8000 Hz\)"):
        Spec.from_dict({"name": "a", "data": {"path": "x", "label": "label", "format": "audio_folder"},
                        "model": {"encoders": {"audio": {"type": "audio_cnn", "sample_rate": 16000, "fmax": 9000}}}})
    with pytest.raises(SpecError, match=r"format 'audio_folder' expects exactly one feature, of type 'audio'"):
        _spec(format="audio_folder", features={"audio": "audio", "text": "text"})
    with pytest.raises(SpecError, match=r"audio feature 'clip' in a table is a column of audio file paths; "
                                        r"format 'tfrecord' holds no paths"):
        _spec(format="tfrecord", features={"clip": "audio", "n": "numeric"})
    # In a CSV, an audio column sits beside any other feature.
    assert _spec(features={"clip": "audio", "n": "numeric"}).data.feature_types == {"clip": "audio", "n": "numeric"}


def test_schema_keeps_audio_bytes_required_without_a_domain():
    from tensorflow_metadata.proto.v0 import schema_pb2

    from lamina.components.schema import apply_declared_types

    schema = schema_pb2.Schema()
    f = schema.feature.add(name="audio", type=schema_pb2.BYTES)
    f.domain = "audio"
    out = apply_declared_types(schema, {"audio": "audio"}, "label", "classification")
    audio = next(x for x in out.feature if x.name == "audio")
    assert audio.type == schema_pb2.BYTES and not audio.domain and not audio.HasField("image_domain")
    assert audio.presence.min_fraction == 1.0
