"""Every plot a stage writes, as PNG bytes drawn from plain data (arrays, lists, dicts).

Callers compute what to show and write the bytes where they belong; matplotlib (Agg) is
imported here only, inside the functions, so importing this module stays cheap.

- evaluate contrastive: ``loss.png`` (:func:`contrastive_history_png`), ``distances.png``
  (:func:`distance_histograms_png`), ``map.png`` (:func:`group_map_png`);
- evaluate two-tower and the summary: ``curves.png`` (:func:`training_curves_png`),
  ``articles_2d.png`` (:func:`embedding_map_png`), ``models.png`` (:func:`model_bars_png`);
- tune: ``plots/<metric>_vs_<param>.png`` (:func:`metric_vs_param_png`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# evaluate contrastive
# --------------------------------------------------------------------------------------------
def contrastive_history_png(variant: str, history: list[dict]) -> bytes:
    """Training loss and the validation measures per epoch (``loss``, ``val_pos_dist``,
    ``val_neg_dist``, ``val_recall5`` of each epoch's record)."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(epochs, [h["loss"] for h in history], marker="o", ms=3)
    ax[0].set(xlabel="epoch", ylabel="NT-Xent loss", title=f"{variant}: training loss")
    for key in ("val_pos_dist", "val_neg_dist", "val_recall5"):
        ax[1].plot(epochs, [h[key] for h in history], marker="o", ms=3, label=key)
    ax[1].set(xlabel="epoch", title="validation")
    ax[1].legend()
    return _png(fig)


def distance_histograms_png(variant: str, panels: Sequence[tuple[str, dict]]) -> bytes:
    """One panel per (name, measures): histograms of the cosine distances of the positive and
    negative test pairs (``pos``, ``neg`` arrays; ``pos_dist``, ``neg_dist`` their means)."""
    plt = _pyplot()
    fig, ax = plt.subplots(1, len(panels), figsize=(10, 3.6), sharey=False, squeeze=False)
    bins = np.linspace(0, 2, 61)
    for a, (name, m) in zip(ax[0], panels):
        a.hist(m["pos"], bins=bins, alpha=0.6, density=True,
               label=f"positive (mean {m['pos_dist']:.3f})")
        if len(m["neg"]):
            a.hist(m["neg"], bins=bins, alpha=0.6, density=True,
                   label=f"negative (mean {m['neg_dist']:.3f})")
        a.set(xlabel="cosine distance", title=f"{variant}: {name}, test pairs")
        a.legend()
    return _png(fig)


def group_map_png(xy: np.ndarray, groups: np.ndarray, title: str, top_n: int = 10) -> bytes:
    """Scatter of 2-D points (N, 2) coloured by group (N,): the ``top_n`` commonest groups in
    name order, the rest light grey."""
    plt = _pyplot()
    g = np.array([str(v) for v in groups], dtype=object)
    names, counts = np.unique(g, return_counts=True)
    top = set(names[np.argsort(-counts)][:top_n].tolist())
    fig, ax = plt.subplots(figsize=(7, 6))
    for name in sorted(top):
        sel = g == name
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.7, label=name)
    other = ~np.isin(g, list(top))
    if other.any():
        ax.scatter(xy[other, 0], xy[other, 1], s=4, alpha=0.4, c="lightgrey", label="other")
    ax.set(title=title)
    ax.legend(markerscale=3, fontsize=7, loc="best")
    return _png(fig)


# --------------------------------------------------------------------------------------------
# evaluate two-tower, baselines and the summary
# --------------------------------------------------------------------------------------------
def model_bars_png(rows: Sequence[tuple[str, dict]], metrics: Sequence[str], title: str
                   ) -> bytes:
    """Horizontal bars, one panel per metric, one bar per (name, scored) row in order (first on
    top): ``scored["metrics"][metric]`` with ``scored["ci"][metric]`` (when present) as error
    bars. Names starting with "oracle" are grey, with "two-tower" blue, the rest orange."""
    plt = _pyplot()
    names = [name for name, _ in rows]
    fig, axes = plt.subplots(1, len(metrics), figsize=(12, 0.45 * len(rows) + 1.5), sharey=True,
                             squeeze=False)
    axes = axes[0]
    for ax, metric in zip(axes, metrics):
        values = np.array([s["metrics"][metric] for _, s in rows])
        ci = [s.get("ci", {}).get(metric) for _, s in rows]
        err = np.array([[v - c[0], c[1] - v] if c else [0, 0] for v, c in zip(values, ci)]).T
        colors = ["#444444" if n.startswith("oracle") else "#1f77b4" if n.startswith(
            "two-tower") else "#ff7f0e" for n in names]
        ax.barh(np.arange(len(rows)), values, xerr=err, color=colors, capsize=3)
        ax.set_yticks(np.arange(len(rows)), names)
        ax.set_xlabel(metric)
        ax.grid(axis="x", alpha=0.3)
    axes[0].invert_yaxis()  # the axes share y: once puts the first row (the oracle) on top
    fig.suptitle(title)
    return _png(fig)


def feature_importance_png(names: Sequence[str], values: Sequence[float], title: str,
                           top: int = 30) -> bytes:
    """Horizontal bars of the ``top`` largest importances, largest on top."""
    plt = _pyplot()
    order = np.argsort(-np.asarray(values, np.float64), kind="stable")[:top]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(order) + 1.5))
    ax.barh(np.arange(len(order)), np.asarray(values, np.float64)[order], color="#2ca02c")
    ax.set_yticks(np.arange(len(order)), [names[i] for i in order])
    ax.invert_yaxis()
    ax.set_xlabel("importance")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title)
    return _png(fig)


def training_curves_png(history: list[dict]) -> bytes:
    """Training curves: loss (total, retrieval, ranking), AUC, precision / recall, val MAP@12
    (a key missing or None in an epoch's record is a gap)."""
    plt = _pyplot()
    epochs = [h.get("epoch", i) for i, h in enumerate(history)]
    panels = [("loss", ("loss", "retrieval_loss", "ranking_loss")), ("AUC", ("auc",)),
              ("precision / recall", ("precision", "recall")), ("val MAP@12", ("val_map12",))]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            ys = [h.get(key) for h in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, [np.nan if y is None else y for y in ys], marker="o",
                        label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    return _png(fig)


def embedding_map_png(vectors: np.ndarray, labels: np.ndarray, n: int, seed: int = 0
                      ) -> bytes:
    """2-D map (the first two principal components) of article vectors, coloured by label
    (the eight commonest labels, the rest grey); at most ``n`` articles, drawn at random."""
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(vectors), size=min(n, len(vectors)), replace=False)
    x = vectors[pick].astype(np.float64)
    x -= x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    lab = labels[pick].astype(str)
    names, counts = np.unique(lab, return_counts=True)
    top = names[np.argsort(-counts)][:8]
    fig, ax = plt.subplots(figsize=(7, 6))
    rest = ~np.isin(lab, top)
    ax.scatter(xy[rest, 0], xy[rest, 1], s=4, c="#cccccc", label="other")
    for name in top:
        m = lab == name
        ax.scatter(xy[m, 0], xy[m, 1], s=4, label=name)
    ax.legend(fontsize=7, markerscale=3)
    ax.set_title("article tower vectors, first two principal components")
    return _png(fig)


# --------------------------------------------------------------------------------------------
# tune
# --------------------------------------------------------------------------------------------
def metric_vs_param_png(
    x: np.ndarray,
    y: np.ndarray,
    complete: np.ndarray,
    mean_x: np.ndarray,
    mean_y: np.ndarray,
    best: tuple[float, float] | None,
    *,
    param: str,
    metric: str,
    title: str = "",
    labels: Sequence[str] | None = None,
    log: bool = False,
) -> bytes:
    """A sweep's metric against one parameter, in the shape of FND-CL's Fig. 4, 5 and 7: each
    finished trial a point at (``x``, ``y``), hollow where ``complete`` is False (stopped
    early by ASHA); the mean per value as a line through (``mean_x``, ``mean_y``), or, for a
    categorical parameter (``labels``: the values in axis order, ``x`` their positions), as
    bars; ``best`` (x, y) starred. No point: the figure says no trial finished."""
    from matplotlib.figure import Figure

    x, y = np.asarray(x, float), np.asarray(y, float)
    complete = np.asarray(complete, bool)
    fig = Figure(figsize=(5.0, 3.6), dpi=110)
    ax = fig.subplots()
    if len(x) == 0:
        ax.text(0.5, 0.5, "no trial finished", ha="center", va="center",
                transform=ax.transAxes)
    elif labels is not None:
        ax.bar(range(len(labels)), list(mean_y), color="#c6d7ea", width=0.6, label="mean")
        _trial_points(ax, x, y, complete)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        lo = float(y.min())
        ax.set_ylim(bottom=max(0.0, lo - 0.1 * (float(y.max()) - lo + 1e-3)))
    else:
        if len(mean_x) > 1:
            ax.plot(np.asarray(mean_x, float), np.asarray(mean_y), "-", color="#4c72b0",
                    lw=1.2, label="mean")
        _trial_points(ax, x, y, complete)
        if log:
            ax.set_xscale("log")
    if best is not None:
        ax.plot([best[0]], [best[1]], "*", color="#d62728", ms=13, label="best", zorder=5)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} vs {param}", fontsize=10)
    ax.grid(alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _trial_points(ax, x: np.ndarray, y: np.ndarray, complete: np.ndarray) -> None:
    ax.plot(x[complete], y[complete], "o", color="#4c72b0", ms=5, label="trial")
    if (~complete).any():
        ax.plot(x[~complete], y[~complete], "o", mfc="none", color="#4c72b0", ms=5,
                label="stopped early (ASHA)")
