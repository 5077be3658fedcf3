"""The Baselines component scores the eval split a block at a time; the scores are those of the whole split at
once, on the shared penguins run's Transform output."""

import io
import os

import numpy as np
import pytest


@pytest.mark.e2e
def test_the_eval_split_scored_in_blocks_gives_the_whole_splits_scores(penguins_run, tmp_path):
    import tensorflow_transform as tft
    from tfx.types import artifact_utils, standard_artifacts

    from lamina.components.baselines import train_baselines
    from lamina.models.features import AUDIO, IMAGE, TEXT, describe_transformed_features
    from lamina.models.trees import tabular_blocks, tabular_matrix

    spec, result = penguins_run
    examples = standard_artifacts.Examples()
    examples.uri = result.examples_dir
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    tft_output = tft.TFTransformOutput(result.transform_graph_dir)
    features = describe_transformed_features(spec, tft_output, skip_kinds=(TEXT, IMAGE, AUDIO))
    files = [os.path.join(examples.uri, "Split-eval", "*")]

    blocks = list(tabular_blocks(spec, tft_output, features, files, rows=16))
    whole_x, whole_y, _ = tabular_matrix(spec, tft_output, features, files)
    assert len(blocks) == -(-len(whole_y) // 16) >= 4
    np.testing.assert_array_equal(np.concatenate([x for x, _ in blocks]), whole_x)
    np.testing.assert_array_equal(np.concatenate([y for _, y in blocks]), whole_y)

    (tmp_path / "blocks").mkdir()
    (tmp_path / "whole").mkdir()
    printed = io.StringIO()
    in_blocks = train_baselines(spec, result.transform_graph_dir, examples, str(tmp_path / "blocks"), printed,
                                eval_block_rows=16)
    at_once = train_baselines(spec, result.transform_graph_dir, examples, str(tmp_path / "whole"), io.StringIO(),
                              eval_block_rows=10**9)
    assert in_blocks["eval_rows"] == at_once["eval_rows"] == len(whole_y) == result.metrics["example_count"]
    for name in ("gbt", "linear"):
        assert in_blocks["models"][name]["metrics"] == at_once["models"][name]["metrics"]
        assert in_blocks["models"][name]["metrics"]["accuracy"] > 0.9
    assert "baseline gradient-boosted trees: accuracy=" in printed.getvalue()
