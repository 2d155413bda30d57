"""`stylehub tune <model>`: a Ray Tune sweep over one trainer, each trial a Ray Train run.

Ray 2.60 runs Train V2, where a TorchTrainer cannot be handed to a ``Tuner``: each trial is a
Tune function that builds the trainer's TorchTrainer (the same ``build_trainer`` that
``stylehub train`` uses, :func:`stylehub_ray.train.loop.build_trainer` underneath) with the
trial's hyper-parameters and calls ``fit()``; ``TuneReportCallback`` forwards every epoch's
reported metrics to Tune, where ASHA stops the weak trials at its rungs. Random and grid search
are Tune's BasicVariantGenerator, seeded. The Tune function itself holds ``trial_cpus`` (Tune
refuses 0); the training workers hold what the trainer config asks (CPU per worker, or a share
of a GPU where the cluster has GPUs).

Outputs, ``tune/<model>/<sweep>/`` (one step, ``_SUCCESS`` last): ``trials.parquet`` and
``trials.csv`` (one row per trial: parameters, metric at its best epoch, epochs run, status,
error, time), ``history.parquet`` (every reported epoch), ``best_config.json``,
``plots/<metric>_vs_<param>.png``. ``tune/<model>/best.json`` points at the latest sweep's best
config, which ``stylehub train <model> --set config=best`` trains with. While a sweep runs,
Tune's experiment and each trial's Ray Train folder live under ``tune/<model>/_ray/<sweep>/``
(removed when the sweep completes).
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from stylehub_ray import config as C
from stylehub_ray.run import Run, stable_hash
from stylehub_ray.tune.spaces import (
    FAIL_PARAM,
    RESOURCE_FIELDS,
    Param,
    TrainerEntry,
    check_metric,
    encode_value,
    entry_of,
    metric_mode,
    parse_space,
    shape_value,
)

logger = logging.getLogger(__name__)

TUNE_DIR = "tune"
SEARCHES = ("random", "grid")
SCHEDULERS = ("asha", "fifo")


@dataclass
class TuneSweepConfig:
    """`stylehub tune <model>`: one sweep. ``space`` maps a trainer config field to its spec
    (see ``stylehub_ray.tune.spaces``); given specs are what is swept, else ``params`` picks
    from the trainer's default space, else the whole default space is. ``train`` fixes
    trainer settings for every trial (``--set train_fndcl.epochs=2``)."""

    model: str = "fndcl"
    sweep: str = ""  # folder under tune/<model>/; "": the swept parameters' names
    params: tuple[str, ...] = ()
    space: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    search: str = "random"  # random | grid
    samples: int = 0  # random: trials (0: 8); grid: repeats of the whole grid (0: 1)
    grid_points: int = 3  # grid search: values per range parameter
    metric: str = ""  # "": the trainer's default validation metric
    mode: str = ""  # "": min for losses and distances, else max
    scheduler: str = "asha"  # asha | fifo (every trial runs every epoch)
    grace_period: int = 1  # ASHA: epochs before a trial can be stopped
    reduction_factor: int = 2  # ASHA: 1/rf of the trials go on at each rung
    seed: int = 0  # the search's random state (the trainer's own seed is train.seed)
    # Trials at once: at most this many, and never more than the cluster's CPUs hold (a trial
    # holds trial_cpus + workers x cpus_per_worker); 0: as many as the CPUs hold.
    max_concurrent: int = 1
    trial_cpus: float = 0.25  # the Tune function's own CPU (it waits on the trainer)
    # A trial larger than the cluster is refused at once, naming what to change; true: start
    # anyway and wait (an autoscaling cluster that will grow).
    wait_for_cluster: bool = False
    gpus_per_trial: float = -1.0  # -1: 1 when the cluster has GPUs, else 0; 0.5: two per GPU
    scale_lr: bool = True  # Fig. 7: lr scaled linearly with a swept batch_size

    def validate(self) -> None:
        entry_of(self.model)
        for name, value, choices in (("search", self.search, SEARCHES),
                                     ("scheduler", self.scheduler, SCHEDULERS)):
            if value not in choices:
                raise ValueError(f"tune.{name} must be one of {', '.join(choices)}, got "
                                 f"{value!r}")
        metric_mode("x", self.mode)
        if self.samples < 0 or self.grid_points < 2 or self.grace_period < 1:
            raise ValueError("tune: samples >= 0, grid_points >= 2, grace_period >= 1 "
                             "expected")
        if self.reduction_factor < 2 or self.max_concurrent < 0:
            raise ValueError("tune: reduction_factor >= 2 and max_concurrent >= 0 expected")
        if self.trial_cpus <= 0:
            raise ValueError(f"tune.trial_cpus must be > 0 (Ray Tune refuses a trial with no "
                             f"CPU), got {self.trial_cpus}")
        if self.sweep and ("/" in self.sweep or self.sweep.startswith(("_", "."))):
            raise ValueError(f"tune.sweep {self.sweep!r}: a plain folder name expected")
        if not isinstance(self.space, dict) or not isinstance(self.train, dict):
            raise ValueError("tune.space and tune.train must be mappings")


def load_tune_config(model: str, config_file: str | None = None, sets: list[str] | None = None,
                     **given: Any) -> TuneSweepConfig:
    """The sweep config from a YAML file and ``--set`` items: ``space.<param>=SPEC`` goes to
    the space, ``<trainer stage>.<key>=V`` (or ``train.<key>=V``) to the fixed trainer
    settings, anything else is a setting of the sweep itself."""
    entry = entry_of(model)
    space: dict[str, Any] = {}
    train: dict[str, Any] = {}
    plain: list[str] = []
    for item in sets or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        head, dot, rest = key.strip().partition(".")
        if not dot:
            plain.append(item)
        elif head == "space":
            space[rest] = text
        elif head in ("train", entry.stage):
            train[rest] = yaml.safe_load(text)
        else:
            raise ValueError(f"tune --set {key}: expected space.<param>=SPEC, "
                             f"{entry.stage}.<setting>=VALUE or a tune setting")
    cfg = C.load_config(TuneSweepConfig, config_file, plain, model=model, **given)
    cfg.space = {**cfg.space, **space}
    cfg.train = {**cfg.train, **train}
    cfg.validate()
    return cfg


# --------------------------------------------------------------------------------------------
# The plan: everything checked before any trial starts
# --------------------------------------------------------------------------------------------
@dataclass
class SweepPlan:
    entry: TrainerEntry
    sweep: str
    metric: str
    mode: str
    params: dict[str, Param]  # every parameter given a value by the sweep (fixed or swept)
    base: dict  # the trainer config every trial starts from (resolved, JSON-able)
    epochs: int
    num_samples: int
    trials: int | None  # known for grid searches
    scale_lr: bool = True

    @property
    def swept(self) -> list[Param]:
        return [p for p in self.params.values() if p.swept]


def plan_sweep(cfg: TuneSweepConfig) -> SweepPlan:
    """Resolve and check a sweep: metric, parameter names, ranges, every listed value and
    range end against the trainer's own config validation. Raises ValueError naming the
    offender; nothing runs."""
    cfg.validate()
    entry = entry_of(cfg.model)
    metric = check_metric(entry, cfg.metric)
    mode = metric_mode(metric, cfg.mode)
    cls = entry.config_class()
    base_cfg = make_trainer_config(cls, {**entry.fixed, **cfg.train}, where=entry.stage)
    base = _jsonable(asdict(base_cfg))
    specs = dict(cfg.space) if cfg.space else {}
    for name in cfg.params:
        if name in specs:
            continue
        if name not in entry.space:
            parse_space({name: "x"}, cls)  # unknown names fail here with the field list
            raise ValueError(f"tune.params: {name} has no default range; give one with "
                             f"--set space.{name}=SPEC")
        specs[name] = entry.space[name]
    if not specs:
        specs = dict(entry.space)
    params = parse_space(specs, cls)
    if not any(p.swept for p in params.values()):
        raise ValueError(f"tune {cfg.model}: nothing to sweep (every value of "
                         f"{', '.join(params)} is fixed)")
    for p in params.values():  # every listed value and range end builds a valid config
        if p.name == FAIL_PARAM:
            continue
        for v in p.end_values():
            try:
                make_trainer_config(cls, {**base, p.name: v}, where=entry.stage)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"space.{p.name}={p.describe()}: value {encode_value(v)!r} "
                                 f"is refused: {exc}") from None
    epochs = int(base["epochs"])
    if cfg.scheduler == "asha" and cfg.grace_period > epochs:
        raise ValueError(f"tune.grace_period {cfg.grace_period} exceeds the trainer's epochs "
                         f"{epochs}")
    grid = cfg.search == "grid"
    sampled = [p for p in params.values() if not grid and p.kind not in ("grid", "fixed")]
    # Samples: repeats of the grid when nothing is sampled, else trials drawn (each repeating
    # the grid of any grid parameters).
    num_samples = cfg.samples or (8 if sampled else 1)
    trials = None
    if not sampled:
        trials = num_samples * math.prod(len(p.points(cfg.grid_points)) for p in
                                         params.values() if p.kind != "fixed")
    if cfg.sweep:
        sweep = cfg.sweep
    elif specs == entry.space:
        sweep = "default"
    else:
        sweep = _default_name([p for p in params.values() if p.swept])
    return SweepPlan(entry, sweep, metric, mode, params, base, epochs, num_samples, trials,
                     cfg.scale_lr)


def make_trainer_config(cls: type, values: dict, where: str):
    """A trainer config from plain values, coerced and validated as ``--set`` would be."""
    hints = typing.get_type_hints(cls)
    given = {k: v if v is None or k not in hints else shape_value(f"{where}.{k}", v, hints[k])
             for k, v in values.items()}
    return C.load_config(cls, None, None, **given)


def trial_values(plan: SweepPlan, params: dict) -> dict:
    """The trainer settings of one trial: the sampled values, decoded, plus the learning
    rate scaled linearly with a swept batch size (Fig. 7, after Goyal et al.)."""
    hints = typing.get_type_hints(plan.entry.config_class())
    values = {k: shape_value(f"space.{k}", v, hints[k]) for k, v in params.items()
              if k != FAIL_PARAM}
    if (plan.scale_lr and "batch_size" in plan.params and plan.params["batch_size"].swept
            and "lr" not in plan.params and "lr" in plan.base):
        values["lr"] = plan.base["lr"] * values["batch_size"] / plan.base["batch_size"]
    return values


def _default_name(swept: list[Param]) -> str:
    name = "-".join(sorted(p.name for p in swept if p.name != FAIL_PARAM)) or "sweep"
    return name if len(name) <= 48 else f"space-{stable_hash(name)[:8]}"


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=list))


# --------------------------------------------------------------------------------------------
# Ray: the trial function and the Tuner
# --------------------------------------------------------------------------------------------
def _trial(params: dict, setup: dict) -> None:
    """One trial (runs in a Tune actor): build the trainer's TorchTrainer with this trial's
    values and fit it; every epoch's report reaches Tune through TuneReportCallback."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    plan: SweepPlan = setup["plan"]
    run = Run(setup["run"])
    cls = plan.entry.config_class()
    values = trial_values(plan, params)
    cfg = make_trainer_config(cls, {**plan.base, **values, **setup["resources"]},
                              where=plan.entry.stage)
    trial_id = ray.tune.get_context().get_trial_id()
    share = setup["gpu_share"]
    trainer, _name = plan.entry.load().build_trainer(
        run, cfg, fail_after_epoch=params.get(FAIL_PARAM), callbacks=[TuneReportCallback()],
        storage_path=setup["train_storage"], name=trial_id,
        gpus_per_worker=share if share not in (0, 1) else None)  # a share: trials per GPU
    trainer.fit()


def _trial_dirname(trial) -> str:
    return trial.trial_id


def param_space(plan: SweepPlan, search: str, grid_points: int) -> dict:
    """Tune's search space: grid parameters enumerate, the others are sampled per trial."""
    from ray import tune

    space: dict[str, Any] = {}
    for p in plan.params.values():
        if p.kind == "fixed":
            space[p.name] = encode_value(p.values[0])
        elif p.kind == "grid" or search == "grid":
            space[p.name] = tune.grid_search([encode_value(v) for v in p.points(grid_points)])
        elif p.kind == "choice":
            space[p.name] = tune.choice([encode_value(v) for v in p.values])
        elif p.kind == "uniform":
            space[p.name] = tune.uniform(p.low, p.high)
        elif p.kind == "loguniform":
            space[p.name] = tune.loguniform(p.low, p.high)
        else:
            space[p.name] = tune.randint(int(p.low), int(p.high) + 1)
    return space


def _resources(cfg: TuneSweepConfig, plan: SweepPlan) -> tuple[dict, float, int]:
    """(trainer resource settings, GPU share per worker, trials at once): GPUs where the
    cluster has them; as many trials at once as its CPUs hold (at most ``max_concurrent``).
    A trial larger than the cluster is refused at once, unless ``wait_for_cluster``."""
    import ray

    total = ray.cluster_resources()
    gpus = cfg.gpus_per_trial
    if gpus < 0:
        gpus = 1.0 if total.get("GPU", 0) > 0 else 0.0
    stage = plan.entry.stage
    workers = int(plan.base["workers"])
    cpus = total.get("CPU", 0)
    demand = cfg.trial_cpus + workers * float(plan.base["cpus_per_worker"])
    concurrent = trials_at_once(cfg.max_concurrent, cpus, demand, gpus, total.get("GPU", 0))
    if concurrent == 0:
        text = (f"tune: a trial needs {demand:g} CPUs (tune.trial_cpus {cfg.trial_cpus:g} + "
                f"{stage}.workers {workers} x {stage}.cpus_per_worker "
                f"{plan.base['cpus_per_worker']}) and the cluster has {cpus:g}")
        if not cfg.wait_for_cluster:
            raise ValueError(f"{text}: lower them (e.g. --set {stage}.workers=1 --set "
                             f"{stage}.cpus_per_worker={max(cpus - cfg.trial_cpus, 0.25):g}), "
                             f"or --set wait_for_cluster=true on a cluster that will grow")
        logger.warning(f"{text} now: trials wait until it grows")
        concurrent = cfg.max_concurrent or 1
    elif gpus > 0 and total.get("GPU", 0) < gpus:
        logger.info(f"tune: warning: {gpus:g} GPU per trial asked, the cluster has "
                    f"{total.get('GPU', 0):g} now")
    return {"use_gpu": gpus > 0}, (gpus / workers if gpus > 0 else 0.0), concurrent


def trials_at_once(max_concurrent: int, cpus: float, demand: float, gpus: float = 0.0,
                   cluster_gpus: float = 0.0) -> int:
    """How many trials fit at once: the CPUs' count of whole trials (and the GPUs' with a GPU
    per trial), capped at ``max_concurrent`` (0: no cap). 0: not even one fits."""
    fit = int(cpus // demand + 1e-9) if demand > 0 else max_concurrent or 1
    if gpus > 0 and cluster_gpus > 0:
        fit = min(fit, int(cluster_gpus // gpus + 1e-9) or 1)
    return min(fit, max_concurrent) if max_concurrent else fit


def _live_placement_groups() -> dict[str, list[dict]]:
    """Every placement group not removed: id -> its bundles."""
    from ray.util import placement_group_table

    return {pg_id: [dict(b) for _, b in sorted(v["bundles"].items())]
            for pg_id, v in placement_group_table().items() if v["state"] != "REMOVED"}


class _FreeStoppedTrainWorkers:
    """Ray 2.60 (Train V2 under Tune): Tune stops a trial (ASHA at a rung) by killing its actor
    and the Train controller with it. The workers' placement group, which the controller made,
    belongs to the job and stays reserved; Train's PlacementGroupCleaner would remove it, but it
    asks the State API, which a local instance without a dashboard does not have. On a small
    machine the next trial then waits for CPUs that never come back ("The worker group startup
    timed out", forever). So after every trial, while no other trial runs, this removes the
    placement groups made during the sweep that have a Train worker group's shape."""

    def __init__(self, worker_bundle: dict, workers: int, trial_bundle: dict):
        self.shape = [{k: float(v) for k, v in worker_bundle.items()}] * workers
        self.safe = self.shape != [{k: float(v) for k, v in trial_bundle.items()}]
        self.before: set[str] = set()

    def setup(self, **info) -> None:
        self.before = set(_live_placement_groups()) if self.safe else set()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._free(trials, trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._free(trials, trial)

    def _free(self, trials: list, ended) -> None:
        from ray._raylet import PlacementGroupID
        from ray.util.placement_group import PlacementGroup, remove_placement_group

        if not self.safe or any(t is not ended and t.status == "RUNNING" for t in trials):
            return
        for pg_id, bundles in _live_placement_groups().items():
            if pg_id not in self.before and bundles == self.shape:
                logger.info(f"tune: freeing the stopped trial {ended.trial_id}'s Train workers "
                            f"(placement group {pg_id[:8]})")
                try:  # its controller may be removing it at the same moment
                    remove_placement_group(PlacementGroup(PlacementGroupID(
                        bytes.fromhex(pg_id))))
                except Exception as exc:  # noqa: BLE001 - gone already is what we want
                    logger.debug(f"tune: placement group {pg_id[:8]}: {exc}")


def free_stopped_train_workers(worker_bundle: dict, workers: int, trial_bundle: dict):
    """:class:`_FreeStoppedTrainWorkers` as a Tune callback."""
    from ray import tune

    cls = type("FreeStoppedTrainWorkers", (_FreeStoppedTrainWorkers, tune.Callback), {})
    return cls(worker_bundle, workers, trial_bundle)


def tune_model(run: Run, cfg: TuneSweepConfig, force: bool = False) -> dict:
    """Run one sweep; write its tables, plots and best config; return the manifest entry."""
    from stylehub_ray.ray_utils import ensure_ray

    plan = plan_sweep(cfg)
    model = cfg.model
    out = f"{TUNE_DIR}/{model}/{plan.sweep}"
    config = {"tune": _jsonable(asdict(cfg)), "metric": plan.metric, "mode": plan.mode,
              "space": {k: p.describe() for k, p in plan.params.items()}, "base": plan.base}
    inputs = _inputs(run)
    ensure_ray()
    # The trainer's own checks of its inputs (a student needs its teacher) before any trial.
    cls = plan.entry.config_class()
    plan.entry.load().build_trainer(run, make_trainer_config(cls, plan.base, plan.entry.stage))
    step = run.step("tune", f"{model}/{plan.sweep}", config=config, inputs=inputs,
                    outputs=[out], force=force)
    if step.done:
        logger.info(f"tune/{model}/{plan.sweep}: up to date; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    resources, gpu_share, concurrent = _resources(cfg, plan)
    ray_rel = f"{TUNE_DIR}/{model}/_ray/{plan.sweep}"
    run.delete(ray_rel)  # a sweep never resumes a previous one's trials
    setup = {"plan": plan, "run": run.uri, "resources": resources, "gpu_share": gpu_share,
             "train_storage": run.uri_of(f"{ray_rel}/train")}
    trainable = tune.with_resources(tune.with_parameters(_trial, setup=setup),
                                    {"CPU": cfg.trial_cpus})
    # stop_last_trials=False: a trial that reaches the last epoch ends by returning, after its
    # Train run has released its workers; a trial Tune stops is killed with its Train
    # controller, whose workers' placement group stays reserved (see free_stopped_train_workers).
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=plan.epochs,
                               grace_period=cfg.grace_period,
                               reduction_factor=cfg.reduction_factor, stop_last_trials=False)
                 if cfg.scheduler == "asha" else FIFOScheduler())
    worker_bundle = {"CPU": float(plan.base["cpus_per_worker"])}
    if resources["use_gpu"]:
        worker_bundle["GPU"] = gpu_share if 0 < gpu_share < 1 else 1.0
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(plan, cfg.search, cfg.grid_points),
        tune_config=tune.TuneConfig(
            metric=plan.metric, mode=plan.mode, scheduler=scheduler,
            search_alg=BasicVariantGenerator(random_state=cfg.seed, max_concurrent=concurrent),
            max_concurrent_trials=concurrent,
            num_samples=plan.num_samples, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name="tune", storage_path=run.uri_of(ray_rel), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0),
                                  callbacks=[free_stopped_train_workers(
                                      worker_bundle, int(plan.base["workers"]),
                                      {"CPU": cfg.trial_cpus})]),
    )
    shown = ", ".join(f"{p.name}={p.describe()}" for p in plan.swept)
    logger.info(f"tune/{model}/{plan.sweep}: {plan.trials or plan.num_samples} trials of {shown}; "
                f"{plan.metric} ({plan.mode}), {cfg.search} search, {cfg.scheduler}, "
                f"{plan.epochs} epochs max, {concurrent} at once")
    with step:
        with step.time("sweep_s"):
            grid = tuner.fit()
        from stylehub_ray.tune.results import collect, write_results

        trials, history = collect(grid, plan)
        best = write_results(run, step.tmp(out), plan, trials, history)
        n = trials["status"].value_counts().to_dict()
        step.counts = {"trials": {"total": len(trials), **{k.lower(): int(v)
                                                            for k, v in n.items()}}}
        step.extra["best"] = best and {k: best[k] for k in ("trial_id", "value", "params")}
    run.delete(ray_rel)
    _delete_if_empty(run, posixpath.dirname(ray_rel))
    if best:
        run.write_json(f"{TUNE_DIR}/{model}/best.json", best)
    from stylehub_ray.tune.results import format_trials

    for line in format_trials(trials, plan):
        logger.info(line)
    if best:
        logger.info(f"tune/{model}/{plan.sweep}: best {plan.metric} {best['value']:.4f} "
                    f"({best['trial_id']}: {best['params']}); `stylehub train {model} --run "
                    f"{run.uri} --set config=best` trains it")
    else:
        logger.info(f"tune/{model}/{plan.sweep}: no trial finished an epoch; no best config")
    return run.entry("tune", f"{model}/{plan.sweep}")


def _delete_if_empty(run: Run, rel: str) -> None:
    import pyarrow.fs as pafs

    sel = pafs.FileSelector(run.path(rel), allow_not_found=True)
    if not run.fs.get_file_info(sel):
        run.delete(rel)


def _inputs(run: Run) -> dict[str, str]:
    """What a sweep computes from: every completed step of the run but sweeps and
    evaluations (the trainer's own inputs are among them)."""
    steps = run.manifest()["steps"]
    return {k: e["fingerprint"] for k, e in sorted(steps.items())
            if e.get("status") == "complete" and "fingerprint" in e
            and e.get("stage") != "tune" and not str(e.get("stage", "")).startswith("evaluate")}


def read_best(run: Run, model: str, sweep: str = "") -> dict:
    """The best config a sweep wrote: the latest sweep's (``tune/<model>/best.json``) or a
    named sweep's."""
    entry_of(model)
    if sweep:
        rel = f"{TUNE_DIR}/{model}/{sweep}"
        if not run.is_complete(rel):
            raise FileNotFoundError(f"{run.uri}/{rel}: no complete sweep (run `stylehub tune "
                                    f"{model} --run {run.uri} --set sweep={sweep}`)")
        return run.read_json(f"{rel}/best_config.json")
    rel = f"{TUNE_DIR}/{model}/best.json"
    if not run.exists(rel):
        raise FileNotFoundError(f"{run.uri}/{rel}: no sweep has a best config yet (run "
                                f"`stylehub tune {model} --run {run.uri}` first)")
    return run.read_json(rel)


def expand_config_sets(run_uri: str, model: str, sets: list[str]) -> list[str]:
    """``stylehub train <model> --set config=best[:SWEEP]``: the best config's settings as
    ``key=value`` items, placed before the other ``--set`` items (which override them)."""
    chosen = [s for s in sets if s.split("=", 1)[0].strip() == "config"]
    rest = [s for s in sets if s.split("=", 1)[0].strip() != "config"]
    if not chosen:
        return sets
    if len(chosen) > 1:
        raise ValueError(f"--set config given {len(chosen)} times")
    value = chosen[0].split("=", 1)[1].strip()
    name, _, sweep = value.partition(":")
    if name != "best":
        raise ValueError(f"--set config={value}: expected best or best:SWEEP")
    best = read_best(Run(run_uri), model, sweep)
    items = [f"{k}={json.dumps(v)}" for k, v in best["config"].items()
             if k not in RESOURCE_FIELDS]
    return items + rest

