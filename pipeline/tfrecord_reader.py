"""TFRecord files read by tf.data, in C++, for the Beam components of a local run.

StatisticsGen, Transform and the Evaluator read their examples through tfx-bsl's TFXIO, and TFXIO
reads TFRecord files with `tfx_bsl.tfxio.record_based_tfxio.ReadTfRecord`: Beam's
`ReadFromTFRecord`, which finds each record's length and checks two CRCs in Python. On 2 cores that
was about 24 µs a record under cProfile, and Transform reads every training record twice (to analyze
it, then to transform it): 8.5 of Transform's 88.7 s at 200k rows under the profiler (docs/benchmarks.md).

`read_tfrecords_with_tf_data()` puts `read_tfrecords` in its place. It matches each pattern when the
pipeline is built, then reads each file with `tf.data.TFRecordDataset` (which checks the same CRCs)
in batches of `BATCH_RECORDS`, and hands Beam each record's bytes: the same records, as `bytes`, file
after file in sorted order, the same order on every run (a Reshuffle would change it from run to run,
and with it the last bits of float sums downstream). The files are read in one bundle, so on a runner
with several workers one worker reads them. A damaged file stops the run with an error that names
it. A pattern it cannot serve goes to Beam's reader, whose behaviour (and error) is kept:
- no file matches it (Beam stops the pipeline with its message);
- a file is compressed another way than gzip (Beam reads `.bz2`, `.deflate` or `.zst`; tf.data
  does not);
- a file is not on the local disk (`gs://`: Beam's file systems, not TensorFlow's, have the
  credentials).

`lamina.pipeline.local_runner.run_pipeline` installs it in its own process, as it does
`beam_dofn_specs`. The pipeline is built there, so Beam's worker processes (multi_processing mode)
run `ReadRecords` too. Kubeflow's component containers read with Beam's reader, unchanged.
"""

import re
from typing import Iterator, List, Optional

import apache_beam as beam

__all__ = ["BATCH_RECORDS", "compression_of", "read_tfrecords", "read_tfrecords_with_tf_data"]

BATCH_RECORDS = 1024  # records per tf.data batch: one Python step per batch, not per record
_TF_NOISE = re.compile(r"\{\{[^}]*\}\}\s*|\s*\[Op:.*$", re.DOTALL)  # the op's name and device around the message


def compression_of(path: str) -> Optional[str]:
    """tf.data's compression type for a file, as Beam's reader decides it from the file's suffix:
    'GZIP' or '' (none); None when tf.data cannot read it as Beam would (another codec, or not local)."""
    from apache_beam.io.filesystem import CompressionTypes

    if "://" in path and not path.startswith("file://"):
        return None
    kind = CompressionTypes.detect_compression_type(path)
    return {CompressionTypes.GZIP: "GZIP", CompressionTypes.UNCOMPRESSED: ""}.get(kind)


class ReadRecords(beam.DoFn):
    """Each record of one TFRecord file, as bytes, in file order."""

    def process(self, path: str) -> Iterator[bytes]:
        import tensorflow as tf

        dataset = tf.data.TFRecordDataset(path, compression_type=compression_of(path), buffer_size=1 << 20)
        try:
            for batch in dataset.batch(BATCH_RECORDS).as_numpy_iterator():
                yield from batch.tolist()
        except tf.errors.OpError as e:  # tf.data's message ("corrupted record at 28") names no file
            raise OSError(f"{path}: {_TF_NOISE.sub('', e.message)}") from None


def _files(pattern: str) -> List[str]:
    from apache_beam.io.filesystems import FileSystems

    (match,) = FileSystems.match([pattern])
    return sorted(m.path for m in match.metadata_list)


@beam.ptransform_fn
def read_tfrecords(pipeline: beam.Pipeline, file_pattern: List[str]) -> beam.pvalue.PCollection:
    """`record_based_tfxio.ReadTfRecord`'s contract: the records of every file the patterns match."""
    assert file_pattern, "Must provide at least one file pattern."
    pcolls = []
    for i, pattern in enumerate(file_pattern):
        files = _files(pattern)
        if files and all(compression_of(f) is not None for f in files):
            # No reshuffle (Create's own included): the files in sorted order, so a run's order, and what the
            # order decides downstream (float sums, the transformed examples), is the same every time.
            pcolls.append(pipeline
                          | f"MatchTFRecordFiles[{i}]" >> beam.Create(files, reshuffle=False)
                          | f"ReadTFRecordFiles[{i}]" >> beam.ParDo(ReadRecords()))
        else:
            pcolls.append(pipeline | f"ReadFromTFRecord[{i}]" >> beam.io.ReadFromTFRecord(
                pattern, coder=beam.coders.BytesCoder()))
    return pcolls | "FlattenPCollsFromPatterns" >> beam.Flatten()


def read_tfrecords_with_tf_data() -> None:
    """Replaces tfx-bsl's `record_based_tfxio.ReadTfRecord` with `read_tfrecords` (once per process).
    TFXIO's readers (tf.Example, SequenceExample, raw records) look it up in that module when a
    pipeline is built."""
    from tfx_bsl.tfxio import record_based_tfxio

    record_based_tfxio.ReadTfRecord = read_tfrecords
