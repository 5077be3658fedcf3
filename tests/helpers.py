"""Helpers the tests share: the example specs (made small for a CPU), data writers, readers of run outputs.

Fixtures live in conftest.py; plain functions and constants live here, imported by name.
"""

import copy
import csv
import os
from pathlib import Path

import yaml

from lamina.pipeline.cli.datasets import write_penguins_csv
from lamina.spec import Spec

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_SPEC = REPO / "examples" / "penguins" / "spec.yaml"

def example_spec_dict(tuning: bool = False, gates: bool = False) -> dict:
    """The penguins example spec. Without its `tuning:` section and its slice, fairness, per-class and
    baseline gates unless asked: most tests are about something else, tuning costs a search per run,
    and a test that changes the metrics should not have to undo gates on the old ones. The shared
    penguins run keeps both: it is the example as shipped."""
    d = yaml.safe_load(EXAMPLE_SPEC.read_text())
    if not tuning:
        d.pop("tuning", None)
    if not gates:
        ev = d["evaluation"]
        ev["metrics"] = [m for m in ev["metrics"] if m != "class_recall"]
        ev["thresholds"].pop("class_recall", None)
        for key in ("slice_thresholds", "fairness", "baseline"):
            ev.pop(key, None)
    return d


def _with_overrides(d: dict, base_dir, overrides: dict) -> Spec:
    """`d` with its top-level sections updated by `overrides`, as a Spec rooted at `base_dir`."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key].update(value)
        else:
            d[key] = value
    return Spec.from_dict(d, base_dir=str(base_dir))


def make_spec(base_dir, tuned: bool = False, gated: bool = False, **overrides) -> Spec:
    """The penguins example spec rooted at `base_dir` (`tuned`: with its tuning section; `gated`: with its
    slice, fairness, per-class and baseline gates), with top-level sections updated."""
    return _with_overrides(copy.deepcopy(example_spec_dict(tuning=tuned, gates=gated)), base_dir, overrides)


def read_prediction_logs(inference_dir):
    """BulkInferrer's PredictionLog records."""
    import glob

    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    files = glob.glob(os.path.join(inference_dir, "*.gz"))
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path, rows, columns):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})


def serving(push_dir, rest: bool = False):
    """A LaminaServer on a free loopback port over `push_dir` (and REST on another with `rest`), stopped
    when the fixture ends."""
    from lamina.serving.server import LaminaServer

    srv = LaminaServer(push_dir, port=0, rest_port=0 if rest else None, poll_seconds=0.2).start()
    yield srv
    srv.stop()


def run_example(root: Path, example: str, files=("spec.yaml",)):
    """(spec, RunResult) of examples/<example>/spec.yaml run in `root`, its `files` copied there first."""
    import shutil

    from lamina.pipeline.local_runner import run_pipeline

    for name in files:
        shutil.copy(REPO / "examples" / example / name, Path(root) / name)
    spec = Spec.from_yaml(Path(root) / "spec.yaml")
    return spec, run_pipeline(spec)


DIGITS_SPEC = REPO / "examples" / "digits" / "spec.yaml"


def digits_spec(base_dir, **overrides) -> Spec:
    """The digits example spec rooted at `base_dir`, made small enough for a CPU test
    (16x16 inputs, the example's width 16); top-level sections are updated by `overrides`."""
    d = yaml.safe_load(DIGITS_SPEC.read_text())
    d["model"]["encoders"]["image"].update(image_size=[16, 16])
    d["training"].update(epochs=6)
    return _with_overrides(d, base_dir, overrides)


TEXT_SPEC = REPO / "examples" / "text" / "spec.yaml"
TOPICS_CSV = REPO / "examples" / "text" / "topics.csv"


def text_spec(base_dir, minilm: str, **overrides) -> Spec:
    """The text example spec rooted at `base_dir` (topics.csv copied there), MiniLM from `minilm`."""
    import shutil

    shutil.copy(TOPICS_CSV, os.path.join(base_dir, "topics.csv"))
    d = yaml.safe_load(TEXT_SPEC.read_text())
    d["model"]["encoders"]["text"]["path"] = minilm
    return _with_overrides(d, base_dir, overrides)


DECOY = 'raise ImportError("the user\'s own {name!r} package was imported in place of Lamina\'s")\n'


def user_project(root: Path, **spec_changes) -> Path:
    """A user's folder: decoy models/, pipeline/, serving/, components/ packages, penguins data and a spec."""
    for name in ("models", "pipeline", "serving", "components"):
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(DECOY.format(name=name))
    write_penguins_csv(str(root / "data" / "penguins.csv"))
    spec = example_spec_dict()
    spec["training"].update(epochs=8)
    for key, value in spec_changes.items():
        spec[key].update(value)
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root
