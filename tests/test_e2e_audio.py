"""End to end on real recordings: KLettres' spoken letters and syllables (Debian's klettres-data) in
eight languages, as a folder of class subfolders in five file formats, from `lamina init` through
ingestion, an audio CNN, TFMA and the Pusher, then WAV bytes over gRPC and REST."""

import base64
import glob
import importlib.util
import os
import struct

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from lamina.audio_headers import wav_bytes, wav_info
from lamina.pipeline import cli
from lamina.serving.client import PredictionClient, RestClient
from tests.helpers import REPO, serving

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "audio"
PER_CLASS = 40
# Each recording is written in one of these, in turn: the decoders' formats on real sound.
FORMATS = [("ogg", None), ("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "FLOAT"), ("flac", "PCM_16"),
           ("wav", "PCM_U8"), ("wav", "PCM_32")]


def _example_module(name):
    module_spec = importlib.util.spec_from_file_location(f"audio_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _klettres_maker():
    """examples/audio/make_dataset.py, once Debian's klettres-data is there: make test installs it, so under CI
    its absence fails; elsewhere the test is skipped with the command that adds it."""
    make = _example_module("make_dataset")
    if not os.path.isdir(make.KLETTRES):
        if os.environ.get("CI"):
            pytest.fail("klettres-data is not installed; make test installs it (apt-get install klettres-data)")
        pytest.skip("klettres-data is not installed (apt-get install klettres-data)")
    return make


def _write_folder(root: str) -> dict:
    """The example's recordings (PER_CLASS per language), each re-encoded in its turn's format, and three
    files no model could use. Returns {language: count}."""
    import soundfile

    counts = _klettres_maker().write_dataset(root, per_class=PER_CLASS)
    for i, path in enumerate(sorted(glob.glob(os.path.join(root, "*", "*.ogg")))):
        ext, subtype = FORMATS[i % len(FORMATS)]
        if ext == "ogg":
            continue
        samples, rate = soundfile.read(path, always_2d=True)
        soundfile.write(path[:-4] + "." + ext, samples, rate, subtype=subtype)
        os.remove(path)
    open(os.path.join(root, "es", "empty.wav"), "wb").close()
    with open(os.path.join(root, "it", "notes.wav"), "w", encoding="utf-8") as f:
        f.write("recorded on Tuesday\n")
    header = wav_bytes(np.zeros(16, np.int16), 44100)
    with open(os.path.join(root, "lt", "ten_hours.wav"), "wb") as f:  # claims 10 hours, holds 16 samples
        f.write(header[:40] + struct.pack("<I", 44100 * 2 * 36000) + header[44:])
    return counts


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    from lamina.pipeline.local_runner import run_pipeline
    from lamina.spec import Spec

    root = tmp_path_factory.mktemp("audio")
    counts = _write_folder(str(root / "languages"))
    assert cli.main(["init", str(root / "languages"), "-o", str(root / "spec.yaml")]) == 0
    text = (root / "spec.yaml").read_text()
    spec = Spec.from_yaml(root / "spec.yaml")
    spec.training.epochs = 20
    return spec, run_pipeline(spec), counts, text


@pytest.fixture(scope="module")
def audio_server(audio_run):
    yield from serving(audio_run[0].push_dir, rest=True)


def eval_clips(spec):
    """(WAV bytes, language) of the eval split, as ingestion wrote them."""
    from lamina.pipeline.runs.summary import latest_run_outputs

    examples = latest_run_outputs(spec)[("ImageExampleGen", "examples")]
    out = []
    for record in tf.data.TFRecordDataset(glob.glob(os.path.join(examples.uri, "Split-eval", "*.gz")),
                                          compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        out.append((feature["audio"].bytes_list.value[0], feature["label"].bytes_list.value[0].decode(),
                    feature["source_path"].bytes_list.value[0].decode()))
    return out


def test_init_writes_an_audio_spec_for_the_folder(audio_run):
    _, _, counts, text = audio_run
    assert len(counts) == 8 and set(counts.values()) == {PER_CLASS}
    assert "  format: audio_folder\n" in text and "  features: {audio: audio}\n" in text
    assert "      type: audio_cnn " in text and "      sample_rate: 16000\n" in text
    assert f": {8 * PER_CLASS + 3} audio files in 8 classes" in text
    # KLettres' recordings last up to a few seconds: the clip covers 90% of the sampled ones.
    assert "      seconds: 2.5 " in text


def test_ingestion_reads_every_format_and_names_the_bad_files(audio_run):
    _, result, _, _ = audio_run
    ingest = result.ingest
    assert (ingest["files"], ingest["examples"], ingest["bad"]) == (8 * PER_CLASS + 3, 8 * PER_CLASS, 3)
    assert set(ingest["classes"].values()) == {PER_CLASS}
    bad = {b["path"]: (b["problem"], b["detail"]) for b in ingest["bad_files"]}
    assert bad["es/empty.wav"] == ("empty", "the file is empty (0 bytes)")
    assert bad["it/notes.wav"][0] == "unsupported"
    assert bad["it/notes.wav"][1].startswith("the file cannot be decoded as audio (libsndfile ")
    assert bad["lt/ten_hours.wav"] == ("too_long", "the file is a WAV file of 36,000.0 seconds (1 channel(s) at "
                                       "44100 Hz, by its header); the limit is 600 seconds (data.audio.max_seconds).")
    from lamina.pipeline.runs.summary import format_result

    assert f"  audio:          {8 * PER_CLASS} examples from {8 * PER_CLASS + 3} files in 8 classes; 3 bad file(s) " \
           "skipped (listed in the report)" in format_result(result)
    page = open(result.report, encoding="utf-8").read()
    assert '<h2 id="data">Audio</h2>' in page and "lt/ten_hours.wav" in page


def test_the_model_beats_mfcc_statistics_with_logistic_regression(audio_run):
    spec, result, _, _ = audio_run
    assert result.pushed and result.blessed
    ours = result.metrics["sparse_categorical_accuracy"]
    baseline = _example_module("baseline").baseline_accuracy(spec)
    print(f"eval accuracy: Lamina {ours:.3f}, MFCC statistics + logistic regression {baseline:.3f}")
    assert ours >= baseline and ours >= 0.85


def test_served_answers_equal_the_in_process_model_over_grpc_and_rest(audio_run, audio_server):
    spec, result, _, _ = audio_run
    clips = eval_clips(spec)[:24]
    data = [c for c, _, _ in clips]
    # Ingestion kept WAV files as they were and turned the others into 16-bit PCM.
    assert {wav_info(d).bits for d in data} >= {8, 16, 24, 32}
    model = tf.saved_model.load(result.pushed_model_dir)
    expected = model.signatures["serving_raw"](audio=tf.constant(data))["scores"].numpy()
    with PredictionClient(audio_server.target) as client:
        served = client.predict_tensors("languages", {"audio": np.array(data, dtype=object)}, signature="serving_raw")
        np.testing.assert_allclose(served["scores"], expected, rtol=1e-5, atol=1e-6)
        classified = client.classify("languages", [{"audio": d} for d in data])
    for got, want in zip(classified, expected):
        np.testing.assert_allclose([s for _, s in got], want, atol=1e-5)
    with RestClient(audio_server.rest_url) as rest:  # WAV bytes travel as {"b64": ...}
        np.testing.assert_allclose(rest.predict_raw("languages", [{"audio": d} for d in data])["scores"], expected,
                                   rtol=1e-5, atol=1e-6)


def test_a_header_claiming_ten_hours_is_refused_and_the_server_stays_up(audio_run, audio_server):
    spec, _, _, _ = audio_run
    claimed = open(os.path.join(spec.resolve(spec.data.path), "lt", "ten_hours.wav"), "rb").read()
    channel = grpc.insecure_channel(audio_server.target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "languages"
    request.model_spec.signature_name = "serving_raw"
    request.inputs["audio"].CopyFrom(tf.make_tensor_proto([claimed]))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == ("Input 'audio' element 0 is a WAV file of 36,000.0 seconds (1 channel(s) at "
                                    "44100 Hz, by its header); the limit is 600 seconds (lamina serve "
                                    "--max-audio-seconds).")
    reply = requests.post(f"{audio_server.rest_url}/v1/models/languages:predict", timeout=30,
                          json={"signature_name": "serving_raw",
                                "instances": [{"b64": base64.b64encode(claimed).decode()}]})
    assert reply.status_code == 400 and "36,000.0 seconds" in reply.json()["error"]
    request.inputs["audio"].CopyFrom(tf.make_tensor_proto([eval_clips(spec)[0][0]]))
    assert stub.Predict(request, timeout=30).outputs["scores"].tensor_shape.dim[1].size == 8
    channel.close()


def test_cli_predict_sends_ogg_flac_and_wav_files(audio_run, audio_server, capsys):
    spec, _, _, _ = audio_run
    root = spec.resolve(spec.data.path)
    files = [sorted(glob.glob(os.path.join(root, "*", f"*.{ext}")))[0] for ext in ("ogg", "flac", "wav")]
    assert cli.main(["predict", *files, "--model", "languages", "--target", audio_server.target]) == 0
    lines = [__import__("json").loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["file"] for row in lines] == files
    assert all(abs(sum(row["scores"].values()) - 1) < 1e-4 for row in lines)
    assert sum(row["class"] == os.path.basename(os.path.dirname(f)) for row, f in zip(lines, files)) >= 2


def test_the_report_shows_grad_cam_over_spectrograms(audio_run):
    _, result, _, _ = audio_run
    images = __import__("json").load(open(os.path.join(result.explanations_dir, "explanations.json")))["images"]
    assert images and all(i["feature"] == "audio" for i in images)
    from PIL import Image

    picture = Image.open(os.path.join(result.explanations_dir, images[0]["file"]))
    # The spectrogram (64 mel bins up, 248 frames across) beside its overlay, scaled alike.
    assert picture.size[0] > 2 * picture.size[1]


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A spreadsheet of recordings: an audio path column beside a number and a category, from the same
    recordings (Ogg, as KLettres ships them), 30 per language in 4 languages."""
    import csv

    import soundfile

    from lamina.pipeline.local_runner import run_pipeline
    from lamina.spec import Spec

    root = tmp_path_factory.mktemp("audio_table")
    counts = _klettres_maker().write_dataset(str(root / "clips"), per_class=30)
    languages = sorted(counts)[:4]
    with open(root / "recordings.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Recording", "Length (s)", "Kind", "Language"])
        for lang in languages:
            for path in sorted(glob.glob(str(root / "clips" / lang / "*.ogg"))):
                info = soundfile.info(path)
                w.writerow([os.path.relpath(path, root), f"{info.duration:.3f}",
                            os.path.basename(path).split("-")[0], lang])
    spec = Spec.from_dict({
        "name": "recordings",
        "data": {"path": "recordings.csv", "label": "Language",
                 "features": {"Recording": "audio", "Length (s)": "numeric", "Kind": "categorical"}},
        "model": {"encoders": {"Recording": {"type": "audio_cnn", "seconds": 2.0, "mel_bins": 48, "width": 8}},
                  "head": {"type": "classification"}},
        "training": {"epochs": 10, "batch_size": 16, "learning_rate": 0.003, "lr_schedule": "linear_warmup_decay"},
        "serving": {"model_name": "recordings", "push_dir": "serving_models"},
        "runner": {"root": "lamina_runs"}}, base_dir=str(root))
    return spec, run_pipeline(spec), languages


def test_a_table_with_an_audio_column_trains_and_serves(table_run):
    import csv

    spec, result, languages = table_run
    assert result.pushed and result.metrics["sparse_categorical_accuracy"] >= 0.6  # 4 languages: 0.25 by chance
    rows = list(csv.DictReader(open(os.path.join(spec.base_dir, "recordings.csv"), encoding="utf-8")))[::7]
    from lamina.audio_headers import to_wav
    from lamina.models.features import safe_name

    wavs = [to_wav(open(os.path.join(spec.base_dir, r["Recording"]), "rb").read(), r["Recording"]) for r in rows]
    model = tf.saved_model.load(result.pushed_model_dir)
    columns = {"Recording": tf.constant(wavs), "Length (s)": tf.constant([float(r["Length (s)"]) for r in rows]),
               "Kind": tf.constant([r["Kind"] for r in rows])}
    expected = model.signatures["serving_raw"](**{safe_name(k): v for k, v in columns.items()})["scores"].numpy()
    with_bytes = [{"Recording": w, "Length (s)": float(r["Length (s)"]), "Kind": r["Kind"]}
                  for w, r in zip(wavs, rows)]
    for server in serving(spec.push_dir):
        with PredictionClient(server.target) as client:
            np.testing.assert_allclose(client.predict_raw("recordings", with_bytes)["scores"], expected, atol=1e-5)
            np.testing.assert_allclose(client.predict("recordings", with_bytes)["scores"], expected, atol=1e-5)
        # `lamina predict` on the spreadsheet itself: its Ogg paths are read, turned into WAV and sent.
        listing = os.path.join(spec.base_dir, "to_score.csv")
        with open(listing, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["Recording", "Length (s)", "Kind"])
            w.writeheader()
            w.writerows({k: r[k] for k in ("Recording", "Length (s)", "Kind")} for r in rows)
        out = _predict_lines(["predict", "--model", "recordings", "--target", server.target, listing])
        np.testing.assert_allclose([[line["scores"][c] for c in sorted(line["scores"])] for line in out],
                                   _sorted_scores(expected, model, columns), atol=1e-5)
        assert sorted(languages) == sorted(out[0]["scores"])


def _predict_lines(argv):
    import contextlib
    import io
    import json

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(argv) == 0
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def _sorted_scores(expected, model, columns):
    """The scores with the classes in name order, as `lamina predict` prints them."""
    from lamina.models.features import safe_name

    classes = [c.decode() for c in model.signatures["serving_raw"](
        **{safe_name(k): v[:1] for k, v in columns.items()})["classes"].numpy()[0]]
    order = np.argsort(classes)
    return expected[:, order]
