"""Deployment files for the official TensorFlow Serving, written from a pushed model directory.

`lamina deploy-files --model-dir serving_models -o deploy/` writes:

  models.config       TF Serving's model_config_list (the text for --model_config_file): one
                      entry per model folder, base_path under the container's model root
  batching.config     BatchingParameters for --batching_parameters_file (max batch size, batch
                      timeout, batch threads, queue), used when --enable_batching is on
  monitoring.config   the Prometheus endpoint for --monitoring_config_file
  docker-compose.yml  tensorflow/serving (or :<version>-gpu) with the gRPC and REST ports, the
                      model directory mounted read-only and the three files
  kubernetes.yaml     a ConfigMap with the three files, a Deployment (liveness and readiness
                      probes on the REST model-status path, GPUs when asked) and a Service

Every file is derived from one `DeploySettings` and the models found, so they agree.
"""

import dataclasses
import os
from typing import Dict, List

import yaml

from lamina import storage
from lamina.constants import GRPC_PORT, METRICS_PATH, REST_PORT

CONFIG_FILES = ("models.config", "batching.config", "monitoring.config")


@dataclasses.dataclass(frozen=True)
class DeploySettings:
    serving_version: str = "2.16.1"  # tensorflow/serving tag, matching tensorflow-serving-api
    gpu: bool = False
    grpc_port: int = GRPC_PORT
    rest_port: int = REST_PORT
    models_root: str = "/models"  # where the model directory is mounted in the container
    config_root: str = "/config"
    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 4
    max_enqueued_batches: int = 100
    replicas: int = 1
    name: str = "lamina-serving"
    models_claim: str = "lamina-models"  # Kubernetes: the PVC holding the model directory

    @property
    def image(self) -> str:
        return f"tensorflow/serving:{self.serving_version}" + ("-gpu" if self.gpu else "")

    def server_args(self) -> List[str]:
        return [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}",
                f"--model_config_file={self.config_root}/models.config",
                "--model_config_file_poll_wait_seconds=60",
                "--enable_batching=true", f"--batching_parameters_file={self.config_root}/batching.config",
                f"--monitoring_config_file={self.config_root}/monitoring.config"]


def find_models(model_dir: str) -> Dict[str, List[int]]:
    """Model name -> its numeric version folders that hold a saved_model.pb, for each model folder."""
    models = {}
    for name in sorted(storage.listdir(model_dir)):
        path = os.path.join(model_dir, name)
        if not storage.isdir(path):
            continue
        versions = sorted(int(v) for v in storage.listdir(path)
                          if v.isdigit() and storage.isfile(os.path.join(path, v, "saved_model.pb")))
        if versions:
            models[name] = versions
    if not models:
        raise ValueError(f"{model_dir}: no pushed models; expected <model>/<version>/saved_model.pb folders, as "
                         f"Lamina's Pusher writes them (serving.push_dir).")
    return models


def models_config(models: Dict[str, List[int]], settings: DeploySettings) -> str:
    entries = []
    for name in models:
        entries.append(
            "  config {\n"
            f'    name: "{name}"\n'
            f'    base_path: "{settings.models_root}/{name}"\n'
            '    model_platform: "tensorflow"\n'
            "    model_version_policy { latest { num_versions: 1 } }\n"
            "  }\n")
    return "model_config_list {\n" + "".join(entries) + "}\n"


def batching_config(settings: DeploySettings) -> str:
    return (f"max_batch_size {{ value: {settings.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {settings.batch_timeout_micros} }}\n"
            f"num_batch_threads {{ value: {settings.num_batch_threads} }}\n"
            f"max_enqueued_batches {{ value: {settings.max_enqueued_batches} }}\n")


def monitoring_config() -> str:
    return f'prometheus_config {{\n  enable: true\n  path: "{METRICS_PATH}"\n}}\n'


def compose_file(model_dir: str, settings: DeploySettings) -> dict:
    service = {
        "image": settings.image,
        "command": settings.server_args(),
        "ports": [f"{settings.grpc_port}:{settings.grpc_port}", f"{settings.rest_port}:{settings.rest_port}"],
        "volumes": [f"{storage.absolute(model_dir)}:{settings.models_root}:ro", f"./:{settings.config_root}:ro"],
        "restart": "unless-stopped",
    }
    if settings.gpu:
        service["deploy"] = {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}}
    return {"services": {"tfserving": service}}


def kubernetes_manifests(models: Dict[str, List[int]], files: Dict[str, str], settings: DeploySettings) -> list:
    labels = {"app": settings.name}
    probe_model = next(iter(models))
    status_path = f"/v1/models/{probe_model}"
    container = {
        "name": "tfserving",
        "image": settings.image,
        "args": settings.server_args(),
        "ports": [{"name": "grpc", "containerPort": settings.grpc_port},
                  {"name": "rest", "containerPort": settings.rest_port}],
        # Ready when the model answers its status; alive while the REST server does.
        "readinessProbe": {"httpGet": {"path": status_path, "port": "rest"}, "initialDelaySeconds": 5,
                           "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": status_path, "port": "rest"}, "initialDelaySeconds": 30,
                          "periodSeconds": 15, "failureThreshold": 4},
        "volumeMounts": [{"name": "config", "mountPath": settings.config_root, "readOnly": True},
                         {"name": "models", "mountPath": settings.models_root, "readOnly": True}],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
    }
    if settings.gpu:
        container["resources"]["limits"] = {"nvidia.com/gpu": 1}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{settings.name}-config"},
         "data": dict(files)},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": settings.name, "labels": labels},
         "spec": {"replicas": settings.replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "containers": [container],
                      "volumes": [{"name": "config", "configMap": {"name": f"{settings.name}-config"}},
                                  {"name": "models",
                                   "persistentVolumeClaim": {"claimName": settings.models_claim}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": settings.name, "labels": labels},
         "spec": {"selector": labels, "ports": [
             {"name": "grpc", "port": settings.grpc_port, "targetPort": "grpc"},
             {"name": "rest", "port": settings.rest_port, "targetPort": "rest"}]}},
    ]


def write_deploy_files(model_dir: str, out_dir: str, settings: DeploySettings = DeploySettings()) -> List[str]:
    """Writes the deployment files for every model in `model_dir` to `out_dir`; returns their paths."""
    models = find_models(model_dir)
    files = {"models.config": models_config(models, settings), "batching.config": batching_config(settings),
             "monitoring.config": monitoring_config()}
    written = [storage.write_text(os.path.join(out_dir, name), text) for name, text in files.items()]
    for name, doc in (("docker-compose.yml", [compose_file(model_dir, settings)]),
                      ("kubernetes.yaml", kubernetes_manifests(models, files, settings))):
        written.append(storage.write_text(os.path.join(out_dir, name), yaml.safe_dump_all(doc, sort_keys=False)))
    return written
