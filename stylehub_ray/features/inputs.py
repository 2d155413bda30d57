"""The two-tower's inputs, one row per customer (article) index, built identically for training,
batch inference and serving (two-tower paper, "Step 6: Inference" applies the training
transform).

- :func:`input_layout`: the columns a new model trains with (every fitted column of
  ``features/preprocess``), the embedding widths and the table sizes.
- :func:`build_inputs`: the (customers, articles) :class:`SideTable` of one feature set in a
  layout's column order, from ``features/customers`` / ``features/articles``,
  ``features/preprocess``, ``embeddings/images`` (and ``embeddings/text``).
- :func:`feature_cutoff` and :func:`training_feature_set`: which day a feature set ends before,
  and which set the training examples join.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from stylehub_ray.run import Run

FEATURE_SETS = ("train", "test", "fit")  # fit: only with features.label_days > 0


# --------------------------------------------------------------------------------------------
@dataclass
class InputLayout:
    """Which columns feed the model, in order (saved in the model's metadata)."""

    customer_numeric: list[str]
    customer_categorical: list[str]
    article_numeric: list[str]  # ends with the has_image flag
    article_categorical: list[str]
    image_dim: int
    text_dim: int  # 0: no text embedding
    image_rms: float  # image embeddings are divided by it (PCA outputs are not unit-scaled)
    n_customers: int
    n_articles: int
    # The customer side also gets the day's context (day of week, month, weekend): in
    # training each example's day, at inference the feature set's cutoff day.
    context: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


CONTEXT_DIM = 5


def context_features(day_of_week: np.ndarray, month: np.ndarray, weekend: np.ndarray
                     ) -> np.ndarray:
    """(n, 5) float32: day of week and month on the circle (sin, cos), and the weekend flag
    (day_of_week 0 = Monday, month 1-12)."""
    dow = 2 * np.pi * np.asarray(day_of_week, np.float32) / 7
    mon = 2 * np.pi * (np.asarray(month, np.float32) - 1) / 12
    return np.stack([np.sin(dow), np.cos(dow), np.sin(mon), np.cos(mon),
                     np.asarray(weekend, np.float32)], axis=1).astype(np.float32)


def day_context(day: str, n: int) -> np.ndarray:
    """:func:`context_features` of one date (ISO) repeated for ``n`` rows."""
    d = np.datetime64(day, "D")
    dow = int((d.astype(np.int64) + 3) % 7)  # 1970-01-01 was a Thursday (3)
    month = int(str(d)[5:7])
    return np.repeat(context_features([dow], [month], [int(dow >= 5)]), n, axis=0)


@dataclass
class SideTable:
    """One side's model inputs, row = customer_idx (article_idx)."""

    num: np.ndarray  # (n, Dn) float32
    cat: np.ndarray  # (n, K) int64, 0 = unknown category
    extra: np.ndarray  # (n, De) float32 (articles: image, text)
    ids: np.ndarray = field(default=None)  # (n,) int64: idx + 1 (0 is the unknown id)

    def __post_init__(self) -> None:
        if self.ids is None:
            self.ids = np.arange(1, len(self.num) + 1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.num)

    def take(self, idx: np.ndarray) -> dict:
        """Torch inputs of rows ``idx`` (any shape flattened)."""
        import torch

        idx = np.asarray(idx, np.int64).ravel()
        return {"num": torch.from_numpy(self.num[idx]), "cat": torch.from_numpy(self.cat[idx]),
                "ids": torch.from_numpy(self.ids[idx]),
                "extra": torch.from_numpy(self.extra[idx])}

    def tensors(self) -> dict:
        import torch

        return {"num": torch.from_numpy(self.num), "cat": torch.from_numpy(self.cat),
                "ids": torch.from_numpy(self.ids), "extra": torch.from_numpy(self.extra)}


def input_layout(run: Run, text: bool, context: bool = False) -> InputLayout:
    """The layout a new model trains with: every fitted column of preprocess.json."""
    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.features.preprocess import Preprocessor

    run.require("features/preprocess", f"stylehub features --run {run.uri}")
    run.require("embeddings/images", f"stylehub embed images --run {run.uri}")
    if text:
        run.require("embeddings/text", f"stylehub embed text --run {run.uri}")
    pre = Preprocessor.load(run)

    def cols(d: dict, side: str) -> list[str]:
        return sorted(k.split(".", 1)[1] for k in d if k.startswith(side + "."))

    images = image_matrix(run)
    present = np.abs(images).sum(1) > 0
    rms = float(np.sqrt((images[present] ** 2).mean())) if present.any() else 1.0
    n_customers = read_table(run, "raw/customers", ["customer_idx"]).num_rows
    return InputLayout(
        customer_numeric=cols(pre.numeric, "customer"),
        customer_categorical=cols(pre.categorical, "customer"),
        article_numeric=[*cols(pre.numeric, "article"), "has_image"],
        article_categorical=cols(pre.categorical, "article"),
        image_dim=images.shape[1], text_dim=text_matrix(run).shape[1] if text else 0,
        image_rms=rms or 1.0, n_customers=n_customers, n_articles=len(images),
        context=context)


def image_matrix(run: Run) -> np.ndarray:
    """(n_articles, D) float32 ``embeddings/images``, row = article_idx; zeros: no image."""
    return embedding_matrix(run, "embeddings/images")


def text_matrix(run: Run) -> np.ndarray:
    """(n_articles, D) float32 ``embeddings/text``, row = article_idx."""
    return embedding_matrix(run, "embeddings/text")


def embedding_matrix(run: Run, rel: str) -> np.ndarray:
    """An embeddings table as a dense matrix; an error unless it covers 0..n-1 once each."""
    from stylehub_ray.embed.vectors import from_fixed_list, read_embeddings

    t = read_embeddings(run, rel, ["article_idx", "embedding"])
    _check_dense(t["article_idx"].to_numpy(), run, rel)
    return from_fixed_list(t["embedding"])  # null (no vector) -> zeros


def _check_dense(idx: np.ndarray, run: Run, rel: str) -> None:
    if not np.array_equal(idx, np.arange(len(idx))):
        missing = np.setdiff1d(np.arange(idx.max() + 1 if len(idx) else 0), idx)[:5]
        raise ValueError(f"{run.uri}/{rel}: article_idx must cover 0..n-1 once each; "
                         f"missing or repeated, e.g. {missing.tolist()}")


def build_inputs(run: Run, feature_set: str, layout: InputLayout
                 ) -> tuple[SideTable, SideTable]:
    """(customers, articles) input tables of one feature set in ``layout``'s column order."""
    from stylehub_ray.features.preprocess import Preprocessor
    from stylehub_ray.features.stage import load_features

    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set must be one of {FEATURE_SETS}, got {feature_set!r}")
    run.require("features/customers", f"stylehub features --run {run.uri}")
    pre = Preprocessor.load(run)
    sides = []
    for side, n, num_cols, cat_cols in (
            ("customer", layout.n_customers, layout.customer_numeric,
             layout.customer_categorical),
            ("article", layout.n_articles, layout.article_numeric,
             layout.article_categorical)):
        df = load_features(run, f"{side}s", feature_set).sort_values(f"{side}_idx")
        idx = df[f"{side}_idx"].to_numpy()
        if not np.array_equal(idx, np.arange(n)):
            raise ValueError(f"{run.uri}/features/{side}s feature_set={feature_set}: expected "
                             f"{side}_idx 0..{n - 1} once each (as the model was trained), "
                             f"got {len(idx)} rows")
        if side == "article":
            images = image_matrix(run)
            if images.shape != (n, layout.image_dim):
                raise ValueError(f"{run.uri}/embeddings/images: embedding shape "
                                 f"{images.shape}, the model expects ({n}, {layout.image_dim})")
            df = df.assign(has_image=(np.abs(images).sum(1) > 0).astype(np.float32))
            extra = [images / np.float32(layout.image_rms)]
            if layout.text_dim:
                text = text_matrix(run)
                if text.shape != (n, layout.text_dim):
                    raise ValueError(f"{run.uri}/embeddings/text: embedding shape "
                                     f"{text.shape}, the model expects ({n}, "
                                     f"{layout.text_dim})")
                extra.append(text)
            extra_m = np.concatenate(extra, axis=1).astype(np.float32)
        elif layout.context:
            extra_m = day_context(feature_cutoff(run, feature_set), n)
        else:
            extra_m = np.zeros((n, 0), np.float32)
        missing = [c for c in [*num_cols, *cat_cols] if c not in df.columns]
        if missing:
            raise ValueError(f"{run.uri}/features/{side}s: columns {missing} missing (the "
                             f"model was trained with them)")
        out = pre.transform(side, df[[*num_cols, *cat_cols]])
        num = out[num_cols].to_numpy(np.float32) if num_cols else np.zeros((n, 0), np.float32)
        cat = out[cat_cols].to_numpy(np.int64) if cat_cols else np.zeros((n, 0), np.int64)
        sides.append(SideTable(num=np.ascontiguousarray(num), cat=np.ascontiguousarray(cat),
                               extra=np.ascontiguousarray(extra_m)))
    return sides[0], sides[1]


def feature_cutoff(run: Run, feature_set: str) -> str:
    """The feature set's cutoff date: features and purchase history end the day before."""
    entry = run.entry("features")
    if not entry or "cutoffs" not in entry:
        raise FileNotFoundError(f"{run.uri}: the manifest has no features cutoffs; run "
                                f"`stylehub features --run {run.uri}` first")
    key = {"train": "val_start", "test": "test_start", "fit": "fit_start"}[feature_set]
    if key not in entry["cutoffs"]:
        raise FileNotFoundError(f"{run.uri}: no `{feature_set}` feature set (built by "
                                f"`stylehub features --set label_days=N`)")
    return entry["cutoffs"][key]


def training_feature_set(run: Run) -> str:
    """The feature set the training examples join: ``fit`` where the features stage built a
    point-in-time label window (``features.label_days``), else ``train``."""
    try:
        feature_cutoff(run, "fit")
    except FileNotFoundError:
        return "train"
    return "fit"
