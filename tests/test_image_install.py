"""The Docker image's install steps, run from a clean checkout into a fresh virtual environment.

No Docker daemon runs here, so the image itself is not built. This runs what its Dockerfile
runs, in order: the files its COPY lines name, taken from `git ls-files` (what a clean checkout
holds, not this working tree's leftovers), then each RUN that installs, with `--system` pointed at
a new venv. Then the entrypoint the compiled pipeline calls starts, from an empty working
folder as the image's WORKDIR is, and imports every custom executor the pipeline names.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.pipeline.test_kubeflow import dockerfile_instructions

pytestmark = pytest.mark.e2e


def _run(cmd, cwd, timeout=900):
    done = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def test_the_dockerfile_install_steps_work_in_a_fresh_venv(tmp_path):
    tracked = _run(["git", "ls-files"], REPO).stdout.splitlines()
    src, venv, workspace = tmp_path / "src", tmp_path / "venv", tmp_path / "workspace"
    src.mkdir()
    workspace.mkdir()
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = str(venv / "bin" / "python")
    for word, arg in dockerfile_instructions():
        if word == "COPY":
            *sources, _ = arg.split()  # COPY a b ./ : every source into the build folder
            for path in tracked:
                if any(path == s or path.startswith(s.rstrip("/") + "/") for s in sources):
                    (src / path).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / path, src / path)
        elif word == "RUN" and "install" in arg:
            for step in arg.split("&&"):
                argv = shlex.split(step)
                if argv[0] == "python":
                    argv[0] = python
                elif argv[0] == "uv":
                    # Into the fresh venv instead of the image's system Python; from uv's cache (the
                    # image build uses --no-cache; the wheels are the same, pinned by hash-free ==).
                    argv = [str(venv / "bin" / "uv")] + [("--python" if a == "--system" else a) for a in argv[1:]
                                                         if a != "--no-cache"]
                    argv.insert(argv.index("--python") + 1, python)
                _run(argv, src)
    entry = [arg for word, arg in dockerfile_instructions() if word == "ENTRYPOINT"][0]
    command = [python if a == "python" else a for a in json.loads(entry)]
    done = subprocess.run(command + ["--help"], cwd=str(workspace), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "--executor_class_path" in done.stdout + done.stderr
    imports = ("import lamina, lamina.components.anomaly_gate, lamina.components.schema, "
               "lamina.components.table_example_gen, lamina.components.warmup_pusher, lamina.models.trainer; "
               "print(lamina.__file__)")
    where = _run([python, "-c", imports], workspace).stdout.strip()
    assert where.startswith(str(venv)) and "/src/" not in where  # the installed package, not the sources
    # Every module a component imports was compiled at install: a container that starts with
    # PYTHONDONTWRITEBYTECODE (or a read-only image layer) compiles none of them from source again.
    compiled_at_import = (
        "import _frozen_importlib_external as e, sys\n"
        "compiled = []\n"
        "real = e.SourceLoader.source_to_code\n"
        "def counting(self, data, path, *, _optimize=-1):\n"
        "    compiled.append(path)\n"
        "    return real(self, data, path, _optimize=_optimize)\n"
        "e.SourceLoader.source_to_code = counting\n"
        "import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor, lamina.models.trainer\n"
        "print(len(sys.modules), len(compiled), compiled[:5])\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([python, "-c", compiled_at_import], cwd=str(workspace), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    modules, compiled, first = done.stdout.split(maxsplit=2)
    assert int(modules) > 3000 and compiled == "0", f"compiled from source at import: {compiled} ({first})"
