"""What the pipeline costs over plain Keras, on the penguins spec, side by side in one run.

Measures, in one process:
  1. `lamina run` on the penguins spec from a cold run directory, per component;
  2. the same spec again (everything cacheable comes from the cache);
  3. the same model (same builder, same epochs and batch size) fitted with plain Keras on the
     same CSV, with pandas preprocessing in place of TFX.

Usage:
    .venv/bin/python benchmarks/pipeline_overhead.py [--out docs/benchmarks.md]
"""

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def plain_keras(spec, csv_path):
    """The model fitted without TFX: z-score and vocabularies by hand, same builder and epochs."""
    import keras
    import numpy as np
    import pandas as pd

    from lamina.models.builder import build_model
    from lamina.models.features import CATEGORICAL, NUMERIC, FeatureInfo

    t0 = time.perf_counter()
    df = pd.read_csv(csv_path)
    df = df[df[spec.data.label].notna()]
    rng = np.random.default_rng(0)
    is_eval = rng.random(len(df)) < spec.split.eval / (spec.split.train + spec.split.eval)
    train, evaluation = df[~is_eval], df[is_eval]
    features, x_train, x_eval = [], {}, {}
    for name, kind in spec.data.feature_types.items():
        if kind == NUMERIC:
            mean, std = train[name].mean(), train[name].std() or 1.0
            x_train[name] = ((train[name].fillna(mean) - mean) / std).to_numpy("float32")[:, None]
            x_eval[name] = ((evaluation[name].fillna(mean) - mean) / std).to_numpy("float32")[:, None]
            features.append(FeatureInfo(name, NUMERIC))
        else:
            vocab = {v: i for i, v in enumerate(sorted(train[name].fillna("").astype(str).unique()))}
            enc = lambda s: s.fillna("").astype(str).map(lambda v: vocab.get(v, len(vocab))).to_numpy("int64")[:, None]
            x_train[name], x_eval[name] = enc(train[name]), enc(evaluation[name])
            features.append(FeatureInfo(name, CATEGORICAL, len(vocab) + 1))
    classes = sorted(train[spec.data.label].unique())
    y_train = train[spec.data.label].map(classes.index).to_numpy()
    y_eval = evaluation[spec.data.label].map(lambda v: classes.index(v) if v in classes else -1).to_numpy()
    keras.utils.set_random_seed(spec.training.seed)
    model = build_model(spec, features, num_classes=len(classes))
    prep = time.perf_counter() - t0
    callbacks = []
    if spec.training.early_stopping:
        es = spec.training.early_stopping
        callbacks.append(keras.callbacks.EarlyStopping(monitor=es.monitor, patience=es.patience,
                                                       restore_best_weights=True))
    t1 = time.perf_counter()
    model.fit(x_train, y_train, validation_data=(x_eval, y_eval), epochs=spec.training.epochs,
              batch_size=spec.training.batch_size, callbacks=callbacks, verbose=0)
    fit = time.perf_counter() - t1
    accuracy = float(model.evaluate(x_eval, y_eval, verbose=0)[1])
    return {"prepare_s": prep, "fit_s": fit, "total_s": prep + fit, "accuracy": accuracy}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write a Markdown section with the results to this file")
    args = parser.parse_args()

    from lamina.pipeline.datasets import write_penguins_csv
    from lamina.pipeline.local_runner import quiet_logs, run_pipeline
    from lamina.pipeline.spec import load_spec

    quiet_logs()
    work = Path(tempfile.mkdtemp(prefix="lamina-bench-"))
    (work / "spec.yaml").write_text((REPO / "examples" / "penguins" / "spec.yaml").read_text())
    csv_path = write_penguins_csv(str(work / "data" / "penguins.csv"))
    spec = load_spec(work / "spec.yaml")

    sink = io.StringIO()
    t0 = time.perf_counter()
    cold = run_pipeline(spec, stream=sink)
    cold_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = run_pipeline(spec, stream=sink)
    warm_wall = time.perf_counter() - t0
    keras_run = plain_keras(spec, csv_path)

    rows = [(c.name, c.seconds, w.seconds, "cached" if w.cached else "ran")
            for c, w in zip(cold.components, warm.components)]
    lines = [
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "",
        "| component | cold run (s) | re-run (s) | re-run |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {n} | {c:.1f} | {w:.1f} | {s} |" for n, c, w, s in rows]
    lines += [
        f"| **lamina run, wall** | **{cold_wall:.1f}** | **{warm_wall:.1f}** | |",
        "",
        f"Plain Keras on the same CSV, same builder, epochs and batch size: preparation {keras_run['prepare_s']:.2f} s, "
        f"fit {keras_run['fit_s']:.2f} s, total {keras_run['total_s']:.2f} s "
        f"(eval accuracy {keras_run['accuracy']:.3f}).",
        f"Pipeline eval accuracy (TFMA): {cold.metrics.get('sparse_categorical_accuracy', float('nan')):.3f}.",
        f"Pipeline / plain Keras wall-time ratio: {cold_wall / keras_run['total_s']:.1f}x cold, "
        f"{warm_wall / keras_run['total_s']:.1f}x re-run.",
    ]
    report = "\n".join(lines)
    print(report)
    print(json.dumps({"cold_wall_s": cold_wall, "rerun_wall_s": warm_wall, "keras": keras_run,
                      "components": {n: c for n, c, _, _ in rows}}))
    if args.out:
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
