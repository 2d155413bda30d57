"""A finished sweep as tables, plots and a best config (from Tune's ResultGrid)."""

from __future__ import annotations

import io
import json
import math
import posixpath
import re
from dataclasses import asdict
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stylehub_ray.plots import metric_vs_param_png
from stylehub_ray.run import Run
from stylehub_ray.tune.spaces import FAIL_PARAM, RESOURCE_FIELDS, Param, encode_value

STATUSES = ("COMPLETE", "STOPPED", "ERROR")  # STOPPED: ASHA ended it before its last epoch


def short_error(error: BaseException | None) -> str:
    """The root cause of a failed trial in one line (the last ``XError: message`` line of the
    chained traceback Tune and Train wrap it in)."""
    if error is None:
        return ""
    text = str(error)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    causes = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*:", ln)]
    line = causes[-1] if causes else (lines[-1] if lines else type(error).__name__)
    return line[:500]


def param_columns(plan) -> list[str]:
    """The parameter columns of the trials table (``lr`` when scaled with batch_size)."""
    names = [p.name for p in plan.swept if p.name != FAIL_PARAM]
    if plan.scale_lr and "batch_size" in names and "lr" not in plan.params:
        names.append("lr")
    return names


def metric_column(plan, metric: str | None = None) -> str:
    """A metric's column in the trials table: its name, or ``metric_<name>`` when a swept
    parameter has that name (FND-CL's ``loss`` is both a setting and a reported metric)."""
    metric = metric or plan.metric
    return f"metric_{metric}" if metric in param_columns(plan) else metric


def collect(grid, plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, history): one row per trial, one row per reported epoch."""
    reported = list(plan.entry.reported_metrics())
    metric, mode = plan.metric, plan.mode
    rows, hist = [], []
    swept = [p for p in plan.swept if p.name != FAIL_PARAM]
    scaled_lr = "lr" in param_columns(plan) and "lr" not in {p.name for p in swept}
    mcol = metric_column(plan)
    for i in range(len(grid)):
        r = grid[i]
        trial_id = posixpath.basename(str(r.path).rstrip("/"))
        df = r.metrics_dataframe
        cols = [c for c in [*reported, "training_iteration", "time_total_s"]
                if df is not None and c in df.columns]
        h = (df[cols].copy() if df is not None and not df.empty
             else pd.DataFrame(columns=cols))
        h.insert(0, "trial_id", trial_id)
        hist.append(h)
        row: dict = {"trial_id": trial_id}
        for p in swept:
            row[p.name] = r.config.get(p.name)
        if scaled_lr:
            from stylehub_ray.tune.sweep import trial_values

            row["lr"] = trial_values(plan, {p.name: r.config[p.name] for p in swept})["lr"]
        epochs_run = len(h)
        row["epochs_run"] = epochs_run
        if epochs_run and metric in h.columns and h[metric].notna().any():
            k = h[metric].astype(float).idxmax() if mode == "max" else (
                h[metric].astype(float).idxmin())
            best = h.loc[k]
            row[mcol] = float(best[metric])
            row["best_epoch"] = int(best["epoch"]) if "epoch" in h.columns else int(k)
            row[f"{mcol}_last"] = float(h[metric].iloc[-1])
            for m in reported:
                if m not in (metric, "epoch", "epoch_s") and m in h.columns:
                    row[metric_column(plan, m)] = float(best[m])
        else:
            row[mcol], row["best_epoch"], row[f"{mcol}_last"] = math.nan, -1, math.nan
        row["train_s"] = float(h["epoch_s"].sum()) if "epoch_s" in h.columns else math.nan
        row["time_s"] = (float(h["time_total_s"].iloc[-1])
                         if epochs_run and "time_total_s" in h.columns else math.nan)
        row["error"] = short_error(r.error)
        row["status"] = ("ERROR" if r.error is not None else
                         "COMPLETE" if epochs_run >= plan.epochs else "STOPPED")
        rows.append(row)
    trials = pd.DataFrame(rows)
    trials = trials.sort_values("trial_id", kind="stable").reset_index(drop=True)
    trials.insert(0, "trial", np.arange(len(trials)))
    history = (pd.concat([h for h in hist if not h.empty], ignore_index=True)
               if any(not h.empty for h in hist) else pd.DataFrame(columns=["trial_id"]))
    return trials, history


def best_trial(trials: pd.DataFrame, metric: str, mode: str) -> pd.Series | None:
    """The finished trial with the best metric (first on a tie); None when none finished."""
    ok = trials[(trials["status"] != "ERROR") & trials[metric].notna()]
    if ok.empty:
        return None
    values = ok[metric].to_numpy(float)
    i = int(np.argmax(values) if mode == "max" else np.argmin(values))
    return ok.iloc[i]


def metric_vs_param(trials: pd.DataFrame, param: Param, metric: str, mode: str,
                    title: str = "") -> bytes:
    """PNG of ``trials[metric]`` (each trial's best epoch) against ``trials[param.name]``:
    every finished trial, the mean per value, the best trial (:func:`plots.metric_vs_param_png`).
    """
    ok = trials[trials["status"] != "ERROR"].dropna(subset=[metric])
    name = param.name
    complete = (ok["status"] == "COMPLETE").to_numpy()
    y = ok[metric].to_numpy(float)
    labels = None
    if param.categorical:
        labels = sorted(ok[name].astype(str).unique())
        pos = {v: i for i, v in enumerate(labels)}
        x = ok[name].astype(str).map(pos).to_numpy(float)
        means = ok.groupby(ok[name].astype(str))[metric].mean()
        mean_x, mean_y = np.arange(len(labels)), [means[v] for v in labels]
    else:
        x = ok[name].to_numpy(float)
        means = ok.groupby(name)[metric].mean().sort_index()
        mean_x, mean_y = means.index.to_numpy(float), means.to_numpy()
    best, row = None, best_trial(trials, metric, mode)
    if row is not None:
        bx = labels.index(str(row[name])) if labels is not None else float(row[name])
        best = (bx, row[metric])
    return metric_vs_param_png(x, y, complete, mean_x, mean_y, best, param=name, metric=metric,
                               title=title, labels=labels, log=param.log)


def write_results(run: Run, folder: str, plan, trials: pd.DataFrame,
                  history: pd.DataFrame) -> dict | None:
    """Write the tables, plots and best config into ``folder`` (a path in the run's
    filesystem); return the best config record (None when no trial finished an epoch)."""
    from stylehub_ray.tune.sweep import make_trainer_config, trial_values

    run.write_at(f"{folder}/trials.parquet", _parquet(trials))
    run.write_at(f"{folder}/trials.csv", trials.to_csv(index=False).encode())
    run.write_at(f"{folder}/history.parquet", _parquet(history))
    model = plan.entry.name
    for p in plan.swept:
        if p.name == FAIL_PARAM:
            continue
        title = f"{model} {plan.sweep}: {plan.metric} vs {p.name}"
        if p.name == "batch_size" and "lr" in trials.columns:
            title += " (lr scaled linearly)"
        png = metric_vs_param(trials, p, metric_column(plan), plan.mode, title)
        run.write_at(f"{folder}/plots/{plan.metric}_vs_{p.name}.png", png)
    best = best_trial(trials, metric_column(plan), plan.mode)
    if best is None:
        return None
    params = {p.name: _plain(best[p.name]) for p in plan.swept if p.name != FAIL_PARAM}
    fixed = {p.name: encode_value(p.values[0]) for p in plan.params.values()
             if not p.swept and p.name != FAIL_PARAM}
    cls = plan.entry.config_class()
    values = trial_values(plan, {**fixed, **params})
    cfg = make_trainer_config(cls, {**plan.base, **values}, where=plan.entry.stage)
    config = {k: v for k, v in json.loads(json.dumps(asdict(cfg), default=list)).items()
              if k not in RESOURCE_FIELDS}
    record = {"model": model, "sweep": plan.sweep, "metric": plan.metric, "mode": plan.mode,
              "value": float(best[metric_column(plan)]), "trial_id": str(best["trial_id"]),
              "epoch": int(best["best_epoch"]), "params": params, "config": config,
              "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    run.write_at(f"{folder}/best_config.json",
           (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return record


def format_trials(trials: pd.DataFrame, plan) -> list[str]:
    """The trials table as the CLI prints it."""
    names = param_columns(plan)
    mcol = metric_column(plan)
    head = ["trial", *names, plan.metric, "best ep", "epochs", "status", "time s"]
    body = []
    for _, r in trials.iterrows():
        body.append([r["trial_id"], *(_fmt(r[n]) for n in names), _fmt(r[mcol]),
                     str(r["best_epoch"]), str(r["epochs_run"]), r["status"],
                     _fmt(r["time_s"], 1)])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in [head, *body]]
    for _, r in trials[trials["status"] == "ERROR"].iterrows():
        lines.append(f"  {r['trial_id']} failed: {r['error']}")
    return lines


def _fmt(x, digits: int = 4) -> str:
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.{digits}g}" if abs(x) < 1e-3 else (
            f"{x:.{digits}f}")
    return str(x)


def _plain(x):
    return x.item() if isinstance(x, np.generic) else x


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    return buf.getvalue()

