"""ExampleGen's splits written through buckets on disk: every row once, shuffled, in bounded memory.

TFX's own write (a Reshuffle, then WriteToTFRecord) holds a whole split in memory on Beam's local
runner: 2.75 GiB on a 1M-row CSV. These runs use buckets of 400 examples on a few thousand rows,
so the same code paths run as on a million rows with 50,000 per bucket.
"""

import csv
import glob
import os

import tensorflow as tf

from lamina.components import example_writer
from tests.components.test_table_example_gen import run_csv_example_gen


def _sorted_export(path, n):
    """A spreadsheet export sorted by its label, as people's often are: all 'no' rows, then all 'yes'."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig") as f:  # with a byte-order mark
        w = csv.writer(f)
        w.writerow(["Customer ID", "Monthly Spend ($)", "Plan", "Churned?"])
        for i in range(n):
            churned = "yes" if i >= n // 2 else "no"
            w.writerow([f"C{i:05d}", f"${(i % 97) * 3.5:,.2f}", ["basic", "pro", ""][i % 3], churned])


def _ids(records):
    return [tf.train.Example.FromString(r).features.feature["Customer ID"].bytes_list.value[0].decode()
            for r in records]


def test_every_row_lands_once_in_shuffled_shards_of_bounded_size(tmp_path, monkeypatch):
    monkeypatch.setattr(example_writer, "BUCKET_EXAMPLES", 400)
    n = 3000
    _sorted_export(str(tmp_path / "data" / "export.csv"), n)
    report, examples = run_csv_example_gen(tmp_path / "data", tmp_path, pattern="export.csv", label="Churned?",
                                           task="classification")
    assert report["examples"] == n
    ids = [e.features.feature["Customer ID"].bytes_list.value[0].decode() for e in examples]
    assert sorted(ids) == [f"C{i:05d}" for i in range(n)]  # each row exactly once, over both splits

    split_dirs = glob.glob(str(tmp_path / "**" / "CsvExampleGen" / "examples" / "*" / "Split-*"), recursive=True)
    assert sorted(os.path.basename(d) for d in split_dirs) == ["Split-eval", "Split-train"]
    buckets = example_writer.bucket_count(n)
    assert buckets == 8
    for d in split_dirs:
        shards = sorted(os.listdir(d))
        assert shards == [example_writer.SHARD_NAME.format(k, buckets) for k in range(buckets)]
        sizes = [sum(1 for _ in tf.data.TFRecordDataset(os.path.join(d, s), compression_type="GZIP")) for s in shards]
        # A shard is one bucket: about n / buckets examples of the split, never the whole split.
        assert max(sizes) < 2 * 400
    assert not glob.glob(str(tmp_path / "**" / example_writer.BUCKET_DIR), recursive=True)

    # Shuffled: the sorted export's first train examples are a mix of both labels, in every shard.
    train = [d for d in split_dirs if d.endswith("Split-train")][0]
    for shard in sorted(os.listdir(train)):
        records = [r.numpy() for r in tf.data.TFRecordDataset(os.path.join(train, shard), compression_type="GZIP")]
        labels = [tf.train.Example.FromString(r).features.feature["Churned?"].bytes_list.value[0] for r in records[:100]]
        assert 0.3 < labels.count(b"yes") / len(labels) < 0.7, shard


def test_the_order_is_the_same_on_every_run(tmp_path):
    import apache_beam as beam

    records = [f"record {i}".encode() for i in range(1000)]

    def write(folder):
        buckets_dir, split = os.path.join(folder, "b"), os.path.join(folder, "split")
        os.makedirs(buckets_dir)
        os.makedirs(split)
        with beam.Pipeline() as p:
            _ = p | beam.Create(records, reshuffle=False) | beam.ParDo(example_writer.WriteBuckets(buckets_dir, 3))
        counts = example_writer.shuffle_buckets(buckets_dir, split, 3, seed=0)
        assert os.listdir(buckets_dir) == []
        out = []
        for k in range(3):
            out += [r.numpy() for r in tf.data.TFRecordDataset(
                os.path.join(split, example_writer.SHARD_NAME.format(k, 3)), compression_type="GZIP")]
        return counts, out

    counts_a, a = write(str(tmp_path / "a"))
    counts_b, b = write(str(tmp_path / "b"))
    assert a == b and counts_a == counts_b and sum(counts_a) == 1000
    assert sorted(a) == sorted(records) and a != records
