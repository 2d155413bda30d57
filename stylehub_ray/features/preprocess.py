"""Preprocessing fitted on the training period, saved so training, batch inference and serving
apply the identical transform (``features/preprocess.json``).

Fitted with scikit-learn: numbers get median imputation (``SimpleImputer``) then
standardisation (``StandardScaler``); categories get mode imputation then an ordinal code
(``OrdinalEncoder``). The fitted statistics are written as JSON (readable, no pickle) and
:meth:`Preprocessor.transform` applies them; a test checks it reproduces scikit-learn's own
``transform``. Category code 0 is reserved for a category unseen at fitting time (a new product
type at serving time), so known categories are coded 1..n.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Preprocessor:
    numeric: dict[str, dict[str, float]] = field(default_factory=dict)  # median, mean, scale
    categorical: dict[str, dict] = field(default_factory=dict)  # mode, categories

    @classmethod
    def fit(cls, frames: dict[str, pd.DataFrame], numeric: dict[str, list[str]],
            categorical: dict[str, list[str]]) -> Preprocessor:
        """Fit on named tables (``customer``, ``article``); column names are prefixed by the
        table so the two never collide (``customer.age``)."""
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import OrdinalEncoder, StandardScaler

        pre = cls()
        for table, df in frames.items():
            cols = numeric.get(table, [])
            if cols:
                x = df[cols].to_numpy(dtype=np.float64)
                imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(x)
                scaler = StandardScaler().fit(imputer.transform(x))
                for i, col in enumerate(cols):
                    pre.numeric[f"{table}.{col}"] = {
                        "median": float(imputer.statistics_[i]), "mean": float(scaler.mean_[i]),
                        "scale": float(scaler.scale_[i])}
            cols = categorical.get(table, [])
            if cols:
                x = _as_text(df[cols]).to_numpy(dtype=object)
                imputer = SimpleImputer(strategy="most_frequent", missing_values=np.nan,
                                        keep_empty_features=True).fit(x)
                encoder = OrdinalEncoder(handle_unknown="use_encoded_value",
                                         unknown_value=-1).fit(imputer.transform(x))
                for i, col in enumerate(cols):
                    pre.categorical[f"{table}.{col}"] = {
                        "mode": str(imputer.statistics_[i]),
                        "categories": [str(c) for c in encoder.categories_[i]]}
        return pre

    def transform(self, table: str, df: pd.DataFrame) -> pd.DataFrame:
        """Standardised numbers (float32) and category codes (int32, 0 = unknown) for every
        fitted column of ``table`` present in ``df``; other columns pass through."""
        out = df.copy()
        prefix = f"{table}."
        for key, p in self.numeric.items():
            col = key[len(prefix):]
            if key.startswith(prefix) and col in out:
                x = pd.to_numeric(out[col], errors="coerce").astype(np.float64)
                x = x.fillna(p["median"])
                out[col] = ((x - p["mean"]) / p["scale"]).astype(np.float32)
        for key, p in self.categorical.items():
            col = key[len(prefix):]
            if key.startswith(prefix) and col in out:
                values = _as_text(out[[col]])[col].fillna(p["mode"])
                codes = pd.Index(p["categories"]).get_indexer(values)
                out[col] = (codes + 1).astype(np.int32)  # unknown (-1) -> 0
        return out

    def cardinality(self, key: str) -> int:
        """Embedding table size for a categorical column: its categories plus the unknown."""
        return len(self.categorical[key]["categories"]) + 1

    def to_json(self) -> str:
        return json.dumps({"numeric": self.numeric, "categorical": self.categorical},
                          indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        raw = json.loads(text)
        return cls(numeric=raw["numeric"], categorical=raw["categorical"])

    @classmethod
    def load(cls, run) -> Preprocessor:
        with run.fs.open_input_stream(run.path("features/preprocess/preprocess.json")) as f:
            return cls.from_json(f.read().decode())


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories as strings, missing as NaN: one representation for fitting and applying."""
    return frame.map(lambda v: str(v) if pd.notna(v) else np.nan).astype(object)
