"""Shapley values for the models without gradients, checked against their definition.

- On an additive model every feature gets exactly w * (x - reference), exact or sampled.
- On a product of two features, each gets half of the product.
- On gradient-boosted trees fitted to real data (scikit-learn's diabetes table, 442 patients, 10 columns)
  and run as Lamina's TensorFlow graph: the values add up to f(x) - f(reference), and the sampled values
  agree with the exact ones.
"""

import numpy as np
import pytest

from lamina.models.features import CATEGORICAL, NUMERIC, FeatureInfo
from lamina.models.shapley import reference_row, shapley_values


def _additive(batch, targets):
    return 2.0 * batch["a"][:, 0] - 3.0 * batch["b"][:, 0] + 0.5 * batch["c"][:, 0] + 1.0


@pytest.mark.parametrize("exact_max", [10, 0])  # every coalition; sampled orders
def test_an_additive_model_gets_its_terms(exact_max):
    rng = np.random.default_rng(0)
    x = {k: rng.normal(size=(5, 1)) for k in "abc"}
    values, score, reference, how = shapley_values(_additive, x, ["a", "b", "c"], [], exact_max=exact_max,
                                                   permutations=8)
    assert how == ("exact" if exact_max else "sampled")
    np.testing.assert_allclose(values["a"], 2.0 * x["a"][:, 0], atol=1e-12)
    np.testing.assert_allclose(values["b"], -3.0 * x["b"][:, 0], atol=1e-12)
    np.testing.assert_allclose(values["c"], 0.5 * x["c"][:, 0], atol=1e-12)
    np.testing.assert_allclose(reference, 1.0)  # every number at 0, its train mean after Transform
    np.testing.assert_allclose(score, _additive(x, None))


def test_a_product_is_shared_equally_and_a_category_is_replaced_by_the_most_common_one():
    x = {"a": np.array([[2.0], [3.0]]), "b": np.array([[5.0], [-1.0]]), "id": np.array([[4], [4]])}

    def product(batch, targets):
        return batch["a"][:, 0] * batch["b"][:, 0] + 10.0 * (batch["id"][:, 0] == 4)

    values, score, reference, _ = shapley_values(product, x, ["a", "b", "id"], ["id"])
    np.testing.assert_allclose(values["a"], [5.0, -1.5])
    np.testing.assert_allclose(values["b"], [5.0, -1.5])
    np.testing.assert_allclose(values["id"], [0.0, 0.0])  # the reference's id is the rows' own
    np.testing.assert_allclose(reference, [10.0, 10.0])
    ref = reference_row({"n": np.array([[1.0, 4.0], [3.0, 8.0]]), "c": np.array([[2], [7], ])[[0, 0]]}, ["c"],
                        "mean")
    np.testing.assert_allclose(ref["n"], [[2.0, 6.0]])
    assert ref["c"].tolist() == [[2]]


def test_trees_on_real_data_are_complete_and_sampling_agrees_with_the_exact_values():
    from sklearn.datasets import load_diabetes

    from lamina.models.trees import TreeEnsemble, build_tree_model, column_categories, fit_trees

    data = load_diabetes()
    x = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)  # z-scored, as Transform writes them
    x[:, 1] = (data.data[:, 1] > 0).astype(float)  # sex: two categories, as vocabulary ids
    names = [n.replace(" ", "_") for n in data.feature_names]
    features = [FeatureInfo(n, CATEGORICAL, 2) if n == "sex" else FeatureInfo(n, NUMERIC) for n in names]
    mask = np.array([f.kind == CATEGORICAL for f in features])
    fitted = fit_trees("regression", x[:350], data.target[:350], mask, column_categories(features), seed=0)
    model = build_tree_model(features, TreeEnsemble.from_fitted(fitted, "regression", None))
    rows = {n: (x[350:362, j:j + 1].astype(np.int64) if n == "sex" else x[350:362, j:j + 1].astype(np.float32))
            for j, n in enumerate(names)}

    def score(batch, targets):
        return model(batch, training=False).numpy().reshape(-1)

    exact, full, reference, how = shapley_values(score, rows, names, ["sex"])
    assert how == "exact"
    np.testing.assert_allclose(full, fitted.predict(x[350:362].astype(np.float32)), rtol=1e-5)
    total = sum(exact.values())
    np.testing.assert_allclose(total, full - reference, atol=1e-3)
    sampled, full_s, reference_s, how = shapley_values(score, rows, names, ["sex"], exact_max=0, permutations=512)
    assert how == "sampled"
    np.testing.assert_allclose(sum(sampled.values()), full_s - reference_s, atol=1e-3)
    largest = max(np.abs(v).max() for v in exact.values())
    for n in names:
        np.testing.assert_allclose(sampled[n], exact[n], atol=0.1 * largest)
    # The body mass index and the blood sugar measure (s5) matter most here, as the trees' splits say.
    importance = sorted(names, key=lambda n: -np.abs(exact[n]).mean())
    assert set(importance[:2]) == {"bmi", "s5"}


def test_the_linear_model_explained_through_explain_gets_coefficient_times_distance():
    """For a linear model, a number's Shapley value is its coefficient times its distance from the reference
    (0, the train mean); a category's is its one-hot coefficient minus the most common category's."""
    from sklearn.datasets import load_diabetes

    from lamina.models.explain import explain
    from lamina.models.linear import LinearScores, linear_estimator
    from lamina.models.trees import build_tree_model, column_categories

    data = load_diabetes()
    x = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    x[:, 1] = (data.data[:, 1] > 0).astype(float)
    names = [n.replace(" ", "_") for n in data.feature_names]
    features = [FeatureInfo(n, CATEGORICAL, 2) if n == "sex" else FeatureInfo(n, NUMERIC) for n in names]
    mask = np.array([f.kind == CATEGORICAL for f in features])
    pipeline = linear_estimator("regression", mask).fit(x[:350], data.target[:350])
    model = build_tree_model(features, LinearScores.from_fitted(pipeline, mask, column_categories(features),
                                                                "regression", None), name="linear_model")
    rows = {n: (x[350:358, j:j + 1].astype(np.int64) if n == "sex" else x[350:358, j:j + 1].astype(np.float32))
            for j, n in enumerate(names)}
    record = explain(model, features, "regression", None, rows, None)
    assert record["method"] == "Shapley values (exact)" and "steps" not in record
    coef = pipeline[-1].coef_  # the two one-hot sex columns first, then the numbers in order
    numbers = [n for n in names if n != "sex"]
    common = int(np.bincount(rows["sex"][:, 0]).argmax())
    for i, e in enumerate(record["examples"]):
        assert e["score"] == pytest.approx(pipeline.predict(x[350 + i:351 + i])[0], rel=1e-5)
        for j, n in enumerate(numbers):
            assert e["attributions"][n] == pytest.approx(coef[2 + j] * rows[n][i, 0], rel=1e-4, abs=1e-3)
        assert e["attributions"]["sex"] == pytest.approx(coef[rows["sex"][i, 0]] - coef[common], abs=1e-3)
        assert sum(e["attributions"].values()) == pytest.approx(e["score"] - e["baseline_score"], abs=1e-3)
