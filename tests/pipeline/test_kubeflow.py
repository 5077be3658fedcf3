"""`lamina compile --target kubeflow`: the same create_pipeline(spec), compiled by TFX's
KubeflowV2DagRunner into a KFP v2 pipeline spec that the kfp SDK's own loader reads back."""

import json
import os
import re

import pytest

from lamina.pipeline import cli
from lamina.pipeline.kubeflow_runner import ENTRYPOINT, compile_pipeline, memory_gb, read_package
from lamina.spec import Spec, SpecError
from tests.helpers import REPO, digits_spec, make_spec

IMAGE = "gcr.io/acme/lamina:0.1.0"
KUBEFLOW = {
    "image": IMAGE,
    "pipeline_root": "gs://acme-ml/lamina",
    "resources": {"Trainer": {"cpu": 8, "memory": "32G", "gpu": 2, "accelerator": "NVIDIA_TESLA_T4"},
                  "default": {"cpu": 2, "memory": "8Gi"}},
    "beam": {"runner": "DataflowRunner",
             "options": {"project": "acme", "region": "us-central1", "temp_location": "gs://acme-ml/tmp"}},
}
BEAM_ARGS = ["--runner=DataflowRunner", "--project=acme", "--region=us-central1", "--temp_location=gs://acme-ml/tmp"]


def load(path):
    """The compiled file through kfp's loader for v2 pipeline specs."""
    import kfp.components

    return kfp.components.load_component_from_file(path).pipeline_spec


def task_node(name: str) -> str:
    """A DAG task's local node id: TFX splits the Resolver into one task per resolved channel."""
    return re.sub(r"-model(-blessing)?-resolver$", "", name)


def executor(ps, task: str) -> dict:
    from google.protobuf import json_format

    label = ps.root.dag.tasks[task].component_ref.name
    comp = ps.components[label]
    return json_format.MessageToDict(ps.deployment_spec)["executors"][comp.executor_label]


@pytest.fixture(scope="module")
def penguins_compiled(tmp_path_factory):
    base = tmp_path_factory.mktemp("kfp")
    spec = make_spec(base, tuned=True, gated=True, data={"path": "gs://acme-ml/data/penguins.csv"}, kubeflow=KUBEFLOW)
    return spec, compile_pipeline(spec, str(base / "out" / "pipeline.json"))


def test_every_local_component_is_there_with_the_same_dependencies(penguins_compiled):
    from lamina.pipeline.pipeline import create_pipeline

    spec, path = penguins_compiled
    ps = load(path)
    local = create_pipeline(spec)
    expected = {c.id: sorted(u.id for u in c.upstream_nodes) for c in local.components}
    # One difference: KFP's compiler takes only TFX's own resolver strategies, which do not read the candidate.
    assert expected["LatestBlessedModelResolver"] == ["Trainer"]
    expected["LatestBlessedModelResolver"] = []
    compiled = {}
    for name, task in ps.root.dag.tasks.items():
        deps = sorted({task_node(d) for d in task.dependent_tasks})
        compiled.setdefault(task_node(name), set()).update(deps)
    assert {k: sorted(v) for k, v in compiled.items()} == expected
    assert ps.pipeline_info.name == "penguins"
    assert json.load(open(path))["defaultPipelineRoot"] == "gs://acme-ml/lamina/penguins/pipeline"


def test_image_entrypoint_resources_and_beam_args(penguins_compiled):
    _, path = penguins_compiled
    ps = load(path)
    containers = {t: executor(ps, t).get("container") for t in ps.root.dag.tasks}
    containers = {t: c for t, c in containers.items() if c}  # resolvers run in the backend
    assert set(containers) == {"CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "AnomalyGate",
                               "Transform", "Tuner", "Baselines", "Trainer", "EvaluationSchema", "Evaluator",
                               "PushGate", "Explainer", "TFLiteExporter", "Pusher"}
    # The Tuner is TFX's, run by Lamina's executor (which also writes trials.json).
    assert "lamina.components.tuner.Executor" in json.dumps(executor(ps, "Tuner"))
    for task, c in containers.items():
        assert c["image"] == IMAGE, task
        assert c["command"] == ENTRYPOINT, task
    assert containers["Trainer"]["resources"] == {"cpuLimit": 8.0, "memoryLimit": 32.0,
                                                  "accelerator": {"type": "NVIDIA_TESLA_T4", "count": "2"}}
    assert containers["Transform"]["resources"] == {"cpuLimit": 2.0, "memoryLimit": memory_gb("8Gi")}
    assert "accelerator" not in containers["Transform"]["resources"]
    for task in ("CsvExampleGen", "StatisticsGen", "Transform", "Evaluator"):
        args = containers[task]["args"]
        assert args[-len(BEAM_ARGS):] == BEAM_ARGS, task
    # The Trainer runs Keras, not Beam; the spec travels as the Trainer's custom config.
    trainer_params = ps.components[ps.root.dag.tasks["Trainer"].component_ref.name].input_definitions.parameters
    assert "custom_config" in trainer_params


def test_node_selectors_tolerations_go_to_the_components_they_name(tmp_path):
    from lamina.pipeline.kubeflow_runner import executor_label, read_package

    gpu_pool = {"node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "train"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                                {"key": "spot", "value": "true", "effect": "NoExecute", "toleration_seconds": 60}]}
    kubeflow = {**KUBEFLOW, "service_account": "lamina-runner",
                "resources": {"Trainer": {"gpu": 1, **gpu_pool}, "Transform": {"node_selector": {"pool": "beam"}},
                              "default": {"cpu": 2}}}
    spec = make_spec(tmp_path, data={"path": "gs://acme-ml/data/penguins.csv"}, kubeflow=kubeflow)
    path = compile_pipeline(spec, str(tmp_path / "pipeline.yaml"))
    pipeline_spec, platform = read_package(open(path).read())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors == {
        executor_label(pipeline_spec, "Trainer"): {
            "nodeSelector": {"labels": {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "train"}},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                            {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute",
                             "tolerationSeconds": 60}]},
        executor_label(pipeline_spec, "Transform"): {"nodeSelector": {"labels": {"pool": "beam"}}}}
    # Both documents parse as kfp's client reads a package (and the default's cpu still applies).
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    trainer = pipeline_spec["deploymentSpec"]["executors"][executor_label(pipeline_spec, "Trainer")]
    assert trainer["container"]["resources"]["accelerator"] == {"type": "nvidia.com/gpu", "count": "1"}
    assert pipeline_spec["deploymentSpec"]["executors"][executor_label(pipeline_spec, "Pusher")][
        "container"]["resources"] == {"cpuLimit": 2.0}


def test_the_image_spec_compiles_with_its_image_example_gen(tmp_path):
    spec = digits_spec(tmp_path, data={"format": "image_folder", "path": "gs://acme-ml/digits", "label": "label",
                                       "features": {"image": "image"}},
                       kubeflow={**KUBEFLOW, "beam": {"runner": "DirectRunner", "direct_num_workers": 2}})
    ps = load(compile_pipeline(spec, str(tmp_path / "digits.json")))
    assert "ImageExampleGen" in ps.root.dag.tasks
    args = executor(ps, "ImageExampleGen")["container"]["args"]
    assert args[-4:] == ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2",
                         "--pickle_library=cloudpickle"]
    assert executor(ps, "Trainer")["container"]["resources"]["accelerator"]["count"] == "2"


@pytest.mark.parametrize("overrides, expected", [
    (dict(kubeflow={**KUBEFLOW, "pipeline_root": "/home/me/runs"}),
     "kubeflow.pipeline_root: '/home/me/runs' is a local path; on Kubeflow each component runs in its own pod, "
     "which cannot see this machine's disk. Use gs://, s3://, minio://, hdfs:// storage, or set "
     "kubeflow.volume_mount to a shared volume's mount path."),
    (dict(kubeflow={**KUBEFLOW, "resources": {"Transform": {"gpu": 1}}}),
     "kubeflow.resources.Transform.gpu: only Trainer and Tuner use GPUs; the data components run on Beam workers."),
    (dict(kubeflow={**KUBEFLOW, "image": "lamina"}),
     "kubeflow.image: expected an image reference with a tag or digest, e.g. 'gcr.io/project/lamina:0.1.0'. "
     "Received: 'lamina'"),
    (dict(kubeflow={**KUBEFLOW, "pipeline_root": "/mnt/lamina/runs", "volume_mount": "/mnt/lamina"},
          training={"distribution": {"strategy": "multi_worker", "workers": 4}}),
     "kubeflow.volume_claim: required with kubeflow.volume_mount when training.distribution.strategy is "
     "multi_worker: the Trainer's worker pods mount the same PersistentVolumeClaim, and Lamina needs its name."),
], ids=["local_root", "gpu_on_transform", "untagged_image", "workers_without_the_claim"])
def test_spec_rejects_what_kubeflow_cannot_run(tmp_path, overrides, expected):
    with pytest.raises(SpecError) as info:
        make_spec(tmp_path, data={"path": "gs://acme-ml/data/penguins.csv"}, **overrides)
    assert info.value.problems == [expected]


def test_compile_errors_name_the_key(tmp_path, capsys):
    local_data = make_spec(tmp_path, kubeflow=KUBEFLOW)
    with pytest.raises(SpecError) as info:
        compile_pipeline(local_data, str(tmp_path / "p.json"))
    csv = os.path.join(str(tmp_path), "data", "penguins.csv")
    assert info.value.problems == [
        f"data.path: {csv!r} is on this machine's disk, which Kubeflow's pods cannot see; copy the data to the "
        f"pipeline's storage (e.g. gsutil cp) and point data.path there."]
    typo = make_spec(tmp_path, data={"path": "gs://a/p.csv"}, kubeflow={**KUBEFLOW, "resources": {"Trainr": {}}})
    with pytest.raises(SpecError, match=r"kubeflow.resources.Trainr: no such component; expected 'default' or "
                                        r"one of: CsvExampleGen, StatisticsGen, SchemaGen,"):
        compile_pipeline(typo, str(tmp_path / "p.json"))
    (tmp_path / "spec.yaml").write_text("name: x\ndata: {path: gs://a/x.csv, label: y}\n")
    assert cli.main(["compile", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "x.json")]) == 2
    assert "kubeflow: required to compile for Kubeflow; set at least kubeflow.image and kubeflow.pipeline_root" \
        in capsys.readouterr().err


def test_cli_compile_writes_the_file(tmp_path, capsys):
    import yaml

    d = yaml.safe_load(open(REPO / "examples" / "penguins" / "spec.yaml"))
    d["data"]["path"] = "gs://acme-ml/data/penguins.csv"
    d["kubeflow"] = KUBEFLOW
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(d))
    out = tmp_path / "pipeline.json"
    assert cli.main(["compile", str(tmp_path / "spec.yaml"), "--target", "kubeflow", "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: KFP v2 pipeline spec for 'penguins'; image {IMAGE}")
    assert load(str(out)).pipeline_info.name == "penguins"


def dockerfile_instructions():
    """(instruction, argument) pairs of the Dockerfile, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def locked_versions():
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\[\]-]+)==([^\s;]+)", line)
        if m:
            pins[m.group(1).split("[")[0].lower()] = m.group(2)
    return pins


def test_dockerfile_installs_the_lock_and_runs_tfx_kfp_v2_entrypoint():
    from tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner import KUBEFLOW_TFX_CMD

    steps = dockerfile_instructions()
    pins = locked_versions()
    base = steps[0]
    assert base == ("FROM", f"gcr.io/tfx-oss-public/tfx:{pins['tfx']}")  # TFX's image, at the locked TFX
    copies = [arg for word, arg in steps if word == "COPY"]
    assert "requirements.lock ./" in copies
    runs = [arg for word, arg in steps if word == "RUN"]
    # The lock, with --no-deps so nothing outside it is resolved; then Lamina itself, also --no-deps. Both
    # compiled to bytecode at build time (tests/test_image_install.py checks that none compiles at start).
    assert any("uv pip install --system --no-cache --no-deps --compile-bytecode -r requirements.lock" in r
               for r in runs)
    assert any(r.endswith("--no-deps --compile-bytecode .") for r in runs)
    uv = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert f"uv=={uv}" in runs[0]  # the uv `make install` uses
    installs = [r for r in runs if "install" in r]
    for r in installs:  # no package enters the image unpinned
        named = re.findall(r"install (?:--\S+ )*([^-\s][^\s]*)", r)
        assert all(n in (".", "requirements.lock") or "==" in n for n in named), r
    env = " ".join(arg for word, arg in steps if word == "ENV")
    assert "TF_USE_LEGACY_KERAS=0" in env and "TF_ENABLE_ONEDNN_OPTS=0" in env
    entrypoint = [arg for word, arg in steps if word == "ENTRYPOINT"]
    assert len(entrypoint) == 1 and json.loads(entrypoint[0]) == list(KUBEFLOW_TFX_CMD) == ENTRYPOINT
    for package in ("lamina", "pipeline", "components", "models", "serving", "examples"):
        assert f"{package} ./{package}" in copies
    # The executor runs `python -m ...`, which puts the working directory first on sys.path: it must
    # not be the source folder, whose lamina/ (only __init__.py) would shadow the installed package.
    workdirs = [arg for word, arg in steps if word == "WORKDIR"]
    install = next(i for i, (word, arg) in enumerate(steps) if word == "RUN" and arg.endswith("--compile-bytecode ."))
    source_dir = [arg for word, arg in steps[:install] if word == "WORKDIR"][-1]
    assert workdirs[-1] != source_dir and not workdirs[-1].startswith(source_dir + "/")
    # The components run as a user without root, set after the installs that need root.
    users = [(i, arg) for i, (word, arg) in enumerate(steps) if word == "USER"]
    assert users and users[-1][1] not in ("root", "0", "0:0") and users[-1][0] > install
    assert any("useradd --uid 1000" in arg for word, arg in steps if word == "RUN")


@pytest.mark.parametrize("docker, message", [
    (None, "make image: no 'docker' command on this machine."),
    ("#!/bin/sh\n[ \"$1\" = info ] && exit 1\nexit 0\n",
     "make image: the docker command cannot reach a Docker daemon (is it running, and may this user use it?)."),
], ids=["no-docker", "no-daemon"])
def test_make_image_says_why_it_cannot_build(tmp_path, docker, message):
    import shutil
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "sh", "bash"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    if docker:
        (bin_dir / "docker").write_text(docker)
        (bin_dir / "docker").chmod(0o755)
    done = subprocess.run(["make", "image", f"PY={sys.executable}"], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert done.returncode != 0
    assert message in done.stdout + done.stderr


def test_make_image_tags_the_image_the_spec_names(tmp_path):
    import subprocess
    import sys

    import yaml

    d = yaml.safe_load(open(REPO / "examples" / "penguins" / "spec.yaml"))
    d["kubeflow"] = {**KUBEFLOW, "image": "registry.example.com/team/lamina:2026.11.23"}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(d))
    dry = subprocess.run(["make", "-n", "image", f"SPEC={tmp_path / 'spec.yaml'}", f"PY={sys.executable}"], cwd=REPO,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert dry.returncode == 0, dry.stderr
    assert "docker build -t registry.example.com/team/lamina:2026.11.23 ." in dry.stdout.splitlines()


def test_a_multi_worker_trainer_compiles_to_a_launcher_of_an_indexed_job(tmp_path):
    """The compiled Trainer keeps one container (it launches the workers); the spec it carries says to
    launch them as a Kubernetes Job, whose manifests follow the Kubernetes API's schemas."""
    from lamina.models.kubernetes import check_manifest, job_manifests
    from lamina.models.cluster import tf_config

    spec = make_spec(tmp_path, data={"path": "gs://acme-ml/data/penguins.csv"}, kubeflow={
        **KUBEFLOW, "service_account": "lamina-trainer",
        "resources": {"Trainer": {"cpu": 8, "memory": "32Gi", "gpu": 2, "node_selector": {"pool": "gpu"},
                                  "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                   "effect": "NoSchedule"}]}}},
        training={"distribution": {"strategy": "multi_worker", "workers": 3}})
    path = compile_pipeline(spec, str(tmp_path / "p.json"))
    pipeline_spec, _ = read_package(open(path).read())
    trainer = json.loads(pipeline_spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]["custom_config"]
                         ["runtimeValue"]["constantValue"]["stringValue"])
    compiled = Spec.from_json(trainer["spec"])
    assert compiled.training.distribution.launcher == "kubernetes"
    assert compiled.training.distribution.workers == 3

    manifests = job_manifests(compiled, "gs://acme-ml/runs/Trainer/model_run/7/workers/job.json", 3, "7")
    for manifest in manifests.values():
        check_manifest(manifest)
    name = manifests["job"]["metadata"]["name"]
    assert re.fullmatch(r"lamina-penguins-[0-9a-f]{8}", name)
    assert manifests["service"]["spec"]["clusterIP"] == "None"
    pod = manifests["job"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == KUBEFLOW["image"]
    assert container["command"] == ["python", "-m", "lamina.models.worker",
                                    "gs://acme-ml/runs/Trainer/model_run/7/workers/job.json"]
    assert container["resources"] == {"requests": {"cpu": "8", "memory": "32Gi"},
                                      "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}}
    assert pod["nodeSelector"] == {"pool": "gpu"} and pod["serviceAccountName"] == "lamina-trainer"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    # Pod 2's TF_CONFIG, as models.worker builds it from the Job's index and the Service's DNS names.
    env = {e["name"]: e["value"] for e in container["env"]}
    assert tf_config({**env, "JOB_COMPLETION_INDEX": "2"}) == {
        "cluster": {"worker": [f"{name}-{i}.{name}:2222" for i in range(3)]}, "task": {"type": "worker", "index": 2}}

    broken = json.loads(json.dumps(manifests["job"]))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(ValueError, match=re.escape(f"Job {name}: fields outside the V1Job schema: "
                                                   f"['spec.template.spec.containers[0].imagePullPolicyy']")):
        check_manifest(broken)


def test_a_multi_worker_trainer_compiles_to_vertex_ai_worker_pools(tmp_path):
    """With kubeflow.vertex_training, the Trainer is TFX's Vertex AI Trainer: one chief pool and N-1 workers in
    the spec's image (compiled only: Vertex AI cannot be reached here)."""
    spec = make_spec(tmp_path, data={"path": "gs://acme-ml/data/penguins.csv"}, kubeflow={
        **KUBEFLOW, "vertex_training": {"project": "acme", "region": "europe-west4", "machine_type": "n1-highmem-8"}},
        training={"distribution": {"strategy": "multi_worker", "workers": 4}})
    pipeline_spec, _ = read_package(open(compile_pipeline(spec, str(tmp_path / "p.json"))).read())
    task = pipeline_spec["root"]["dag"]["tasks"]["Trainer"]
    executor = pipeline_spec["deploymentSpec"]["executors"][
        pipeline_spec["components"][task["componentRef"]["name"]]["executorLabel"]]
    assert "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor" in json.dumps(executor)
    config = json.loads(task["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])
    assert config["ai_platform_enable_vertex"] is True and config["ai_platform_vertex_region"] == "europe-west4"
    machine = {"machine_type": "n1-highmem-8", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 2}
    assert config["ai_platform_training_args"] == {"project": "acme", "worker_pool_specs": [
        {"machine_spec": machine, "replica_count": 1, "container_spec": {"image_uri": KUBEFLOW["image"]}},
        {"machine_spec": machine, "replica_count": 3, "container_spec": {"image_uri": KUBEFLOW["image"]}}]}
    assert Spec.from_json(config["spec"]).training.distribution.launcher == "vertex"


def test_the_forecast_and_multimodal_specs_compile(tmp_path):
    """The forecast's own components (windows split by time, its evaluator) and a multimodal table compile
    into KFP v2 specs the kfp loader reads, each step in the Lamina image."""
    import yaml

    from lamina.spec import Spec

    for example, expected in (("timeseries", ["ForecastExampleGen", "ForecastEvaluator", "Pusher"]),
                              ("multimodal", ["CsvExampleGen", "Evaluator", "Pusher"])):
        d = yaml.safe_load(open(REPO / "examples" / example / "spec.yaml"))
        d["data"]["path"] = f"gs://acme-ml/{example}/{d['data']['path']}"
        d["serving"]["push_dir"] = f"gs://acme-ml/{example}/serving"
        d["kubeflow"] = KUBEFLOW
        spec = Spec.from_dict(d, base_dir=str(tmp_path))
        ps = load(compile_pipeline(spec, str(tmp_path / f"{example}.json")))
        assert set(expected) <= set(ps.root.dag.tasks), sorted(ps.root.dag.tasks)
        assert executor(ps, expected[0])["container"]["image"] == IMAGE
