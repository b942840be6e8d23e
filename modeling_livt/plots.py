"""Diagnostic plots for long-tailed evaluation: per-class accuracy vs training count, reliability diagram.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas (``matplotlib.figure.Figure`` +
``FigureCanvasAgg``): no display is needed, pyplot is never imported and the user's global backend is left
alone (calling ``matplotlib.use("Agg")`` from a library would break inline plots in notebooks).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics import reliability_bins

__all__ = ["plot_per_class_accuracy", "plot_reliability_diagram"]

_GROUP_STYLE = {  # group -> (colour, label)
    "many": ("tab:blue", "many-shot"),
    "medium": ("tab:orange", "medium-shot"),
    "few": ("tab:red", "few-shot"),
}


def _save(fig: Figure, path) -> str:
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
    return path


def _label_of(label_names, class_id: int) -> str:
    if label_names is None:
        return str(class_id)
    if isinstance(label_names, Mapping):
        return str(label_names.get(class_id, label_names.get(str(class_id), class_id)))
    return str(label_names[class_id])


def plot_per_class_accuracy(
    per_class_accuracy: Sequence[float | None],
    train_class_counts: Sequence[int],
    path,
    label_names: Sequence[str] | Mapping | None = None,
    title: str | None = None,
    many_threshold: int = 100,
    few_threshold: int = 20,
) -> str:
    """Scatter of per-class accuracy (0..1) against training count (log x), coloured by shot group.

    ``per_class_accuracy`` is ``long_tail_metrics(...)["per_class_accuracy"]``; classes with ``None`` (absent
    from the evaluation set) are skipped. The many / few thresholds are drawn as vertical lines and each
    group's mean per-class accuracy as a dashed horizontal line. Classes with 0 training images are drawn at
    x = 0.5. ``label_names`` (a list or an ``id2label`` mapping) annotates the points when there are at most
    30 classes. Saves a PNG at ``path`` (parent folders created) and returns ``path``.
    """
    accuracy = list(per_class_accuracy)
    counts = np.asarray(train_class_counts, dtype=np.float64)
    if len(accuracy) != counts.shape[0]:
        raise ValueError(f"per_class_accuracy has {len(accuracy)} entries but train_class_counts has {counts.shape[0]}")
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    groups = {
        "many": counts > many_threshold,
        "few": counts < few_threshold,
    }
    groups["medium"] = ~(groups["many"] | groups["few"])
    evaluated = np.array([a is not None for a in accuracy], dtype=bool)
    values = np.array([a if a is not None else np.nan for a in accuracy], dtype=np.float64)
    x = np.where(counts > 0, counts, 0.5)
    for name in ("many", "medium", "few"):
        colour, label = _GROUP_STYLE[name]
        mask = groups[name] & evaluated
        if not mask.any():
            continue
        mean = float(values[mask].mean())
        ax.scatter(x[mask], values[mask], s=18, color=colour, label=f"{label} ({mask.sum()} cls, mean {mean:.1%})")
        ax.hlines(mean, x[mask].min(), x[mask].max(), colors=colour, linestyles="dashed", linewidth=1)
    for threshold in (few_threshold, many_threshold):
        ax.axvline(threshold, color="grey", linestyle=":", linewidth=1)
    if label_names is not None and len(accuracy) <= 30:
        for c in np.flatnonzero(evaluated):
            ax.annotate(
                _label_of(label_names, int(c)), (x[c], values[c]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("training images per class (log scale)")
    ax.set_ylabel("per-class accuracy")
    ax.set_title(title if title is not None else "Per-class accuracy vs training count")
    ax.grid(True, which="major", alpha=0.3)
    if evaluated.any():
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_reliability_diagram(logits, labels, path, n_bins: int = 15, title: str | None = None) -> str:
    """Reliability diagram: per-bin accuracy bars against confidence, the gap to the mean confidence of each
    bin, the diagonal of perfect calibration and the ECE in the title. Bins are those of
    :func:`modeling_livt.metrics.reliability_bins` (same code as the ECE). Saves a PNG, returns ``path``.
    """
    bins = reliability_bins(logits, labels, n_bins=n_bins)
    lower = np.asarray(bins["bin_lower"])
    width = 1.0 / n_bins
    nonempty = np.array([c > 0 for c in bins["count"]], dtype=bool)
    acc = np.array([a if a is not None else 0.0 for a in bins["accuracy"]])
    conf = np.array([c if c is not None else 0.0 for c in bins["confidence"]])

    fig = Figure(figsize=(5.0, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(
        lower[nonempty],
        acc[nonempty],
        width=width,
        align="edge",
        color="tab:blue",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    gap_bottom = np.minimum(acc, conf)[nonempty]
    gap_height = np.abs(conf - acc)[nonempty]
    ax.bar(
        lower[nonempty],
        gap_height,
        bottom=gap_bottom,
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        hatch="//",
        linewidth=0.5,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence (max softmax probability)")
    ax.set_ylabel("accuracy")
    ece_text = f"ECE {bins['ece']:.2%}, MCE {bins['mce']:.2%}"
    ax.set_title(f"{title}\n{ece_text}" if title else f"Reliability diagram ({ece_text})", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)
