"""End to end on a multimodal table: examples/multimodal's generated listings (two photos as paths in a
CSV, a description, a price written like "$1,234.50", a byte-order mark) through CsvExampleGen, Transform,
two ResNets, an LSTM on the text and a gated combiner, TFMA and the Pusher; then every modality in one
request over gRPC and REST, and a request that leaves one out."""

import csv
import importlib.util
import json
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
import yaml

from lamina.models.features import safe_name
from lamina.pipeline import cli
from lamina.rows import read_image_cells
from lamina.serving.client import PredictionClient, RestClient
from tests.helpers import run_example, serving

pytestmark = pytest.mark.e2e

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "multimodal")
INPUTS = {"Photo": tf.string.as_datatype_enum, "Tag photo": tf.string.as_datatype_enum,
          "Description": tf.string.as_datatype_enum, "Price ($)": tf.float32.as_datatype_enum}


def _make_dataset(folder):
    module_spec = importlib.util.spec_from_file_location("make_multimodal", os.path.join(EXAMPLE, "make_dataset.py"))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.write(str(folder))


@pytest.fixture(scope="module")
def multimodal_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("multimodal")
    _make_dataset(root)
    return run_example(root, "multimodal")


@pytest.fixture(scope="module")
def multimodal_server(multimodal_run):
    yield from serving(multimodal_run[0].push_dir, rest=True)


def _accuracy(spec_dict, base_dir, result, features, encoders, out_dir):
    """A model of the same spec trained on `features` only, on the run's Transform output: eval accuracy."""
    import tensorflow_transform as tft

    from lamina.models.features import describe_transformed_features
    from lamina.models.datasets import make_dataset
    from lamina.models.trainer import train
    from lamina.spec import Spec

    d = json.loads(json.dumps(spec_dict))
    d["data"]["features"] = {k: v for k, v in d["data"]["features"].items() if k in features}
    d["model"]["encoders"] = {k: v for k, v in d["model"]["encoders"].items() if k in encoders}
    spec = Spec.from_dict(d, base_dir=base_dir)
    tft_output = tft.TFTransformOutput(result.transform_graph_dir)
    split = lambda name: [os.path.join(result.examples_dir, f"Split-{name}", "*")]  # noqa: E731
    model, _ = train(spec, tft_output, split("train"), split("eval"), str(out_dir))
    infos = describe_transformed_features(spec, tft_output, _learned(out_dir, spec))
    ds = make_dataset(split("eval"), tft_output, spec, infos, 64, shuffle=False)
    labels = np.concatenate([y for _, y in ds.as_numpy_iterator()])
    predicted = np.argmax(model.predict(ds.map(lambda x, y: x), verbose=0), axis=1)
    return float((predicted == labels).mean())


def _learned(out_dir, spec):
    """The text vocabulary train() copied beside the model it wrote."""
    from lamina.models.images import BACKBONE_DIR

    found = {}
    for f in spec.data.features:
        path = os.path.join(str(out_dir), BACKBONE_DIR, f"{f.name}_vocab.txt")
        if os.path.exists(path):
            found[f.name] = path
    return found


def test_the_multimodal_model_beats_each_single_modality(multimodal_run, tmp_path):
    spec, result = multimodal_run
    assert result.pushed and result.blessed
    both = result.metrics["sparse_categorical_accuracy"]
    d = yaml.safe_load(open(os.path.join(spec.base_dir, "spec.yaml")))
    images = _accuracy(d, spec.base_dir, result, {"Photo", "Tag photo"}, {"Photo", "Tag photo"}, tmp_path / "images")
    text = _accuracy(d, spec.base_dir, result, {"Description", "Price ($)"}, {"Description"}, tmp_path / "text")
    print(f"accuracy: all modalities {both:.4f}, photos only {images:.4f}, text and price only {text:.4f}")
    # Photos alone tell the shape, text alone the material: about half of the four categories each.
    assert both >= 0.9 and images <= 0.7 and text <= 0.7, (both, images, text)
    assert both >= max(images, text) + 0.25


def _rows(spec, n=6):
    with open(os.path.join(spec.base_dir, "products.csv"), encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))[-n:]
    return rows


def test_every_modality_in_one_request_answers_as_in_process(multimodal_run, multimodal_server, tmp_path, capsys):
    spec, result = multimodal_run
    rows = _rows(spec)
    with_bytes = read_image_cells([{k: r[k] for k in INPUTS} for r in rows], spec.base_dir, INPUTS)
    assert isinstance(with_bytes[0]["Photo"], bytes) and with_bytes[0]["Photo"][:4] == b"\x89PNG"
    model = tf.saved_model.load(result.pushed_model_dir)
    columns = {"Photo": tf.constant([r["Photo"] for r in with_bytes]),
               "Tag photo": tf.constant([r["Tag photo"] for r in with_bytes]),
               "Description": tf.constant([r["Description"] for r in with_bytes]),
               "Price ($)": tf.constant([float(r["Price ($)"].strip("$").replace(",", "")) for r in with_bytes])}
    # In Python the signature's arguments have the columns' safe names; TF Serving's clients use the columns'.
    expected = model.signatures["serving_raw"](**{safe_name(k): v for k, v in columns.items()})
    scores = expected["scores"].numpy()
    with PredictionClient(multimodal_server.target) as client:
        np.testing.assert_allclose(client.predict_raw("products", with_bytes)["scores"], scores, atol=1e-5)
        np.testing.assert_allclose(client.predict("products", with_bytes)["scores"], scores, atol=1e-5)
    with RestClient(multimodal_server.rest_url) as rest:  # images travel as {"b64": ...}
        np.testing.assert_allclose(rest.predict_raw("products", with_bytes)["scores"], scores, atol=1e-5)
    classes = [c.decode() for c in expected["classes"].numpy()[0]]
    assert [classes[i] for i in np.argmax(scores, axis=1)] == [r["Category"] for r in rows]

    # `lamina predict` on a CSV whose rows name the image files (relative to the CSV's folder).
    listing = os.path.join(spec.base_dir, "to_score.csv")
    with open(listing, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(INPUTS))
        w.writeheader()
        w.writerows({k: r[k] for k in INPUTS} for r in rows)
    assert cli.main(["predict", "--model", "products", "--target", multimodal_server.target, listing]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["class"] for p in printed] == [r["Category"] for r in rows]
    np.testing.assert_allclose([[p["scores"][c] for c in classes] for p in printed], scores, atol=1e-5)


def test_a_request_without_a_modality_gets_invalid_argument_naming_it(multimodal_run, multimodal_server):
    spec, _ = multimodal_run
    row = read_image_cells([{k: _rows(spec, 1)[0][k] for k in INPUTS}], spec.base_dir, INPUTS)[0]
    partial = {k: np.array([v if not isinstance(v, str) else v.encode()]) for k, v in row.items() if k != "Photo"}
    partial["Price ($)"] = np.array([12.5], np.float32)
    with PredictionClient(multimodal_server.target) as client:
        with pytest.raises(grpc.RpcError) as error:
            client.predict_tensors("products", partial, "serving_raw")
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Missing input 'Photo'" in error.value.details()
        # As a tf.Example, the photo is the one feature that may not be left out.
        no_photo = {k: v for k, v in row.items() if k != "Photo"}
        with pytest.raises(grpc.RpcError) as error:
            client.predict("products", [no_photo])
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Photo" in error.value.details()
        assert client.predict("products", [row])["scores"].shape == (1, 4)  # the server still answers
