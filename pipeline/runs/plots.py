"""The run report's plots: matplotlib figures as inline SVG, so the page needs no network.

Each function takes plain numbers and returns one `<svg>` element as text.
"""

import io
from typing import Dict, List, Optional, Sequence

BLUE, ORANGE, GREY = "#4a7bd0", "#e8833a", "#888888"


def _figure(width: float = 4.2, height: float = 2.4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=96)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
    return fig, ax


def _svg(fig) -> str:
    import matplotlib
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.StringIO()
    # Text as <text> elements, not glyph paths: the page's words can be found and selected, and the SVG is
    # about a third smaller. rc_context: the caller's matplotlib settings are left as they are.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # no XML prolog or DOCTYPE inside the HTML page


def numeric_histogram(buckets: Sequence[tuple], title: str) -> str:
    """Bars for (low, high, count) buckets."""
    fig, ax = _figure()
    lows = [b[0] for b in buckets]
    widths = [max(b[1] - b[0], 1e-12) for b in buckets]
    ax.bar(lows, [b[2] for b in buckets], width=widths, align="edge", color=BLUE, edgecolor="white", linewidth=0.5)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("examples", fontsize=8)
    return _svg(fig)


def category_bars(values: Sequence[tuple], title: str) -> str:
    """Horizontal bars for (value, count), most frequent on top."""
    values = list(values)[:12]
    fig, ax = _figure(height=max(1.4, 0.28 * len(values) + 0.8))
    labels = [str(v)[:24] or "(empty)" for v, _ in values][::-1]
    ax.barh(labels, [c for _, c in values][::-1], color=BLUE)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("examples", fontsize=8)
    return _svg(fig)


def training_curves(epochs: List[Dict[str, float]], metric: str) -> str:
    """`metric` and `val_<metric>` per epoch."""
    fig, ax = _figure()
    x = [e["epoch"] for e in epochs]
    for key, color, label in ((metric, BLUE, "train"), (f"val_{metric}", ORANGE, "validation")):
        points = [(xi, e[key]) for xi, e in zip(x, epochs) if key in e]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, color=color,
                    label=label)
    ax.set_title(metric, fontsize=9)
    ax.set_xlabel("epoch", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def trial_curves(trials: Sequence[dict], metric: str) -> str:
    """The holdout metric per epoch of every tuning trial; pruned trials dashed."""
    fig, ax = _figure(5.0, 2.8)
    for t in trials:
        curve = t.get("curve") or []
        if curve:
            pruned = t.get("status") == "pruned"
            ax.plot(range(1, len(curve) + 1), curve, linestyle="--" if pruned else "-", linewidth=1,
                    marker="o", markersize=2, alpha=0.8)
    ax.set_title(f"{metric} on the holdout, per trial (dashed: pruned)", fontsize=9)
    ax.set_xlabel("epoch", fontsize=8)
    return _svg(fig)


def confusion_matrix(matrix: Sequence[Sequence[float]], classes: Sequence[str]) -> str:
    """Counts, actual classes down, predicted across."""
    n = len(classes)
    fig, ax = _figure(width=min(2.0 + 0.45 * n, 8.0), height=min(1.6 + 0.4 * n, 7.5))
    ax.imshow(matrix, cmap="Blues")
    top = max((v for row in matrix for v in row), default=0) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=7, color="white" if v > top / 2 else "black")
    ax.set_xticks(range(n), [str(c)[:12] for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(c)[:12] for c in classes])
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("actual", fontsize=8)
    ax.spines[["left", "bottom"]].set_visible(False)
    return _svg(fig)


def residuals(predicted: Sequence[float], actual: Sequence[float]) -> str:
    """Residual (actual - predicted) against the prediction."""
    fig, ax = _figure()
    res = [a - p for p, a in zip(predicted, actual)]
    ax.scatter(predicted, res, s=6, color=BLUE, alpha=0.6)
    ax.axhline(0, color=GREY, linewidth=0.8)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("actual - predicted", fontsize=8)
    ax.set_title("residuals on the eval split", fontsize=9)
    return _svg(fig)


def sizes(labels: Sequence[str], kib: Sequence[float], title: Optional[str] = None) -> str:
    fig, ax = _figure(height=max(1.3, 0.3 * len(labels) + 0.7))
    ax.barh(list(labels)[::-1], list(kib)[::-1], color=BLUE)
    ax.set_xlabel("KiB", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _svg(fig)


def importance(rows: Sequence[dict], method: str = "Integrated Gradients") -> str:
    """Horizontal bars of mean |attribution| per feature, most important on top."""
    rows = list(rows)[:20]
    fig, ax = _figure(width=4.8, height=max(1.4, 0.3 * len(rows) + 0.8))
    ax.barh([r["feature"][:28] for r in rows][::-1], [r["importance"] for r in rows][::-1], color=BLUE)
    ax.set_xlabel(f"mean |attribution| ({method})", fontsize=8)
    ax.set_title("feature importance on the explained eval examples", fontsize=9)
    return _svg(fig)
