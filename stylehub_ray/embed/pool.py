"""How big an encoder actor pool to start, decided from the resources Ray reports.

One decision for images and text, so both take GPUs the same way: with GPUs in the cluster
every actor takes one GPU (and the larger GPU batch); without, actors take CPUs and torch
inside each actor gets as many threads as the pool leaves it. The same code path runs either
way; only these numbers change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PoolPlan:
    actors: int
    num_gpus: float  # per actor
    num_cpus: float  # per actor (what Ray reserves)
    threads: int  # torch threads per actor
    batch_size: int
    device: str  # "cuda" or "cpu"

    def ray_args(self) -> dict:
        """Keyword arguments for ``Dataset.map_batches`` with a callable class: a fixed-size
        actor pool (every actor loads the model once, so autoscaling it buys nothing)."""
        from ray.data import ActorPoolStrategy

        return {"compute": ActorPoolStrategy(size=self.actors),
                "num_gpus": self.num_gpus or None, "num_cpus": self.num_cpus,
                "batch_size": self.batch_size}

    def as_dict(self) -> dict:
        return asdict(self)


def plan_pool(actors: int | None, cpu_batch_size: int, gpu_batch_size: int,
              threads: int | None = None, resources: dict | None = None) -> PoolPlan:
    """The pool for the current cluster (``resources`` defaults to ``ray.cluster_resources()``).

    ``actors=None`` means one per GPU, or on CPU one actor per 8 CPUs: torch already uses the
    cores it is given, and few actors with many threads beat many that split them (fewer
    model copies, larger matrix products).
    Each CPU actor reserves one logical CPU so that the decode tasks beside it can be scheduled
    (an actor that reserved every CPU would starve them and stall the pipeline); its torch
    threads are set explicitly because Ray's default (OMP_NUM_THREADS = reserved CPUs) would
    leave it one thread.
    """
    if resources is None:
        import ray

        resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if gpus >= 1:
        n = min(actors or gpus, gpus)
        # Decode runs in CPU tasks; leave the GPU actors a couple of cores to feed the device.
        per = max(1, min(4, cpus // (2 * n)))
        return PoolPlan(n, 1.0, float(per), threads or per, gpu_batch_size, "cuda")
    n = max(1, actors or cpus // 8)
    per_threads = threads or max(1, min(_physical_cores(cpus), math.floor(cpus / n)))
    return PoolPlan(n, 0.0, 1.0, per_threads, cpu_batch_size, "cpu")


def _physical_cores(logical_cpus: int) -> int:
    """Cores torch can really use here: Ray's logical CPUs may exceed the machine's (the test
    head advertises 4 on 2 cores), and oversubscribing torch threads slows it down."""
    import os

    return max(1, min(logical_cpus, os.cpu_count() or logical_cpus))
