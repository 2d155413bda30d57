"""The LightGBM lambdarank ranker over multi-source candidates, without Ray: its published
form, scoring and the top K of scored candidates.

A published ranker is ``models/ranker/<variant>/``: ``model.txt`` (LightGBM's text format),
``meta.json`` (the feature names in column order, the training config, the best iteration,
the choices made on val, the candidate recall table, feature importances),
``importance.png`` and ``cutoffs/<val_start|test_start>.npz`` (the candidate parts fitted at
those cutoffs: ALS factors, the co-purchase table; ``eval.ranker.load_state``). Candidates
and their features come from ``stylehub_ray.features.candidates`` (history sources) and
``stylehub_ray.eval.ranker`` (the model sources); the trees only score the rows they are
given.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stylehub_ray.features.candidates import top_per_customer
from stylehub_ray.features.history import Purchases, top_up
from stylehub_ray.run import Run

MODEL_NAME = "ranker"
MODELS = f"models/{MODEL_NAME}"


def model_dir(variant: str) -> str:
    return f"{MODELS}/{variant}"


def feature_matrix(rows: pd.DataFrame, features: list[str]) -> np.ndarray:
    """(n, F) float32 of ``features`` in order; a feature missing from ``rows`` is NaN (a
    source not computed here: LightGBM treats it as missing)."""
    out = np.full((len(rows), len(features)), np.nan, np.float32)
    for j, name in enumerate(features):
        if name in rows.columns:
            out[:, j] = rows[name].to_numpy(np.float32)
    return out


@dataclass
class RankerModel:
    """A trained booster and the feature names it reads, in order."""

    booster: object  # lightgbm.Booster
    features: list[str]
    meta: dict

    @classmethod
    def from_string(cls, text: str, meta: dict) -> RankerModel:
        import lightgbm

        return cls(lightgbm.Booster(model_str=text), list(meta["features"]), meta)

    @classmethod
    def load(cls, run: Run, variant: str = "default") -> RankerModel:
        rel = model_dir(variant)
        run.require(rel, f"stylehub train ranker --run {run.uri}")
        with run.fs.open_input_stream(run.path(posixpath.join(rel, "model.txt"))) as f:
            text = f.read().decode()
        return cls.from_string(text, run.read_json(posixpath.join(rel, "meta.json")))

    @property
    def drop_bought(self) -> bool:
        return bool(self.meta.get("choices", {}).get("drop_bought", False))

    def score(self, rows: pd.DataFrame) -> np.ndarray:
        """(n,) float32 ranking score of each candidate row."""
        if len(rows) == 0:
            return np.zeros(0, np.float32)
        x = feature_matrix(rows, self.features)
        best = int(self.meta.get("best_iteration") or 0) or None
        return np.asarray(self.booster.predict(x, num_iteration=best), np.float32)


def top_k(rows: pd.DataFrame, scores: np.ndarray, customers: np.ndarray, k: int,
          bought: Purchases | None, fallback: np.ndarray, budget: int = 4_000_000
          ) -> tuple[np.ndarray, np.ndarray]:
    """(m, k) article_idx by descending score per customer (rows follow ``customers``,
    sorted), bought articles dropped when ``bought`` is given, a row short of ``k`` topped up
    from ``fallback``; and (m, k) scores (NaN where the fallback filled).

    A customer keeps ``k`` plus the most articles any of them bought, so one heavy buyer
    widens every row: the work goes a slice of customers at a time, about ``budget`` cells
    of those (customers x width) arrays per slice (20,000 customers beside one buyer of 1,773
    articles took 5 GB at once)."""
    customers = np.asarray(customers, np.int64)
    c = rows["customer_idx"].to_numpy(np.int64)
    a = rows["article_idx"].to_numpy(np.int64)
    s = np.asarray(scores, np.float32)
    width = k + (int(bought.count(customers).max(initial=0)) if bought is not None else 0)
    m = len(customers)
    step = max(1, budget // (3 * width))  # top_up widens a row to about 3 x width
    if m > step:  # several slices: the rows by customer, each slice's rows one range
        order = np.argsort(c, kind="stable")
        c, a, s = c[order], a[order], s[order]
    recs = np.empty((m, k), np.int64)
    out = np.empty((m, k), np.float32)
    for lo in range(0, max(m, 1), step):
        part = customers[lo:lo + step]
        r0, r1 = (0, len(c)) if m <= step else (
            np.searchsorted(c, part[0], "left"), np.searchsorted(c, part[-1], "right"))
        cand, score = top_per_customer(c[r0:r1], a[r0:r1], s[r0:r1], part, width)
        recs[lo:lo + step], column = top_up(cand, part, k, bought, fallback)
        kept = np.take_along_axis(score, np.maximum(column, 0), 1)
        out[lo:lo + step] = np.where(column >= 0, kept, np.nan)
    return recs, out
