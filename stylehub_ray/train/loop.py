"""The one Ray Train loop every model trains with, and the one trainer builder.

A model gives the loop a :class:`Recipe` (``train/<model>.py``, no Ray inside): its data and
model (:meth:`Recipe.setup`), its optimizer and schedule, one training epoch, one validation,
and which reported metric picks the published epoch. The loop does the rest, the same for
every model:

- context: rank, world size, device; ``torch`` threads and the seed (before the model is
  built, so the same seed builds the same weights);
- DDP through ``ray.train.torch.prepare_model`` (``find_unused_parameters`` where a loss leaves
  parameters unused);
- resume: a restarted run continues from the latest checkpoint (``ray.train.get_checkpoint``):
  weights, optimizer, schedule, each worker's RNG state and the history, so it goes on as the
  uninterrupted run would;
- every epoch, every worker calls ``ray.train.report`` with the recipe's metrics (Train V2
  needs the same number of reports from each); rank 0 attaches a checkpoint
  (:func:`stylehub_ray.models.artifacts.write_checkpoint`);
- the best epoch: the first epoch with the highest ``select_by`` (the last epoch when a model
  selects none). Ray's ``CheckpointConfig`` keeps that checkpoint and the latest (for resume)
  and nothing else; :func:`fit` takes the best from the Result and converts it to the published
  model (:func:`stylehub_ray.models.artifacts.from_checkpoint`);
- ``fail_after_epoch``: the workers crash after reporting that epoch (resume tests);
- a lost worker: ``FailureConfig(max_failures)`` (the trainer config's ``max_failures``)
  restarts the worker group from the latest checkpoint; ``Progress.restarts`` counts it and
  the published model's meta (hence the stage's manifest counts) records it.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from stylehub_ray.run import stable_hash

# The metric Ray Train keeps the best checkpoint by. Ray breaks ties towards the later report
# and ranks NaN lowest; our models keep the first of tied epochs. So the loop reports the
# selection as a rank: the n-th epoch that beats every earlier one reports n, any other
# epoch 0; the checkpoint with the highest rank is the first epoch with the best metric.
SELECTION = "selection"
# Reported too, not recorded in the history: the spread (max - min) of the workers' sums of
# their parameters, 0.0 when DDP keeps them in sync (and with one worker).
WEIGHTS_SPREAD = "weights_spread"


@dataclass
class Worker:
    """Where a recipe runs: this worker's rank, the world size, its device and its shard of
    the trainer's ``train`` dataset (a ``DataIterator``; None when the trainer has none)."""

    rank: int
    world: int
    device: Any
    shard: Any = None


class Optimizers:
    """Several torch optimizers over disjoint parameter groups, stepped as one (e.g.
    ``SparseAdam`` for embedding tables with sparse gradients and ``Adam`` for the rest). Its
    state dict holds each one's under its position, so a checkpoint resumes them all."""

    def __init__(self, *optimizers):
        self.optimizers = [o for o in optimizers if o is not None]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def state_dict(self) -> dict:
        return {str(i): o.state_dict() for i, o in enumerate(self.optimizers)}

    def load_state_dict(self, state: dict) -> None:
        if sorted(state) != [str(i) for i in range(len(self.optimizers))]:
            raise ValueError(f"optimizer state of {sorted(state)} cannot resume "
                             f"{len(self.optimizers)} optimizer(s)")
        for i, o in enumerate(self.optimizers):
            o.load_state_dict(state[str(i)])


@dataclass
class Recipe:
    """What a model gives the loop: Ray-free pieces, subclassed per model in
    ``train/<model>.py``. ``run`` is the run's URI and ``cfg`` the model's trainer config
    (with ``epochs``, ``seed``, ``workers``, ``cpus_per_worker``, ``use_gpu``). The instance is
    pickled to every worker, where :meth:`setup` loads the data."""

    run: str
    cfg: Any

    model: ClassVar[str] = ""  # the model's name in stylehub_ray.models.artifacts.MODELS
    # The metric (highest wins, the first of ties) that picks the published epoch; None: the
    # last epoch.
    select_by: ClassVar[str | None] = None
    # DDP: a loss may leave parameters without gradients.
    find_unused_parameters: ClassVar[bool] = False

    # -- set up on each worker -----------------------------------------------------------
    def setup(self, worker: Worker):
        """Load the data; build the model (the torch seed is set); return it, unwrapped."""
        raise NotImplementedError

    def spec(self):
        """The spec of the model :meth:`setup` built (saved beside every checkpoint)."""
        raise NotImplementedError

    def optimizer(self, model):
        raise NotImplementedError

    def scheduler(self, optimizer):
        """A per-epoch learning-rate schedule (stepped after each epoch's training), or None."""
        return None

    # -- each epoch ----------------------------------------------------------------------
    def train_epoch(self, model, optimizer, epoch: int) -> dict:
        """One pass over the data (``model`` is the DDP wrapper with several workers);
        returns the training metrics of this worker."""
        raise NotImplementedError

    def validate(self, model, epoch: int) -> dict:
        """Validation metrics of the unwrapped model; every worker must report the same."""
        return {}

    def best_metrics(self, metrics: dict) -> dict:
        """What the published model records as its best epoch's metrics (``meta["best"]``)."""
        return dict(metrics)

    def stop_early(self, epoch: int, best_epoch: int) -> bool:
        return False

    # -- state a checkpoint carries beyond weights and optimizer --------------------------
    def worker_state(self) -> dict:
        """This worker's own state to resume with (RNG generators), tensors and plain data."""
        return {}

    def load_worker_state(self, state: dict) -> None:
        pass

    def facts(self) -> dict:
        """What rank 0 learnt about the data that the published model records (JSON-able;
        1-D numpy arrays are stored as Parquet)."""
        return {}

    # -- resources, from the trainer config ----------------------------------------------
    @property
    def epochs(self) -> int:
        return int(self.cfg.epochs)

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def threads(self) -> int:
        return max(1, int(self.cfg.cpus_per_worker))


@dataclass
class Progress:
    """The loop's own state, saved in every checkpoint (``progress.json``)."""

    epoch: int = -1  # the last epoch finished
    history: list | None = None
    best_epoch: int = -1
    best_score: float | None = None
    best_metrics: dict | None = None
    improvements: int = 0
    resumed_at: int = -1
    restarts: int = 0  # times the workers started again from a checkpoint (a lost worker)

    def record(self, recipe: Recipe, metrics: dict) -> int:
        """Add an epoch's metrics; returns its selection rank (see :data:`SELECTION`)."""
        self.epoch = metrics["epoch"]
        self.history = [*(self.history or []), metrics]
        if recipe.select_by is None:
            score = float(self.epoch)  # the last epoch is the best
        else:
            value = metrics.get(recipe.select_by)
            score = float(value) if value is not None and math.isfinite(value) else -math.inf
        if self.best_score is None or score > self.best_score:
            self.best_epoch, self.best_score = self.epoch, score
            self.best_metrics = recipe.best_metrics(metrics)
            self.improvements += 1
            return self.improvements
        return 0

    def to_dict(self, facts: dict) -> dict:
        return {"epoch": self.epoch, "history": self.history or [],
                "best_epoch": self.best_epoch, "best_score": self.best_score,
                "best_metrics": self.best_metrics, "improvements": self.improvements,
                "resumed_at": self.resumed_at, "restarts": self.restarts, "facts": facts}

    @classmethod
    def resumed(cls, d: dict) -> Progress:
        return cls(epoch=d["epoch"], history=list(d["history"]), best_epoch=d["best_epoch"],
                   best_score=d["best_score"], best_metrics=d["best_metrics"],
                   improvements=d["improvements"], resumed_at=d["epoch"] + 1,
                   restarts=d.get("restarts", 0) + 1)


# --------------------------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------------------------
def _train_loop(config: dict) -> None:
    """Ray Train worker: the recipe's epochs with per-epoch reports, checkpoints and resume."""
    import ray.train
    import ray.train.torch
    import torch

    from stylehub_ray.models.artifacts import read_checkpoint, write_checkpoint

    recipe: Recipe = config["recipe"]
    ctx = ray.train.get_context()
    shard = ray.train.get_dataset_shard("train") if config["has_data"] else None
    worker = Worker(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device(),
                    shard)
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)

    core = recipe.setup(worker)
    ddp = {"find_unused_parameters": True} if recipe.find_unused_parameters else None
    model = ray.train.torch.prepare_model(core, parallel_strategy_kwargs=ddp)
    optimizer = recipe.optimizer(model)
    scheduler = recipe.scheduler(optimizer)

    progress = Progress()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # resume: the weights, optimizer, schedule and RNG state after that epoch
        with checkpoint.as_directory() as d:
            weights, saved, train_state = read_checkpoint(d)
        core.load_state_dict(weights)
        optimizer.load_state_dict(train_state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(train_state["scheduler"])
        states = train_state["workers"]
        recipe.load_worker_state(states[worker.rank] if worker.rank < len(states) else
                                 states[0])
        progress = Progress.resumed(saved)

    for epoch in range(progress.epoch + 1, recipe.epochs):
        t0 = time.perf_counter()
        metrics = {"epoch": epoch, **recipe.train_epoch(model, optimizer, epoch)}
        if scheduler is not None:
            scheduler.step()
        metrics.update(recipe.validate(core, epoch))
        metrics["epoch_s"] = round(time.perf_counter() - t0, 3)
        rank = progress.record(recipe, metrics)
        states, spread = _gather(recipe.worker_state(), core, worker.world)
        report = {**metrics, SELECTION: rank, WEIGHTS_SPREAD: spread}
        if worker.rank == 0:
            facts = recipe.facts()
            with tempfile.TemporaryDirectory() as d:
                write_checkpoint(
                    d, recipe.spec(), core.state_dict(),
                    progress.to_dict({k: v for k, v in facts.items()
                                      if not isinstance(v, np.ndarray)}),
                    {"optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict() if scheduler is not None else None,
                     "workers": states},
                    {k: v for k, v in facts.items() if isinstance(v, np.ndarray)})
                ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report(report)  # every worker reports once per epoch (Train V2)
        fail = config.get("fail_after_epoch")
        if fail is not None and epoch >= fail:
            raise RuntimeError(f"injected failure after epoch {epoch} (resume test)")
        if recipe.stop_early(epoch, progress.best_epoch):
            break  # every worker sees the same validation, so all stop here


def _gather(state: dict, model, world: int) -> tuple[list[dict], float]:
    """(every worker's state in rank order, which rank 0's checkpoint carries; the spread of
    the workers' parameter sums)."""
    if world == 1:
        return [state], 0.0
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        total = float(sum(p.sum(dtype=torch.float64) for p in model.parameters()))
    out: list = [None] * world
    dist.all_gather_object(out, (state, total))
    sums = [s for _, s in out]
    return [st for st, _ in out], max(sums) - min(sums)


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------
def ray_train_name(variant: str, config: dict, inputs: dict) -> str:
    """The Ray Train run's name: the same config and inputs find the same folder, so a
    crashed step resumes from its last checkpoint."""
    return f"{variant}-{stable_hash(config)}-{stable_hash(inputs)[:8]}"


# Worker-group restarts a fit survives when a trainer config sets none (``max_failures``).
DEFAULT_MAX_FAILURES = 3


def max_failures_of(cfg, fail_after_epoch: int | None = None) -> int:
    """A trainer config's ``max_failures`` (default :data:`DEFAULT_MAX_FAILURES`); 0 with an
    injected failure, so a resume test's crash ends the fit as it means to."""
    if fail_after_epoch is not None:
        return 0
    return int(getattr(cfg, "max_failures", DEFAULT_MAX_FAILURES))


def build_trainer(recipe: Recipe, *, name: str, storage_path: str, datasets: dict | None = None,
                  fail_after_epoch: int | None = None, callbacks=(),
                  gpus_per_worker: float | None = None, max_failures: int | None = None):
    """The TorchTrainer of ``recipe``: ``recipe.cfg.workers`` workers with
    ``cpus_per_worker`` CPUs each and a GPU each with ``use_gpu`` (``gpus_per_worker``: a share
    of one, two Tune trials per GPU); Ray Train's folder ``storage_path/name``; ``datasets``
    (``train``: sharded across the workers, materialize it first: on 2 CPUs a 2-worker
    trainer over a lazy dataset hangs); ``callbacks`` (Tune's report callback);
    ``max_failures`` worker-group restarts (``FailureConfig``: a lost worker, an
    out-of-memory kill, restarts the group from the latest checkpoint; 0: a failure ends the
    fit; default: :func:`max_failures_of` the recipe's config)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from stylehub_ray.ray_utils import ensure_ray

    ensure_ray()
    cfg = recipe.cfg
    resources = {"CPU": cfg.cpus_per_worker}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    return TorchTrainer(
        _train_loop,
        train_loop_config={"recipe": recipe, "fail_after_epoch": fail_after_epoch,
                           "has_data": bool(datasets and "train" in datasets)},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.workers, use_gpu=bool(cfg.use_gpu or gpus_per_worker),
            resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=SELECTION,
                checkpoint_score_order="max"),
            failure_config=ray.train.FailureConfig(
                max_failures=max_failures_of(cfg, fail_after_epoch) if max_failures is None
                else max_failures),
            callbacks=list(callbacks)),
        datasets=datasets or None,
    )


def fit(trainer, model: str, meta: dict):
    """Run ``trainer``; (the published model of its best epoch, Ray Train's folder).
    ``meta`` (variant, config, ...) goes into the model's metadata."""
    from stylehub_ray.models.artifacts import from_checkpoint

    result = trainer.fit()
    if result.checkpoint is None or not result.best_checkpoints:
        raise RuntimeError(f"{model}: the run reported no checkpoint")
    best = result.get_best_checkpoint(SELECTION, "max")
    with best.as_directory() as b, result.checkpoint.as_directory() as latest:
        return from_checkpoint(model, b, latest, meta), result.path
