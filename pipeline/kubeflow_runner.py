"""Compiles a spec's pipeline for Kubeflow Pipelines 2.x or Vertex AI Pipelines.

Thin on purpose: the pipeline is the same pure `create_pipeline(spec)` as the local run. This
module only works out the platform's paths (the spec's `kubeflow.pipeline_root` and `push_dir`
instead of the local run directory), the Beam arguments of the data components, each
component's CPU, memory and GPU request, and the image; TFX's `KubeflowV2DagRunner` writes the
KFP v2 pipeline spec (JSON) that `kfp.Client` and Vertex AI both take, with the pipeline root as
its `defaultPipelineRoot`.
"""

import json
import os
import re
from typing import Dict, List

from lamina.spec import KubeflowSpec, ResourceSpec, Spec, SpecError

# What every component's container runs (the image's ENTRYPOINT must be the same): TFX's KFP v2
# executor entrypoint, which reads the component's executor input and runs its executor.
ENTRYPOINT = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
_MEMORY_GB = {"K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3, "Ki": 2**10 / 1e9, "Mi": 2**20 / 1e9, "Gi": 2**30 / 1e9,
              "Ti": 2**40 / 1e9}


def kubeflow_settings(spec: Spec) -> KubeflowSpec:
    if spec.kubeflow is None:
        raise SpecError(["kubeflow: required to compile for Kubeflow; set at least kubeflow.image and "
                         "kubeflow.pipeline_root (see docs/kubeflow.md)."])
    return spec.kubeflow


def for_kubeflow(spec: Spec) -> Spec:
    """The spec with its run directory and push directory on the platform's shared storage.

    Raises SpecError when the data (or a curated schema) sits on this machine's disk.
    """
    kf = kubeflow_settings(spec)
    problems = []
    for key, path in (("data.path", spec.data.path), ("data.schema_path", spec.data.schema_path)):
        if path is not None and not kf.shared(spec.resolve(path)):
            problems.append(f"{key}: {spec.resolve(path)!r} is on this machine's disk, which Kubeflow's pods cannot "
                            f"see; copy the data to the pipeline's storage (e.g. gsutil cp) and point {key} there.")
    if problems:
        raise SpecError(problems)
    root = kf.pipeline_root.rstrip("/")
    push_dir = kf.push_dir or f"{root}/serving_models"
    training = spec.training
    if training.distribution.strategy == "multi_worker":  # the Trainer's pod starts the workers' pods
        training = training.model_copy(update={"distribution": training.distribution.model_copy(
            update={"launcher": "vertex" if kf.vertex_training else "kubernetes"})})
    return spec.model_copy(update={
        "training": training,
        "runner": spec.runner.model_copy(update={"root": root}),
        "serving": spec.serving.model_copy(update={"push_dir": push_dir}),
    })


def memory_gb(memory: str) -> float:
    number, unit = re.match(r"^(\d+(?:\.\d+)?)([KMGT]i?)$", memory).groups()
    return float(number) * _MEMORY_GB[unit]


def resource_config(res: ResourceSpec):
    """The KFP v2 ResourceSpec proto for one component."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    proto = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    if res.cpu:
        proto.cpu_limit = res.cpu
    if res.memory:
        proto.memory_limit = memory_gb(res.memory)
    if res.gpu:
        proto.accelerator.type = res.accelerator
        proto.accelerator.count = res.gpu
    return proto


def component_resources(spec: Spec, component_ids: List[str]) -> Dict[str, ResourceSpec]:
    """Component id -> its resources (its own entry, else `default`); unknown ids are an error."""
    kf = kubeflow_settings(spec)
    unknown = sorted(set(kf.resources) - set(component_ids) - {"default"})
    if unknown:
        raise SpecError([f"kubeflow.resources.{name}: no such component; expected 'default' or one of: "
                         f"{', '.join(component_ids)}." for name in unknown])
    out = {}
    for cid in component_ids:
        res = kf.resources.get(cid) or kf.resources.get("default")
        if res is not None:
            out[cid] = res
    return out


def kubernetes_executor_config(res: ResourceSpec) -> dict:
    """kfp-kubernetes' per-executor config (node selector, tolerations) for one component, or {}."""
    config = {}
    if res.node_selector:
        config["nodeSelector"] = {"labels": dict(sorted(res.node_selector.items()))}
    if res.tolerations:
        config["tolerations"] = [t.as_kubernetes() for t in res.tolerations]
    return config


def executor_label(pipeline_spec: dict, task: str) -> str:
    """The deploymentSpec executor a DAG task runs (task -> its component -> the component's executor)."""
    component = pipeline_spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]
    return pipeline_spec["components"][component]["executorLabel"]


def kubernetes_platform_spec(pipeline_spec: dict, resources: Dict[str, ResourceSpec]) -> dict:
    """The KFP PlatformSpec (Kubernetes) for the components whose resources name a node selector or tolerations."""
    executors = {}
    for cid, res in sorted(resources.items()):
        config = kubernetes_executor_config(res)
        if config:
            executors[executor_label(pipeline_spec, cid)] = config
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}} if executors else {}


def read_package(content: str):
    """(PipelineSpec, PlatformSpec or {}) from a compiled package: JSON, or two YAML/JSON documents."""
    import yaml

    docs = [d for d in yaml.safe_load_all(content) if d is not None]
    if not docs or not isinstance(docs[0], dict) or len(docs) > 2:
        raise ValueError("expected a KFP v2 pipeline spec, optionally followed by its platform spec")
    return docs[0], (docs[1] if len(docs) == 2 else {})


def compile_pipeline(spec: Spec, output: str) -> str:
    """Writes the KFP v2 pipeline spec for `spec` to `output` (a .json file) and returns its path."""
    from tfx.dsl.components.base import base_component
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kf_runner

    from lamina.pipeline.pipeline import create_pipeline

    kf = kubeflow_settings(spec)
    on_cluster = for_kubeflow(spec)
    pipeline = create_pipeline(on_cluster, beam_pipeline_args=kf.beam.args(), kubeflow=True)
    components = [c for c in pipeline.components if isinstance(c, base_component.BaseComponent)]
    resources = component_resources(spec, [c.id for c in components])
    for cid, res in resources.items():
        next(c for c in components if c.id == cid).with_platform_config(resource_config(res))
    config = kf_runner.KubeflowV2DagRunnerConfig(display_name=spec.name, default_image=kf.image,
                                                 default_commands=ENTRYPOINT)
    job = kf_runner.KubeflowV2DagRunner(config).run(pipeline, write_out=False)
    # TFX writes a PipelineJob; keep its PipelineSpec, what kfp's own compiler writes and both
    # Kubeflow Pipelines and Vertex AI take, with the pipeline root inside it.
    pipeline_spec = dict(job["pipelineSpec"])
    pipeline_spec["defaultPipelineRoot"] = job["runtimeConfig"]["gcsOutputDirectory"]
    # Node selectors and tolerations live in a second document, the platform spec, as kfp's own
    # compiler writes it with kfp-kubernetes (KFP reads both from one package file).
    platform = kubernetes_platform_spec(pipeline_spec, resources)
    text = json.dumps(pipeline_spec, indent=2, sort_keys=True)
    if platform:
        text += "\n---\n" + json.dumps(platform, indent=2, sort_keys=True)
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as f:
        f.write(text + "\n")
    return output
