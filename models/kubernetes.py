"""The multi-worker Trainer on Kubernetes: a headless Service and an Indexed Job, and the watch over them.

Why an Indexed Job (batch/v1, stable since Kubernetes 1.24) and not a TFJob: it needs no operator
installed in the cluster (Kubeflow's Training Operator v1 is being replaced by Trainer v2), and
it gives what TF_CONFIG needs: each pod's index (JOB_COMPLETION_INDEX) and a stable DNS name,
`<job>-<index>.<service>`, when the pods' subdomain is a headless Service. Each worker builds its
TF_CONFIG from those (models.worker). `backoffLimit: 0`: a worker that fails fails the Job, and
the launcher stops the rest; a rerun resumes from the chief's last checkpoint.

The Trainer's pod creates both through the Kubernetes API with its service account (which needs
create/get/list/delete on jobs, services and pods, and get on pods/log, in its namespace).
"""

import hashlib
import json
import os
import re
import sys
from typing import Dict

import tensorflow as tf

from lamina.models.cluster import HOSTS_ENV, WorkerFailed
from lamina.spec import Spec

KUBERNETES_PORT = 2222
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
JOB_LABEL = "lamina.dev/training-job"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
MANIFESTS_FILE = "kubernetes.json"


def job_name(spec: Spec, name_hint: str) -> str:
    """A DNS-1123 label of at most 52 characters (room for "-<index>"): the spec's name and a hash of the run."""
    base = re.sub(r"[^a-z0-9-]+", "-", spec.name.lower()).strip("-")[:30] or "lamina"
    digest = hashlib.sha256(name_hint.encode()).hexdigest()[:8]
    return f"lamina-{base}-{digest}".strip("-")


def job_manifests(spec: Spec, job_file: str, workers: int, name_hint: str) -> Dict[str, dict]:
    """{"service": the headless Service, "job": the Indexed Job} for `workers` pods running the job file."""
    kf = spec.kubeflow
    if kf is None:
        raise ValueError("training.distribution.launcher kubernetes: the spec needs a kubeflow section (the image)")
    dist = spec.training.distribution
    port = dist.port or KUBERNETES_PORT
    name = job_name(spec, name_hint)
    hosts = ",".join(f"{name}-{i}.{name}:{port}" for i in range(workers))
    res = kf.resources.get("Trainer") or kf.resources.get("default")
    resources: Dict[str, Dict[str, str]] = {}
    if res is not None:
        if res.cpu:
            resources.setdefault("requests", {})["cpu"] = f"{res.cpu:g}"
            resources.setdefault("limits", {})["cpu"] = f"{res.cpu:g}"
        if res.memory:
            resources.setdefault("requests", {})["memory"] = res.memory
            resources.setdefault("limits", {})["memory"] = res.memory
        if res.gpu:
            resources.setdefault("limits", {})[res.accelerator if "/" in res.accelerator else "nvidia.com/gpu"] = \
                str(res.gpu)
    container = {
        "name": "worker",
        "image": kf.image,
        "command": ["python", "-m", "lamina.models.worker", job_file],
        "env": [{"name": HOSTS_ENV, "value": hosts}, {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "1"},
                {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "ports": [{"containerPort": port, "name": "grpc"}],
    }
    if resources:
        container["resources"] = resources
    pod = {"subdomain": name, "restartPolicy": "Never", "containers": [container]}
    if res is not None and res.node_selector:
        pod["nodeSelector"] = dict(sorted(res.node_selector.items()))
    if res is not None and res.tolerations:
        pod["tolerations"] = [t.as_kubernetes() for t in res.tolerations]
    if kf.service_account:
        pod["serviceAccountName"] = kf.service_account
    if kf.volume_mount and kf.volume_claim:
        container["volumeMounts"] = [{"name": "shared", "mountPath": kf.volume_mount}]
        pod["volumes"] = [{"name": "shared", "persistentVolumeClaim": {"claimName": kf.volume_claim}}]
    labels = {JOB_LABEL: name, "app.kubernetes.io/managed-by": "lamina"}
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
        "spec": {"clusterIP": "None", "selector": {JOB_LABEL: name}, "publishNotReadyAddresses": True,
                 "ports": [{"name": "grpc", "port": port, "targetPort": port}]},
    }
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels},
        "spec": {"completionMode": "Indexed", "completions": workers, "parallelism": workers, "backoffLimit": 0,
                 "activeDeadlineSeconds": int(dist.worker_timeout_s), "ttlSecondsAfterFinished": 86400,
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }
    for manifest in (service, job):
        check_manifest(manifest)
    return {"service": service, "job": job}


def write_manifests(manifests: Dict[str, dict], folder: str) -> str:
    path = os.path.join(folder, MANIFESTS_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(manifests, f, indent=1)
    return path


def run_indexed_job(manifests: Dict[str, dict], timeout_s: float, stream=None) -> None:
    """Creates the Service and the Job in this pod's namespace and waits for every index to succeed.

    The Job's status changes arrive through the API's watch (no polling). A failed pod stops the Job
    (its pods are deleted) and raises WorkerFailed naming the worker, with the end of its log.
    """
    from kubernetes import client, config, watch

    out = stream or sys.stdout
    config.load_incluster_config()
    with open(NAMESPACE_FILE) as f:
        namespace = f.read().strip()
    core, batch = client.CoreV1Api(), client.BatchV1Api()
    name = manifests["job"]["metadata"]["name"]
    workers = manifests["job"]["spec"]["completions"]
    core.create_namespaced_service(namespace, manifests["service"])
    batch.create_namespaced_job(namespace, manifests["job"])
    reported, finished = -1, False
    try:
        # The Job's own activeDeadlineSeconds ends it on the server; the watch ends with it at the latest.
        for event in watch.Watch().stream(batch.list_namespaced_job, namespace, field_selector=f"metadata.name={name}",
                                          timeout_seconds=int(timeout_s)):
            status = event["object"].status
            done = status.succeeded or 0
            if done != reported:
                print(f"    {done}/{workers} workers done", file=out, flush=True)
                reported = done
            if done >= workers:
                finished = True
                return
            if status.failed:
                raise WorkerFailed(_failed_worker(core, namespace, name, workers))
        raise WorkerFailed(f"training.distribution: Job {name} ran past worker_timeout_s ({timeout_s:g} s) "
                           f"and was stopped")
    finally:
        if not finished:
            batch.delete_namespaced_job(name, namespace, propagation_policy="Foreground")
        core.delete_namespaced_service(name, namespace)


def _failed_worker(core, namespace: str, job: str, workers: int) -> str:
    """The message for a failed Job: which worker (pod index), and the end of its log."""
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    bad = next((p for p in pods if p.status.phase == "Failed"), None)
    if bad is None:
        return f"training Job {job} failed; it was stopped. Run again to resume from the last checkpoint."
    index = bad.metadata.annotations.get(INDEX_ANNOTATION, "?")
    tail = core.read_namespaced_pod_log(bad.metadata.name, namespace, tail_lines=20)
    return (f"training worker {index} of {workers} (pod {bad.metadata.name}) failed; Job {job} was stopped. Run "
            f"again to resume from the last checkpoint." + (f"\n{tail}" if tail else ""))


KINDS = {("v1", "Service"): "V1Service", ("batch/v1", "Job"): "V1Job"}


def check_manifest(manifest: dict) -> None:
    """Raises ValueError unless `manifest` is a valid object of its kind for the Kubernetes API schemas
    that the `kubernetes` client package ships: every required field present, every type right, and
    no field the schema lacks (the client's models drop unknown fields, so a round trip finds them)."""
    from kubernetes import client

    kind = KINDS.get((manifest.get("apiVersion"), manifest.get("kind")))
    if kind is None:
        raise ValueError(f"unknown kind {manifest.get('apiVersion')}/{manifest.get('kind')}; expected one of "
                         f"{sorted(f'{a}/{k}' for a, k in KINDS)}")
    api = client.ApiClient()

    class Response:  # what ApiClient.deserialize reads
        data = json.dumps(manifest)

    try:
        obj = api.deserialize(Response(), kind)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{manifest['kind']} {manifest.get('metadata', {}).get('name')}: not a valid {kind}: {e}") \
            from None
    back = api.sanitize_for_serialization(obj)
    if back != manifest:
        raise ValueError(f"{manifest['kind']} {manifest['metadata']['name']}: fields outside the {kind} schema: "
                         f"{sorted(_differences(manifest, back))}")


def _differences(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from _differences(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield path
