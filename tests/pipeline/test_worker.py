"""`lamina worker`: a real worker process, real `lamina` processes as a shell starts them, and their output,
exit status, Ctrl-C and environment compared with the same commands run without it."""

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import lamina.pipeline.cli.worker as worker

LAMINA = str(Path(sys.executable).parent / "lamina")


def lamina(*args, env, cwd=None, timeout=600):
    return subprocess.run([LAMINA, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("workers")
    os.chmod(path, 0o700)
    return path


@pytest.fixture(scope="module")
def env(folder):
    return {**os.environ, "LAMINA_WORKER_DIR": str(folder)}


@pytest.fixture(scope="module")
def started(env):
    result = lamina("worker", "start", env=env)
    assert result.returncode == 0, result.stderr
    yield result
    lamina("worker", "stop", env=env)


def runs_so_far(env) -> int:
    status = lamina("worker", "status", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    return int(status.stdout.split(": ")[1].split(" runs")[0])


def small_spec(root: Path, epochs: int = 3) -> Path:
    """The penguins example cut to ExampleGen, statistics, Transform, the Trainer, the Evaluator and the Pusher."""
    from lamina.pipeline.cli.datasets import write_penguins_csv

    spec = yaml.safe_load((Path(__file__).parents[2] / "examples" / "penguins" / "spec.yaml").read_text())
    spec.update({"tuning": None, "export": {"tflite": []}, "explain": {"enabled": False}})
    spec["evaluation"] = {"metrics": ["accuracy"], "baseline": {"enabled": False}, "thresholds": {"accuracy": {"lower_bound": 0.5}}}
    spec["training"]["epochs"] = epochs
    root.mkdir(parents=True)
    write_penguins_csv(str(root / "data" / "penguins.csv"))
    (root / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root / "spec.yaml"


def test_start_says_it_is_ready_and_a_second_start_finds_the_first(started, env):
    pid = int(started.stdout.split("(pid ")[1].split(")")[0])
    assert started.stdout.startswith("Lamina worker ready in ")
    assert started.stdout.endswith(f"(pid {pid}): `lamina run` in this environment now starts without importing "
                                   f"TensorFlow, TFX and Beam. It stops after 30 idle minutes, or with "
                                   f"`lamina worker stop`.\n")
    again = lamina("worker", "start", env=env)
    assert again.returncode == 0
    assert again.stdout.startswith(f"A Lamina worker already runs for this code and environment (pid {pid}, ")


def test_a_spec_error_reads_and_ends_the_same_in_the_worker(started, env, tmp_path):
    (tmp_path / "spec.yaml").write_text("data:\n  path: nowhere.csv\n  label: y\nmodel: {type: forest}\n")
    before = runs_so_far(env)
    warm = lamina("run", "spec.yaml", env=env, cwd=tmp_path)
    cold = lamina("run", "spec.yaml", env={**env, "LAMINA_WORKER": "off"}, cwd=tmp_path)
    assert runs_so_far(env) == before + 1  # the first ran in the worker, the second did not
    assert warm.returncode == cold.returncode == 2
    assert warm.stdout == cold.stdout
    assert warm.stderr == cold.stderr
    assert "model.type" in warm.stderr


@pytest.mark.e2e
def test_a_run_in_the_worker_trains_and_pushes_what_the_lamina_process_does(started, env, tmp_path):
    """The same spec run in the worker and without it: the same epochs (loss to the digit), the same
    evaluation, a pushed model in each, exit status 0 in each."""
    before = runs_so_far(env)
    warm_spec, cold_spec = small_spec(tmp_path / "warm"), small_spec(tmp_path / "cold")
    warm = lamina("run", "spec.yaml", env=env, cwd=warm_spec.parent)
    cold = lamina("run", "spec.yaml", env={**env, "LAMINA_WORKER": "off"}, cwd=cold_spec.parent)
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert cold.returncode == 0, cold.stderr[-3000:]
    assert runs_so_far(env) == before + 1

    def trained(out):  # the epoch lines without their seconds, and the summary's metric lines
        lines = [line.split("s  ", 1)[1] for line in out.splitlines() if line.lstrip().startswith("epoch ")]
        return lines, [line for line in out.splitlines() if "accuracy" in line and "epoch" not in line]

    assert trained(warm.stdout) == trained(cold.stdout)
    assert len(trained(warm.stdout)[0]) == 3
    for root in (warm_spec.parent, cold_spec.parent):
        versions = list((root / "serving_models" / "penguins").iterdir())
        assert len(versions) == 1 and (versions[0] / "saved_model.pb").exists()


@pytest.mark.parametrize("signum, status, last_words", [(signal.SIGINT, 130, "lamina: interrupted\n"),
                                                       (signal.SIGTERM, 143, None)])
def test_ctrl_c_or_sigterm_stops_the_run_in_the_worker(started, env, tmp_path, signum, status, last_words):
    """Ctrl-C ends the run with what it was doing said; SIGTERM (a job scheduler's, `timeout`'s) kills it, as it
    kills a `lamina` process. Either way the fork is gone and nothing is pushed."""
    spec = small_spec(tmp_path / "run", epochs=50)
    # As from a terminal: a test runner started in the background (`make test &`) passes SIGINT on ignored,
    # and Python then leaves it ignored, in `lamina` as anywhere
    client = subprocess.Popen([LAMINA, "run", "spec.yaml"], env=env, cwd=spec.parent, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in client.stdout:
        if line.startswith("[ 1/"):  # the first component started, in the worker's fork
            break
    client.send_signal(signum)
    out, err = client.communicate(timeout=120)
    assert client.returncode == status
    if last_words:
        assert err.endswith(last_words)
    # `lamina` returns once the fork has ended (its end of the connection closed), so the worker has no run left
    assert "0 running now" in lamina("worker", "status", env=env).stdout
    assert not (spec.parent / "serving_models").exists()


def test_a_worker_imported_under_other_variables_is_not_used(started, env, tmp_path):
    other = {**env, "TF_ENABLE_ONEDNN_OPTS": "0" if env.get("TF_ENABLE_ONEDNN_OPTS") != "0" else "1"}
    status = lamina("worker", "status", env=other)
    assert status.returncode == 1
    assert status.stdout == ("No Lamina worker runs for this code and environment: `lamina run` imports its own "
                             "modules (`lamina worker start` starts one).\n")
    before = runs_so_far(env)
    (tmp_path / "spec.yaml").write_text("data: {path: nowhere.csv, label: y}\n")
    assert lamina("run", "spec.yaml", env=other, cwd=tmp_path).returncode == 2
    assert runs_so_far(env) == before


def test_a_folder_others_can_open_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    result = lamina("worker", "start", env={**os.environ, "LAMINA_WORKER_DIR": str(shared)})
    assert result.returncode == 1
    assert result.stderr == (f"{shared}: the worker's folder must be yours with mode 0700 "
                             f"(it is uid {os.getuid()}, mode 0o755).\n")
    assert list(shared.iterdir()) == []


def test_an_idle_worker_stops_and_removes_its_socket(tmp_path):
    os.chmod(tmp_path, 0o700)
    path = tmp_path / "idle.sock"
    began = time.monotonic()
    worker.Worker(path, idle_seconds=0.5, key="idle", run=lambda argv: 0).serve()
    assert 0.5 <= time.monotonic() - began < 5
    assert not path.exists()


def test_stop_ends_the_worker_and_says_after_how_many_runs(started, env):
    runs = runs_so_far(env)
    pid = int(started.stdout.split("(pid ")[1].split(")")[0])
    ended = os.pidfd_open(pid)  # readable once the process has exited
    stopped = lamina("worker", "stop", env=env)
    assert stopped.returncode == 0
    assert stopped.stdout == f"Stopped the Lamina worker (pid {pid}) after {runs} runs.\n"
    assert select.select([ended], [], [], 30)[0], "the worker still runs 30 s after stop"
    os.close(ended)
    assert not list(Path(env["LAMINA_WORKER_DIR"]).glob("*.sock"))


def test_a_worker_folder_that_cannot_be_made_is_said_and_lamina_run_goes_on_by_itself(tmp_path):
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    env = {**os.environ, "LAMINA_WORKER_DIR": str(taken)}
    result = lamina("worker", "start", env=env)
    assert result.returncode == 1
    assert result.stderr == (f"{taken}: cannot make the worker's folder there (File exists); set LAMINA_WORKER_DIR "
                             f"to a folder of your own.\n")
    (tmp_path / "spec.yaml").write_text("data: {path: nowhere.csv, label: y}\n")
    run = lamina("run", "spec.yaml", env=env, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr == f"Invalid spec:\n  - data.path: no file matches '{tmp_path / 'nowhere.csv'}'.\n"
