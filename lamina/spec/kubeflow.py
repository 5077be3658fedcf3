"""The kubeflow section: the image, shared storage, per-component resources, Beam and a schedule."""

import re
from typing import Dict, List, Literal, Optional, Union

from pydantic import Field, field_validator

from lamina.constants import BEAM_PICKLER_FLAG
from lamina.spec.base import StrictModel


class TolerationSpec(StrictModel):
    """A Kubernetes toleration: lets the pod onto nodes with a matching taint (e.g. GPU nodes)."""

    key: Optional[str] = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: Optional[str] = None
    effect: Optional[Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]] = None
    toleration_seconds: Optional[int] = Field(default=None, ge=0, description="NoExecute only: how long it stays.")

    def as_kubernetes(self) -> dict:
        """The toleration as a pod spec (and kfp-kubernetes) writes it."""
        return {k: v for k, v in (("key", self.key), ("operator", self.operator), ("value", self.value),
                                  ("effect", self.effect), ("tolerationSeconds", self.toleration_seconds))
                if v is not None}


class ResourceSpec(StrictModel):
    """What one component's pod asks for: CPU cores, memory, GPUs, and where it may be scheduled."""

    cpu: Optional[float] = Field(default=None, gt=0, le=1024, description="vCPUs, e.g. 4 or 0.5.")
    memory: Optional[str] = Field(default=None, description="e.g. '16G' or '512M'.")
    gpu: int = Field(default=0, ge=0, le=16, description="accelerators (nvidia.com/gpu).")
    accelerator: str = Field(default="nvidia.com/gpu", description="accelerator type, e.g. 'NVIDIA_TESLA_T4' "
                             "on Vertex AI, 'nvidia.com/gpu' on Kubeflow Pipelines.")
    node_selector: Dict[str, str] = Field(default_factory=dict, description="node labels the pod must run on, e.g. "
                                          "{'cloud.google.com/gke-accelerator': 'nvidia-l4'}.")
    tolerations: List[TolerationSpec] = Field(default_factory=list)

    @field_validator("memory")
    @classmethod
    def _check_memory(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.match(r"^\d+(\.\d+)?[KMGT]i?$", v):
            raise ValueError(f"expected a number and a unit K, M, G or T (optionally Ki, Mi, Gi, Ti), e.g. '16G'. "
                             f"Received: {v!r}")
        return v


BEAM_RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")
REMOTE_SCHEMES = ("gs://", "s3://", "minio://", "hdfs://")


class BeamSpec(StrictModel):
    """The Beam runner of the data components (ExampleGen, StatisticsGen, Transform, Evaluator...)."""

    runner: Literal[BEAM_RUNNERS] = "DirectRunner"
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = "multi_processing"
    direct_num_workers: int = Field(default=0, ge=0, le=1024, description="DirectRunner: 0 = one per CPU.")
    options: Dict[str, Union[str, int, float, bool]] = Field(
        default_factory=dict, description="Runner options without the dashes: project, region, temp_location, "
                                          "flink_master, spark_master_url, ...")

    def args(self) -> List[str]:
        out = [f"--runner={self.runner}"]
        if self.runner == "DirectRunner":
            out += [f"--direct_running_mode={self.direct_running_mode}",
                    f"--direct_num_workers={self.direct_num_workers}"]
            if "pickle_library" not in self.options:  # as a local run
                out.append(BEAM_PICKLER_FLAG)
        for key, value in sorted(self.options.items()):
            out.append(f"--{key}" if value is True else f"--{key}={value}")
        return out


class VertexTrainingSpec(StrictModel):
    """A multi_worker Trainer on Vertex AI's training service (a CustomJob with worker pools), through TFX's
    google_cloud_ai_platform Trainer: one chief pool and `workers - 1` workers."""

    project: str = Field(description="The Google Cloud project of the CustomJob.")
    region: str = Field(default="us-central1", description="Where the CustomJob runs.")
    machine_type: str = Field(default="n1-standard-8", description="Every replica's machine type.")


class KubeflowSpec(StrictModel):
    """Where and how the pipeline runs on Kubeflow Pipelines 2.x or Vertex AI Pipelines.

    `pipeline_root` and `push_dir` must be shared storage every pod can reach: gs://, s3://,
    minio://, hdfs://, or a path under `volume_mount` (a PVC the cluster mounts into each pod).
    """

    image: str = Field(description="The container image every component runs in, with its tag.")
    pipeline_root: str
    push_dir: Optional[str] = Field(default=None, description="Where Pusher writes; default <pipeline_root>/"
                                                              "serving_models.")
    volume_mount: Optional[str] = Field(default=None, description="Mount path of a shared PVC, e.g. /mnt/lamina.")
    volume_claim: Optional[str] = Field(default=None, description="The PersistentVolumeClaim mounted at "
                                        "volume_mount: the worker pods of a multi_worker Trainer mount it too.")
    resources: Dict[str, ResourceSpec] = Field(
        default_factory=dict, description="Per component id (Trainer, Transform, ...) or 'default'.")
    beam: BeamSpec = Field(default_factory=BeamSpec)
    vertex_training: Optional[VertexTrainingSpec] = Field(
        default=None, description="multi_worker on Vertex AI's training service instead of a Kubernetes Job.")
    schedule: Optional[str] = Field(default=None, description="A cron expression for a recurring run, "
                                                              "e.g. '0 0 3 * * *' (KFP cron has seconds).")
    service_account: Optional[str] = Field(default=None, description="The Kubernetes service account the run's "
                                           "pods use (KFP sets it per run; `lamina submit` sends it).")

    @field_validator("image")
    @classmethod
    def _check_image(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9._/-]*(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$", v) or (
                ":" not in v.rsplit("/", 1)[-1] and "@" not in v):
            raise ValueError(f"expected an image reference with a tag or digest, e.g. "
                             f"'gcr.io/project/lamina:0.1.0'. Received: {v!r}")
        return v

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and len(v.split()) not in (5, 6):
            raise ValueError(f"expected a cron expression of 5 or 6 fields (KFP: seconds minutes hours day "
                             f"month weekday). Received: {v!r}")
        return v

    def shared(self, path: str) -> bool:
        """Whether every pod can reach `path`."""
        if path.startswith(REMOTE_SCHEMES):
            return True
        mount = (self.volume_mount or "").rstrip("/")
        return bool(mount) and (path == mount or path.startswith(mount + "/"))

