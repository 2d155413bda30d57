"""Plots of a sweep: the validation metric against each swept parameter, one figure per
parameter, in the shape of FND-CL's Fig. 4 (alpha), Fig. 5 (augmentation pairs) and Fig. 7
(batch size): every finished trial as a point, the mean per value as a line (numeric) or a bar
(categorical), trials stopped early by ASHA hollow, the best trial starred. No Ray here."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from stylehub_ray.tune.spaces import Param


def metric_vs_param(trials: pd.DataFrame, param: Param, metric: str, mode: str,
                    title: str = "") -> bytes:
    """PNG of ``trials[metric]`` (each trial's best epoch) against ``trials[param.name]``."""
    from matplotlib.figure import Figure

    ok = trials[trials["status"] != "ERROR"].dropna(subset=[metric])
    fig = Figure(figsize=(5.0, 3.6), dpi=110)
    ax = fig.subplots()
    name = param.name
    if ok.empty:
        ax.text(0.5, 0.5, "no trial finished", ha="center", va="center",
                transform=ax.transAxes)
    elif param.categorical:
        labels = sorted(ok[name].astype(str).unique())
        pos = {v: i for i, v in enumerate(labels)}
        x = ok[name].astype(str).map(pos).to_numpy(float)
        means = ok.groupby(ok[name].astype(str))[metric].mean()
        ax.bar(range(len(labels)), [means[v] for v in labels], color="#c6d7ea", width=0.6,
               label="mean")
        _points(ax, ok, x, metric)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        lo = float(ok[metric].min())
        ax.set_ylim(bottom=max(0.0, lo - 0.1 * (float(ok[metric].max()) - lo + 1e-3)))
    else:
        x = ok[name].to_numpy(float)
        means = ok.groupby(name)[metric].mean().sort_index()
        if len(means) > 1:
            ax.plot(means.index.to_numpy(float), means.to_numpy(), "-", color="#4c72b0",
                    lw=1.2, label="mean")
        _points(ax, ok, x, metric)
        if param.log:
            ax.set_xscale("log")
    best = _best_row(ok, metric, mode)
    if best is not None:
        bx = (sorted(ok[name].astype(str).unique()).index(str(best[name]))
              if param.categorical else float(best[name]))
        ax.plot([bx], [best[metric]], "*", color="#d62728", ms=13, label="best", zorder=5)
    ax.set_xlabel(name)
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} vs {name}", fontsize=10)
    ax.grid(alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _points(ax, ok: pd.DataFrame, x: np.ndarray, metric: str) -> None:
    full = (ok["status"] == "COMPLETE").to_numpy()
    y = ok[metric].to_numpy(float)
    ax.plot(x[full], y[full], "o", color="#4c72b0", ms=5, label="trial")
    if (~full).any():
        ax.plot(x[~full], y[~full], "o", mfc="none", color="#4c72b0", ms=5,
                label="stopped early (ASHA)")


def _best_row(ok: pd.DataFrame, metric: str, mode: str):
    if ok.empty:
        return None
    idx = ok[metric].idxmax() if mode == "max" else ok[metric].idxmin()
    return ok.loc[idx]
