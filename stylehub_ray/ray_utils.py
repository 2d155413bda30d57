"""Attach to (or start) a Ray instance the same way from the CLI, the jobs and the tests."""

from __future__ import annotations

import os

# Offline machines: usage stats would try to phone home; auth tokens must be explicit (a first
# ray.init() writes ~/.ray/auth_token, after which `ray status` / `ray job submit` need
# RAY_AUTH_MODE=token).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")


def ensure_ray(num_cpus: int | None = None) -> None:
    """Connect to RAY_ADDRESS when set (a cluster or a test session's head), else start a local
    instance. Idempotent."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    kwargs: dict = {"include_dashboard": False, "log_to_driver": True}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = os.environ.get("RAY_DATA_DISABLE_PROGRESS_BARS") != "1"
