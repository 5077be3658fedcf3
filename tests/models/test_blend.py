"""`model.type: auto`'s fourth candidate: the network and the trees averaged. Its answers are the mean of the
two models' answers, it is scored on the eval split beside them, it saves and loads without code from the file,
and it is explained with Shapley values (the trees inside have no gradients)."""

import numpy as np
import pytest

from lamina.models.artifacts import keras_model_path, load_keras_model, save_keras_model
from lamina.models.builder import build_model
from lamina.models.explain import explained_by_shapley
from lamina.models.trees import (TreeEnsemble, blend_model, build_tree_model, choice_reason, column_categories,
                                 compare_on_eval, fit_trees)
from lamina.pipeline.runs.summary import model_choice_lines
from tests.helpers import make_spec
from tests.models.test_linear_start import MASK, _fitted, _inputs, _spec
from tests.models.test_trees import FEATURES, _data


def _members(tmp_path, task, classes):
    """The untrained network with the linear start (it answers the linear model's answers) and the trees, with
    the scikit-learn models that give their expected answers."""
    x, y = _data(1200, 0, task, classes or 3)
    x = np.nan_to_num(x)
    pipeline, arrays = _fitted(task, x, y, classes)
    network = build_model(_spec(tmp_path, task), FEATURES, num_classes=classes or None, linear=arrays)
    fitted = fit_trees(task, x, y, MASK, column_categories(FEATURES), seed=0)
    trees = build_tree_model(FEATURES, TreeEnsemble.from_fitted(fitted, task, classes or None))
    return network, trees, pipeline, fitted


@pytest.mark.parametrize("task, classes", [("classification", 3), ("regression", 0)])
def test_the_average_answers_the_mean_of_the_two_and_saves_and_loads(tmp_path, task, classes):
    network, trees, pipeline, fitted = _members(tmp_path, task, classes)
    blend = blend_model(FEATURES, [network, trees])
    test, _ = _data(300, 1, task, classes or 3)
    test = np.nan_to_num(test)
    if task == "classification":
        expected = (pipeline.predict_proba(test) + fitted.predict_proba(test)) / 2
    else:
        expected = ((pipeline.predict(test) + fitted.predict(test)) / 2)[:, None]
    got = blend.predict(_inputs(test), verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    save_keras_model(blend, keras_model_path(str(tmp_path / "version")))
    loaded = load_keras_model(str(tmp_path / "version"))  # Keras' safe mode: the file names registered layers only
    np.testing.assert_allclose(loaded.predict(_inputs(test), verbose=0), got, atol=1e-6)
    assert explained_by_shapley(loaded)


def test_the_eval_split_scores_the_average_beside_the_others(tmp_path):
    network, trees, pipeline, fitted = _members(tmp_path, "regression", 0)
    spec = _spec(tmp_path, "regression")
    test, y = _data(400, 2, "regression")
    test = np.nan_to_num(test)
    batches = [(_inputs(test[i:i + 128]), y[i:i + 128]) for i in range(0, len(y), 128)]
    models = {"network": network, "gbt": trees, "blend": blend_model(FEATURES, [network, trees])}
    scored = compare_on_eval(spec, models, batches)
    answers = {"network": pipeline.predict(test), "gbt": fitted.predict(test)}
    answers["blend"] = (answers["network"] + answers["gbt"]) / 2
    expected = {k: float(np.mean(np.abs(v - y))) for k, v in answers.items()}
    assert scored["metric"] == "mae"
    assert scored["scores"] == pytest.approx(expected, rel=1e-4)
    # The lead's standard error: that of the mean per-row difference in absolute error (the bootstrap's estimate)
    for name in ("gbt", "blend"):
        d = np.abs(answers["network"] - y) - np.abs(answers[name] - y)
        assert scored["errors"][name] == pytest.approx(d.std() / np.sqrt(len(d)), rel=0.15)


class _Fixed:
    """A candidate whose answers are given: the column `key` of each eval batch."""

    def __init__(self, key):
        self.key = key

    def __call__(self, x, training=False):
        return x[self.key]


def _answers(right):
    """Two-class probabilities that answer right on the rows where `right` is True (the label is always 1)."""
    p = np.where(right, 0.9, 0.1)
    return np.stack([1 - p, p], axis=1)


def test_a_lead_within_the_eval_splits_noise_keeps_the_network(tmp_path):
    spec = make_spec(tmp_path, evaluation={"metrics": ["accuracy"], "thresholds": {}, "slices": []})
    right = np.arange(200) < 160  # the network answers 160 of 200 rows right
    trees = right.copy()
    trees[[170, 171, 0]] = [True, True, False]  # two rows more right, one less: a lead of 1 row
    blend = right | (np.arange(200) < 190)  # 30 rows more right
    x = {"network": _answers(right), "gbt": _answers(trees), "blend": _answers(blend)}
    batches = [({k: v[i:i + 50] for k, v in x.items()}, np.ones(50)) for i in range(0, 200, 50)]

    scored = compare_on_eval(spec, {"network": _Fixed("network"), "gbt": _Fixed("gbt")}, batches)
    assert scored["scores"] == pytest.approx({"network": 0.8, "gbt": 0.805})
    # the per-row differences are +1, +1, -1 and 197 zeros: their mean's standard error is 0.0086
    assert scored["errors"]["gbt"] == pytest.approx(0.0086, rel=0.15)
    assert scored["exported"] == "network" and scored["margin"] == pytest.approx(1.6449, abs=1e-4)
    ratio = 0.005 / scored["errors"]["gbt"]
    assert choice_reason(scored) == (
        f"lead of the gradient-boosted trees over the network: 0.0050, {ratio:.2f} standard errors (bootstrap over "
        f"the eval rows); a candidate must lead by 1.64 (one-sided 5%), so the network is kept")
    assert model_choice_lines({"type": "auto", **scored}) == [
        "  model:          network (model.type: auto): accuracy 0.8000 on the eval split against 0.8050 for the "
        "gradient-boosted trees; " + choice_reason(scored)]

    scored = compare_on_eval(spec, {"network": _Fixed("network"), "gbt": _Fixed("gbt"), "blend": _Fixed("blend")},
                             batches)
    assert scored["exported"] == "blend"  # 30 rows: six standard errors (0.025)
    assert scored["errors"]["blend"] == pytest.approx(0.025, rel=0.15)
    ratio = 0.15 / scored["errors"]["blend"]
    assert choice_reason(scored) == (
        f"lead of the network and trees averaged over the network: 0.1500, {ratio:.2f} standard errors (bootstrap "
        f"over the eval rows); a candidate must lead by 1.96 (one-sided 5%, Bonferroni over 2 candidates)")


def test_a_lead_above_one_standard_error_but_within_the_margin_keeps_the_network(tmp_path):
    """A lead of about 1.1 standard errors (titanic's blend on 216 eval rows, 2026-12-07) is not enough."""
    spec = make_spec(tmp_path, evaluation={"metrics": ["accuracy"], "thresholds": {}, "slices": []})
    right = np.arange(216) < 174
    blend = right.copy()
    blend[174:179] = True  # five rows more right, two less: a lead of three rows, 1.14 standard errors
    blend[:2] = False
    x = {"network": _answers(right), "blend": _answers(blend)}
    batches = [({k: v[i:i + 72] for k, v in x.items()}, np.ones(72)) for i in range(0, 216, 72)]
    scored = compare_on_eval(spec, {"network": _Fixed("network"), "blend": _Fixed("blend")}, batches)
    assert 1.0 < (scored["scores"]["blend"] - scored["scores"]["network"]) / scored["errors"]["blend"] < 1.645
    assert scored["exported"] == "network"


def test_a_large_eval_split_is_bootstrapped_from_a_sample_with_the_error_scaled_to_every_row(tmp_path):
    spec = make_spec(tmp_path, evaluation={"metrics": ["accuracy"], "thresholds": {}, "slices": []})
    n = 60_000
    rng = np.random.default_rng(0)
    right = rng.random(n) < 0.8
    other = right.copy()
    flip = rng.random(n) < 0.05  # 5% of the rows change: about as many to right as to wrong
    other[flip] = ~other[flip]
    x = {"network": _answers(right), "gbt": _answers(other)}
    batches = [({k: v[i:i + 10_000] for k, v in x.items()}, np.ones(10_000)) for i in range(0, n, 10_000)]
    scored = compare_on_eval(spec, {"network": _Fixed("network"), "gbt": _Fixed("gbt")}, batches, max_rows=6_000)
    d = other.astype(float) - right
    assert scored["errors"]["gbt"] == pytest.approx(d.std() / np.sqrt(n), rel=0.15)  # all 60,000 rows' error
