"""The compiled Kubeflow pipeline runs: every step of the IR through the container's entrypoint.

`lamina compile` writes the KFP v2 pipeline spec; tests/kfp_driver.py plays the KFP driver for
each task (the ExecutorInput it would build, with local paths on a "shared volume") and runs the
container's own command, TFX's kubeflow_v2_run_executor, in a process of its own, as each pod
would. So the IR and the image's code agree: parameters, artifact types and URIs, the custom
executors' import paths, the Beam arguments, and the push.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from lamina.models.kubernetes import check_manifest
from lamina.pipeline.kubeflow_runner import ENTRYPOINT, compile_pipeline
from lamina.pipeline.cli.datasets import write_penguins_csv
from lamina.rows import row_to_example
from tests.helpers import make_spec, read_csv
from tests.kfp_driver import KfpDriver

pytestmark = pytest.mark.e2e


def test_the_compiled_pipeline_runs_step_by_step_through_the_tfx_entrypoint(tmp_path):
    volume = tmp_path / "volume"  # what kubeflow.volume_mount names: a PVC every pod mounts
    write_penguins_csv(str(volume / "data" / "penguins.csv"))
    # The example's slice, fairness and per-class gates (so the PushGate runs in its container); the
    # baselines off, as each step here is a whole process (Baselines runs in the local runs).
    gates = make_spec(tmp_path, gated=True).evaluation.model_dump(mode="json")
    gates["baseline"] = {"enabled": False}
    spec = make_spec(tmp_path, data={"path": str(volume / "data" / "penguins.csv")}, evaluation=gates,
                     training={"epochs": 8, "distribution": {"strategy": "multi_worker", "workers": 2}}, kubeflow={
                         "image": "gcr.io/acme/lamina:0.1.0", "pipeline_root": str(volume / "lamina"),
                         "volume_mount": str(volume), "volume_claim": "lamina-shared",
                         "resources": {"Trainer": {"cpu": 2, "memory": "4G"}},
                         "beam": {"direct_running_mode": "in_memory", "direct_num_workers": 1}})
    package = compile_pipeline(spec, str(tmp_path / "pipeline.json"))
    # The Trainer launches its 2 workers as a Kubernetes Indexed Job; with no cluster here, it plays the
    # Job's pods as local processes with the environment each pod gets (models.launcher).
    driver = KfpDriver(package, root=str(volume / "lamina" / "run-1"),
                       env={"TF_CPP_MIN_LOG_LEVEL": "2", "LAMINA_LAUNCHER": "processes"})
    order = driver.run()

    assert order.index("AnomalyGate") < order.index("Transform") < order.index("Trainer") < order.index("Pusher")
    assert all(driver.commands[t][:3] == ENTRYPOINT for t in driver.commands)
    assert set(driver.commands) == {"CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
                                    "AnomalyGate", "Transform", "Trainer", "EvaluationSchema", "Evaluator", "PushGate",
                                    "Explainer", "TFLiteExporter", "Pusher"}
    # The Trainer wrote its Job and Service (valid for the Kubernetes API's schemas, or it would have
    # stopped), and its two workers trained the model that was pushed.
    run_dir = driver.artifacts["Trainer"]["model_run"][0]["uri"]
    with open(os.path.join(run_dir, "workers", "kubernetes.json")) as f:
        manifests = json.load(f)
    for manifest in manifests.values():
        check_manifest(manifest)
    job = manifests["job"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"], job["backoffLimit"]) == ("Indexed", 2, 2, 0)
    pod = job["template"]["spec"]
    assert pod["subdomain"] == manifests["service"]["metadata"]["name"]
    assert pod["volumes"] == [{"name": "shared", "persistentVolumeClaim": {"claimName": "lamina-shared"}}]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "2", "memory": "4G"},
                                                 "limits": {"cpu": "2", "memory": "4G"}}
    assert "Job lamina-penguins-" in driver.logs["Trainer"] and "2 pod(s) run as local processes" in driver.logs["Trainer"]
    assert "batch 32 (2 replicas x 16)" in driver.logs["Trainer"]
    for i in (0, 1):
        assert os.path.getsize(os.path.join(run_dir, "workers", f"worker-{i}.log")) > 0
    examples = driver.artifacts["CsvExampleGen"]["examples"][0]
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval"]
    blessing = driver.artifacts["Evaluator"]["blessing"][0]
    assert blessing["metadata"]["blessed"] == 1.0
    # The PushGate (slice, fairness, per-class and baseline gates) ran in its container too, and blessed it.
    assert driver.artifacts["PushGate"]["blessing"][0]["metadata"]["blessed"] == 1.0
    pushed = driver.artifacts["Pusher"]["pushed_model"][0]["metadata"]
    assert pushed["pushed"] == 1.0
    version_dir = pushed["pushed_destination"]
    assert version_dir.startswith(str(volume / "lamina" / "serving_models" / "penguins") + os.sep)
    assert os.path.exists(os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests"))

    # The pushed model is the Trainer's, and it answers: the same scores from both, and good ones.
    trained = tf.saved_model.load(os.path.join(driver.artifacts["Trainer"]["model"][0]["uri"], "Format-Serving"))
    served = tf.saved_model.load(version_dir)
    rows = read_csv(volume / "data" / "penguins.csv")
    complete = [r for r in rows if all(r.values())][::7]
    dtypes = {k: v.dtype.as_datatype_enum
              for k, v in served.signatures["serving_raw"].structured_input_signature[1].items()}
    batch = tf.constant([row_to_example({k: v for k, v in r.items() if k != "species"}, dtypes).SerializeToString()
                         for r in complete])
    got = served.signatures["serving_default"](inputs=batch)
    np.testing.assert_allclose(got["scores"].numpy(), trained.signatures["serving_default"](inputs=batch)["scores"])
    classes = got["classes"].numpy().astype(str)
    predicted = classes[np.arange(len(complete)), got["scores"].numpy().argmax(axis=1)]
    assert np.mean(predicted == np.array([r["species"] for r in complete])) >= 0.9
