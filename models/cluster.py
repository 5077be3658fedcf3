"""What the launcher, the Kubernetes Job and each worker agree on: the environment that makes TF_CONFIG,
and the error a failed worker raises."""

import json
from typing import Dict

HOSTS_ENV = "LAMINA_WORKER_HOSTS"  # "host:port,host:port,...": every worker, in index order
INDEX_ENV = "JOB_COMPLETION_INDEX"  # what an Indexed Job sets in each pod


def tf_config(env: Dict[str, str]) -> dict:
    """TF_CONFIG for this worker: the environment's own, or built from the hosts and the pod's index."""
    if env.get("TF_CONFIG"):
        return json.loads(env["TF_CONFIG"])
    if env.get(HOSTS_ENV) and env.get(INDEX_ENV) is not None:
        hosts = env[HOSTS_ENV].split(",")
        index = int(env[INDEX_ENV])
        if not 0 <= index < len(hosts):
            raise ValueError(f"{INDEX_ENV}={index}, but {HOSTS_ENV} names {len(hosts)} workers")
        return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
    return {}


class WorkerFailed(RuntimeError):
    """A worker exited with an error; the launcher stopped the others."""
