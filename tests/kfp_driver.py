"""Plays Kubeflow Pipelines' driver and launcher for a compiled pipeline, on this machine.

What a KFP v2 backend does for each task of the compiled IR, done small: take the tasks in
dependency order; for each, build the `ExecutorInput` the driver would (the task's constant
parameters, its input artifacts from the producers' outputs with their URIs and metadata, and
fresh output artifacts under the pipeline root), put it where the container's args say `{{$}}`,
and run the container's own command (TFX's `kubeflow_v2_run_executor`, as the image's
entrypoint does) in a new process with the container's args. The executor's
`executor_output.json` then gives the produced artifacts (split names, blessing...) to the
tasks downstream.

Left to the backend and not played here: the image (the process runs this checkout's
interpreter), caching, retries, and the `resolver` tasks, which query ML Metadata for the latest
blessed model: here they resolve to nothing, as on a pipeline's first run.
"""

import json
import os
import subprocess
import sys
from typing import Dict, List, Optional

from lamina.pipeline.kubeflow_runner import read_package


def task_order(pipeline_spec: dict) -> List[str]:
    """The root DAG's tasks, each after every task it depends on (by name, among equals)."""
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    needs = {}
    for name, task in tasks.items():
        producers = {a["taskOutputArtifact"]["producerTask"] for a in task.get("inputs", {}).get("artifacts", {}).values()
                     if "taskOutputArtifact" in a}
        needs[name] = set(task.get("dependentTasks", [])) | producers
    order: List[str] = []
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in order and needs[n] <= set(order))
        if not ready:
            raise ValueError(f"the DAG has a cycle among {sorted(set(tasks) - set(order))}")
        order.append(ready[0])
    return order


class KfpDriver:
    """Runs a compiled package's tasks locally; `artifacts[task][key]` holds what each produced."""

    def __init__(self, package: str, root: str, env: Optional[Dict[str, str]] = None, timeout: float = 900):
        with open(package, encoding="utf-8") as f:
            self.pipeline_spec, self.platform_spec = read_package(f.read())
        self.root = root
        self.env = dict(os.environ, **(env or {}))
        self.timeout = timeout
        self.artifacts: Dict[str, Dict[str, List[dict]]] = {}
        self.commands: Dict[str, List[str]] = {}
        self.logs: Dict[str, str] = {}

    def executor(self, task: str) -> dict:
        component = self.pipeline_spec["components"][self.pipeline_spec["root"]["dag"]["tasks"][task]
                                                     ["componentRef"]["name"]]
        return self.pipeline_spec["deploymentSpec"]["executors"][component["executorLabel"]]

    def executor_input(self, task: str) -> dict:
        spec = self.pipeline_spec["root"]["dag"]["tasks"][task]
        component = self.pipeline_spec["components"][spec["componentRef"]["name"]]
        inputs = spec.get("inputs", {})
        parameters = {k: v["runtimeValue"]["constantValue"] for k, v in inputs.get("parameters", {}).items()
                      if "constantValue" in v.get("runtimeValue", {})}
        artifacts = {}
        for key, source in inputs.get("artifacts", {}).items():
            ref = source["taskOutputArtifact"]
            artifacts[key] = {"artifacts": self.artifacts[ref["producerTask"]].get(ref["outputArtifactKey"], [])}
        task_root = os.path.join(self.root, task)
        outputs = {}
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            outputs[key] = {"artifacts": [{"name": f"local/{task}/{key}", "type": definition["artifactType"],
                                           "uri": os.path.join(task_root, key), "metadata": {}}]}
        return {"inputs": {"parameters": parameters, "artifacts": artifacts},
                "outputs": {"artifacts": outputs, "outputFile": os.path.join(task_root, "executor_output.json")}}

    def run_task(self, task: str) -> None:
        executor = self.executor(task)
        if "resolver" in executor:  # ML Metadata holds no blessed model yet: nothing resolves
            self.artifacts[task] = {}
            return
        container = executor["container"]
        executor_input = self.executor_input(task)
        args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
        command = container["command"]
        python = [sys.executable] if command[0] == "python" else command[:1]
        self.commands[task] = command + container["args"]
        proc = subprocess.run(python + command[1:] + args, env=self.env, capture_output=True, text=True,
                              timeout=self.timeout)
        self.logs[task] = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"{task} exited {proc.returncode}:\n{self.logs[task][-3000:]}")
        produced = {k: v["artifacts"] for k, v in executor_input["outputs"]["artifacts"].items()}
        output_file = executor_input["outputs"]["outputFile"]
        if os.path.exists(output_file):
            with open(output_file, encoding="utf-8") as f:
                written = json.load(f).get("artifacts", {})
            for key, value in written.items():
                declared = {a["name"]: a for a in produced.get(key, [])}
                produced[key] = [dict(declared.get(a.get("name"), {}), **a) for a in value.get("artifacts", [])]
        self.artifacts[task] = produced

    def run(self) -> List[str]:
        order = task_order(self.pipeline_spec)
        for task in order:
            self.run_task(task)
        return order
