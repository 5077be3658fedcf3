"""End to end on text: topics.csv through CsvExampleGen, Transform (strings pass through), MiniLM
fine-tuned with the WordPiece tokenizer in the graph, TFMA, BulkInferrer and the Pusher, then raw
strings over gRPC."""

import json
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from lamina.models.text import INVALID_UTF8_MESSAGE
from lamina.pipeline import cli
from lamina.rows import read_text_rows
from lamina.serving.client import PredictionClient
from tests.helpers import read_csv, read_prediction_logs, serving

pytestmark = pytest.mark.e2e

# Non-ASCII (accents, German sharp s, Japanese, emoji), an empty string, one longer than
# max_length (truncated in the graph), and whitespace only.
TEXTS = [
    "The goalkeeper saved a penalty in the final minute.",
    "Grandma's crème brûlée and a croissant for breakfast.",
    "A thunderstorm and heavy rain are expected tonight.",
    "The new smartphone update drains the battery.",
    "Snow and ice covered the streets of Zürich and Montréal.",
    "Der Schnee hat die Straßen in Zürich bedeckt.",
    "東京は今日は雨です ☔",
    "",
    "   ",
    " ".join(["the server crashed and the database was upgraded"] * 12),
]


@pytest.fixture(scope="module")
def in_process(text_run):
    _, result = text_run
    return tf.saved_model.load(result.pushed_model_dir)


@pytest.fixture(scope="module")
def text_server(text_run):
    spec, _ = text_run
    yield from serving(spec.push_dir)


def test_pipeline_fine_tunes_minilm_and_pushes(text_run):
    spec, result = text_run
    assert result.pushed and result.blessed
    assert result.metrics["sparse_categorical_accuracy"] >= 0.9
    assert 40 <= result.metrics["example_count"] <= 100  # the eval split of 320 rows
    # The example as shipped: MiniLM's learning rate tuned in TFX's Tuner, the accuracy gated per topic.
    trials = result.trials
    assert trials["engine"] == "optuna" and len(trials["trials"]) == spec.tuning.trials == 2
    assert all(3e-5 <= t["values"]["learning_rate"] <= 3e-4 and t["epochs"] == 1 for t in trials["trials"])
    topics = [g for g in result.gates["gates"] if g["gate"] == "slice"]
    assert sorted(g["slice"] for g in topics) == ["topic=food", "topic=sports", "topic=technology", "topic=weather"]
    assert all(g["passed"] for g in result.gates["gates"])
    assert result.baselines is None  # text only: no tabular feature for the trees
    from lamina.pipeline.runs.summary import latest_run_outputs

    schema_dir = latest_run_outputs(spec)[("SchemaGen", "schema")].uri
    schema = schema_pb2.Schema()
    from google.protobuf import text_format

    text_format.Parse(open(f"{schema_dir}/schema.pbtxt").read(), schema)
    text = next(f for f in schema.feature if f.name == "text")
    # Free text: no vocabulary was inferred that new sentences would break.
    assert text.type == schema_pb2.BYTES and text.HasField("natural_language_domain")
    assert not text.HasField("domain") and not text.HasField("string_domain")


def test_signatures_take_raw_strings_and_examples_alike(in_process):
    sigs = in_process.signatures
    raw = sigs["serving_raw"].structured_input_signature[1]
    assert list(raw) == ["text"] and raw["text"].dtype == tf.string
    out = sigs["serving_raw"](text=tf.constant(TEXTS))
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode()]))})).SerializeToString()
        for t in TEXTS]
    by_example = sigs["serving_default"](inputs=tf.constant(examples))
    np.testing.assert_allclose(by_example["scores"].numpy(), out["scores"].numpy(), atol=1e-6)
    # An example with no text at all is the empty string.
    absent = sigs["serving_default"](inputs=tf.constant([tf.train.Example().SerializeToString()]))
    np.testing.assert_allclose(absent["scores"].numpy()[0], out["scores"].numpy()[TEXTS.index("")], atol=1e-6)
    predicted = out["classes"].numpy()[np.arange(len(TEXTS)), out["scores"].numpy().argmax(1)]
    # MiniLM is an English model: the German sentence is only required to get an answer.
    assert [p.decode() for p in predicted[:5]] == ["sports", "food", "weather", "technology", "weather"]


def test_held_out_rows_are_classified(text_run, in_process):
    """The eval split's rows, read back from the CSV, are classified right through the raw signature."""
    spec, _ = text_run
    rows = read_csv(spec.resolve(spec.data.path))
    out = in_process.signatures["serving_raw"](text=tf.constant([r["text"] for r in rows]))
    predicted = out["classes"].numpy()[np.arange(len(rows)), out["scores"].numpy().argmax(1)]
    accuracy = np.mean([p.decode() == r["topic"] for p, r in zip(predicted, rows)])
    assert accuracy >= 0.95


def test_raw_strings_over_grpc_match_in_process(text_run, in_process, text_server):
    expected = in_process.signatures["serving_raw"](text=tf.constant(TEXTS))
    with PredictionClient(text_server.target) as client:
        rows = read_text_rows(TEXTS, client.raw_inputs("topics"))
        assert rows[6] == {"text": "東京は今日は雨です ☔"}
        served = client.predict_tensors("topics", {"text": np.array([t.encode() for t in TEXTS], dtype=object)},
                                        signature="serving_raw")
        by_example = client.predict("topics", rows)
        classified = client.classify("topics", rows)
    np.testing.assert_allclose(served["scores"], expected["scores"].numpy(), atol=1e-6)
    np.testing.assert_allclose(by_example["scores"], expected["scores"].numpy(), atol=1e-6)
    assert sorted(served["classes"][0]) == [b"food", b"sports", b"technology", b"weather"]
    for got, want in zip(classified, expected["scores"].numpy()):
        np.testing.assert_allclose([s for _, s in got], want, atol=1e-6)


def test_bulk_inferrer_scored_the_eval_split(text_run, in_process):
    _, result = text_run
    logs = read_prediction_logs(result.inference_dir)
    assert len(logs) == int(result.metrics["example_count"])
    examples = [log.classify_log.request.input.example_list.examples[0].SerializeToString() for log in logs]
    expected = in_process.signatures["serving_default"](inputs=tf.constant(examples))["scores"].numpy()
    for log, want in zip(logs, expected):
        scores = [c.score for c in log.classify_log.response.result.classifications[0].classes]
        np.testing.assert_allclose(scores, want, atol=1e-5)


def test_bad_text_requests_get_invalid_argument_and_the_server_stays_up(text_server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(text_server.target))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "topics"
    request.model_spec.signature_name = "serving_raw"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([1.5, 2.5]))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == ("Input 'text' has dtype DT_FLOAT; signature 'serving_raw' expects "
                                    "DT_STRING.")
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([b"fine", b"\xff\xfe not UTF-8"]))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert INVALID_UTF8_MESSAGE in info.value.details()
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(["the storm hit the coast"]))
    assert stub.Predict(request, timeout=30).outputs["scores"].tensor_shape.dim[1].size == 4


def test_cli_predict_sends_strings_and_prints_classes(text_server, capsys):
    texts = ["Hockey playoffs tonight!", "The soup was delicious.", "Über-heiße Temperatur und Dürre", ""]
    argv = ["predict", "--model", "topics", "--target", text_server.target]
    for t in texts:
        argv += ["--text", t]
    assert cli.main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["text"] for row in lines] == texts
    assert [row["class"] for row in lines[:2]] == ["sports", "food"]
    assert all(abs(sum(row["scores"].values()) - 1) < 1e-4 for row in lines)
    assert cli.main(["predict", "--model", "topics", "--target", text_server.target, "--text", "x",
                     "--feature", "body"]) == 2
    assert "--feature 'body' is not a string input of the model; its string inputs: text." in \
        capsys.readouterr().err


def test_a_scratch_transformer_learns_its_vocabulary_and_serves_strings(text_run, tmp_path, capsys):
    """No pretrained model and no vocabulary: the Trainer learns a WordPiece vocabulary from the train
    split, trains the from-scratch encoder and exports it with that vocabulary in the graph."""
    import tensorflow_transform as tft

    from lamina.models.images import BACKBONE_DIR
    from lamina.models.text import TextTokenizer, read_vocabulary
    from lamina.models.trainer import train
    from lamina.pipeline.runs.summary import latest_run_outputs
    from lamina.spec import Spec

    spec, result = text_run
    d = json.loads(spec.to_json())
    d["model"]["encoders"]["text"] = {"type": "transformer", "num_layers": 1, "num_heads": 2, "hidden_dim": 32,
                                      "intermediate_dim": 64, "max_length": 24, "vocabulary_size": 300}
    d["training"].update(epochs=20, learning_rate=3e-3)
    scratch = Spec.from_json(json.dumps(d))
    outputs = latest_run_outputs(spec)
    examples = result.examples_dir
    model, histories = train(scratch, tft.TFTransformOutput(outputs[("Transform", "transform_graph")].uri),
                             [f"{examples}/Split-train/*"], [f"{examples}/Split-eval/*"], str(tmp_path / "export"))
    printed = capsys.readouterr().out
    assert "learned a WordPiece vocabulary for 'text': " in printed
    vocab = read_vocabulary(str(tmp_path / "export" / BACKBONE_DIR / "text_vocab.txt"))
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(vocab) <= 300
    assert {"the", "about", "liked"} <= set(vocab)
    # Words rarer than the learner's threshold (10) are spelt in pieces, never [UNK].
    pieces = TextTokenizer(str(tmp_path / "export" / BACKBONE_DIR / "text_vocab.txt"), True, 24)(
        tf.constant("hockey sushi storm laptop")).numpy().tolist()
    assert vocab.index("[UNK]") not in pieces and len([p for p in pieces if p]) > 6
    print("scratch val_accuracy per epoch:", histories[-1].history["val_accuracy"])
    assert histories[-1].history["val_accuracy"][-1] >= 0.6  # chance: 0.25
    served = tf.saved_model.load(str(tmp_path / "export"))
    raw = served.signatures["serving_raw"](text=tf.constant(TEXTS))["scores"].numpy()
    ids = tf.constant([t.encode() for t in TEXTS])
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t]))})).SerializeToString() for t in ids.numpy()]
    np.testing.assert_allclose(served.signatures["serving_default"](inputs=tf.constant(examples))["scores"].numpy(),
                               raw, atol=1e-6)
    assert tuple(model.input["text"].shape) == (None, 24)


def test_a_missing_model_directory_stops_the_run_before_it_starts(tmp_path, minilm_dir, capsys):
    """`lamina run` checks the pretrained directory first: exit 2, the key, the path, nothing run."""
    import yaml

    from tests.helpers import TEXT_SPEC, text_spec

    spec = text_spec(tmp_path, minilm_dir)
    d = yaml.safe_load(TEXT_SPEC.read_text())
    d["model"]["encoders"]["text"]["path"] = "models/none"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(d))
    assert cli.main(["run", str(tmp_path / "spec.yaml")]) == 2
    missing = tmp_path / "models" / "none"
    assert capsys.readouterr().err.strip() == (
        f"Invalid spec:\n  - model.encoders.text.path: {missing}: no such directory; expected a Hugging Face "
        f"BERT directory (config.json, model.safetensors, vocab.txt) or a KerasHub preset directory.")
    assert not os.path.exists(spec.run_dir)


def test_token_attributions_of_minilm_are_complete_and_rendered(text_run, tmp_path, capsys):
    spec, result = text_run
    record = json.load(open(os.path.join(result.explanations_dir, "explanations.json")))
    rows = record["text"]["text"]
    assert len(rows) == len(record["examples"]) == spec.explain.samples
    for example, row in zip(record["examples"], rows):
        assert row["tokens"][0] == "[CLS]" and row["tokens"][-1] == "[SEP]"
        assert len(row["tokens"]) == len(row["attributions"])
        assert sum(row["attributions"]) == pytest.approx(example["score"] - example["baseline_score"], rel=0.01,
                                                         abs=1e-4)
    page = open(os.path.join(result.explanations_dir, "text.html")).read()
    assert page.count("<span class=t") == sum(len(r["tokens"]) for r in rows)
    report = open(result.report).read()
    assert "text: token attributions" in report

    # `lamina explain --text` against the pushed model: the answer the model gives, its tokens highlighted.
    out = tmp_path / "why"
    assert cli.main(["explain", "--model", result.pushed_model_dir, "--text", "the database server crashed again",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    mine = json.load(open(out / "explanations.json"))
    assert mine["text"]["text"][0]["tokens"][1:-1] == ["the", "database", "server", "crashed", "again"]
    assert printed[0] == f"the database server crashed again: {mine['examples'][0]['predicted']} " \
                         f"(score {mine['examples'][0]['score']:.4f})"
    assert printed[-2] == f"highlighted texts: {out / 'text.html'}"


def test_dynamic_range_tflite_of_minilm_is_a_quarter_of_the_size_and_answers_from_raw_text(text_run, in_process,
                                                                                           capsys):
    spec, result = text_run
    (form,) = result.tflite["forms"]
    assert form["form"] == "dynamic_range" and form["exported"], form
    variables = sum(os.path.getsize(os.path.join(result.pushed_model_dir, "variables", f))
                    for f in os.listdir(os.path.join(result.pushed_model_dir, "variables")))
    assert form["size_bytes"] < 0.3 * variables
    assert form["drop"] <= spec.export.max_metric_drop
    folder = os.path.join(result.pushed_model_dir, "assets.extra", "lamina", "tflite")
    inputs = json.load(open(os.path.join(folder, "input_spec.json")))["inputs"]
    assert [(i["name"], i["dtype"], i["shape"], i["max_length"]) for i in inputs] == [("text", "int32", [-1, 32], 32)]
    texts = ["the database server crashed again", "the striker scored twice in the final"]
    assert cli.main(["predict", "--tflite", os.path.join(folder, "model_dynamic_range.tflite"),
                     *sum((["--text", t] for t in texts), [])]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    served = in_process.signatures["serving_raw"](text=tf.constant(texts))
    classes = [c.decode() for c in served["classes"].numpy()[0]]
    assert [r["class"] for r in rows] == [classes[i] for i in served["scores"].numpy().argmax(axis=1)]
    assert [r["text"] for r in rows] == texts
