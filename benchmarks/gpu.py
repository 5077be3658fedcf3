"""Training throughput on whatever accelerator is there: ResNet-50 and a BERT-family encoder.

Measures, in one process, on the first GPU if there is one (the CPU otherwise):
  - ResNet-50 fine-tuning (every layer trains) on 224x224 images, in images/s, for each of
    float32, mixed precision, and mixed precision + XLA. Mixed precision is what Lamina's Trainer
    picks (`lamina.models.device.precision_policy`): bfloat16 from compute capability 8.0 on,
    float16 with loss scaling before.
  - BERT-base (12 layers, 768 wide; random weights, so nothing is downloaded) fine-tuning on
    sequences of 128 tokens, in sequences/s, in the same three modes.
  - Model FLOPs utilization (MFU): the model's training FLOPs per second over the device's peak.
    Training FLOPs are 3x the forward pass. ResNet-50's forward pass is 4.09 GMACs at 224x224
    (8.18 GFLOPs). The encoder's is 2 FLOPs per weight per token plus attention
    (4 * layers * length * width per token).
  - The input pipeline's overhead: the ResNet step rate fed by tf.data from gzipped TFRecords
    of JPEG bytes (parallel reads and decode, decoded images cached in memory when they fit,
    shuffle, batch, prefetch: what Lamina's `make_dataset` does), against the same model fed
    one batch that is already in device memory.

On a machine without a GPU it runs a small configuration (ResNet-50 at 64x64, batch 8; a 2-layer,
256-wide encoder, batch 8) and says so: CPU numbers show that the script works, not the targets.

Usage:
    .venv/bin/python benchmarks/gpu.py [--steps 30] [--image-batch N] [--text-batch N]
                                       [--peak-tflops T] [--json results.json]
"""

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

# Dense peak TFLOPS of the tensor cores in the mixed-precision dtype (bf16, or fp16 before Ampere):
# NVIDIA's data sheets, without sparsity.
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0,
               "L40S": 362.0, "L4": 121.0, "A10": 125.0, "V100": 125.0, "T4": 65.0}
RESNET50_FORWARD_FLOPS_224 = 2 * 4.09e9


def device_info():
    import tensorflow as tf

    from lamina.models.device import gpu_capabilities

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return {"kind": "cpu", "name": platform.processor() or platform.machine(), "count": os.cpu_count(),
                "capabilities": []}
    details = tf.config.experimental.get_device_details(gpus[0])
    return {"kind": "gpu", "name": details.get("device_name", "GPU"), "count": len(gpus),
            "capabilities": gpu_capabilities()}


def peak_tflops(device: dict, override):
    if override:
        return override
    if device["kind"] != "gpu":
        return None
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if key in device["name"]:
            return PEAK_TFLOPS[key]
    return None


def time_fit(model, data, steps: int, warmup: int) -> float:
    """Seconds per step of model.fit over `data` (a repeated dataset), after `warmup` steps."""
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return (time.perf_counter() - t0) / steps


def set_policy(mode: str, device: dict):
    import keras

    from lamina.models.device import precision_policy

    policy = "float32" if mode == "float32" else precision_policy("on", device["capabilities"])
    keras.mixed_precision.set_global_policy(policy)
    return policy


def resnet50(size: int, classes: int = 100):
    import keras

    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(size, size, 3),
                                           pooling="avg")
    inputs = keras.Input((size, size, 3))
    x = backbone(inputs)
    outputs = keras.layers.Dense(classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def write_jpeg_records(folder: str, count: int, size: int) -> str:
    """`count` random-texture JPEGs (quality 90) with labels, in one gzipped TFRecord file."""
    import tensorflow as tf

    path = os.path.join(folder, "images.tfrecord.gz")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(size // 8, size // 8, 3), dtype=np.uint8)
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        for i in range(count):
            noise = rng.integers(-20, 20, size=base.shape)
            small = np.clip(base.astype(int) + noise, 0, 255).astype(np.uint8)
            pixels = tf.image.resize(small[None], (size, size), method="bilinear")[0]
            jpeg = tf.io.encode_jpeg(tf.cast(pixels, tf.uint8), quality=90).numpy()
            ex = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 100]))}))
            w.write(ex.SerializeToString())
    return path


def image_dataset(path: str, size: int, batch: int, cache: bool):
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        image = tf.io.decode_jpeg(ex["image"], channels=3)
        image = tf.image.resize(image, (size, size))  # float32 0-255, as Lamina's image input
        return tf.cast(image, tf.uint8) if cache else image, ex["label"]

    ds = tf.data.TFRecordDataset([path], compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache().map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.shuffle(2048).repeat().batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def bench_resnet(device, size, batch, steps, warmup, modes, peak, records):
    import keras
    import tensorflow as tf

    rows = []
    x = tf.random.uniform((batch, size, size, 3), 0, 255)
    y = tf.random.uniform((batch,), 0, 100, dtype=tf.int64)
    in_memory = tf.data.Dataset.from_tensors((x, y)).repeat()
    flops_per_image = 3 * RESNET50_FORWARD_FLOPS_224 * (size / 224) ** 2
    for mode in modes:
        policy = set_policy(mode, device)
        keras.utils.set_random_seed(0)
        model = resnet50(size)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy",
                      jit_compile=mode.endswith("xla"))
        step = time_fit(model, in_memory, steps, warmup)
        row = {"model": "ResNet-50", "mode": mode, "policy": policy, "batch": batch, "size": size,
               "step_s": step, "throughput": batch / step, "unit": "images/s"}
        if peak:
            row["mfu"] = flops_per_image * row["throughput"] / (peak * 1e12)
        if mode == modes[-1]:  # the input pipeline at the fastest setting
            for cached in (True, False):
                piped = time_fit(model, image_dataset(records, size, batch, cached), steps, warmup)
                row["tfdata_cached_overhead" if cached else "tfdata_decode_overhead"] = piped / step - 1
        rows.append(row)
        print(f"  ResNet-50 {mode:12s} {policy:15s} batch {batch}: {row['throughput']:8.1f} images/s"
              + (f"  MFU {row['mfu']:.1%}" if "mfu" in row else ""), flush=True)
        del model
        keras.backend.clear_session()
    return rows


def bench_encoder(device, cfg, batch, steps, warmup, modes, peak):
    import keras
    import keras_hub
    import tensorflow as tf

    rows = []
    length = cfg["length"]
    tokens = tf.random.uniform((batch, length), 1000, cfg["vocab"], dtype=tf.int32)
    data = tf.data.Dataset.from_tensors(({"token_ids": tokens, "segment_ids": tf.zeros_like(tokens),
                                          "padding_mask": tf.ones_like(tokens, dtype=tf.bool)},
                                         tf.random.uniform((batch,), 0, 4, dtype=tf.int64))).repeat()
    width, layers = cfg["width"], cfg["layers"]
    for mode in modes:
        policy = set_policy(mode, device)
        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.BertBackbone(vocabulary_size=cfg["vocab"], num_layers=layers, num_heads=cfg["heads"],
                                                 hidden_dim=width, intermediate_dim=4 * width, max_sequence_length=length)
        inputs = backbone.input
        pooled = backbone(inputs)["pooled_output"]
        model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", dtype="float32")(pooled))
        model.compile(optimizer=keras.optimizers.AdamW(2e-5), loss="sparse_categorical_crossentropy",
                      jit_compile=mode.endswith("xla"))
        step = time_fit(model, data, steps, warmup)
        weights = backbone.count_params() - cfg["vocab"] * width  # token embeddings are a lookup, not a matmul
        flops_per_sequence = 3 * length * (2 * weights + 4 * layers * length * width)
        row = {"model": cfg["name"], "mode": mode, "policy": policy, "batch": batch, "length": length,
               "step_s": step, "throughput": batch / step, "unit": "sequences/s"}
        if peak:
            row["mfu"] = flops_per_sequence * row["throughput"] / (peak * 1e12)
        rows.append(row)
        print(f"  {cfg['name']} {mode:12s} {policy:15s} batch {batch}: {row['throughput']:8.1f} sequences/s"
              + (f"  MFU {row['mfu']:.1%}" if "mfu" in row else ""), flush=True)
        del model, backbone
        keras.backend.clear_session()
    return rows


def markdown(result: dict) -> str:
    out = [f"Device: {result['device']['name']} ({result['device']['kind']}, {result['device']['count']}), "
           f"peak {result['peak_tflops'] or 'unknown'} TFLOPS; {result['config']}", "",
           "| model | mode | policy | batch | throughput | MFU | tf.data overhead (cached / decoding) |",
           "|---|---|---|---:|---:|---:|---|"]
    for r in result["rows"]:
        overhead = ""
        if "tfdata_cached_overhead" in r:
            overhead = f"{r['tfdata_cached_overhead']:+.1%} / {r['tfdata_decode_overhead']:+.1%}"
        mfu = f"{r['mfu']:.1%}" if "mfu" in r else "n/a"
        out.append(f"| {r['model']} | {r['mode']} | {r['policy']} | {r['batch']} | {r['throughput']:.1f} {r['unit']} "
                   f"| {mfu} | {overhead} |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    parser.add_argument("--image-batch", type=int, default=None)
    parser.add_argument("--text-batch", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, if not in the table")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    device = device_info()
    gpu = device["kind"] == "gpu"
    modes = ["float32", "mixed", "mixed+xla"]
    if gpu:
        size, image_batch, steps, warmup, images = 224, args.image_batch or 256, args.steps or 50, 10, 2048
        encoder = {"name": "BERT-base", "layers": 12, "width": 768, "heads": 12, "vocab": 30522, "length": 128}
        text_batch = args.text_batch or 128
        config = "full configuration"
    else:
        size, image_batch, steps, warmup, images = 64, args.image_batch or 8, args.steps or 5, 2, 64
        encoder = {"name": "BERT (2x256, CPU size)", "layers": 2, "width": 256, "heads": 4, "vocab": 30522,
                   "length": 128}
        text_batch = args.text_batch or 8
        config = "NO GPU: small CPU configuration (ResNet-50 at 64x64, a 2-layer 256-wide encoder); not the targets"
    print(f"{device['name']}: {config}", flush=True)
    peak = peak_tflops(device, args.peak_tflops)
    with tempfile.TemporaryDirectory() as tmp:
        records = write_jpeg_records(tmp, images, 256 if gpu else size)
        rows = bench_resnet(device, size, image_batch, steps, warmup, modes, peak, records)
    rows += bench_encoder(device, encoder, text_batch, steps, warmup, modes, peak)
    result = {"date": time.strftime("%Y-%m-%d"), "host": platform.node(), "device": device, "peak_tflops": peak,
              "config": config, "tensorflow": tf.__version__, "rows": rows}
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main()
