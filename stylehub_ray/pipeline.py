"""`stylehub pipeline`: every stage that exists, in order, each skipped when it is up to date."""

from __future__ import annotations

import logging

from stylehub_ray import registry
from stylehub_ray.run import Run

logger = logging.getLogger(__name__)


def run_pipeline(source: str, run_uri: str, configs: dict, force: bool = False) -> dict:
    """Run the stages in ``configs["pipeline"].stages`` on ``source`` into ``run_uri``, each
    with its config from ``configs[stage]`` (names as in :mod:`stylehub_ray.registry`); returns
    the manifest. A stage that does not apply to the source's layout (features on outfits) is
    skipped with a note."""
    from stylehub_ray.data.ingest import POLYVORE, detect_layout

    run = Run(run_uri)
    outfits = detect_layout(source) == POLYVORE
    for name in registry.expand_pipeline(configs["pipeline"].stages):
        stage = registry.stage(name)
        if stage.layout != registry.ANY and (stage.layout == registry.OUTFITS) != outfits:
            logger.info(f"{name}: not for {'outfit' if outfits else 'H&M'} data; skipped")
            continue
        fn = registry.resolve(stage.function)
        cfg = configs[name]
        if name == "ingest":
            fn(source, run, cfg, force=force)
        elif name == "pairs":
            fn(run, cfg, "text", force=force)  # the text pairs the contrastive model uses
        elif name == "train_fndcl":
            _fndcl_teacher_then_student(fn, run, cfg, force)
        else:
            fn(run, cfg, force=force)
    log_run_summary(run)
    return run.manifest()


def _fndcl_teacher_then_student(train_fndcl, run: Run, student, force: bool) -> None:
    """The N-pair teacher, then the FND-CL student (its loss from the train_fndcl config
    unless that names the teacher's)."""
    from dataclasses import replace

    train_fndcl(run, replace(student, stage="teacher", loss="npair"), force=force)
    loss = student.loss if student.loss in ("fnd", "fndcl") else "fndcl"
    train_fndcl(run, replace(student, stage="student", loss=loss), force=force)


def log_run_summary(run: Run) -> None:
    """The summary table `make demo` ends with: what each stage did, its counts and time."""
    steps = run.manifest()["steps"]
    logger.info("")
    logger.info(f"run {run.uri}")
    logger.info(f"{'stage':12s} {'status':10s} {'time s':>8s}  counts")
    for key, entry in sorted(steps.items(), key=lambda kv: kv[1].get("started", "")):
        counts = entry.get("counts", {})
        parts = []
        for table, c in counts.items():
            if isinstance(c, dict) and "read" in c:
                parts.append(f"{table} {c['kept']:,}/{c['read']:,} kept, "
                             f"{c['quarantined']:,} quarantined")
            elif isinstance(c, dict):
                parts.append(f"{table} " + ", ".join(
                    f"{k} {v:,}" if isinstance(v, (int, float)) else f"{k} {v}"
                    for k, v in c.items()))
        total = entry.get("timings", {}).get("total_s", "")
        logger.info(f"{key:12s} {entry.get('status', ''):10s} {total:>8}  " + "; ".join(parts))
    gen = steps.get("ingest", {}).get("generator")
    if gen:
        logger.info(f"generated data: generator {gen['version']}, parameters {gen['params_hash']}")
        log_oracle_summary(run)


def log_oracle_summary(run: Run, k: int = 12) -> dict | None:
    """For generated H&M data: the best achievable scores on the last week (the ceiling every
    model is measured against), beside last-week popularity, the simplest baseline."""
    from datetime import timedelta

    import numpy as np
    import pyarrow.compute as pc

    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.metrics import evaluate_ranking
    from stylehub_ray.synth.oracle import HMOracle

    if not run.is_complete("raw/transactions"):
        return None
    oracle = HMOracle.load(run)
    if oracle is None:
        return None
    tx = read_table(run, "raw/transactions", ["t_dat", "customer_idx", "article_idx"])
    end = pc.max(tx.column("t_dat")).as_py()
    start = end - timedelta(days=6)
    test = tx.filter(pc.field("t_dat") >= start).to_pandas()
    prior = tx.filter((pc.field("t_dat") < start)
                      & (pc.field("t_dat") >= start - timedelta(days=7))).to_pandas()
    truth = test.groupby("customer_idx").article_idx.apply(set)
    customers = truth.index.to_numpy()
    best = evaluate_ranking(oracle.topk(customers, start, end, k), list(truth), ks=(k,))
    expected = oracle.expected_metrics(customers, [len(t) for t in truth], start, end, k,
                                       draws=4)
    popular = prior.article_idx.value_counts().index[:k].to_numpy()
    base = evaluate_ranking(np.tile(popular, (len(customers), 1)), list(truth), ks=(k,))
    logger.info(f"last week {start} .. {end}: {len(customers):,} customers bought")
    logger.info(f"{'ranking':28s} {'MAP@12':>8s} {'recall@12':>10s} {'NDCG@12':>8s}")
    for name, m in (("oracle top-12 (realized)", best), ("oracle top-12 (expected)", expected),
                    ("last-week popularity", base)):
        logger.info(f"{name:28s} {m[f'map@{k}']:8.4f} {m[f'recall@{k}']:10.4f} "
                    f"{m[f'ndcg@{k}']:8.4f}")
    return {"oracle": best, "expected": expected, "popularity": base}
