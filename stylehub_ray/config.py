"""Stage configuration: one dataclass per stage, layered defaults < YAML file < ``--set``.

A YAML file holds either one stage's keys at top level or sections named after stages
(``ingest:``, ``generate_hm:``), so one file can configure a whole pipeline. ``--set key=value``
values are parsed as YAML scalars and checked against the field's type. The resolved config
(``asdict``) is what goes into the manifest.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

SCALES = ("tiny", "demo", "full")


@dataclass
class GenerateHMConfig:
    """`stylehub generate hm`: synthetic H&M data in the Kaggle layout, with an oracle."""

    scale: str = "demo"
    seed: int = 0
    images: bool = True
    image_width: int = 96
    image_height: int = 128
    # Overrides of the scale's sizes (None: take the scale's).
    n_customers: int | None = None
    n_articles: int | None = None
    n_transactions: int | None = None
    n_styles: int | None = None
    # Parallel tasks for transactions and images (None: one per 50k customers / 4k images).
    customers_per_task: int = 50_000
    images_per_task: int = 4_000

    def validate(self) -> None:
        _check_choice("scale", self.scale, SCALES)


@dataclass
class GenerateOutfitsConfig:
    """`stylehub generate outfits`: synthetic Polyvore-U data with its false negatives flagged."""

    scale: str = "demo"
    seed: int = 0
    image_size: int = 64

    def validate(self) -> None:
        _check_choice("scale", self.scale, SCALES)


@dataclass
class IngestConfig:
    """`stylehub ingest`: validate, type and quarantine the source into ``raw/``."""

    # Bytes of CSV per Ray Data read task; the unit of parallelism for the big tables.
    chunk_mb: float = 32.0
    # Check that listed images open as images (costs a file read per image).
    verify_images: bool = True
    # The sales channels the data defines.
    channels: tuple[int, ...] = (1, 2)
    # Ingest fails, naming the file, the field, the commonest reason and an example line, when
    # more than this share of a table's rows do not parse (rows naming a customer or article
    # the other files lack, and duplicates, do not count: they stay quarantined).
    max_malformed_share: float = 0.5

    def validate(self) -> None:
        if self.chunk_mb <= 0:
            raise ValueError(f"ingest.chunk_mb must be positive, got {self.chunk_mb}")
        if not 0 <= self.max_malformed_share <= 1:
            raise ValueError(f"ingest.max_malformed_share must be within 0..1, got "
                             f"{self.max_malformed_share}")


@dataclass
class FeaturesConfig:
    """`stylehub features`: temporal split, customer/article/interaction features, negatives,
    fitted preprocessing (hybrid two-tower paper, steps 2 and 4)."""

    split: str = "last-week"  # or "ratio" (the paper's 70/15/15 continuous periods)
    ratios: tuple[float, ...] = (0.70, 0.15, 0.15)
    recent_days: int = 30
    negatives: int = 4  # per positive
    negative_sampling: str = "uniform"  # or "popularity"
    # Negatives only from articles on sale on the positive's day (first sold on or before it);
    # false: from the whole catalogue, articles first sold later included.
    negatives_on_sale: bool = True
    # Point-in-time training examples: positives from the last `label_days` before `val`
    # only, joined with a third feature set `fit` as of their first day, so no positive's own
    # purchase is counted in its features, as on `val` and `test` (0: every purchase before
    # `val`, joined with the `train` features, which then count each positive in its own
    # article's sales: on the real H&M slice that leak ranked new articles last, val AUC 0.25).
    label_days: int = 91
    seed: int = 0
    # Hash groups for the exact per-customer / per-article aggregation and the negatives; a
    # fixed number (not the cluster's size) so that outputs do not depend on the cluster.
    buckets: int = 16
    # Parquet bytes per Ray Data block when reading raw/transactions.
    block_mb: float = 64.0

    def validate(self) -> None:
        _check_choice("split", self.split, ("last-week", "ratio"))
        _check_choice("negative_sampling", self.negative_sampling, ("uniform", "popularity"))
        if len(self.ratios) != 3 or abs(sum(self.ratios) - 1) > 1e-6 or min(self.ratios) <= 0:
            raise ValueError(f"features.ratios must be three positive shares summing to 1, "
                             f"got {self.ratios}")
        if self.label_days < 0:
            raise ValueError(f"features.label_days must be >= 0 (0: off), got "
                             f"{self.label_days}")
        if self.negatives < 0 or self.buckets < 1 or self.recent_days < 1:
            raise ValueError("features.negatives must be >= 0, buckets >= 1, recent_days >= 1")


@dataclass
class PipelineConfig:
    """`stylehub pipeline`: every stage that exists, in order, each skipped when up to date."""

    # Every stage that exists, in order; each runs on the layouts it applies to (H&M stages on
    # H&M runs, FND-CL on Polyvore-U runs). embed_images uses the ImageNet-pretrained
    # EfficientNet-Lite0 from its PyPI wheel by default. Entries from before the stage registry
    # (pairs_text, contrastive, two_tower, evaluate, fndcl) are accepted and expanded.
    stages: tuple[str, ...] = ("ingest", "features", "embed_images", "embed_text", "pairs",
                               "train_contrastive", "evaluate_contrastive", "train_two_tower",
                               "train_ranker", "recommend", "evaluate_baselines",
                               "evaluate_two_tower", "evaluate_ranker", "fndcl_items",
                               "train_fndcl", "evaluate_fndcl")

    def validate(self) -> None:
        from stylehub_ray import registry

        registry.expand_pipeline(self.stages)


def stage_config(name: str) -> type:
    """The config class of a stage, by its name (or an older alias; see
    :mod:`stylehub_ray.registry`)."""
    from stylehub_ray import registry

    return registry.resolve(registry.stage(name).config)


def _stage_name(cls: type) -> str:
    from stylehub_ray import registry

    path = f"{cls.__module__}:{cls.__qualname__}"
    for s in registry.STAGES:
        if s.config == path:
            return s.name
    raise ValueError(f"{cls.__name__} is not a stage config")


C = TypeVar("C")


def load_config(
    cls: type[C], config_file: str | None = None, sets: list[str] | None = None, **given: Any
) -> C:
    """Build a stage config: defaults, then the YAML file, then explicit kwargs, then --set."""
    name = _stage_name(cls)
    values: dict[str, Any] = {}
    if config_file:
        raw = yaml.safe_load(Path(config_file).read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{config_file}: expected a mapping, got {type(raw).__name__}")
        from stylehub_ray import registry

        sections = {*registry.BY_NAME, *registry.ALIASES}
        if not set(raw) & sections:
            section = raw  # one stage's keys at top level
        else:
            names = [n for n in (name, *registry.stage(name).aliases) if n in raw]
            if len(names) > 1:
                raise ValueError(f"{config_file}: sections {' and '.join(names)} configure "
                                 f"the same stage; keep one ({name})")
            section = raw[names[0]] if names else {}
        values.update(section or {})
    values.update({k: v for k, v in given.items() if v is not None})
    for item in sets or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        values[key.strip()] = yaml.safe_load(text)
    known = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(
                f"unknown {name} setting {key!r}; known: {', '.join(sorted(known))}"
            )
        kwargs[key] = _coerce(f"{name}.{key}", value, hints[key])
    cfg = cls(**kwargs)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def resolved(cfg: Any) -> dict:
    """The config as it goes into the manifest."""
    return asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner[0])
    if origin is tuple:
        if value is None or value == "":  # `--set key=`: the empty tuple
            return ()
        items = value if isinstance(value, (list, tuple)) else [
            v for v in str(value).split(",") if v.strip()
        ]
        return tuple(_coerce(name, yaml.safe_load(str(v)) if isinstance(v, str) else v, args[0])
                     for v in items)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        return str(value)
    return value


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
