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

Usage:
    .venv/bin/python benchmarks/pipeline_overhead.py [--rounds 3] [--json results.json]
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


def timed(cmd, cwd: Path, log: Path) -> dict:
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed (exit {proc.returncode}); see {log}")
    components = {m[3]: float(m[4]) for m in map(COMPONENT_LINE.match, log.read_text().splitlines()) if m}
    return {"wall_s": wall, "components": components}


def one_round(work: Path, order) -> dict:
    lamina = [str(Path(sys.executable).parent / "lamina"), "run", "spec.yaml"]
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
        runs[name] = timed(commands[name][0], commands[name][1], work / f"{name}.log")
        if name == "lamina":
            runs["lamina-rerun"] = timed(lamina, shipped, work / "lamina-rerun.log")
        print(f"    {name:12s} {runs[name]['wall_s']:6.1f}s", flush=True)
    if "lamina-rerun" in runs:
        print(f"    {'lamina-rerun':12s} {runs['lamina-rerun']['wall_s']:6.1f}s", flush=True)
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write every round's numbers to this file")
    parser.add_argument("--only", nargs="+", choices=NAMES, default=NAMES,
                        help="run only these processes (lamina brings lamina-rerun)")
    args = parser.parse_args()
    names = list(args.only)
    rounds = []
    for i in range(args.rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        print(f"round {i + 1}/{args.rounds}: {', '.join(order)}", flush=True)
        work = Path(tempfile.mkdtemp(prefix="lamina-overhead-"))
        try:
            rounds.append(one_round(work, order))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rounds, indent=1))
    measured = names + (["lamina-rerun"] if "lamina" in names else [])
    med = {n: statistics.median(r[n]["wall_s"] for r in rounds) for n in measured}
    print(f"\n{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{args.rounds} rounds, medians of whole-process wall time")
    print("| process | median wall | each round |\n|---|---:|---|")
    for n in measured:
        print(f"| {n} | {med[n]:.1f} s | " + ", ".join(f"{r[n]['wall_s']:.1f}" for r in rounds) + " |")
    print("\n| ratio | median | target |\n|---|---:|---:|")
    for a, b, target in [("lamina", "tfx", 0.25), ("lamina-core", "tfx", 0.25), ("lamina", "keras", 2.0),
                         ("lamina-core", "keras", 2.0), ("lamina-rerun", "keras", 1.5)]:
        if a in med and b in med:
            print(f"| {a} / {b} | {med[a] / med[b]:.2f} | {target} |")
    if "lamina" not in names:
        return
    median_round = sorted(rounds, key=lambda r: r["lamina"]["wall_s"])[len(rounds) // 2]
    print("\n| component | lamina (s) | lamina-core (s) | lamina-rerun (s) |\n|---|---:|---:|---:|")
    for c, s in median_round["lamina"]["components"].items():
        core = median_round.get("lamina-core", {"components": {}})["components"].get(c)
        rerun = median_round["lamina-rerun"]["components"].get(c)
        print(f"| {c} | {s:.1f} | {'' if core is None else f'{core:.1f}'} | {'' if rerun is None else f'{rerun:.1f}'} |")


if __name__ == "__main__":
    main()
