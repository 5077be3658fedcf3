"""A regression head end to end: penguin body mass, served through TF Serving's Regress API. The model is
`model.type: blend`, the network and the gradient-boosted trees averaged in one SavedModel.

Everything but ML Metadata and the report lives on TensorFlow's in-memory `ram://` filesystem,
which `open`, `os.listdir` and `glob` cannot see, as they cannot see `gs://`: the data, the
pipeline root (every artifact, written by Beam and by TensorFlow) and the push destination,
which the server then serves from.
"""

import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc, regression_pb2

from lamina.constants import REGRESS_METHOD
from lamina.pipeline.local_runner import run_pipeline
from lamina.spec import Spec
from lamina.rows import row_to_example
from lamina.serving.client import PredictionClient
from lamina.serving.saved_model import read_signature_defs
from lamina.serving.server import LaminaServer
from tests import ramfs
from tests.helpers import read_csv

pytestmark = pytest.mark.e2e


def test_regression_pipeline_and_regress_api_on_remote_storage(penguins_dir, tmp_path, monkeypatch):
    ramfs.as_gcs(monkeypatch)
    monkeypatch.chdir(tmp_path)  # a ram:// path handed to a local-only call would land here, as "ram:/..."
    bucket = ramfs.ram_root("bucket")
    tf.io.gfile.copy(str(penguins_dir / "data" / "penguins.csv"), f"{bucket}/data/penguins.csv")
    spec = Spec.from_dict({
        "name": "penguin_mass",
        "data": {"path": f"{bucket}/data/penguins.csv", "label": "body_mass_g",
                 "features": {"species": "categorical", "island": "categorical", "bill_length_mm": "numeric",
                              "bill_depth_mm": "numeric", "flipper_length_mm": "numeric", "sex": "categorical"}},
        "model": {"type": "blend", "head": {"type": "regression"}},  # the network and the trees, averaged
        "training": {"epochs": 30, "batch_size": 16, "learning_rate": 0.01},
        "tuning": {"trials": 2, "epochs": 6, "seed": 1,
                   "space": {"learning_rate": {"low": 0.003, "high": 0.03, "log": True}}},
        "evaluation": {"metrics": ["mae", "rmse", "mse", "r2"], "thresholds": {"mae": {"upper_bound": 600},
                                                                           "r2": {"lower_bound": 0.5}}},
        "export": {"tflite": ["float", "dynamic_range"]},
        "serving": {"model_name": "mass", "push_dir": f"{bucket}/serving_models"},
        "runner": {"root": "regression_runs", "pipeline_root": f"{bucket}/lamina"},
    }, base_dir=str(penguins_dir))
    result = run_pipeline(spec)
    assert result.model_choice == {"type": "blend", "exported": "blend"}
    assert result.pushed_model_dir.startswith(f"{bucket}/serving_models/mass/")
    assert result.model_dir.startswith(f"{bucket}/lamina/penguin_mass/Trainer/")
    assert "pipeline" not in os.listdir(spec.run_dir)  # every artifact went to the bucket
    assert os.listdir(tmp_path) == []  # and nothing to a local folder named after the URI (the Tuner's did)
    assert tf.io.gfile.exists(f"{result.pushed_model_dir}/assets.extra/tf_serving_warmup_requests")
    report = open(spec.report_path).read()
    assert "mean_absolute_error" in report
    # The report plots the residuals of the eval examples the trained model scored; TFLite's MAE is beside it.
    assert 'data-plot="residuals"' in report and "Confusion matrix" not in report
    forms = {f["form"]: f for f in result.tflite["forms"]}
    assert forms["float"]["exported"] and forms["float"]["metric"] == pytest.approx(result.tflite["reference"],
                                                                                     rel=1e-4)
    assert result.tflite["metric"] == "mean_absolute_error"
    assert result.tflite["reference"] == pytest.approx(result.metrics["mean_absolute_error"], rel=1e-3)
    assert tf.io.gfile.exists(f"{result.pushed_model_dir}/assets.extra/lamina/tflite/model_float.tflite")
    # The Tuner's trials learn the label in standard units too (the moments read once, as the Trainer reads
    # them): each trial's holdout MAE, in grams, is well under the label's deviation of about 800 g. A network
    # on the raw label stays near the mean of 4,200 g in so few epochs (tests/models/test_builder.py).
    trials = result.trials
    assert (trials["objective"], trials["direction"]) == ("mae", "min") and len(trials["trials"]) == 2
    assert all(t["status"] == "completed" and t["score"] < 600 for t in trials["trials"]), trials["trials"]
    # Body mass has a standard deviation of about 800 g; the model must do far better than the mean.
    assert result.pushed and result.metrics["mean_absolute_error"] < 600
    assert read_signature_defs(result.pushed_model_dir)["serving_default"].method_name == REGRESS_METHOD
    # R² (Lamina's own TFMA metric) is 1 - MSE / Var(label) over the same eval examples.
    eval_files = tf.io.gfile.glob(f"{result.examples_dir}/Split-eval/*")
    masses = [tf.train.Example.FromString(r.numpy()).features.feature["body_mass_g"]
              for r in tf.data.TFRecordDataset(eval_files, compression_type="GZIP")]
    masses = np.array([f.int64_list.value[0] if f.int64_list.value else f.float_list.value[0] for f in masses], float)
    assert len(masses) == int(result.metrics["example_count"])
    m = result.metrics
    assert m["r_squared"] == pytest.approx(1.0 - m["mean_squared_error"] / masses.var(), rel=1e-4)
    assert m["root_mean_squared_error"] == pytest.approx(np.sqrt(m["mean_squared_error"]), rel=1e-4)
    # The baselines were fit on the same split, from the bucket, and report the same metrics.
    gbt = result.baselines["models"]["gbt"]["metrics"]
    assert set(gbt) == {"mae", "rmse", "mse", "r2"} and 0 < gbt["r2"] <= 1 and gbt["mae"] < 600
    assert gbt["rmse"] == pytest.approx(np.sqrt(gbt["mse"]))
    assert '<h2 id="baselines">Baselines</h2>' in report

    rows = [{k: v for k, v in r.items() if k != "body_mass_g"}
            for r in read_csv(penguins_dir / "data" / "penguins.csv")[:6]]
    model = tf.saved_model.load(result.pushed_model_dir)
    dtypes = {k: v.dtype.as_datatype_enum
              for k, v in model.signatures["serving_raw"].structured_input_signature[1].items()}
    examples = [row_to_example(r, dtypes) for r in rows]
    expected = model.signatures["serving_default"](
        inputs=tf.constant([e.SerializeToString() for e in examples]))["outputs"].numpy()

    server = LaminaServer(spec.push_dir, port=0).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            request = regression_pb2.RegressionRequest()
            request.model_spec.name = "mass"
            request.input.example_list.examples.extend(examples)
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Regress(request, 10.0)
        np.testing.assert_allclose([r.value for r in response.result.regressions], expected, rtol=1e-6)
        with PredictionClient(server.target) as client:
            np.testing.assert_array_equal(client.predict("mass", rows)["outputs"], expected)
    finally:
        server.stop()
