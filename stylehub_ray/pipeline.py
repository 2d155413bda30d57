"""`stylehub pipeline`: every stage that exists, in order, each skipped when it is up to date."""

from __future__ import annotations

from stylehub_ray.config import IngestConfig, PipelineConfig
from stylehub_ray.data.ingest import ingest
from stylehub_ray.run import Run


def run_pipeline(source: str, run_uri: str, cfg: PipelineConfig, ingest_cfg: IngestConfig,
                 force: bool = False, log=print) -> dict:
    """Run the stages in ``cfg.stages`` on ``source`` into ``run_uri``; returns the manifest."""
    run = Run(run_uri)
    for stage in cfg.stages:
        if stage == "ingest":
            ingest(source, run, ingest_cfg, force=force, log=log)
        else:
            raise ValueError(f"pipeline.stages: unknown stage {stage!r}; known: ingest")
    log_run_summary(run, log)
    return run.manifest()


def log_run_summary(run: Run, log=print) -> None:
    """The summary table `make demo` ends with: what each stage did, its counts and time."""
    steps = run.manifest()["steps"]
    log("")
    log(f"run {run.uri}")
    log(f"{'stage':12s} {'status':10s} {'time s':>8s}  counts")
    for key, entry in steps.items():
        counts = entry.get("counts", {})
        parts = []
        for table, c in counts.items():
            if isinstance(c, dict) and "read" in c:
                parts.append(f"{table} {c['kept']:,}/{c['read']:,} kept, "
                             f"{c['quarantined']:,} quarantined")
            elif isinstance(c, dict):
                parts.append(f"{table} " + ", ".join(f"{k} {v:,}" for k, v in c.items()))
        total = entry.get("timings", {}).get("total_s", "")
        log(f"{key:12s} {entry.get('status', ''):10s} {total:>8}  " + "; ".join(parts))
    gen = steps.get("ingest", {}).get("generator")
    if gen:
        log(f"generated data: generator {gen['version']}, parameters {gen['params_hash']}")
