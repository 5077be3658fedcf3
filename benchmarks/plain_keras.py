"""The penguins model without a pipeline: what a plain Keras script costs, for `pipeline_overhead.py`.

Reads the spec's CSV with pandas, imputes and z-scores the numbers and indexes the categories by
hand, holds out the spec's eval share, fits the model Lamina's builder makes from the spec (same
layers, epochs, batch size, early stopping), and exports it as a SavedModel. Run it as a whole
process: its wall time is the figure `lamina run` is compared with.

Usage:
    .venv/bin/python benchmarks/plain_keras.py --spec examples/penguins/spec.yaml --export /tmp/model
"""

import argparse
import time

T0 = time.perf_counter()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--export", required=True, help="folder for the SavedModel")
    args = parser.parse_args()

    import keras
    import numpy as np
    import pandas as pd

    from lamina.models.builder import build_model
    from lamina.models.features import CATEGORICAL, NUMERIC, FeatureInfo
    from lamina.spec import load_spec

    spec = load_spec(args.spec)
    df = pd.read_csv(spec.resolve(spec.data.path))
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

            def encode(s, vocab=vocab):
                return s.fillna("").astype(str).map(lambda v: vocab.get(v, len(vocab))).to_numpy("int64")[:, None]

            x_train[name], x_eval[name] = encode(train[name]), encode(evaluation[name])
            features.append(FeatureInfo(name, CATEGORICAL, len(vocab) + 1))
    classes = sorted(train[spec.data.label].unique())
    y_train = train[spec.data.label].map(classes.index).to_numpy()
    y_eval = evaluation[spec.data.label].map(lambda v: classes.index(v) if v in classes else -1).to_numpy()
    keras.utils.set_random_seed(spec.training.seed)
    model = build_model(spec, features, num_classes=len(classes))
    callbacks = []
    if spec.training.early_stopping:
        es = spec.training.early_stopping
        callbacks.append(keras.callbacks.EarlyStopping(monitor=es.monitor, patience=es.patience,
                                                       restore_best_weights=True))
    model.fit(x_train, y_train, validation_data=(x_eval, y_eval), epochs=spec.training.epochs,
              batch_size=spec.training.batch_size, callbacks=callbacks, verbose=0)
    accuracy = float(model.evaluate(x_eval, y_eval, verbose=0)[1])
    model.export(args.export, verbose=False)
    print(f"plain Keras: {len(df)} rows, eval accuracy {accuracy:.3f}, exported to {args.export}, "
          f"{time.perf_counter() - T0:.1f}s in the process")


if __name__ == "__main__":
    main()
