"""`lamina deploy-files`: every file parses (YAML with a YAML parser, models.config with TF Serving's
own ModelServerConfig proto) and the files agree with each other and with the model directory."""

import os
import re

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from lamina.pipeline import cli

pytestmark = pytest.mark.e2e  # uses the pushed penguins model


def parse_text_config(text: str) -> dict:
    """`key { value: N }` lines of batching.config -> {key: N}."""
    return {k: int(v) for k, v in re.findall(r"^(\w+) \{ value: (\d+) \}$", text, re.M)}


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_deploy_files_parse_and_agree(penguins_run, tmp_path, capsys, gpu):
    spec, result = penguins_run
    out = tmp_path / "deploy"
    argv = ["deploy-files", "--model-dir", spec.push_dir, "-o", str(out), "--max-batch-size", "64"]
    assert cli.main(argv + (["--gpu"] if gpu else [])) == 0
    written = capsys.readouterr().out.split()
    assert sorted(os.path.basename(p) for p in written) == sorted(
        ["models.config", "batching.config", "monitoring.config", "docker-compose.yml", "kubernetes.yaml"])

    config = text_format.Parse((out / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    models = {c.name: c for c in config.model_config_list.config}
    assert sorted(models) == sorted(os.listdir(spec.push_dir)) == ["penguins"]
    assert models["penguins"].base_path == "/models/penguins"
    assert models["penguins"].model_platform == "tensorflow"
    assert models["penguins"].model_version_policy.latest.num_versions == 1
    version = os.path.basename(result.pushed_model_dir)
    assert os.path.isfile(os.path.join(spec.push_dir, "penguins", version, "saved_model.pb"))

    batching = parse_text_config((out / "batching.config").read_text())
    assert batching == {"max_batch_size": 64, "batch_timeout_micros": 2000, "num_batch_threads": 4,
                        "max_enqueued_batches": 100}
    assert 'path: "/monitoring/prometheus/metrics"' in (out / "monitoring.config").read_text()

    compose = yaml.safe_load((out / "docker-compose.yml").read_text())["services"]["tfserving"]
    image = "tensorflow/serving:2.16.1" + ("-gpu" if gpu else "")
    assert compose["image"] == image
    assert compose["ports"] == ["8500:8500", "8501:8501"]
    assert f"{os.path.abspath(spec.push_dir)}:/models:ro" in compose["volumes"]
    assert ("deploy" in compose) == gpu

    config_map, deployment, service = list(yaml.safe_load_all((out / "kubernetes.yaml").read_text()))
    assert [d["kind"] for d in (config_map, deployment, service)] == ["ConfigMap", "Deployment", "Service"]
    for name in ("models.config", "batching.config", "monitoring.config"):
        assert config_map["data"][name] == (out / name).read_text()  # the ConfigMap carries the same files
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == image and container["args"] == compose["command"]
    args = dict(a[2:].split("=", 1) for a in container["args"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert args["model_config_file"] == f"{mounts['config']}/models.config"
    assert args["batching_parameters_file"] == f"{mounts['config']}/batching.config"
    assert args["monitoring_config_file"] == f"{mounts['config']}/monitoring.config"
    assert models["penguins"].base_path.startswith(mounts["models"] + "/")
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/v1/models/penguins", "port": "rest"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": int(args["port"]), "rest": int(args["rest_api_port"])} == {"grpc": 8500, "rest": 8501}
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert pod["volumes"][0]["configMap"]["name"] == config_map["metadata"]["name"]
    assert ("limits" in container["resources"] and container["resources"]["limits"] == {"nvidia.com/gpu": 1}) == gpu


def test_deploy_files_need_pushed_models(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["deploy-files", "--model-dir", str(tmp_path / "empty"), "-o", str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{tmp_path / 'empty'}: no pushed models; expected <model>/<version>/saved_model.pb folders, as Lamina's "
        f"Pusher writes them (serving.push_dir).")


def test_lamina_serve_reads_the_written_models_and_batching_config(penguins_run, tmp_path):
    """The same files, with the host's model folder as the models root, drive `lamina serve`."""
    import grpc

    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    from lamina.serving.batching import read_batching_config
    from lamina.serving.deploy import DeploySettings, write_deploy_files
    from lamina.serving.server import LaminaServer

    spec, result = penguins_run
    settings = DeploySettings(models_root=os.path.abspath(spec.push_dir), max_batch_size=48,
                              batch_timeout_micros=1500, num_batch_threads=3)
    write_deploy_files(spec.push_dir, str(tmp_path), settings)
    batching = read_batching_config(str(tmp_path / "batching.config"))
    assert (batching.max_batch_size, batching.batch_timeout_micros, batching.num_batch_threads) == (48, 1500, 3)
    server = LaminaServer(str(tmp_path / "models.config"), port=0, batching=batching).start()
    try:
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server.target))
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "penguins"
        status = stub.GetModelStatus(request, 10.0).model_version_status
        newest = max(int(v) for v in os.listdir(os.path.join(spec.push_dir, "penguins")) if v.isdigit())
        assert newest >= int(os.path.basename(result.pushed_model_dir))
        assert [(s.version, s.state) for s in status] == [
            (newest, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    finally:
        server.stop()

