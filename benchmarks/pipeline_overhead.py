"""The pipeline's fixed cost on small data: whole processes side by side, several rounds, medians.

Each round runs, one after another, each as a whole process (interpreter start-up and imports
included), in a fresh folder:
  - tfx:           TFX 1.16's own penguin example pipeline (`tfx_penguin_pipeline.py`: Tuner and
                   BulkInferrer off, the same data, the example's own Beam arguments);
  - lamina:        `lamina run` on the penguins example as shipped (Tuner, baselines, gates,
                   explanations, TFLite), from an empty run directory;
  - lamina-core:   the same spec with tuning, slices, gates, baselines, explanations and TFLite
                   off, so that it runs the components TFX's example runs (ExampleGen,
                   statistics, schema, validation, Transform, Trainer, Evaluator with one
                   accuracy threshold, Pusher), from an empty run directory;
  - lamina-rerun:  `lamina run` on lamina's run directory again (ExampleGen to Trainer cached);
  - keras:         `plain_keras.py`: the same model fitted on the same CSV with pandas
                   preprocessing, then exported as a SavedModel.

The order rotates every round, so no process always runs first on a cold disk cache. Reported:
the median wall time of each, the ratios the issue sets targets for, and lamina's per-component
seconds (from its progress lines) in the median round.

With `--bytecode both`, each round runs every process twice: once as installed (`make install`
compiles every module to bytecode), and once with each module compiled from its source at import,
as an install without compiled bytecode does when PYTHONDONTWRITEBYTECODE is set (Python then never
writes the .pyc files). The second set is named with " [source]".

With `--beam both`, each round runs every process twice as well: with Lamina's Beam settings
(cloudpickle, DoFn introspection kept per DoFn) and with Beam's own (`lamina_beam_defaults.py`: dill,
introspection asked every time). The second set is named with " [beam defaults]".

With `--worker both`, each round runs every process twice as well: as `lamina` runs by itself
(LAMINA_WORKER=off), and with a `lamina worker` started once before the first round (its start is
timed and printed, not counted in any round), in which each `lamina run` is a fork that has the
imports already. The second set is named with " [worker]".

Usage:
    .venv/bin/python benchmarks/pipeline_overhead.py [--rounds 3] [--json results.json] \
        [--only lamina keras] [--bytecode installed|source|both] [--beam lamina|defaults|both] \
        [--worker off|on|both]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from scale import COMPONENT_LINE  # benchmarks/ is on sys.path when a script in it runs

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
CORE_OFF = {"tuning": None, "export": {"tflite": []}}
NAMES = ["tfx", "lamina", "lamina-core", "keras"]


def lamina_spec(folder: Path, core: bool) -> Path:
    from lamina.pipeline.cli.datasets import write_penguins_csv

    spec = yaml.safe_load((REPO / "examples" / "penguins" / "spec.yaml").read_text())
    if core:  # TFX's example: one accuracy threshold, no slices, gates, baselines, explanations or TFLite
        spec.update(CORE_OFF)
        spec["evaluation"] = {"metrics": ["accuracy"], "baseline": {"enabled": False},
                              "thresholds": {"accuracy": spec["evaluation"]["thresholds"]["accuracy"]}}
        spec["explain"] = {"enabled": False}
    folder.mkdir(parents=True, exist_ok=True)
    write_penguins_csv(str(folder / "data" / "penguins.csv"))
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def timed(cmd, cwd: Path, log: Path, env=None) -> dict:
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed (exit {proc.returncode}); see {log}")
    components = {m[3]: float(m[4]) for m in map(COMPONENT_LINE.match, log.read_text().splitlines()) if m}
    return {"wall_s": wall, "components": components}


def from_source_env(empty: Path) -> dict:
    """Child processes that find no .pyc (an empty PYTHONPYCACHEPREFIX) and write none."""
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(empty)}


def one_round(work: Path, order, env=None, suffix="", beam_defaults=False) -> dict:
    lamina = [str(Path(sys.executable).parent / "lamina"), "run", "spec.yaml"]
    if beam_defaults:
        lamina = [sys.executable, str(BENCH / "lamina_beam_defaults.py"), "run", "spec.yaml"]
    python = sys.executable
    runs = {}
    shipped, core = work / "lamina", work / "lamina-core"
    lamina_spec(shipped, core=False)  # the keras process reads its spec too
    if "lamina-core" in order:
        lamina_spec(core, core=True)
    (work / "tfx").mkdir()
    (work / "keras").mkdir()
    commands = {
        "tfx": ([python, str(BENCH / "tfx_penguin_pipeline.py"), "--root", str(work / "tfx")], work / "tfx"),
        "lamina": (lamina, shipped),
        "lamina-core": (lamina, core),
        "keras": ([python, str(BENCH / "plain_keras.py"), "--spec", str(shipped / "spec.yaml"),
                   "--export", str(work / "keras" / "model")], work / "keras"),
    }
    for name in order:
        runs[name + suffix] = timed(commands[name][0], commands[name][1], work / f"{name}.log", env)
        if name == "lamina":
            runs["lamina-rerun" + suffix] = timed(lamina, shipped, work / "lamina-rerun.log", env)
        print(f"    {name + suffix:21s} {runs[name + suffix]['wall_s']:6.1f}s", flush=True)
    if "lamina-rerun" + suffix in runs:
        print(f"    {'lamina-rerun' + suffix:21s} {runs['lamina-rerun' + suffix]['wall_s']:6.1f}s", flush=True)
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write every round's numbers to this file")
    parser.add_argument("--only", nargs="+", choices=NAMES, default=NAMES,
                        help="run only these processes (lamina brings lamina-rerun)")
    parser.add_argument("--bytecode", choices=["installed", "source", "both"], default="installed",
                        help="modules from the installed .pyc files, compiled from source at every start, or both")
    parser.add_argument("--beam", choices=["lamina", "defaults", "both"], default="lamina",
                        help="Lamina's Beam settings, Beam's own defaults (dill, no kept introspection), or both")
    parser.add_argument("--worker", choices=["off", "on", "both"], default="off",
                        help="`lamina run` by itself, in a `lamina worker` started before the rounds, or both")
    args = parser.parse_args()
    names = list(args.only)
    empty = Path(tempfile.mkdtemp(prefix="lamina-no-pyc-"))
    bytecode = {"installed": [(None, "")], "source": [(from_source_env(empty), " [source]")],
                "both": [(None, ""), (from_source_env(empty), " [source]")]}[args.bytecode]
    beam = {"lamina": [(False, "")], "defaults": [(True, " [beam defaults]")],
            "both": [(False, ""), (True, " [beam defaults]")]}[args.beam]
    workers = Path(tempfile.mkdtemp(prefix="lamina-workers-"))  # 0700; the worker's socket, if any
    warm = {**os.environ, "LAMINA_WORKER_DIR": str(workers)}
    worker = {"off": [({"LAMINA_WORKER": "off"}, "")], "on": [(warm, " [worker]")],
              "both": [({"LAMINA_WORKER": "off"}, ""), (warm, " [worker]")]}[args.worker]
    if args.worker != "off":
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "lamina"), "worker", "start"], env=warm, check=True)
        print(f"lamina worker start: {time.perf_counter() - t0:.1f} s (not counted in the rounds)", flush=True)
    variants = [({**(env or os.environ), **extra}, code_suffix + beam_suffix + worker_suffix, defaults)
                for env, code_suffix in bytecode for defaults, beam_suffix in beam for extra, worker_suffix in worker]
    rounds = []
    for i in range(args.rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        print(f"round {i + 1}/{args.rounds}: {', '.join(order)}", flush=True)
        runs = {}
        for env, suffix, defaults in variants[::-1] if i % 2 else variants:  # which set goes first alternates too
            work = Path(tempfile.mkdtemp(prefix="lamina-overhead-"))
            try:
                runs.update(one_round(work, order, env, suffix, defaults))
            finally:
                shutil.rmtree(work, ignore_errors=True)
        rounds.append(runs)
        if args.json:
            Path(args.json).write_text(json.dumps(rounds, indent=1))
    shutil.rmtree(empty, ignore_errors=True)
    if args.worker != "off":  # a worker that was not found (the code changed since it started) served no run
        subprocess.run([str(Path(sys.executable).parent / "lamina"), "worker", "stop"], env=warm)
        expected = sum(1 for r in rounds for n in r if n.endswith(" [worker]") and n.startswith("lamina"))
        print(f"runs the worker served: the line above; runs timed with it: {expected}")
    shutil.rmtree(workers, ignore_errors=True)
    suffixes = [suffix for _, suffix, _ in variants]
    measured = [n + s for s in suffixes for n in names + (["lamina-rerun"] if "lamina" in names else [])]
    med = {n: statistics.median(r[n]["wall_s"] for r in rounds) for n in measured}
    print(f"\n{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{args.rounds} rounds, medians of whole-process wall time")
    print("| process | median wall | each round |\n|---|---:|---|")
    for n in measured:
        print(f"| {n} | {med[n]:.1f} s | " + ", ".join(f"{r[n]['wall_s']:.1f}" for r in rounds) + " |")
    print("\n| ratio | median | target |\n|---|---:|---:|")
    for s in suffixes:
        for a, b, target in [("lamina", "tfx", 0.25), ("lamina-core", "tfx", 0.25), ("lamina", "keras", 2.0),
                             ("lamina-core", "keras", 2.0), ("lamina-rerun", "keras", 1.5)]:
            if a + s in med and b + s in med:
                print(f"| {a + s} / {b + s} | {med[a + s] / med[b + s]:.2f} | {target} |")
    lamina_runs = [n for n in ("lamina", "lamina-core", "lamina-rerun") if n + suffixes[0] in med]
    for s in suffixes if lamina_runs else []:  # seconds per component in the median round of the first run named
        median_round = sorted(rounds, key=lambda r: r[lamina_runs[0] + s]["wall_s"])[len(rounds) // 2]
        columns = [median_round[n + s]["components"] for n in lamina_runs]
        print(f"\n| component{s} | " + " | ".join(f"{n} (s)" for n in lamina_runs) + " |\n|---|"
              + "---:|" * len(lamina_runs))
        for c in dict.fromkeys(c for column in columns for c in column):
            print(f"| {c} | " + " | ".join("" if c not in col else f"{col[c]:.1f}" for col in columns) + " |")


if __name__ == "__main__":
    main()
