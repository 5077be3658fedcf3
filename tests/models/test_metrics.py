"""The resampled metrics `model.type: auto`'s bootstrap uses, against scikit-learn's and `compute`'s one resample at
a time, on the labels and scores of a public table's model."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from lamina.models.metrics import compute, resampled, resampled_auc


@pytest.fixture(scope="module")
def scored():
    """Labels and a logistic model's probabilities on scikit-learn's breast cancer table (569 rows), rounded to
    two digits so that many scores tie, across the classes too."""
    x, y = load_breast_cancer(return_X_y=True)
    probs = LogisticRegression(max_iter=5000).fit(x[::2], y[::2]).predict_proba(x)
    return y, np.round(probs, 2)


def test_resampled_auc_equals_scikit_learns_on_every_resample_ties_included(scored):
    y, probs = scored
    assert len(np.unique(probs[:, 1])) < 100  # ties across the classes
    samples = np.random.default_rng(0).integers(0, len(y), (300, len(y)))
    fast = resampled_auc(y, probs[:, 1], samples)
    expected = [roc_auc_score(y[rows], probs[rows, 1]) for rows in samples]
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-12)


def test_a_resample_of_one_class_has_no_auc(scored):
    y, probs = scored
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    samples = np.stack([positives[:50], negatives[:50], np.r_[positives[:25], negatives[:25]]])
    fast = resampled_auc(y, probs[:, 1], samples)
    assert np.isnan(fast[0]) and np.isnan(fast[1])
    assert fast[2] == roc_auc_score(y[samples[2]], probs[samples[2], 1])


@pytest.mark.parametrize("metric", ["auc", "accuracy", "pr_auc"])
def test_resampled_equals_compute_on_each_resample_with_the_positive_class_first(scored, metric):
    """The label vocabulary puts the positive class at index 0 here: `positive=0`, as the spec's positive_index."""
    y, probs = scored
    samples = np.random.default_rng(1).integers(0, len(y), (40, len(y)))
    got = resampled("classification", metric, y, probs, samples, 0.5, positive=0)
    expected = [compute("classification", [metric], y[rows], probs[rows], 0.5, 0)[metric] for rows in samples]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
