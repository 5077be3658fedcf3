"""TFRecord files read by tf.data for TFXIO (lamina.pipeline.tfrecord_reader): the same records as
Beam's own reader, Beam's reader where tf.data cannot read a file as Beam would, and a damaged file
named in the error."""

import bz2
import gzip
import os
import pickle
import struct

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from tfx_bsl.tfxio import record_based_tfxio, tf_example_record

from lamina.pipeline.tfrecord_reader import compression_of, read_tfrecords, read_tfrecords_with_tf_data

BEAMS_READER = record_based_tfxio.ReadTfRecord
assert BEAMS_READER is not read_tfrecords  # collected before any run installs it


def _records(seed: int, count: int):
    """Records like a split's: serialized tf.Examples of varied length, plus an empty record and bytes
    that are not UTF-8."""
    rng = np.random.default_rng(seed)
    out = [b"", bytes(range(256))]
    for i in range(count):
        example = tf.train.Example(features=tf.train.Features(feature={
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=rng.normal(size=int(rng.integers(0, 9))))),
            "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"file {seed} row {i} é".encode()]))}))
        out.append(example.SerializeToString())
    return out


def _write(path: str, records, compression: str = "") -> None:
    with tf.io.TFRecordWriter(path, options=compression or None) as writer:
        for r in records:
            writer.write(r)


def _collected(make, folder) -> list:
    """The elements `make(pipeline)` gives, in the order they came (Beam's workers hold copies of the
    DoFns, so they go through a file)."""
    path = os.path.join(folder, f"collected-{len(os.listdir(folder))}.pickle")
    with beam.Pipeline() as pipeline:
        _ = (make(pipeline) | beam.combiners.ToList()
             | beam.Map(lambda items: open(path, "wb").write(pickle.dumps(items))))
    with open(path, "rb") as f:
        return pickle.loads(f.read())


def _read_all(reader, patterns, folder):
    return _collected(lambda pipeline: pipeline | reader(patterns), folder)


def test_the_same_records_as_beams_reader_from_gzip_and_plain_files_and_several_patterns(tmp_path):
    """Split shards as Lamina's ExampleGen writes them (gzip, several per split) and an uncompressed
    file, named by two patterns: tf.data's reader hands Beam the same records, as bytes, file by file
    in order."""
    train, other = tmp_path / "Split-train", tmp_path / "other"
    train.mkdir()
    other.mkdir()
    written = {}
    for i in range(3):
        written[str(train / f"data_tfrecord-0000{i}-of-00003.gz")] = _records(i, 700 + 900 * i)
        _write(*list(written.items())[-1], compression="GZIP")
    written[str(other / "plain.tfrecord")] = _records(9, 2500)
    _write(str(other / "plain.tfrecord"), written[str(other / "plain.tfrecord")])
    patterns = [str(train / "*"), str(other / "*")]
    everything = [r for records in written.values() for r in records]

    ours = _read_all(read_tfrecords, patterns, tmp_path)
    beams = _read_all(BEAMS_READER, patterns, tmp_path)
    assert all(type(r) is bytes for r in ours)
    assert sorted(ours) == sorted(beams) == sorted(everything)
    # file after file in sorted order, each in its own order: the same order on every run
    # (within each pattern; Beam's Flatten may put either pattern's records first)
    train_records = [r for path, records in written.items() if "Split-train" in path for r in records[2:]]
    for run in (ours, _read_all(read_tfrecords, patterns, tmp_path)):
        assert [r for r in run if r in set(train_records)] == train_records


def test_tfxio_decodes_the_same_examples_through_it(tmp_path, monkeypatch):
    """What StatisticsGen, Transform and the Evaluator get: TFXIO's record batches, from a gzip file,
    equal whichever reader ran (installed the way `lamina run` installs it)."""
    path = str(tmp_path / "data.gz")
    records = _records(4, 3000)[2:]
    _write(path, records, "GZIP")

    def rows():
        source = tf_example_record.TFExampleRecord(str(tmp_path / "*.gz"), telemetry_descriptors=["test"])
        batches = _collected(lambda pipeline: pipeline | source.BeamSource(batch_size=500), tmp_path)
        return sorted((row for batch in batches for row in batch.to_pylist()), key=lambda r: r["name"])

    # Beam's reader first; whatever was installed (a run earlier in this process) comes back after the test
    monkeypatch.setattr(record_based_tfxio, "ReadTfRecord", BEAMS_READER)
    before = rows()
    read_tfrecords_with_tf_data()
    assert record_based_tfxio.ReadTfRecord is read_tfrecords
    after = rows()
    assert len(after) == 3000
    assert after == before


def test_files_tf_data_cannot_read_as_beam_does_go_to_beams_reader(tmp_path):
    """bz2 (Beam reads it, tf.data does not) and gs:// (Beam's credentials) go to Beam's reader; so does a
    pattern that matches nothing, which Beam refuses with its own message."""
    records = _records(5, 50)
    with beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create(records) | beam.io.WriteToTFRecord(
            str(tmp_path / "part"), file_name_suffix=".bz2", coder=beam.coders.BytesCoder())
    (written,) = [f for f in os.listdir(tmp_path) if f.endswith(".bz2")]
    assert bz2.open(tmp_path / written).read(4)  # a real bz2 file
    assert compression_of(str(tmp_path / written)) is None
    assert compression_of("gs://bucket/train/data.gz") is None
    assert compression_of("/data/train/data.gz") == "GZIP"
    assert compression_of("/data/train/data.tfrecord") == ""

    assert sorted(_read_all(read_tfrecords, [str(tmp_path / "*.bz2")], tmp_path)) == sorted(records)
    with pytest.raises(Exception) as ours:
        _read_all(read_tfrecords, [str(tmp_path / "nothing-*.gz")], tmp_path)
    with pytest.raises(Exception) as beams:
        _read_all(BEAMS_READER, [str(tmp_path / "nothing-*.gz")], tmp_path)
    assert str(ours.value) == str(beams.value)
    assert "nothing-*.gz" in str(ours.value)


def test_a_damaged_file_stops_the_read_with_its_name(tmp_path):
    """A byte flipped inside a record: the record's CRC no longer matches, and the error names the file
    (tf.data's own message does not). The same for a gzip file cut short."""
    plain = tmp_path / "plain.tfrecord"
    _write(str(plain), _records(6, 20))
    data = bytearray(plain.read_bytes())
    length = struct.unpack("<Q", data[:8])[0]
    assert length == 0  # the empty record comes first: flip a byte of the second one's data
    second_data = (8 + 4 + 0 + 4) + (8 + 4)  # after the first record, and the second's length and its CRC
    data[second_data + 5] ^= 0xFF
    plain.write_bytes(bytes(data))
    with pytest.raises(OSError) as e:
        _read_all(read_tfrecords, [str(plain)], tmp_path)
    assert str(e.value).startswith(f"{plain}: corrupted record at {second_data} [while running")

    cut = tmp_path / "cut.gz"
    _write(str(cut), _records(7, 200), "GZIP")
    whole = gzip.decompress(cut.read_bytes())
    cut.write_bytes(gzip.compress(whole)[: len(gzip.compress(whole)) // 2])
    with pytest.raises(OSError) as e:
        _read_all(read_tfrecords, [str(cut)], tmp_path)
    assert str(e.value).startswith(f"{cut}: ")
