"""Cost growth with the data: the same tabular spec on 10k, 100k and 1M rows, each a whole `lamina run`.

The data is one the project defines (`write_table`): 20 numeric and 5 categorical columns, about
2% of cells blank, and a binary label drawn from a logistic model of four numeric columns and one
categorical column. It is written in chunks, so generating 1M rows holds 50k rows at a time.

For each size the spec (`scale_spec`) runs ExampleGen, statistics, validation, Transform, the
baselines, a Trainer doing one epoch over every training row, and the Evaluator, as `lamina run`
in a child process. A sampler thread reads the resident memory of that process and all its
children every 0.2 s; the progress lines `lamina run` prints tell which component was running, so
the peak is reported per component too.

Reports, per size: wall time of the process and of each component, microseconds per row, the
peak RSS of the process tree (overall and per component), and the size of the artifacts.

With `--images`, the sizes are numbers of PNG files instead: scikit-learn's digits at 32x32,
each copy with its own noise (`write_images`), in one folder per class, through ImageExampleGen,
Transform, one epoch of `resnet_small` (width 16) and the Evaluator.

Usage:
    .venv/bin/python benchmarks/scale.py [--rows 10000 100000 1000000] [--work /tmp/lamina-scale]
                                         [--json results.json] [--beam-args="ARG ARG"]
    .venv/bin/python benchmarks/scale.py --images --rows 5000 50000
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parent.parent
NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = {"cat_0": 3, "cat_1": 8, "cat_2": 20, "cat_3": 50, "cat_4": 5}
LABEL = "label"
CHUNK = 50_000
# A progress line of `lamina run`: "[ 7/12] Transform   12.9s"
COMPONENT_LINE = re.compile(r"^\[\s*(\d+)/(\d+)\]\s+(\S+)\s+([\d.]+)s")


def write_table(path: str, rows: int, seed: int = 0, missing: float = 0.02) -> None:
    """Writes the benchmark's CSV, `CHUNK` rows at a time."""
    rng = np.random.default_rng(seed)
    weights = np.zeros(len(NUMERIC))
    weights[[0, 3, 7, 12]] = [1.2, -0.8, 0.6, 0.9]
    cat_effect = np.linspace(-1.0, 1.0, CATEGORICAL["cat_1"])
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(NUMERIC + list(CATEGORICAL) + [LABEL]) + "\n")
        done = 0
        while done < rows:
            n = min(CHUNK, rows - done)
            x = rng.normal(size=(n, len(NUMERIC))) * np.linspace(1, 50, len(NUMERIC)) + np.arange(len(NUMERIC))
            cats = {name: rng.integers(0, k, size=n) for name, k in CATEGORICAL.items()}
            z = (x - np.arange(len(NUMERIC))) / np.linspace(1, 50, len(NUMERIC))
            logit = z @ weights + cat_effect[cats["cat_1"]]
            label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
            columns = [np.char.mod("%.4g", x[:, j]) for j in range(len(NUMERIC))]
            columns += [np.char.add(f"{name[-1]}v", cats[name].astype(str)) for name in CATEGORICAL]
            blank = rng.random((n, len(columns))) < missing
            for j, column in enumerate(columns):
                column = column.astype(object)
                column[blank[:, j]] = ""
                columns[j] = column
            columns.append(np.where(label == 1, "yes", "no").astype(object))
            f.write("\n".join(",".join(row) for row in zip(*columns)) + "\n")
            done += n


def scale_spec(csv_path: str, run_root: str) -> dict:
    return {
        "name": "scale",
        "data": {"path": csv_path, "label": LABEL,
                 "features": {**{c: "numeric" for c in NUMERIC}, **{c: "categorical" for c in CATEGORICAL}}},
        "split": {"train": 4, "eval": 1},
        "model": {"combiner": {"hidden_units": [64, 32]}, "head": {"type": "classification"}},
        "training": {"epochs": 1, "batch_size": 256, "early_stopping": None},
        "evaluation": {"metrics": ["accuracy", "auc"], "thresholds": {"accuracy": {"lower_bound": 0.5}}},
        "export": {"tflite": []},
        "serving": {"model_name": "scale", "push_dir": os.path.join(run_root, "serving")},
        "runner": {"root": os.path.join(run_root, "runs")},
    }


def write_images(folder: str, count: int, seed: int = 0) -> None:
    """`count` 32x32 grey PNGs of the digits, each with its own noise, in `<folder>/<digit>/`."""
    from PIL import Image

    from lamina.pipeline.cli.datasets import digits_arrays

    images, labels = digits_arrays(range(10), 32)
    rng = np.random.default_rng(seed)
    for i in range(count):
        j = i % len(images)
        pixels = np.clip(images[j].astype(np.int16) + rng.integers(-24, 25, images[j].shape), 0, 255)
        target = os.path.join(folder, str(int(labels[j])))
        os.makedirs(target, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8), mode="L").save(os.path.join(target, f"{i:06d}.png"))


def image_spec(folder: str, run_root: str) -> dict:
    return {
        "name": "scale",
        "data": {"format": "image_folder", "path": folder, "label": "label", "features": {"image": "image"}},
        "split": {"train": 4, "eval": 1},
        "model": {"encoders": {"image": {"type": "resnet", "architecture": "resnet_small", "weights": "random",
                                         "image_size": [32, 32], "width": 16}},
                  "combiner": {"hidden_units": []}, "head": {"type": "classification"}},
        "training": {"epochs": 1, "batch_size": 64},
        "evaluation": {"metrics": ["accuracy"], "thresholds": {"accuracy": {"lower_bound": 0.1}}},
        "explain": {"enabled": False},
        "export": {"tflite": []},
        "serving": {"model_name": "scale", "push_dir": os.path.join(run_root, "serving")},
        "runner": {"root": os.path.join(run_root, "runs")},
    }


class TreeMemory:
    """Samples the resident memory of a process and its children (summed) in a thread."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.current_component = "(start-up)"
        self.peaks: Dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = 0
        try:
            for p in [self.root] + self.root.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._sample()
            self.peak = max(self.peak, rss)
            key = self.current_component
            self.peaks[key] = max(self.peaks.get(key, 0), rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def dir_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def run_size(rows: int, work: str, keep: bool, images: bool = False, beam_args: str = "") -> dict:
    import yaml

    folder = os.path.join(work, f"{'images' if images else 'rows'}_{rows}")
    data_path = os.path.join(work, f"png_{rows}" if images else f"table_{rows}.csv")
    if not os.path.exists(data_path):
        t0 = time.perf_counter()
        if images:
            write_images(data_path + ".part", rows)
        else:
            write_table(data_path + ".part", rows)
        os.replace(data_path + ".part", data_path)
        print(f"  wrote {data_path} ({dir_size(data_path) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f}s",
              flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    spec_path = os.path.join(folder, "spec.yaml")
    with open(spec_path, "w") as f:
        spec = image_spec(data_path, folder) if images else scale_spec(data_path, folder)
        if beam_args:
            spec["runner"]["beam_args"] = beam_args.split()
        yaml.safe_dump(spec, f, sort_keys=False)
    lamina = os.path.join(os.path.dirname(sys.executable), "lamina")
    components: List[dict] = []
    t0 = time.perf_counter()
    log_path = os.path.join(folder, "run.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([lamina, "run", spec_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, cwd=folder)
        with TreeMemory(proc.pid) as memory:
            for line in iter(proc.stdout.readline, ""):  # line by line as they come (not 8 KB blocks)
                log.write(line)
                log.flush()
                m = COMPONENT_LINE.match(line)
                if m:
                    name, seconds = m[3], float(m[4])
                    components.append({"component": name, "seconds": seconds,
                                       "peak_rss": memory.peaks.get(memory.current_component, 0)})
                    print(f"    {line.rstrip()}   peak {components[-1]['peak_rss'] / 2**30:.2f} GiB", flush=True)
                    memory.current_component = f"after {name}"
                elif line.startswith("Running pipeline"):
                    memory.current_component = "pipeline"
            rc = proc.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"lamina run failed on {rows} rows (exit {rc}); see {log_path}")
    # A component's own peak: the samples taken while it ran (between its predecessor's line and its own).
    keys = ["pipeline"] + [f"after {c['component']}" for c in components]
    for c, key in zip(components, keys):
        c["peak_rss"] = memory.peaks.get(key, 0)
    pipeline_dir = os.path.join(folder, "runs", "scale", "pipeline")
    artifacts = {name: dir_size(os.path.join(pipeline_dir, name)) for name in sorted(os.listdir(pipeline_dir))
                 if os.path.isdir(os.path.join(pipeline_dir, name))}
    result = {"rows": rows, "csv_bytes": dir_size(data_path), "wall_s": wall,
              "us_per_row": wall / rows * 1e6, "peak_rss": memory.peak,
              "startup_peak_rss": memory.peaks.get("(start-up)", 0),
              "components": components, "artifact_bytes": artifacts}
    if not keep:
        shutil.rmtree(os.path.join(folder, "runs"), ignore_errors=True)
    return result


def markdown(results: List[dict]) -> str:
    gib = 2**30
    out = ["| rows | input | wall | µs/row | peak RSS | artifacts |", "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        out.append(f"| {r['rows']:,} | {r['csv_bytes'] / 1e6:.0f} MB | {r['wall_s']:.0f} s | {r['us_per_row']:.0f} "
                   f"| {r['peak_rss'] / gib:.2f} GiB | {sum(r['artifact_bytes'].values()) / 1e6:.0f} MB |")
    names = [c["component"] for c in results[-1]["components"]]
    out += ["", "| component | " + " | ".join(f"{r['rows']:,} rows: s / peak GiB" for r in results) + " |",
            "|---|" + "---:|" * len(results)]
    for name in names:
        cells = []
        for r in results:
            c = next((c for c in r["components"] if c["component"] == name), None)
            cells.append(f"{c['seconds']:.1f} / {c['peak_rss'] / gib:.2f}" if c else "")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--work", default="/tmp/lamina-scale", help="data and run folders (kept between runs)")
    parser.add_argument("--keep", action="store_true", help="keep each size's artifacts")
    parser.add_argument("--images", action="store_true", help="PNG files instead of table rows")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--beam-args", metavar="ARGS",
                        help="runner.beam_args for the spec, space-separated, e.g. "
                             "--beam-args='--direct_running_mode=multi_processing --direct_num_workers=2' "
                             "(default: Lamina's)")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    results = []
    for rows in args.rows:
        print(f"{rows:,} rows", flush=True)
        results.append(run_size(rows, args.work, args.keep, args.images, args.beam_args))
        print(f"  {results[-1]['wall_s']:.1f}s, {results[-1]['us_per_row']:.1f} us/row, "
              f"peak {results[-1]['peak_rss'] / 2**30:.2f} GiB", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    print(markdown(results))
    if len(results) >= 2:
        a, b = results[-2], results[-1]
        print(f"\n{b['rows']:,} vs {a['rows']:,} rows: time per row {b['us_per_row'] / a['us_per_row']:.2f}x, "
              f"peak RSS {b['peak_rss'] / a['peak_rss']:.2f}x")


if __name__ == "__main__":
    main()
