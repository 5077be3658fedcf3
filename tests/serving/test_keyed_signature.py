"""A SignatureDef keyed by names TensorFlow's placeholders cannot have ('monthly spend', 'Größe'):
TF Serving feeds inputs by the SignatureDef's keys, and `lamina serve` must too."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from lamina.models.export import rename_signature_inputs
from lamina.models.features import safe_name
from lamina.serving.saved_model import read_signature_defs
from lamina.serving.server import LaminaServer

COLUMNS = ["monthly spend", "Größe", "plain"]


class _Columns(tf.Module):
    @tf.function(input_signature=[{c: tf.TensorSpec([None], tf.float32, name=safe_name(c)) for c in COLUMNS}])
    def raw(self, inputs):
        return {"y": inputs["monthly spend"] + 10.0 * inputs["Größe"] + 100.0 * inputs["plain"]}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    base = tmp_path_factory.mktemp("keyed") / "cols"
    path = str(base / "1")
    module = _Columns()
    tf.saved_model.save(module, path, signatures={"serving_raw": module.raw})
    rename_signature_inputs(path, "serving_raw", {safe_name(c): c for c in COLUMNS if safe_name(c) != c})
    server = LaminaServer(str(base.parent), port=0, rest_port=0).start()
    yield path, server
    server.stop()


def _request(inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "cols"
    request.model_spec.signature_name = "serving_raw"
    for k, v in inputs.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    return request


def test_the_signature_def_is_keyed_by_the_columns_and_points_at_the_same_tensors(keyed):
    path, _ = keyed
    inputs = read_signature_defs(path)["serving_raw"].inputs
    assert sorted(inputs) == sorted(COLUMNS)
    assert inputs["monthly spend"].name == f"serving_raw_{safe_name('monthly spend')}:0"
    # A TF1 session (how TF Serving and BulkInferrer run a SavedModel) feeds them by those keys.
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta = tf.compat.v1.saved_model.load(session, ["serve"], path)
        sig = meta.signature_def["serving_raw"]
        y = session.run(sig.outputs["y"].name, {sig.inputs[c].name: [v] for c, v in zip(COLUMNS, (1.0, 2.0, 3.0))})
    np.testing.assert_allclose(y, [321.0])


def test_lamina_serve_takes_the_columns_own_names(keyed):
    _, server = keyed
    with grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        answer = stub.Predict(_request({"monthly spend": np.array([1.0, 4.0], np.float32),
                                        "Größe": np.array([2.0, 5.0], np.float32),
                                        "plain": np.array([3, 6], np.int64)}), 10.0)  # ints are converted
        np.testing.assert_allclose(tf.make_ndarray(answer.outputs["y"]), [321.0, 654.0])
        metadata = stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "cols"}, metadata_field=["signature_def"]), 10.0)
        assert "monthly spend" in str(metadata)
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(_request({"monthly_spend": np.array([1.0], np.float32),
                                   "Größe": np.array([2.0], np.float32), "plain": np.array([3.0], np.float32)}), 10.0)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == ("Missing input 'monthly spend' for signature 'serving_raw'; expected inputs: Größe, "
                                 "monthly spend, plain.")
    assert server.registry.names() == ["cols"]
