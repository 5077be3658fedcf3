"""The Trainer's in-memory caches: bounded by a budget, whatever the size of the data."""

import os

import pytest


def test_the_trainer_caches_what_fits_its_budget_and_reads_the_rest_from_disk(tmp_path):
    """Past the budget the examples are read from disk every epoch, so the Trainer's memory stays
    flat in the rows (a 1M-row table's eval split alone used to take ~350 MB of cache)."""
    import tensorflow as tf

    from lamina.models.features import NUMERIC, FeatureInfo
    from lamina.models.datasets import decoded_bytes, cache_plan

    def records(name, n):
        path = str(tmp_path / f"{name}.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as w:
            for i in range(n):
                w.write(tf.train.Example(features=tf.train.Features(feature={
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=[float(i)]))})).SerializeToString())
        return [path]

    train, evaluation = records("train", 1000), records("eval", 300)
    features = [FeatureInfo("x", NUMERIC)]
    per = decoded_bytes(features)
    assert per == 4 + 48 + 48 + 400  # the values, a tensor each (and the label's), the element
    mb = lambda n: n * per / 2**20  # noqa: E731
    assert cache_plan(train, evaluation, features, budget_mb=mb(1300)) == (True, True)
    assert cache_plan(train, evaluation, features, budget_mb=mb(1200)) == (True, False)
    assert cache_plan(train, evaluation, features, budget_mb=mb(999)) == (False, False)


@pytest.mark.e2e
def test_examples_read_from_disk_equal_the_cached_ones(penguins_run):
    """Past the cache budget a batch of records is parsed at once; the model sees the same examples."""
    import numpy as np
    import tensorflow_transform as tft

    from lamina.models.features import describe_transformed_features
    from lamina.models.datasets import make_dataset

    spec, result = penguins_run
    tft_output = tft.TFTransformOutput(result.transform_graph_dir)
    files = [os.path.join(result.examples_dir, "Split-eval", "*")]
    features = describe_transformed_features(spec, tft_output)

    def read(cache):
        xs, ys = [], []
        for x, y in make_dataset(files, tft_output, spec, features, 16, shuffle=False, cache=cache):
            xs.append(np.concatenate([np.asarray(x[f.key], np.float64).reshape(len(y), -1) for f in features], 1))
            ys.append(np.asarray(y))
        return np.concatenate(xs), np.concatenate(ys)

    cached_x, cached_y = read(True)
    disk_x, disk_y = read(False)
    assert len(cached_y) == len(disk_y) == result.metrics["example_count"]
    np.testing.assert_array_equal(disk_y, cached_y)
    np.testing.assert_allclose(disk_x, cached_x, rtol=0, atol=0)
