"""Scale-out on Beam: the penguins pipeline's data components (ExampleGen, StatisticsGen, SchemaGen,
ExampleValidator, the gate and Transform) on DirectRunner in multi_processing mode with 2 worker
processes (and cloudpickle, where the in-memory run has Beam's default dill) give the same statistics
and transform graph as the in-memory run, the examples put through it: counts, vocabularies, ids and
labels exactly; means and z-scores up to float summation order."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import make_spec, user_project

pytestmark = pytest.mark.e2e

DATA_COMPONENTS = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "AnomalyGate", "Transform")


def run_data_components(base_dir, penguins_csv, beam_args):
    """Runs the data components of create_pipeline(spec) with `beam_args`; returns their outputs."""
    import shutil

    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.pipeline import Pipeline

    from lamina.pipeline.runs.summary import latest_run_outputs
    from lamina.pipeline.pipeline import create_pipeline

    os.makedirs(os.path.join(base_dir, "data"), exist_ok=True)
    shutil.copy(penguins_csv, os.path.join(base_dir, "data", "penguins.csv"))
    spec = make_spec(base_dir, runner={"beam_args": beam_args})
    full = create_pipeline(spec)
    assert full.beam_pipeline_args == beam_args
    os.makedirs(spec.run_dir, exist_ok=True)
    kept = [c for c in full.components if c.id in DATA_COMPONENTS]
    for c in kept:  # cut the edges to the model components left out
        for down in list(c.downstream_nodes):
            if down.id not in DATA_COMPONENTS:
                c.remove_downstream_node(down)
    LocalDagRunner().run(Pipeline(
        pipeline_name=full.pipeline_info.pipeline_name, pipeline_root=full.pipeline_info.pipeline_root,
        components=kept,
        enable_cache=False, metadata_connection_config=full.metadata_connection_config,
        beam_pipeline_args=full.beam_pipeline_args))
    return latest_run_outputs(spec)


def statistics(outputs):
    from tensorflow_metadata.proto.v0 import statistics_pb2

    out = {}
    for path in sorted(glob.glob(os.path.join(outputs[("StatisticsGen", "statistics")].uri, "Split-*",
                                              "FeatureStats.pb"))):
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        stats.ParseFromString(open(path, "rb").read())
        out[os.path.basename(os.path.dirname(path))] = stats
    return out


def transformed(outputs):
    """Split -> (feature names, int columns, float columns) of the run's examples put through its own
    transform graph, as the Trainer reads them, rows sorted."""
    import tensorflow_transform as tft

    from lamina.models.datasets import raw_decoder

    decode = raw_decoder(tft.TFTransformOutput(outputs[("Transform", "transform_graph")].uri))
    out = {}
    for split in ("train", "eval"):
        files = glob.glob(os.path.join(outputs[("CsvExampleGen", "examples")].uri, f"Split-{split}", "*.gz"))
        batches = [decode(b) for b in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(64)]
        names = sorted(batches[0])
        columns = {k: np.concatenate([b[k].numpy().reshape(b[k].shape[0], -1) for b in batches]) for k in names}
        ints = np.concatenate([columns[k] for k in names if columns[k].dtype.kind in "iu"], axis=1)
        floats = np.concatenate([columns[k] for k in names if columns[k].dtype.kind == "f"], axis=1)
        assert ints.shape[1] + floats.shape[1] == sum(columns[k].shape[1] for k in names)  # no other type
        order = np.lexsort(np.concatenate([ints, np.round(floats, 3)], axis=1).T[::-1])
        out[split] = (names, ints[order], floats[order])
    return out


def test_multi_processing_matches_in_memory(tmp_path, penguins_dir, monkeypatch):
    csv = os.path.join(str(penguins_dir), "data", "penguins.csv")
    in_memory = run_data_components(str(tmp_path / "in_memory"), csv,
                                    ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    # The worker processes start with a user's decoy models/, pipeline/... packages on their path.
    monkeypatch.setenv("PYTHONPATH", str(user_project(tmp_path / "user")))
    scaled = run_data_components(str(tmp_path / "multi"), csv,
                                 ["--direct_running_mode=multi_processing", "--direct_num_workers=2",
                                  "--pickle_library=cloudpickle"])  # the local runs' pickler; dill above
    a, b = statistics(in_memory), statistics(scaled)
    assert sorted(a) == sorted(b) == ["Split-eval", "Split-train"]
    for split in a:
        left, right = a[split].datasets[0], b[split].datasets[0]
        assert left.num_examples == right.num_examples > 60
        by_name = {f.path.step[0]: f for f in right.features}
        assert sorted(by_name) == sorted(f.path.step[0] for f in left.features)
        for f in left.features:
            g = by_name[f.path.step[0]]
            if f.HasField("num_stats"):
                assert (f.num_stats.common_stats.num_non_missing, f.num_stats.common_stats.num_missing) == (
                    g.num_stats.common_stats.num_non_missing, g.num_stats.common_stats.num_missing)
                assert f.num_stats.min == g.num_stats.min and f.num_stats.max == g.num_stats.max
                assert f.num_stats.mean == pytest.approx(g.num_stats.mean, rel=1e-12)
                assert f.num_stats.std_dev == pytest.approx(g.num_stats.std_dev, rel=1e-9)
            else:
                assert f.string_stats.common_stats.num_non_missing == g.string_stats.common_stats.num_non_missing
                assert f.string_stats.unique == g.string_stats.unique
                top = lambda s: sorted((v.value, v.frequency) for v in s.top_values)  # noqa: E731
                assert top(f.string_stats) == top(g.string_stats)
    ta, tb = transformed(in_memory), transformed(scaled)
    assert len(ta["train"][1]) + len(ta["eval"][1]) == 344
    for split in ("train", "eval"):
        (names_a, ints_a, floats_a), (names_b, ints_b, floats_b) = ta[split], tb[split]
        assert names_a == names_b
        np.testing.assert_array_equal(ints_a, ints_b)  # vocabulary ids and labels: identical
        # z-scores: equal up to the order in which the workers summed the mean and variance in
        # float32 (measured: at most 2e-6 apart); a wrong statistic would move them by far more.
        np.testing.assert_allclose(floats_a, floats_b, rtol=0, atol=1e-5)
