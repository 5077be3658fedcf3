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
