"""Search spaces of the Ray Tune sweeps: the trainer registry, parameter specs parsed from text,
and the checks that run before any trial starts.

A parameter spec is text (from ``--set space.<name>=...`` or a YAML ``space:`` section):

``grid:a,b,c``            every value, in every search mode (``tune.grid_search``)
``choice:a,b,c``          one value per trial (random search); every value (grid search)
``uniform:lo,hi``         a float in [lo, hi]; grid search: ``grid_points`` evenly spaced values
``loguniform:lo,hi``      the same on a log scale (0 < lo)
``int:lo,hi``             an integer in [lo, hi] (both ends included)
``v``                     a fixed value (the parameter is not swept)

A YAML list means ``choice``. Values are YAML scalars, checked against the trainer config's
field type; a tuple field (FND-CL's augmentation pair) takes ``+``-joined items, e.g.
``choice:erase+replace,identity+erase``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import types
import typing
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import yaml

KINDS = ("fixed", "grid", "choice", "uniform", "loguniform", "int")
RANGE_KINDS = ("uniform", "loguniform", "int")
# Metrics a sweep minimises unless told otherwise; every other reported metric is maximised.
MIN_METRICS = ("loss", "retrieval_loss", "ranking_loss", "val_pos_dist", "epoch_s")
# A build_trainer argument (not a config field) a space may sweep: the trial's workers crash
# after reporting that epoch (`grid:null,0` fails one trial of two; failure-handling tests).
FAIL_PARAM = "fail_after_epoch"
# Trainer settings a sweep never copies into a best config: they say where a run trains, not
# what it learns.
RESOURCE_FIELDS = ("workers", "cpus_per_worker", "use_gpu")


@dataclass(frozen=True)
class TrainerEntry:
    """One tunable trainer: where its module is, what a sweep optimises and over what."""

    name: str  # the CLI name: `stylehub tune <name>`
    module: str  # the trainer module (contract: REPORTED_METRICS, build_trainer, config class)
    stage: str  # its stage config section: `--set <stage>.epochs=2` fixes a trainer setting
    metric: str  # the validation metric ASHA and the best config key on
    space: dict[str, str]  # the default search space
    fixed: dict[str, Any] = field(default_factory=dict)  # settings a sweep trains with

    def load(self) -> ModuleType:
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name == self.module:
                raise ValueError(f"tune {self.name}: the trainer module {self.module} does not "
                                 f"exist yet") from exc
            raise

    def reported_metrics(self) -> tuple[str, ...]:
        return tuple(self.load().REPORTED_METRICS)

    def config_class(self) -> type:
        from stylehub_ray import config as C

        self.load()
        return C.stage_config(self.stage)


# Default spaces follow the papers: FND-CL 4.1.4 (tau 0.1, lambda 0.2, alpha 1.25 / 1.5,
# Fig. 4 alpha, Fig. 5 augmentation pairs, Fig. 7 batch sizes with linearly scaled lr);
# the two-tower's softmax temperature and the weight of its ranking loss; the contrastive
# model's NT-Xent temperature and projection size.
AUGMENTATION_PAIRS = ("identity+erase", "identity+replace", "erase+identity", "erase+erase",
                      "erase+replace", "replace+identity", "replace+erase", "replace+replace")
REGISTRY: dict[str, TrainerEntry] = {
    "fndcl": TrainerEntry(
        name="fndcl", module="stylehub_ray.train.fndcl", stage="train_fndcl", metric="val_auc",
        space={"tau_fnd": "loguniform:0.03,0.5", "tau_cl": "loguniform:0.03,0.5",
               "alpha": "uniform:0.25,2.5", "lam": "uniform:0.05,1.0",
               "augmentations": "choice:" + ",".join(AUGMENTATION_PAIRS),
               "batch_size": "choice:8,16,32,64"},
        # The hyper-parameters above belong to the FND-CL student (teacher trained first).
        fixed={"stage": "student", "loss": "fndcl"},
    ),
    "contrastive": TrainerEntry(
        name="contrastive", module="stylehub_ray.train.contrastive", stage="train_contrastive",
        metric="val_recall5",
        space={"tau": "loguniform:0.05,1.0", "projection_dim": "choice:32,64,128,256"},
    ),
    "two-tower": TrainerEntry(
        name="two-tower", module="stylehub_ray.train.two_tower", stage="train_two_tower",
        metric="val_map12",
        space={"temperature": "loguniform:0.02,1.0", "ranking_weight": "uniform:0.1,2.0"},
    ),
}


def entry_of(model: str) -> TrainerEntry:
    if model not in REGISTRY:
        raise ValueError(f"tune: unknown model {model!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[model]


def metric_mode(metric: str, mode: str = "") -> str:
    if mode:
        if mode not in ("min", "max"):
            raise ValueError(f"tune.mode must be min or max, got {mode!r}")
        return mode
    return "min" if metric in MIN_METRICS else "max"


def check_metric(entry: TrainerEntry, metric: str) -> str:
    """The metric to optimise ('' = the trainer's default); refused when not reported."""
    metric = metric or entry.metric
    reported = entry.reported_metrics()
    if metric not in reported:
        raise ValueError(f"tune {entry.name}: metric {metric!r} is not reported by "
                         f"{entry.module} (REPORTED_METRICS: {', '.join(reported)})")
    return metric


# --------------------------------------------------------------------------------------------
# Parameter specs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One parameter of a space. ``values`` for fixed / grid / choice; ``low``/``high`` for
    ranges. Values are as the trainer config takes them (tuples for tuple fields)."""

    name: str
    kind: str
    values: tuple = ()
    low: float = 0.0
    high: float = 0.0

    @property
    def swept(self) -> bool:
        return self.kind != "fixed" and not (self.kind in ("grid", "choice")
                                             and len(self.values) == 1)

    @property
    def log(self) -> bool:
        return self.kind == "loguniform"

    @property
    def categorical(self) -> bool:
        return self.kind in ("grid", "choice", "fixed") and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)

    def describe(self) -> str:
        if self.kind in RANGE_KINDS:
            return f"{self.kind}:{self.low:g},{self.high:g}"
        shown = ",".join(str(encode_value(v)) for v in self.values)
        return shown if self.kind == "fixed" else f"{self.kind}:{shown}"

    def points(self, grid_points: int) -> list:
        """The values a grid search enumerates (listed values; ranges cut into points)."""
        if self.kind not in RANGE_KINDS:
            return list(self.values)
        if self.kind == "int":
            return sorted({int(round(v)) for v in np.linspace(self.low, self.high, grid_points)})
        space = np.geomspace if self.log else np.linspace
        return [float(f"{v:.6g}") for v in space(self.low, self.high, grid_points)]

    def end_values(self) -> list:
        """The values that validation tries: every listed one, or both ends of a range."""
        if self.kind in RANGE_KINDS:
            return [int(self.low), int(self.high)] if self.kind == "int" else [self.low,
                                                                              self.high]
        return list(self.values)


def encode_value(value: Any) -> Any:
    """A value as Tune carries it and the tables show it: tuples become ``a+b`` strings."""
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    return value


def parse_param(name: str, spec: Any, hint: Any) -> Param:
    """Parse one spec (text, number or list) for a config field of type ``hint``."""
    where = f"space.{name}"
    if isinstance(spec, (list, tuple)):
        kind, items = "choice", [shape_value(where, v, hint) for v in spec]
        if not items:
            raise ValueError(f"{where}: empty list of values")
        return Param(name, kind, tuple(items))
    if not isinstance(spec, str) or ":" not in spec:
        return Param(name, "fixed", (shape_value(where, spec, hint),))
    kind, _, rest = spec.partition(":")
    kind = kind.strip()
    if kind not in KINDS[1:]:
        raise ValueError(f"{where}={spec!r}: unknown kind {kind!r}; expected one of "
                         f"{', '.join(KINDS[1:])} (or a plain value)")
    texts = [t.strip() for t in rest.split(",") if t.strip()]
    if kind in ("grid", "choice"):
        if not texts:
            raise ValueError(f"{where}={spec!r}: empty list of values")
        return Param(name, kind, tuple(shape_value(where, t, hint) for t in texts))
    if len(texts) != 2:
        raise ValueError(f"{where}={spec!r}: a range needs two ends, {kind}:LOW,HIGH")
    base = _base_type(hint)
    if base not in (int, float):
        raise ValueError(f"{where}={spec!r}: {name} is not numeric; list its values "
                         f"(choice:a,b or grid:a,b)")
    if base is int and kind != "int":
        raise ValueError(f"{where}={spec!r}: {name} is an integer; use int:LOW,HIGH or a list")
    try:
        low, high = (float(yaml.safe_load(t)) for t in texts)
    except (TypeError, ValueError, yaml.YAMLError):
        raise ValueError(f"{where}={spec!r}: range ends must be numbers") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{where}={spec!r}: range ends must be finite")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ValueError(f"{where}={spec!r}: int range ends must be integers")
    if low > high:
        raise ValueError(f"{where}={spec!r}: inverted range (low {low:g} > high {high:g})")
    if low == high:
        raise ValueError(f"{where}={spec!r}: empty range (low == high == {low:g}); give a "
                         f"plain value to fix it")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"{where}={spec!r}: a log range needs low > 0, got {low:g}")
    return Param(name, kind, (), low, high)


def _base_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        return _base_type(args[0])
    return typing.get_origin(hint) or hint


def shape_value(where: str, value: Any, hint: Any) -> Any:
    """One value for a field of type ``hint``: parsed from text when needed, a tuple field's
    ``a+b`` split into a tuple."""
    if isinstance(value, str):
        if _base_type(hint) is tuple:
            return tuple(v.strip() for v in value.split("+") if v.strip())
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"{where}: cannot parse value {value!r}") from None
    if _base_type(hint) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def parse_space(specs: dict[str, Any], config_class: type) -> dict[str, Param]:
    """Parse a space; a name that is not a field of the trainer's config is refused."""
    hints = typing.get_type_hints(config_class)
    fields_ = {f.name for f in dataclasses.fields(config_class)}
    out: dict[str, Param] = {}
    for name, spec in specs.items():
        if name == FAIL_PARAM:
            out[name] = parse_param(name, spec, int | None)
            continue
        if name not in fields_:
            raise ValueError(f"space.{name}: unknown parameter; {config_class.__name__} has "
                             f"{', '.join(sorted(fields_))}")
        if name in RESOURCE_FIELDS:
            raise ValueError(f"space.{name}: a resource setting, not a hyper-parameter "
                             f"(set it with --set {name}=... in the trainer's section)")
        out[name] = parse_param(name, spec, hints[name])
    return out
