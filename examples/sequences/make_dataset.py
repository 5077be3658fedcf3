"""Writes examples/sequences/machines.csv: temperature logs of machines, and whether each one failed.

Synthetic, with a fixed seed; the CSV is committed and this script is how it was made
(`python examples/sequences/make_dataset.py`). It looks like a maintenance system's export: a
byte-order mark, a header with spaces and a unit, a machine ID, and the readings of one shift in
one cell, separated by ';', of 12 to 48 values, with a few readings missing ('NA').

Each log is a machine's temperature: its own baseline, noise, and now and then a short spike that
means nothing. A failing machine (`status` = fault) heats up steadily over its last 5 to 8
readings. What decides the label is the order and the end of the sequence, which sits at a
different position in each row: the mean, the maximum or a fixed position say little (a spike can
be hotter than a failing machine's ramp), which is why a recurrent encoder beats gradient-boosted
trees on the padded values here.
"""

import csv
import os
import random

ROWS = 900
MODELS = ["TX-100", "TX-200", "Kessel 7"]


def machine_log(rng: random.Random, fault: bool):
    length = rng.randint(12, 48)
    base = rng.uniform(35.0, 60.0)
    values = [base + rng.gauss(0.0, 0.6) for _ in range(length)]
    for _ in range(rng.randint(0, 2)):  # harmless spikes, anywhere but the end
        at = rng.randrange(0, length - 8)
        values[at] += rng.uniform(4.0, 9.0)
    if fault:
        ramp = rng.randint(5, 8)
        slope = rng.uniform(0.7, 1.5)
        for i in range(ramp):
            values[length - ramp + i] += slope * (i + 1)
    else:  # a healthy machine may cool down or drift a little at the end
        drift = rng.uniform(-0.3, 0.15)
        for i in range(6):
            values[length - 6 + i] += drift * (i + 1)
    cells = [f"{v:.1f}" for v in values]
    for _ in range(rng.choice([0, 0, 0, 1])):
        cells[rng.randrange(0, length - 8)] = "NA"
    return cells


def write(path: str, rows: int = ROWS, seed: int = 7) -> str:
    rng = random.Random(seed)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        writer = csv.writer(f)
        writer.writerow(["Machine ID", "Model", "Temperature log (°C)", "status"])
        for i in range(rows):
            fault = rng.random() < 0.4
            writer.writerow([f"M-{10000 + i}", rng.choice(MODELS), ";".join(machine_log(rng, fault)),
                             "fault" if fault else "ok"])
    return path


if __name__ == "__main__":
    print(write(os.path.join(os.path.dirname(os.path.abspath(__file__)), "machines.csv")))
