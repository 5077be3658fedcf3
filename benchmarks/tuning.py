"""Tuning engines side by side: Optuna (TPE with the median pruner) against KerasTuner's random search.

One process, one Transform output (a run of the penguins spec without tuning), then for each
seed the two searches back to back, 20 trials each, over the same space: a learning rate from
1e-5 (hopeless in 15 epochs) to 0.3, the combiner's width and depth, and dropout. Each search
is exactly what TFX's Tuner runs (models.tuning.SpecTuner on the train split less a 20% holdout).
After each search the best trial's values train a final model on the whole train split, and the
eval split (never seen by the search) scores it.

Reports per engine and seed: the best holdout accuracy, the final model's eval accuracy, trials
pruned, epochs trained in all, and the search's wall time; then the medians.

Usage:
    .venv/bin/python benchmarks/tuning.py [--trials 20] [--seeds 0 1 2] [--out results.json]
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SPACE = {"learning_rate": {"low": 1e-5, "high": 0.3, "log": True}, "width": {"choices": [8, 16, 32, 64]},
         "depth": {"low": 1, "high": 3}, "dropout": {"low": 0.0, "high": 0.4}}


def eval_accuracy(model_dir: str, examples_dir: str) -> float:
    import glob

    import numpy as np
    import tensorflow as tf

    model = tf.saved_model.load(model_dir)
    records = [r.numpy() for r in tf.data.TFRecordDataset(glob.glob(os.path.join(examples_dir, "Split-eval", "*")),
                                                          compression_type="GZIP")]
    out = model.signatures["serving_default"](inputs=tf.constant(records))
    predicted = [c[np.argmax(s)].decode() for c, s in zip(out["classes"].numpy(), out["scores"].numpy())]
    labels = [tf.train.Example.FromString(r).features.feature["species"].bytes_list.value[0].decode() for r in records]
    return float(np.mean([p == label for p, label in zip(predicted, labels)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    import tensorflow_transform as tft

    from lamina.models.trainer import train
    from lamina.models.tuning import SpecTuner, apply_hyperparameters
    from lamina.pipeline.cli.datasets import write_penguins_csv
    from lamina.pipeline.local_runner import run_pipeline
    from lamina.spec import Spec
    import yaml

    work = Path(tempfile.mkdtemp(prefix="lamina_tuning_bench_"))
    write_penguins_csv(str(work / "data" / "penguins.csv"))
    base = yaml.safe_load((REPO / "examples" / "penguins" / "spec.yaml").read_text())
    base.pop("tuning", None)
    base["evaluation"] = {"metrics": ["accuracy"]}
    base["export"], base["explain"] = {"tflite": []}, {"enabled": False}
    base["training"].update(epochs=args.epochs, early_stopping=None)
    spec = Spec.from_dict(base, base_dir=str(work))
    t0 = time.perf_counter()
    result = run_pipeline(spec)
    print(f"pipeline (no tuning) for the Transform output: {time.perf_counter() - t0:.1f}s", flush=True)
    tft_output = tft.TFTransformOutput(result.transform_graph_dir)
    train_files = [os.path.join(result.examples_dir, "Split-train", "*")]
    eval_files = [os.path.join(result.examples_dir, "Split-eval", "*")]

    rows = []
    for seed in args.seeds:
        for engine in ("optuna", "random"):
            d = dict(base, tuning={"engine": engine, "trials": args.trials, "epochs": args.epochs, "seed": seed,
                                   "pruning": True, "space": SPACE})
            tuned_spec = Spec.from_dict(d, base_dir=str(work))
            started = time.perf_counter()
            tuner = SpecTuner(tuned_spec, tft_output, train_files, str(work / f"search_{engine}_{seed}"),
                              stream=open(os.devnull, "w"))
            tuner.search(verbose=0)
            seconds = time.perf_counter() - started
            best = tuner.best_record()
            final_dir = str(work / f"final_{engine}_{seed}")
            train(apply_hyperparameters(spec, best["values"]), tft_output, train_files, eval_files, final_dir)
            row = {"engine": engine, "seed": seed, "best_holdout_accuracy": best["score"],
                   "eval_accuracy": eval_accuracy(final_dir, result.examples_dir),
                   "pruned": sum(r["status"] == "pruned" for r in tuner.records),
                   "epochs": sum(r["epochs"] for r in tuner.records), "search_seconds": round(seconds, 1),
                   "best_values": best["values"]}
            rows.append(row)
            print(json.dumps(row), flush=True)

    print(f"\n{len(args.seeds)} seeds x {args.trials} trials x up to {args.epochs} epochs; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print("| engine | best holdout accuracy | eval accuracy (final model) | trials pruned | epochs trained | search wall time |")
    print("|---|---|---|---|---|---|")
    for engine in ("optuna", "random"):
        mine = [r for r in rows if r["engine"] == engine]
        med = lambda k: statistics.median(r[k] for r in mine)  # noqa: E731
        label = "Optuna TPE + median pruner" if engine == "optuna" else "KerasTuner random"
        print(f"| {label} | {med('best_holdout_accuracy'):.4f} | {med('eval_accuracy'):.4f} | {med('pruned'):.0f} | "
              f"{med('epochs'):.0f} | {med('search_seconds'):.1f} s |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
