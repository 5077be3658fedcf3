"""Starts the Trainer's worker processes (or pods), watches them, and stops them all when one fails.

`training.distribution` decides how many: `multi_worker` starts `workers` of them, `mirrored`
over logical CPU devices one (its devices are configured at the process's start). Each runs
`python -m lamina.models.worker JOB_FILE`; the job file (the spec and the Trainer's inputs and
outputs) lies in the Trainer's run folder, which every worker reaches.

Two launchers share the job file, the worker's command and its environment:
- `processes`: local processes on loopback ports, each with its TF_CONFIG;
- `kubernetes`: a headless Service and an Indexed Job of `workers` pods, created through the
  Kubernetes API from inside the Trainer's pod (what `lamina compile` sets for Kubeflow). Each pod
  builds its TF_CONFIG from its JOB_COMPLETION_INDEX and LAMINA_WORKER_HOSTS (the pods' stable DNS
  names under the Service). `LAMINA_LAUNCHER=processes` plays those pods as local processes with
  the same environment, which is how the compiled pipeline's Trainer runs on a machine without a
  cluster.
"""

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List

import tensorflow as tf

from lamina.constants import LOOPBACK
from lamina.models.cluster import HOSTS_ENV, INDEX_ENV, WorkerFailed
from lamina.models.distributed import Checkpoints, checkpoint_dir_for, checkpoint_epoch
from lamina.spec import Spec

JOB_FILE = "job.json"
WORKERS_DIR = "workers"  # in the Trainer's run folder: the job, each worker's log, the manifests
LAUNCHER_ENV = "LAMINA_LAUNCHER"
WORKER_COMMAND = [sys.executable, "-m", "lamina.models.worker"]
LOG_TAIL_LINES = 20
# Lines of a worker's output the Trainer's log leaves out (they stay in the worker's log file): TF's
# C++ notes and the device name that collective set-up prints.
QUIET_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] |[IW]\d{4} |/job:worker/|\t \[\[\{\{node )")


def worker_count(spec: Spec) -> int:
    dist = spec.training.distribution
    return dist.workers if dist.strategy == "multi_worker" else 1


def write_job(spec: Spec, transform_output: str, train_files: List[str], eval_files: List[str],
              serving_model_dir: str, run_dir: str) -> str:
    """The job every worker reads: the spec and the Trainer's inputs and outputs."""
    folder = os.path.join(run_dir, WORKERS_DIR)
    tf.io.gfile.makedirs(folder)
    job = {"spec": spec.to_json(), "transform_output": transform_output, "train_files": list(train_files),
           "eval_files": list(eval_files), "serving_model_dir": serving_model_dir, "log_dir": run_dir,
           "checkpoint_dir": checkpoint_dir_for(spec, transform_output, train_files, run_dir)}
    path = os.path.join(folder, JOB_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(job, f, indent=1)
    return path


def free_ports(count: int) -> List[int]:
    """`count` ports free on loopback now (the sockets are held together, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def launch_workers(spec: Spec, transform_output: str, train_files: List[str], eval_files: List[str],
                   serving_model_dir: str, run_dir: str, stream=None) -> None:
    """What the Trainer's run_fn does under a distribution that needs worker processes or pods."""
    job_file = write_job(spec, transform_output, train_files, eval_files, serving_model_dir, run_dir)
    count = worker_count(spec)
    dist = spec.training.distribution
    launcher = os.environ.get(LAUNCHER_ENV) or dist.launcher
    out = stream or sys.stdout
    if dist.launcher == "kubernetes":
        from lamina.models.kubernetes import job_manifests, run_indexed_job, write_manifests

        manifests = job_manifests(spec, job_file, count, name_hint=os.path.basename(run_dir.rstrip("/")))
        write_manifests(manifests, os.path.join(run_dir, WORKERS_DIR))
        if launcher == "kubernetes":
            print(f"    launching {count} worker pod(s): Job {manifests['job']['metadata']['name']}", file=out,
                  flush=True)
            run_indexed_job(manifests, timeout_s=dist.worker_timeout_s, stream=out)
            forget_checkpoint(job_file)
            return
        # No cluster here: the Job's pods as local processes, each with the environment the pod would get.
        envs = pod_environments(manifests["job"], free_ports(count))
        print(f"    {LAUNCHER_ENV}=processes: Job {manifests['job']['metadata']['name']}'s {count} pod(s) run as "
              f"local processes", file=out, flush=True)
    else:
        ports = list(range(dist.port, dist.port + count)) if dist.port else free_ports(count)
        hosts = [f"{LOOPBACK}:{p}" for p in ports]
        envs = [{HOSTS_ENV: ",".join(hosts), INDEX_ENV: str(i)} if dist.strategy == "multi_worker" else {}
                for i in range(count)]
    what = (f"{count} worker process(es) on {LOOPBACK}" if dist.strategy == "multi_worker"
            else f"a process with {dist.devices or 2} logical CPU devices")
    print(f"    training.distribution {dist.strategy}: {what}; logs in {os.path.dirname(job_file)}", file=out,
          flush=True)
    run_processes(job_file, envs, dist.worker_timeout_s, stream=out)
    forget_checkpoint(job_file)


def forget_checkpoint(job_file: str) -> None:
    """After a successful run: its checkpoint is not a run to resume."""
    with tf.io.gfile.GFile(job_file) as f:
        folder = json.load(f)["checkpoint_dir"]
    if tf.io.gfile.exists(folder):
        tf.io.gfile.rmtree(folder)


def pod_environments(job: dict, ports: List[int]) -> List[Dict[str, str]]:
    """Each pod's environment from the Job's container, with its index, and the hosts on loopback."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    base = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    hosts = ",".join(f"{LOOPBACK}:{p}" for p in ports)
    return [{**base, HOSTS_ENV: hosts, INDEX_ENV: str(i)} for i in range(job["spec"]["completions"])]


def run_processes(job_file: str, envs: List[Dict[str, str]], timeout_s: float, stream=None) -> None:
    """Runs one worker per environment; returns when all succeed, else stops the rest and raises WorkerFailed.

    The chief's output goes to `stream` (the Trainer's log) and to workers/worker-0.log; every other
    worker's to its own log file.
    """
    out = stream or sys.stdout
    folder = os.path.dirname(job_file)
    local = "://" not in folder
    log_dir = folder if local else os.path.join(os.path.abspath("."), "lamina_worker_logs")
    os.makedirs(log_dir, exist_ok=True)
    procs: List[subprocess.Popen] = []
    logs: List[str] = []
    pumps = []
    for i, extra in enumerate(envs):
        env = dict(os.environ, **extra)
        env.pop("TF_CONFIG", None)
        env.pop(LAUNCHER_ENV, None)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the end-of-data notes of every distributed epoch
        path = os.path.join(log_dir, f"worker-{i}.log")
        logs.append(path)
        log = open(path, "w", encoding="utf-8")
        proc = subprocess.Popen(WORKER_COMMAND + [job_file], env=env, stdout=subprocess.PIPE if i == 0 else log,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        procs.append(proc)
        if i == 0:  # the pump writes and closes the chief's log
            pump = threading.Thread(target=_pump, args=(proc.stdout, log, out), daemon=True)
            pump.start()
            pumps.append(pump)
        else:  # the worker holds its own copy of the file
            log.close()
    with open(os.path.join(log_dir, "pids.json"), "w") as f:
        json.dump([p.pid for p in procs], f)
    # One waiter per worker reports its exit; the first failure to arrive is the one that caused the others'.
    exits: "queue.Queue[tuple]" = queue.Queue()
    for i, proc in enumerate(procs):
        threading.Thread(target=lambda i=i, proc=proc: exits.put((i, proc.wait())), daemon=True).start()
    deadline = time.monotonic() + timeout_s
    failed = None
    try:
        for _ in procs:
            try:
                index, code = exits.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise WorkerFailed(f"training.distribution: the {len(procs)} worker(s) ran past worker_timeout_s "
                                   f"({timeout_s:g} s) and were stopped; logs in {log_dir}") from None
            if code != 0:
                failed = index, code
                break
    finally:
        stop(procs)
        for pump in pumps:
            pump.join(timeout=5)
    if failed:  # named once the others have stopped: the chief may have written a checkpoint meanwhile
        index, code = failed
        raise WorkerFailed(failure_message(index, len(procs), procs[index].pid, code, logs[index], job_file))


def _pump(source, log, out) -> None:
    with log:
        for line in source:
            log.write(line)
            log.flush()
            if not QUIET_LINE.match(line):
                out.write(line)
                out.flush()


def stop(procs: List[subprocess.Popen], grace_s: float = 10.0) -> None:
    """Terminates the workers still running, then kills what is left after `grace_s`."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.terminate()
    deadline = time.monotonic() + grace_s
    for p in running:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def describe_exit(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            tail = [line.rstrip() for line in f.readlines()[-lines:]]
    except OSError:
        return ""
    return "\n".join("      | " + line for line in tail)


def failure_message(index: int, count: int, pid: int, code: int, log: str, job_file: str) -> str:

    with tf.io.gfile.GFile(job_file) as f:
        checkpoint_dir = json.load(f)["checkpoint_dir"]
    latest = Checkpoints(checkpoint_dir, chief=False).latest()
    resume = (f"The checkpoint of epoch {checkpoint_epoch(latest)} is in {checkpoint_dir}; run again to resume "
              f"from it." if latest else "No epoch had finished, so a rerun starts from the beginning.")
    tail = log_tail(log)
    return (f"training worker {index} of {count} (pid {pid}) {describe_exit(code)}; the other workers were "
            f"stopped. {resume} Its log: {log}" + (f"\n{tail}" if tail else ""))
