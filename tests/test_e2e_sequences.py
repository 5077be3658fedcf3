"""End to end on sequences: examples/sequences (temperature logs of any length in one ';'-separated
CSV cell, a byte-order mark and a header with a unit) through `lamina run`'s pipeline, an LSTM in
the Trainer, TFMA and the Pusher; then logs of different lengths in one request over gRPC and REST."""

import csv
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf

from lamina.rows import RowError, row_to_example
from lamina.serving.client import PredictionClient, RestClient
from tests.helpers import run_example, serving

pytestmark = pytest.mark.e2e

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "sequences")
LOG = "Temperature log (°C)"


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory):
    return run_example(tmp_path_factory.mktemp("sequences"), "sequences", ("spec.yaml", "machines.csv"))


@pytest.fixture(scope="module")
def sequence_server(sequence_run):
    yield from serving(sequence_run[0].push_dir, rest=True)


def _logs():
    with open(os.path.join(EXAMPLE, "machines.csv"), encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def test_the_lstm_beats_gradient_boosted_trees_on_the_padded_values(sequence_run):
    _, result = sequence_run
    assert result.pushed and result.blessed
    accuracy = result.metrics["sparse_categorical_accuracy"]
    trees = result.baselines["models"]["gbt"]["metrics"]["accuracy"]
    assert accuracy >= 0.9 and accuracy >= trees + 0.1, (accuracy, trees)


def test_logs_of_any_length_answer_as_in_process_over_grpc_and_rest(sequence_run, sequence_server):
    spec, result = sequence_run
    rows = _logs()[:6]
    requests = [{"Model": r["Model"], LOG: r[LOG]} for r in rows]  # the CSV cells, '1.2;3.4;NA'
    lists = [[float(v) if v != "NA" else None for v in r[LOG].split(";")] for r in rows]
    assert len({len(v) for v in lists}) > 2  # ragged: several lengths in one request
    as_lists = [{"Model": r["Model"], LOG: v} for r, v in zip(rows, lists)]

    model = tf.saved_model.load(result.pushed_model_dir)
    inputs = {"Model": tf.string.as_datatype_enum, LOG: tf.float32.as_datatype_enum}
    examples = tf.constant([row_to_example(r, inputs).SerializeToString() for r in requests])
    expected = model.signatures["serving_default"](inputs=examples)["scores"].numpy()
    name = spec.serving.model_name
    with PredictionClient(sequence_server.target) as client:
        assert client.sequence_inputs(name) == [LOG]
        grpc_examples = client.predict(name, as_lists)["scores"]
        grpc_cells = client.predict(name, requests)["scores"]
        grpc_raw = client.predict_raw(name, as_lists)["scores"]  # [6, longest] padded with NaN
    with RestClient(sequence_server.rest_url) as rest:
        rest_raw = rest.predict_raw(name, as_lists)["scores"]
        rest_examples = rest.predict(name, requests)["scores"]
    for got in (grpc_examples, grpc_cells, grpc_raw, rest_raw, rest_examples):
        np.testing.assert_allclose(got, expected, atol=1e-5)
    # The answers are the labels the CSV holds (the model is right on these rows).
    classes = [c.decode() for c in model.signatures["serving_default"](inputs=examples)["classes"].numpy()[0]]
    assert [classes[i] for i in np.argmax(expected, axis=1)] == [r["status"] for r in rows]


def test_a_log_longer_than_max_length_is_read_by_its_last_values(sequence_run, sequence_server):
    spec, _ = sequence_run
    keep = spec.encoder_for(LOG, "sequence").max_length
    row = next(r for r in _logs() if r["status"] == "fault" and len(r[LOG].split(";")) >= 20)
    values = [float(v) for v in row[LOG].split(";") if v != "NA"]
    longer = [values[0] + 30.0] * (keep + 10) + values  # a hot start the model never sees
    with PredictionClient(sequence_server.target) as client:
        name = spec.serving.model_name
        out = client.predict(name, [{"Model": row["Model"], LOG: longer[-keep:]},
                                    {"Model": row["Model"], LOG: longer}])["scores"]
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)


def test_a_log_with_a_word_in_it_is_refused_by_row_and_feature(sequence_run, sequence_server):
    spec, _ = sequence_run
    with PredictionClient(sequence_server.target) as client:
        with pytest.raises(RowError) as info:
            client.predict(spec.serving.model_name, [{"Model": "TX-100", LOG: "41.2;41.5;hot;42"}])
        assert str(info.value) == ("row 1: feature 'Temperature log (°C)' has value '41.2;41.5;hot;42', which is not "
                                   "a float32 (value 3, 'hot', is not a number).")
        # A raw tensor of the wrong rank gets INVALID_ARGUMENT, and the server answers the next call.
        with pytest.raises(grpc.RpcError) as error:
            client.predict_tensors(spec.serving.model_name, {"Model": np.array([b"TX-100"]),
                                                             LOG: np.array([41.0], np.float32)}, "serving_raw")
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Temperature log (°C)" in error.value.details()
        assert client.predict(spec.serving.model_name, [{"Model": "TX-100", LOG: [41.0, 41.2]}])["scores"].shape == (1, 2)
