"""Shapley values for the models without gradients: gradient-boosted trees and the linear model.

Integrated Gradients needs a path the model is differentiable along; the trees' walk (`gather`, `where`) and
the linear model's table lookups by category id have none. Shapley values need only the model's answers:
each tabular feature is a player, a coalition's value is the model's score with the features outside it set
to a reference row, and a feature's attribution is its average marginal contribution over the orders in which
the features can join. They are complete, as Integrated Gradients are: per example, the attributions add up
to f(x) - f(reference).

- With at most `EXACT_MAX_FEATURES` features, every coalition is scored (2^d model rows per example) and the
  values are exact.
- With more, `permutations` random orders are sampled, each one with its reverse (antithetic pairs). Each
  order's contributions add up to f(x) - f(reference) by themselves, so completeness stays exact; the
  attributions are estimates whose error falls as 1/sqrt(permutations).

The reference row is the Transform output of a typical row: numbers at their train mean (0, since Transform
z-scores them) for `explain.baseline: zeros`, at the explained sample's mean for `mean`; categories (vocabulary
ids) at the sample's most common id for both. A multi-column feature (a date's calendar parts) is one player.
"""

import itertools
import math
from typing import Dict, List, Optional

import numpy as np

EXACT_MAX_FEATURES = 10
ROWS_PER_CALL = 8192  # model rows per call, so memory stays bounded for wide tables


def reference_row(inputs: Dict[str, np.ndarray], categorical: List[str], baseline: str) -> Dict[str, np.ndarray]:
    """One row per input key ([1, ...]): see the module docstring."""
    out = {}
    for key, values in inputs.items():
        values = np.asarray(values)
        if key in categorical:
            flat = values.reshape(len(values), -1)
            ids, counts = np.unique(flat[:, 0], return_counts=True)
            out[key] = np.full((1,) + values.shape[1:], ids[np.argmax(counts)], values.dtype)
        elif baseline == "mean":
            out[key] = np.nanmean(values.astype(np.float64), axis=0, keepdims=True).astype(values.dtype)
        else:
            out[key] = np.zeros((1,) + values.shape[1:], values.dtype)
    return out


def _scores(score_fn, inputs: Dict[str, np.ndarray], reference: Dict[str, np.ndarray], players: List[str],
            masks: np.ndarray, targets: Optional[np.ndarray]) -> np.ndarray:
    """[n, len(masks)]: the score of each example with the players of each mask (a [m, d] bool array) taken
    from the example and the others from the reference."""
    n = len(next(iter(inputs.values())))
    m = len(masks)
    out = np.empty((n, m), np.float64)
    per_call = max(1, ROWS_PER_CALL // max(m, 1))
    for start in range(0, n, per_call):
        rows = slice(start, min(n, start + per_call))
        k = rows.stop - rows.start
        batch = {}
        for key, values in inputs.items():
            mine = np.repeat(np.asarray(values[rows]), m, axis=0)  # example-major: [k * m, ...]
            if key in players:
                keep = np.tile(masks[:, players.index(key)], k).reshape((-1,) + (1,) * (mine.ndim - 1))
                mine = np.where(keep, mine, reference[key])
            batch[key] = mine
        t = None if targets is None else np.repeat(targets[rows], m)
        out[rows] = np.asarray(score_fn(batch, t), np.float64).reshape(k, m)
    return out


def shapley_values(score_fn, inputs: Dict[str, np.ndarray], players: List[str], categorical: List[str],
                   targets: Optional[np.ndarray] = None, baseline: str = "zeros", permutations: int = 64,
                   seed: int = 0, exact_max: int = EXACT_MAX_FEATURES):
    """(values {player: [n]}, score [n], reference score [n], how: 'exact' or 'sampled').

    `score_fn(batch, targets)` returns one number per row: the explained class's probability, or the
    prediction. `players`: the input keys attributed; other inputs keep the example's values."""
    reference = reference_row(inputs, categorical, baseline)
    d = len(players)
    if d <= exact_max:
        masks = np.array(list(itertools.product([False, True], repeat=d)), bool)  # every coalition
        scores = _scores(score_fn, inputs, reference, players, masks, targets)
        index = {tuple(mask): i for i, mask in enumerate(masks)}
        values = np.zeros((scores.shape[0], d))
        for i, mask in enumerate(masks):
            size = int(mask.sum())
            for j in np.flatnonzero(~mask):
                weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
                joined = mask.copy()
                joined[j] = True
                values[:, j] += weight * (scores[:, index[tuple(joined)]] - scores[:, i])
        full, empty = scores[:, -1], scores[:, 0]
        how = "exact"
    else:
        rng = np.random.default_rng(seed)
        orders = []
        for _ in range(max(1, permutations // 2)):
            order = rng.permutation(d)
            orders += [order, order[::-1]]
        # Per order, the d + 1 coalitions along it: none, the first player, the first two, ... all.
        masks = np.zeros((len(orders) * (d + 1), d), bool)
        for o, order in enumerate(orders):
            for step in range(1, d + 1):
                masks[o * (d + 1) + step, order[:step]] = True
        scores = _scores(score_fn, inputs, reference, players, masks, targets)
        values = np.zeros((scores.shape[0], d))
        for o, order in enumerate(orders):
            along = scores[:, o * (d + 1):(o + 1) * (d + 1)]
            values[:, order] += np.diff(along, axis=1)
        values /= len(orders)
        full, empty = scores[:, d], scores[:, 0]
        how = "sampled"
    return {p: values[:, j] for j, p in enumerate(players)}, full, empty, how
