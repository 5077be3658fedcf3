"""What the image input pipeline costs: training steps per second for one model, fed three ways.

  in-memory      one batch of decoded pixels held in memory, repeated (the ceiling)
  tf.data        Lamina's real input pipeline (lamina.models.datasets.make_dataset) over gzipped
                 TFRecords of PNG bytes, as Transform writes them: parallel parse and decode,
                 decoded examples cached in memory, shuffled, batched, prefetched
  tf.data, no cache
                 the same, decoding every image at every step (what data too big to cache costs)

The modes alternate for several rounds in one process (these machines are shared and noisy)
and the median of each is reported. With a GPU present it also times ResNet-50 fine-tuning at
224x224 with mixed precision, with and without XLA (`--resnet50`).

    .venv/bin/python benchmarks/image_training.py [--model resnet_small|resnet50] [--size 32] [--steps 40]
"""

import argparse
import io
import json
import os
import statistics
import tempfile
import time

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


class _TransformedSpec:
    """What make_dataset reads from a TFTransformOutput: the transformed feature spec."""

    def transformed_feature_spec(self):
        return {"image_xf": tf.io.FixedLenFeature([], tf.string), "label_xf": tf.io.FixedLenFeature([], tf.int64)}


def write_records(directory: str, size: int, copies: int = 1) -> list:
    """Digits as PNG bytes (at `size` x `size`) in gzipped TFRecords, like Transform's output."""
    from PIL import Image

    from lamina.pipeline.cli.datasets import digits_arrays

    images, labels = digits_arrays(size=max(size, 8))
    path = os.path.join(directory, "part-00000.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        for _ in range(copies):
            for image, label in zip(images, labels):
                buf = io.BytesIO()
                Image.fromarray(image, mode="L").resize((size, size)).save(buf, "PNG")
                ex = tf.train.Example(features=tf.train.Features(feature={
                    "image_xf": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buf.getvalue()])),
                    "label_xf": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}))
                w.write(ex.SerializeToString())
    return [path]


def make_spec(architecture: str, size: int, batch: int, mixed: str = "off", xla: bool = False):
    from lamina.spec import Spec

    return Spec.from_dict({
        "name": "bench", "data": {"format": "image_folder", "path": "unused", "label": "label"},
        "model": {"encoders": {"image": {"type": "resnet", "architecture": architecture, "weights": "random",
                                         "image_size": [size, size], "width": 16}},
                  "combiner": {"hidden_units": []}},
        "training": {"batch_size": batch, "learning_rate": 0.001, "mixed_precision": mixed, "jit_compile": xla},
    }, base_dir=tempfile.gettempdir())


def steps_per_second(model, dataset, steps: int) -> float:
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # warm: the train step is traced
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps / (time.perf_counter() - start)


def input_pipeline_overhead(architecture: str, size: int, batch: int, steps: int, rounds: int) -> dict:
    from lamina.models.builder import build_model, compile_model
    from lamina.models.device import configure_devices
    from lamina.models.features import IMAGE, FeatureInfo
    from lamina.models.datasets import make_dataset

    spec = make_spec(architecture, size, batch)
    configure_devices(spec.training)
    features = [FeatureInfo("image", IMAGE, image_size=(size, size))]
    model = compile_model(build_model(spec, features, num_classes=10, compile=False), spec)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_records(tmp, size)
        cached = make_dataset(files, _TransformedSpec(), spec, features, batch, shuffle=True, cache=True)
        for _ in cached:  # one full pass fills the in-memory cache, as the first epoch does in training
            pass
        cached = cached.repeat()
        uncached = make_dataset(files, _TransformedSpec(), spec, features, batch, shuffle=True, cache=False).repeat()
        one_batch = next(iter(cached))
        in_memory = tf.data.Dataset.from_tensors(one_batch).repeat()
        modes = {"in-memory": in_memory, "tf.data": cached, "tf.data, no cache": uncached}
        results = {m: [] for m in modes}
        for _ in range(rounds):
            for name, ds in modes.items():
                results[name].append(steps_per_second(model, ds, steps))
    medians = {m: statistics.median(v) for m, v in results.items()}
    return {"model": architecture, "image_size": size, "batch": batch, "steps": steps, "rounds": rounds,
            "parameters": model.count_params(), "steps_per_second": medians,
            "overhead_vs_in_memory": {m: 1 - medians[m] / medians["in-memory"] for m in medians if m != "in-memory"}}


def resnet50_throughput(batch: int, steps: int) -> dict:
    """ResNet-50 fine-tuning at 224x224, images/s: float32, mixed precision, mixed precision + XLA."""
    import keras

    from lamina.models.builder import build_model, compile_model
    from lamina.models.device import configure_devices
    from lamina.models.features import IMAGE, FeatureInfo

    features = [FeatureInfo("image", IMAGE, image_size=(224, 224))]
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 255, (batch, 224, 224, 3)).astype("float32")
    y = rng.randint(0, 10, batch)
    out = {}
    for name, mixed, xla in (("float32", "off", False), ("mixed", "on", False),
                             ("mixed + XLA", "on", True)):
        keras.backend.clear_session()
        spec = make_spec("resnet50", 224, batch, mixed, xla)
        configure_devices(spec.training)
        model = compile_model(build_model(spec, features, num_classes=10, compile=False), spec)
        ds = tf.data.Dataset.from_tensors(({"image": x}, y)).repeat()
        out[name] = batch * steps_per_second(model, ds, steps)
    return {"batch": batch, "steps": steps, "images_per_second": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet_small")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--resnet50", action="store_true", help="also ResNet-50 at 224x224 (meant for a GPU)")
    args = parser.parse_args()
    devices = [d.device_type for d in tf.config.list_physical_devices()]
    result = {"devices": devices,
              "input_pipeline": input_pipeline_overhead(args.model, args.size, args.batch, args.steps, args.rounds)}
    if args.resnet50:
        result["resnet50_224"] = resnet50_throughput(max(args.batch, 64), args.steps)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
