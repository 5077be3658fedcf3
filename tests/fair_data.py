"""Loan decisions, exported from a spreadsheet, where one branch's records are noisier: for the gate tests.

What it is like, on purpose:
- a UTF-8 byte-order mark and headers with spaces and symbols (`Applicant ID`, `Income (k$)`,
  `Debt ratio`, `Years at job`, `Branch`); an ID column; blanks among the numbers;
- the label `approved` (yes/no, about 64% yes: `evaluation.positive_class` names `yes`) follows axis-aligned rules, which trees learn
  exactly and a small, briefly trained network only approximates:
  yes when income > 55 and debt ratio < 0.35, or when years at job >= 8;
- in branch `South` (40% of the rows) 30% of the labels are flipped (records keyed in by hand),
  in `North` none: a model is much less accurate on South than on North.
"""

import csv
import os
import random

COLUMNS = ["Applicant ID", "Branch", "Income (k$)", "Debt ratio", "Years at job", "Age", "Product", "approved"]
LABEL = "approved"
NOISY_BRANCH = "South"


def write_loans_csv(path: str, n: int = 3000, seed: int = 7, flip: float = 0.3) -> str:
    rng = random.Random(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i in range(n):
            branch = NOISY_BRANCH if rng.random() < 0.4 else "North"
            income = round(rng.uniform(20, 120), 1)
            debt = round(rng.uniform(0.0, 0.8), 3)
            years = rng.randint(0, 15)
            age = rng.randint(21, 70)
            product = rng.choice(["mortgage", "car", "personal"])
            approved = (income > 55 and debt < 0.35) or years >= 8
            if branch == NOISY_BRANCH and rng.random() < flip:
                approved = not approved
            row = [f"A-{100000 + i}", branch, income, debt, years, age, product, "yes" if approved else "no"]
            if rng.random() < 0.02:
                row[5] = ""  # a blank age
            w.writerow(row)
    return path


def loans_spec_dict(data_path: str) -> dict:
    """A binary spec over the loans CSV: every binary metric, sliced by branch, a weak network."""
    return {
        "name": "loans",
        "data": {"path": data_path, "label": LABEL, "exclude": ["Applicant ID"],
                 "features": {"Branch": "categorical", "Income (k$)": "numeric", "Debt ratio": "numeric",
                              "Years at job": "numeric", "Age": "numeric", "Product": "categorical"}},
        "model": {"combiner": {"hidden_units": [4]}, "head": {"type": "classification"}},
        "training": {"epochs": 2, "batch_size": 64, "learning_rate": 0.003},
        "evaluation": {
            "metrics": ["accuracy", "auc", "pr_auc", "precision", "recall", "tpr", "fpr", "ece"],
            "thresholds": {"accuracy": {"lower_bound": 0.6}},
            "slices": [["Branch"]],
            "fairness": [{"feature": "Branch", "metric": "accuracy", "max_gap": 0.1, "min_examples": 50}],
            "baseline": {"must_beat": "gbt", "tolerance": 0.01},
            "positive_class": "yes",  # the commoner class: without this, the metrics would be of 'no'
        },
        "explain": {"enabled": False},
        "serving": {"model_name": "loans", "push_dir": "serving_models"},
        "runner": {"root": "lamina_runs"},
    }
