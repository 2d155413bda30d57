"""`stylehub ingest` for the Polyvore-U layout: outfits and items into ``raw/``.

The tuple files are small (a few hundred thousand rows at the release's size), so they are read
on the driver by ``polyvore.read_polyvore``, which keeps every rejected line with its reason;
this module publishes the tables through the run's manifest like the H&M ingest.
"""

from __future__ import annotations

import logging
import os

from stylehub_ray.config import IngestConfig, resolved
from stylehub_ray.data import polyvore
from stylehub_ray.run import Run, fingerprint_source

logger = logging.getLogger(__name__)

OUTPUTS = ["raw/outfits", "raw/outfit_items", "raw/quarantine"]


def ingest_polyvore(source: str, run: Run, cfg: IngestConfig, force: bool = False) -> dict:
    from stylehub_ray.data.ingest import _copy_tree, _write_parquet, log_summary

    if "://" in source:
        raise ValueError(f"{source}: Polyvore-U sources are read from a local folder for now")
    oracle_dir = os.path.join(source, "_oracle")
    has_oracle = os.path.isdir(oracle_dir)
    outputs = OUTPUTS + (["raw/oracle"] if has_oracle else [])
    inputs = {"source": source, "layout": "polyvore"}
    for name in sorted(os.listdir(source)):
        inputs[name] = fingerprint_source(os.path.join(source, name))
    step = run.step("ingest", config=resolved(cfg), inputs=inputs, outputs=outputs, force=force)
    if step.done:
        logger.info(f"ingest: {run.uri} is up to date with {source}; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    with step:
        with step.time("read_s"):
            tables = polyvore.read_polyvore(source)
        _write_parquet(tables.outfits, run, step.tmp("raw/outfits"))
        _write_parquet(tables.items, run, step.tmp("raw/outfit_items"))
        _write_parquet(tables.quarantine, run,
                       os.path.join(step.tmp("raw/quarantine"), "outfits"))
        counts: dict[str, dict] = {}
        totals = {kind: {"read": 0, "kept": 0, "quarantined": 0}
                  for kind in ("outfit_rows", "item_rows")}
        for src, (n, kept, quarantined) in polyvore.reconcile(tables).items():
            if n != kept + quarantined:
                raise RuntimeError(f"{src}: read {n} != kept {kept} + quarantined "
                                   f"{quarantined}: rows were lost; this is a bug")
            rel = os.path.relpath(src, source)
            counts[rel] = {"read": n, "kept": kept, "quarantined": quarantined}
            kind = "item_rows" if os.path.basename(src).startswith("image_list_") else (
                "outfit_rows")
            for key, value in zip(totals[kind], (n, kept, quarantined)):
                totals[kind][key] += value
        status = tables.items.column("status").to_pylist()
        step.counts = {**totals,
                       "images": {s: status.count(s) for s in ("present", "missing")}}
        step.extra["files"] = counts
        step.extra["sets"] = {s: {"variable_length": tables.variable_length.get(s, False)}
                              for s in tables.sets}
        if tables.absent_files:
            step.extra["absent_files"] = tables.absent_files
        if has_oracle:
            _copy_tree(oracle_dir, run, step.tmp("raw/oracle"))
    log_summary(step.counts)
    return run.entry("ingest")
