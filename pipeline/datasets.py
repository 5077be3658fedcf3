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
