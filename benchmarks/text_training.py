"""Is tokenization the bottleneck of text fine-tuning? Tokenization and fine-tuning throughput,
side by side in one run.

  tokenize, tf.function    WordPiece + [CLS]/[SEP] + padding to 128 (models.text.TextTokenizer),
                           in the graph, batches of 256 strings: strings/s
  tokenize, tf.data        the same tokenizer in tf.data with AUTOTUNE, per string and per batch
                           of 32 (how Lamina's trainer maps it): strings/s
  fine-tune, in-memory     all-MiniLM-L6-v2 training steps at length 128 on one batch of token ids
                           held in memory (the ceiling): sequences/s
  fine-tune, tf.data       the same steps fed by Lamina's real input pipeline
                           (lamina.models.datasets.make_dataset) over gzipped TFRecords of raw strings,
                           tokenizing every string at every step (no cache): sequences/s

The measurements alternate for several rounds in one process (these machines are shared and
noisy) and the median of each is reported, with the ratio tokenization / fine-tuning and the
input pipeline's overhead over the in-memory ceiling. `--gpu` adds MiniLM and a BERT-base-size
encoder (12 layers, 768 wide, randomly initialised) with mixed precision, with and without XLA.

    .venv/bin/python benchmarks/text_training.py [--batch 32] [--steps 8] [--rounds 3] [--gpu]
"""

import argparse
import csv
import json
import os
import statistics
import tempfile
import time

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

LENGTH = 128
TOPICS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "text", "topics.csv")


class _TransformedSpec:
    """What make_dataset reads from a TFTransformOutput: the transformed feature spec."""

    def transformed_feature_spec(self):
        return {"text_xf": tf.io.FixedLenFeature([], tf.string), "label_xf": tf.io.FixedLenFeature([], tf.int64)}


def long_texts(n: int, seed: int = 0):
    """`n` paragraphs of 14 topics.csv sentences each (about 140 WordPiece tokens: truncated to 128)."""
    rows = list(csv.DictReader(open(TOPICS, encoding="utf-8")))
    classes = sorted({r["topic"] for r in rows})
    rng = np.random.RandomState(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randint(len(classes))
        pool = [r["text"] for r in rows if r["topic"] == classes[label]]
        texts.append(" ".join(rng.choice(pool, 14)))
        labels.append(label)
    return texts, np.array(labels), len(classes)


def write_records(directory: str, texts, labels) -> list:
    path = os.path.join(directory, "part-00000.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        for text, label in zip(texts, labels):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "text_xf": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()])),
                "label_xf": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))})).SerializeToString())
    return [path]


def make_spec(encoder: dict, batch: int, mixed: str = "off", xla: bool = False):
    from lamina.spec import Spec

    return Spec.from_dict({
        "name": "bench", "data": {"path": "unused.csv", "label": "label", "features": {"text": "text"}},
        "model": {"encoders": {"text": {**encoder, "max_length": LENGTH}}, "combiner": {"hidden_units": []}},
        "training": {"batch_size": batch, "optimizer": "adamw", "learning_rate": 5e-5, "mixed_precision": mixed,
                     "jit_compile": xla, "lr_schedule": "constant"},
    }, base_dir=tempfile.gettempdir())


def strings_per_second_graph(tokenizer, texts, batch: int = 256) -> float:
    fn = tf.function(lambda s: tokenizer(s))
    batches = [tf.constant(texts[i:i + batch]) for i in range(0, len(texts), batch)]
    fn(batches[0])  # traced
    start = time.perf_counter()
    for b in batches:
        fn(b).numpy()
    return len(texts) / (time.perf_counter() - start)


def strings_per_second_tf_data(tokenizer, texts, batch=None) -> float:
    ds = tf.data.Dataset.from_tensor_slices(texts)
    ds = (ds.batch(batch) if batch else ds).map(tokenizer, num_parallel_calls=tf.data.AUTOTUNE)
    start = time.perf_counter()
    for _ in ds:
        pass
    return len(texts) / (time.perf_counter() - start)


def sequences_per_second(model, dataset, steps: int, batch: int) -> float:
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # warm: the train step is traced
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def side_by_side(minilm: str, batch: int, steps: int, rounds: int, n_texts: int) -> dict:
    from lamina.models.builder import build_model, compile_model
    from lamina.models.device import configure_devices
    from lamina.models.features import TEXT, FeatureInfo
    from lamina.models.text import inspect_pretrained
    from lamina.models.datasets import make_dataset

    spec = make_spec({"type": "bert", "path": minilm}, batch)
    configure_devices(spec.training)
    info = inspect_pretrained(minilm)
    feature = FeatureInfo("text", TEXT, vocabulary=info.vocabulary, lowercase=info.lowercase, max_length=LENGTH)
    tokenizer = feature.tokenizer()
    texts, labels, num_classes = long_texts(n_texts)
    lengths = (tokenizer(tf.constant(texts[:256])).numpy() != 0).sum(1)
    model = compile_model(build_model(spec, [feature], num_classes=num_classes, compile=False), spec)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_records(tmp, texts, labels)
        streamed = make_dataset(files, _TransformedSpec(), spec, [feature], batch, shuffle=True, cache=False).repeat()
        in_memory = tf.data.Dataset.from_tensors(next(iter(streamed))).repeat()
        results = {k: [] for k in ("tokenize, tf.function", "tokenize, tf.data per string",
                                   "tokenize, tf.data per batch", "fine-tune, in-memory", "fine-tune, tf.data")}
        for round_ in range(rounds):
            results["tokenize, tf.function"].append(strings_per_second_graph(tokenizer, texts))
            results["tokenize, tf.data per string"].append(strings_per_second_tf_data(tokenizer, texts))
            results["tokenize, tf.data per batch"].append(strings_per_second_tf_data(tokenizer, texts, batch))
            # The two fine-tuning modes swap places every round, so neither always runs first.
            order = [("fine-tune, in-memory", in_memory), ("fine-tune, tf.data", streamed)]
            for name, ds in order if round_ % 2 == 0 else order[::-1]:
                results[name].append(sequences_per_second(model, ds, steps, batch))
    med = {k: statistics.median(v) for k, v in results.items()}
    return {
        "model": "all-MiniLM-L6-v2", "parameters": model.count_params(), "sequence_length": LENGTH, "batch": batch,
        "steps": steps, "rounds": rounds, "strings": len(texts),
        "tokens_per_sequence_median": int(np.median(lengths)),
        "per_second": med,
        "per_round": results,
        "tokenization_over_fine_tuning": med["tokenize, tf.data per batch"] / med["fine-tune, in-memory"],
        "input_pipeline_overhead": 1 - med["fine-tune, tf.data"] / med["fine-tune, in-memory"],
    }


def gpu_throughput(minilm: str, batch: int, steps: int) -> dict:
    """Fine-tuning sequences/s at length 128: MiniLM and BERT-base size, mixed precision +/- XLA."""
    import keras

    from lamina.models.builder import build_model, compile_model
    from lamina.models.device import configure_devices
    from lamina.models.features import TEXT, FeatureInfo
    from lamina.models.text import inspect_pretrained

    info = inspect_pretrained(minilm)
    feature = FeatureInfo("text", TEXT, vocabulary=info.vocabulary, lowercase=True, max_length=LENGTH)
    ids = feature.tokenizer()(tf.constant(long_texts(batch)[0]))
    ds = tf.data.Dataset.from_tensors(({"text": ids}, np.zeros(batch, "int64"))).repeat()
    encoders = {
        "MiniLM-L6-H384 (pretrained)": {"type": "bert", "path": minilm},
        "BERT-base size (12x768, random)": {"type": "transformer", "num_layers": 12, "num_heads": 12,
                                            "hidden_dim": 768, "intermediate_dim": 3072,
                                            "vocabulary": info.vocabulary},
    }
    out = {}
    for name, encoder in encoders.items():
        for mode, mixed, xla in (("float32", "off", False), ("mixed", "on", False),
                                 ("mixed + XLA", "on", True)):
            keras.backend.clear_session()
            spec = make_spec(encoder, batch, mixed, xla)
            configure_devices(spec.training)
            model = compile_model(build_model(spec, [feature], num_classes=4, compile=False), spec)
            out[f"{name}, {mode}"] = sequences_per_second(model, ds, steps, batch)
    keras.mixed_precision.set_global_policy("float32")
    return {"batch": batch, "steps": steps, "sequences_per_second": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strings", type=int, default=2048)
    parser.add_argument("--model-dir", help="a BERT directory (default: all-MiniLM-L6-v2, fetched into the cache)")
    parser.add_argument("--gpu", action="store_true", help="also MiniLM and BERT-base with mixed precision +/- XLA")
    args = parser.parse_args()
    from lamina.pipeline.cli.datasets import fetch_minilm

    minilm = args.model_dir or fetch_minilm()
    result = {"devices": [d.device_type for d in tf.config.list_physical_devices()],
              "side_by_side": side_by_side(minilm, args.batch, args.steps, args.rounds, args.strings)}
    if args.gpu:
        result["gpu"] = gpu_throughput(minilm, max(args.batch, 64), max(args.steps, 20))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
