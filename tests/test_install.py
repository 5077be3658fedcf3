"""Lamina's import names hold where users run it: beside their own packages, and from a wheel.

Lamina's folders are installed as `lamina.pipeline`, `lamina.models`, `lamina.components` and
`lamina.serving`. A user's project commonly has its own `models/` or `pipeline/` package; these
tests run real pipelines from a folder whose decoy packages of those names raise on import, so
any module path that resolved to a bare name (TFX's `run_fn`, the Transform module, a Beam
worker's import) fails the run.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import REPO, user_project

PACKAGE_FILES = ["pyproject.toml", "README.md", "lamina", "pipeline", "components", "models", "serving", "examples"]


def _run(cmd, cwd: Path, env=None, timeout=900) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def test_decoy_packages_raise_when_imported(tmp_path):
    """The decoys do shadow the bare names: importing one from the user's folder fails."""
    user_project(tmp_path)
    done = subprocess.run([sys.executable, "-c", "import models"], cwd=str(tmp_path), capture_output=True, text=True)
    assert done.returncode == 1
    assert "ImportError: the user's own 'models' package was imported in place of Lamina's" in done.stderr


@pytest.mark.e2e
def test_python_api_from_a_folder_with_the_users_own_packages(tmp_path):
    """`python run.py` beside decoys (the script's folder comes first on sys.path), with a spec
    that sets no evaluation thresholds: the run trains, pushes ungated, and says so."""
    user_project(tmp_path, evaluation={"thresholds": {}, "slice_thresholds": {}, "fairness": [],
                                       "baseline": {"must_beat": None}})
    (tmp_path / "run.py").write_text(
        "from lamina.pipeline import load_spec, run_pipeline\n"
        "from lamina.pipeline.runs.summary import format_result\n"
        "result = run_pipeline(load_spec('spec.yaml'))\n"
        "print(format_result(result))\n"
        "print('blessed:', result.blessed)\n")
    out = _run([sys.executable, "run.py"], tmp_path).stdout
    assert "[14/14] Pusher" in out
    assert ("  evaluation gate: none set (evaluation.thresholds is empty); the model was pushed ungated"
            in out.splitlines())
    assert "blessed: None" in out
    pushed = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("  pushed model:")]
    assert len(pushed) == 1 and os.path.isfile(os.path.join(pushed[0], "saved_model.pb"))
    report = (tmp_path / "lamina_runs" / "penguins" / "report.html").read_text()
    assert "model pushed (no evaluation gate set)" in report


@pytest.mark.e2e
def test_lamina_run_with_the_users_packages_on_pythonpath(tmp_path):
    """`lamina run` (the console script) with the user's folder on PYTHONPATH: every component
    runs, the model passes its gate and is pushed. (tests/test_beam_scale_out.py runs Beam's
    worker processes with the same decoys on their PYTHONPATH.)"""
    user_project(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    lamina = str(Path(sys.executable).parent / "lamina")
    out = _run([lamina, "run", "spec.yaml"], tmp_path, env=env).stdout
    ran = [m.group(1) for m in re.finditer(r"^\[\s*\d+/\d+\] (\S+)", out, re.MULTILINE)]
    assert sorted(ran) == sorted(["CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "AnomalyGate",
                                  "Transform", "Trainer", "LatestBlessedModelResolver", "EvaluationSchema", "Evaluator",
                                  "Explainer", "TFLiteExporter", "Baselines", "Pusher"])
    assert "(cached)" not in out
    assert "  pushed model:   (not pushed)" not in out


@pytest.mark.e2e
def test_lamina_demo_from_a_wheel_in_a_fresh_venv(tmp_path):
    """`pip install lamina.whl` into a new venv, then `lamina demo` in an empty folder: the demo's
    spec comes from the wheel's package data, and the served model answers over gRPC.

    The new venv gets the locked third-party stack through a .pth line to this venv's
    site-packages (a second 2 GB install would test pip, not Lamina); Lamina itself comes only
    from the wheel, which is checked below.
    """
    source = tmp_path / "source"
    source.mkdir()
    for name in PACKAGE_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "lamina_runs",
                                                                               "serving_models", "data"))
        else:
            (source / name).write_bytes(src.read_bytes())
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
          str(source)], tmp_path)
    wheel = next(wheels.glob("lamina-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    _run([str(Path(sys.executable).parent / "uv"), "pip", "install", "--python", str(python), "--no-deps", "-q",
          str(wheel)], tmp_path)
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
    Path(site.stdout.strip(), "_locked_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "work"
    work.mkdir()
    where = _run([str(python), "-c", "import lamina.pipeline.cli.demos as d, lamina.models.trainer as t; "
                  "print(d.__file__); print(t.__file__); print(d.example_file('penguins', 'spec.yaml'))"], work)
    for path in where.stdout.split():
        assert path.startswith(site.stdout.strip()), path
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = _run([str(venv / "bin" / "lamina"), "demo"], work, env=env).stdout
    assert (work / "lamina_demo" / "penguins" / "spec.yaml").read_text() == (
        REPO / "examples" / "penguins" / "spec.yaml").read_text()
    answers = [line for line in out.splitlines() if "a real " in line]
    assert len(answers) == 4
    for line in answers:
        truth = line.rsplit("a real ", 1)[1].split()[0]
        assert line.strip().startswith(f"-> {truth} ") and f"Classify: {truth} " in line, line
