"""The ranker's LightGBM lambdarank fit on Ray Train (``ray.train.lightgbm.LightGBMTrainer``).

Each worker gets its shard of the training rows: whole customers (lambdarank's query groups
are (week, customer), and a group must stay on one worker), sharded by ``customer_idx %
workers`` and put in the object store by the driver. Every worker gets the whole val set, so
the early-stopping metric (MAP@12 on val) is the same on every worker and all stop at the same
round. ``lightgbm.train`` runs with ``ray.train.lightgbm.get_network_params()`` (and the
data-parallel tree learner when there is more than one worker); rank 0 reports the booster as
a checkpoint. :func:`fit_plain` is the same fit without Ray (benchmarks).

The rows, their features and the stage live in ``stylehub_ray.eval.ranker``.
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

logger = logging.getLogger(__name__)

METRIC = "map@12"


def params_of(cfg: dict) -> dict:
    """LightGBM parameters from the stage config (a dict)."""
    return {"objective": "lambdarank", "metric": "map", "eval_at": [12],
            "learning_rate": cfg["learning_rate"], "num_leaves": cfg["num_leaves"],
            "min_data_in_leaf": cfg["min_data_in_leaf"],
            "feature_fraction": cfg["feature_fraction"], "bagging_seed": cfg["seed"],
            "feature_fraction_seed": cfg["seed"], "seed": cfg["seed"], "verbosity": -1,
            "num_threads": max(1, int(cfg["cpus_per_worker"])),
            "lambdarank_truncation_level": 20}


def shard_by_customer(customer_idx: np.ndarray, workers: int) -> list[np.ndarray]:
    """Row indices of each worker's shard: every row of a customer on the same worker."""
    owner = np.asarray(customer_idx, np.int64) % workers
    return [np.flatnonzero(owner == w) for w in range(workers)]


def groups_of(query: np.ndarray) -> np.ndarray:
    """Sizes of the runs of equal ``query`` ids (rows sorted by query): LightGBM's groups."""
    q = np.asarray(query)
    if len(q) == 0:
        return np.zeros(0, np.int64)
    bounds = np.flatnonzero(q[1:] != q[:-1]) + 1
    return np.diff(np.r_[0, bounds, len(q)]).astype(np.int64)


def _dataset(part: dict, features: list[str], reference=None):
    import lightgbm

    return lightgbm.Dataset(part["x"], label=part["y"], group=groups_of(part["query"]),
                            feature_name=features, reference=reference, free_raw_data=False)


def _train(params: dict, train: dict, val: dict | None, features: list[str], rounds: int,
           patience: int):
    """One ``lightgbm.train``: early stopping on val MAP@12 when ``val`` is given."""
    import lightgbm

    dtrain = _dataset(train, features)
    callbacks, valid = [], []
    if val is not None and len(val["y"]):
        valid = [_dataset(val, features, dtrain)]
        callbacks.append(lightgbm.early_stopping(patience, first_metric_only=True,
                                                 verbose=False))
    evals: dict = {}
    callbacks.append(lightgbm.record_evaluation(evals))
    booster = lightgbm.train(params, dtrain, num_boost_round=rounds, valid_sets=valid,
                             valid_names=["val"][:len(valid)], callbacks=callbacks)
    curve = [float(v) for v in evals.get("val", {}).get(METRIC, [])]
    return booster, curve


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker: fit on this worker's shard with LightGBM's network parameters; rank
    0 reports the booster (``model.txt``) as the checkpoint, every worker reports once."""
    import ray
    import ray.train
    import ray.train.lightgbm

    ctx = ray.train.get_context()
    rank, size = ctx.get_world_rank(), ctx.get_world_size()
    train = ray.get(config["shards"][rank])
    val = ray.get(config["val"]) if config["val"] is not None else None
    params = dict(config["params"]) | ray.train.lightgbm.get_network_params()
    if size > 1:
        params |= {"tree_learner": "data", "pre_partition": True}
    booster, curve = _train(params, train, val, config["features"], config["rounds"],
                            config["patience"])
    best = int(booster.best_iteration or booster.current_iteration())
    # After early stopping the returned booster holds the best round's trees only; the curve
    # has every round that ran.
    metrics = {"best_iteration": best, "rounds": max(len(curve), best),
               "val_map12": curve[best - 1] if curve else float("nan"), "curve": curve,
               "rows": int(len(train["y"]))}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            booster.save_model(os.path.join(folder, "model.txt"))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint)


def fit_ray(train: dict, val: dict | None, features: list[str], cfg: dict, storage_path: str,
            name: str) -> tuple[str, dict]:
    """Fit on Ray Train with ``cfg["workers"]`` workers: (model text, rank 0's metrics)."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.lightgbm import LightGBMTrainer

    from stylehub_ray.ray_utils import ensure_ray
    from stylehub_ray.train.loop import DEFAULT_MAX_FAILURES

    ensure_ray()
    shards = [ray.put({key: v[idx] for key, v in train.items()})
              for idx in shard_by_customer(train["customer_idx"], cfg["workers"])]
    trainer = LightGBMTrainer(
        train_loop_per_worker,
        train_loop_config={"shards": shards, "val": ray.put(val) if val is not None else None,
                           "features": features, "params": params_of(cfg),
                           "rounds": cfg["rounds"], "patience": cfg["patience"]},
        scaling_config=ScalingConfig(num_workers=cfg["workers"],
                                     resources_per_worker={"CPU": cfg["cpus_per_worker"]}),
        # A lost worker restarts the fit (the booster is reported once, at the end).
        run_config=RunConfig(storage_path=storage_path, name=name,
                             failure_config=FailureConfig(max_failures=cfg.get(
                                 "max_failures", DEFAULT_MAX_FAILURES))))
    result = trainer.fit()
    with result.checkpoint.as_directory() as folder, \
            open(os.path.join(folder, "model.txt")) as f:
        text = f.read()
    return text, dict(result.metrics)


def fit_plain(train: dict, val: dict | None, features: list[str], cfg: dict) -> tuple[str, dict]:
    """The same fit in this process, without Ray (the benchmark's peer)."""
    booster, curve = _train(params_of(cfg), train, val, features, cfg["rounds"],
                            cfg["patience"])
    best = int(booster.best_iteration or booster.current_iteration())
    return booster.model_to_string(), {"best_iteration": best, "curve": curve,
                                       "val_map12": curve[best - 1] if curve else float("nan"),
                                       "rows": int(len(train["y"]))}
