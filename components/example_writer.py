"""Writing ExampleGen's splits in bounded memory: a shuffle through buckets on disk.

TFX's ExampleGen writes each split with `Reshuffle()` then `WriteToTFRecord`. On Beam's local
runner a Reshuffle is a GroupByKey, which holds the whole split in memory: on a 1M-row CSV the
process reached 2.75 GiB in ExampleGen, and the peak grew with the rows (docs/benchmarks.md,
"Cost growth"). The shuffle itself matters (a spreadsheet export is often sorted by the label,
and the Trainer's shuffle buffer only mixes nearby examples), so it is kept, done another way:

1. In Beam, each serialized example goes to one of `K` bucket files, chosen by a hash of its
   bytes (deterministic, whatever the bundling), with no GroupByKey: the read, the split and the
   writes fuse into one streaming stage.
2. After Beam, each bucket (about `BUCKET_EXAMPLES` examples) is read, shuffled with a seed and
   written as one shard of the split: `data_tfrecord-0000k-of-0000K.gz`.

A random bucket then a random order within it is a uniformly random order of the split, and the
memory it takes is one bucket's, whatever the size of the data. The shards are what TFX's own
readers expect (gzipped TFRecords under `Split-<name>/`).
"""

import math
import os
import uuid
import zlib
from typing import List, Optional

import apache_beam as beam
import numpy as np
from tfx.components.example_gen import base_example_gen_executor, utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

# Examples per bucket: what the in-memory shuffle of one bucket holds at a time (~25 MB of a
# 26-column table's examples).
BUCKET_EXAMPLES = 50_000
BUCKET_DIR = ".buckets"
SHARD_NAME = "data_tfrecord-{:05d}-of-{:05d}.gz"
READ_BATCH = 4096  # records per read when shuffling a bucket


def bucket_count(examples: int, per_bucket: Optional[int] = None) -> int:
    return max(1, math.ceil(examples / (per_bucket or BUCKET_EXAMPLES)))


class WriteBuckets(beam.DoFn):
    """Serialized examples -> `buckets` TFRecord files in `folder` (one set per bundle; not compressed:
    they live only until the shuffle)."""

    def __init__(self, folder: str, buckets: int):
        self.folder, self.buckets = folder, buckets
        self._writers = {}
        self._bundle = ""

    def start_bundle(self):
        self._writers = {}
        self._bundle = uuid.uuid4().hex[:12]

    def process(self, example):
        """An example (a proto or its bytes), or a list of serialized examples."""
        import tensorflow as tf

        for data in example if isinstance(example, list) else [example]:
            data = data if isinstance(data, bytes) else data.SerializeToString()
            k = zlib.crc32(data) % self.buckets
            writer = self._writers.get(k)
            if writer is None:
                path = os.path.join(self.folder, f"bucket-{k:05d}-{self._bundle}.tfrecord")
                writer = self._writers[k] = tf.io.TFRecordWriter(path)
            writer.write(data)

    def finish_bundle(self):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def shuffle_buckets(folder: str, split_uri: str, buckets: int, seed: int) -> List[int]:
    """Each bucket of `folder`, shuffled, as one shard in `split_uri`; the examples in each shard."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    counts = []
    for k in range(buckets):
        files = sorted(tf.io.gfile.glob(os.path.join(folder, f"bucket-{k:05d}-*.tfrecord")))
        records = [r for f in files
                   for batch in tf.data.TFRecordDataset(f).batch(READ_BATCH).as_numpy_iterator()
                   for r in batch.tolist()]  # in batches: tf.data's per-element cost is ~50 us
        order = rng.permutation(len(records))
        with tf.io.TFRecordWriter(os.path.join(split_uri, SHARD_NAME.format(k, buckets)), options="GZIP") as w:
            for i in order:
                w.write(records[i])
        counts.append(len(records))
        for f in files:
            tf.io.gfile.remove(f)
    return counts


class BoundedMemoryExecutor(base_example_gen_executor.BaseExampleGenExecutor):
    """TFX's ExampleGen executor, writing each split through `shuffle_buckets` instead of a Reshuffle.

    Subclasses set `self._expected_examples` (an upper bound is enough: it sizes the buckets)
    before calling `Do`.
    """

    _expected_examples = 0

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        import tensorflow as tf

        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        examples = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact = artifact_utils.get_single_instance(examples)
        names = utils.generate_output_split_names(input_config, output_config)
        artifact.split_names = artifact_utils.encode_split_names(names)
        buckets = bucket_count(self._expected_examples)
        folders = {}
        for name in names:
            folders[name] = os.path.join(artifact.uri, BUCKET_DIR, name)
            tf.io.gfile.makedirs(folders[name])
            tf.io.gfile.makedirs(artifact_utils.get_split_uri(examples, name))
        with self._make_beam_pipeline() as pipeline:
            splits = self.GenerateExamplesByBeam(pipeline, exec_properties)
            for name, split in splits.items():
                _ = split | f"WriteBuckets[{name}]" >> beam.ParDo(WriteBuckets(folders[name], buckets))
        self.split_counts = {}
        for i, name in enumerate(names):
            counts = shuffle_buckets(folders[name], artifact_utils.get_split_uri(examples, name), buckets, seed=i)
            self.split_counts[name] = sum(counts)
        tf.io.gfile.rmtree(os.path.join(artifact.uri, BUCKET_DIR))
        from tfx.components.example_gen import write_split
        from tfx.components.util import examples_utils

        payload = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
        for a in examples:
            if payload:
                examples_utils.set_payload_format(a, payload)
            if file_format:
                examples_utils.set_file_format(a, write_split.to_file_format_str(file_format))
