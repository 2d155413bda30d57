"""`stylehub pipeline`: every stage that exists, in order, each skipped when it is up to date."""

from __future__ import annotations

import logging

from stylehub_ray import logs, registry
from stylehub_ray.run import Run

logger = logging.getLogger(__name__)


def run_pipeline(source: str, run_uri: str, configs: dict, force: bool = False) -> dict:
    """Run the stages in ``configs["pipeline"].stages`` on ``source`` into ``run_uri``, each
    with its config from ``configs[stage]`` (names as in :mod:`stylehub_ray.registry`); returns
    the manifest. The stages that do not apply to the source's layout (features on outfits)
    are skipped, named in one line."""
    from stylehub_ray.data.ingest import POLYVORE, detect_layout
    from stylehub_ray.eval.ranking import SHOW_SUMMARY

    run = Run(run_uri)
    outfits = detect_layout(source) == POLYVORE
    names = registry.expand_pipeline(configs["pipeline"].stages)
    # Each evaluation stage would print the whole summary table again; it is printed once, at
    # the end.
    not_for = [n for n in names if registry.stage(n).layout not in (registry.ANY, (
        registry.OUTFITS if outfits else registry.HM))]
    if not_for:
        logger.info(f"not for {'outfit' if outfits else 'H&M'} data, skipped: "
                    f"{', '.join(not_for)}")
    token = SHOW_SUMMARY.set(False)
    try:
        for name in logs.progress([n for n in names if n not in not_for], "pipeline",
                                  unit="stages", every_s=60):
            _run_stage(name, source, run, configs[name], force)
    finally:
        SHOW_SUMMARY.reset(token)
    log_evaluation_summary(run)
    log_run_summary(run)
    return run.manifest()


def _run_stage(name: str, source: str, run: Run, cfg, force: bool) -> None:
    fn = registry.resolve(registry.stage(name).function)
    if name == "ingest":
        fn(source, run, cfg, force=force)
    elif name == "pairs":
        fn(run, cfg, "text", force=force)  # the text pairs the contrastive model uses
    elif name == "train_fndcl":
        _fndcl_teacher_then_student(fn, run, cfg, force)
    else:
        fn(run, cfg, force=force)


def log_evaluation_summary(run: Run) -> None:
    """The ranking summary table (every model, baseline and the oracle), once."""
    from stylehub_ray.eval.ranking import SUMMARY, format_summary

    if run.is_complete(SUMMARY):
        for line in format_summary(run.read_json(f"{SUMMARY}/table.json")):
            logger.info(line)


def _fndcl_teacher_then_student(train_fndcl, run: Run, student, force: bool) -> None:
    """The N-pair teacher, then the FND-CL student (its loss from the train_fndcl config
    unless that names the teacher's)."""
    from dataclasses import replace

    train_fndcl(run, replace(student, stage="teacher", loss="npair"), force=force)
    loss = student.loss if student.loss in ("fnd", "fndcl") else "fndcl"
    train_fndcl(run, replace(student, stage="student", loss=loss), force=force)


def log_run_summary(run: Run, width: int = 100) -> None:
    """What the run holds, in a few lines: its steps, their status and time (the counts are in
    each stage's own lines, the manifest and the report)."""
    import textwrap

    steps = run.manifest()["steps"]
    ordered = sorted(steps.items(), key=lambda kv: kv[1].get("started", ""))
    status: dict[str, int] = {}
    for _, entry in ordered:
        status[entry.get("status", "?")] = status.get(entry.get("status", "?"), 0) + 1
    total = sum(float(e.get("timings", {}).get("total_s", 0) or 0) for _, e in ordered)
    logger.info("")
    logger.info(f"run {run.uri}: {len(steps)} step{'s' * (len(steps) != 1)} ("
                + ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
                + f"), {total / 60:.1f} min of stage time")
    times = ", ".join(f"{key} {_seconds(e.get('timings', {}).get('total_s'))}"
                      for key, e in ordered)
    for line in textwrap.wrap(times, width, initial_indent="  ", subsequent_indent="  "):
        logger.info(line)
    gen = steps.get("ingest", {}).get("generator")
    if gen:
        logger.info(f"generated data: generator {gen['version']}, parameters {gen['params_hash']}")
        log_oracle_summary(run)


def _seconds(value) -> str:
    try:
        return f"{float(value):.0f}s" if float(value) >= 1 else f"{float(value):.1f}s"
    except (TypeError, ValueError):
        return "-"


def log_oracle_summary(run: Run, k: int = 12, max_customers: int = 10_000) -> dict | None:
    """For generated H&M data: the best achievable scores on the last week (the ceiling every
    model is measured against), beside last-week popularity, the simplest baseline. Over a
    seeded sample of at most ``max_customers`` of the week's buyers: the oracle scores every
    article for each customer, which took minutes at a quarter of the full H&M data (issue
    23), and a summary needs no more (the evaluation stages score the oracle on their own
    customers)."""
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
    buyers = len(truth)
    if buyers > max_customers:
        pick = np.sort(np.random.default_rng(0).choice(buyers, max_customers, replace=False))
        truth = truth.iloc[pick]
    customers = truth.index.to_numpy()
    best = evaluate_ranking(oracle.topk(customers, start, end, k), list(truth), ks=(k,))
    expected = oracle.expected_metrics(customers, [len(t) for t in truth], start, end, k,
                                       draws=4)
    popular = prior.article_idx.value_counts().index[:k].to_numpy()
    base = evaluate_ranking(np.tile(popular, (len(customers), 1)), list(truth), ks=(k,))
    sample = f" (scored on a sample of {len(customers):,})" if len(customers) < buyers else ""
    logger.info(f"last week {start} .. {end}: {buyers:,} customers bought{sample}")
    logger.info(f"{'ranking':28s} {'MAP@12':>8s} {'recall@12':>10s} {'NDCG@12':>8s}")
    for name, m in (("oracle top-12 (realized)", best), ("oracle top-12 (expected)", expected),
                    ("last-week popularity", base)):
        logger.info(f"{name:28s} {m[f'map@{k}']:8.4f} {m[f'recall@{k}']:10.4f} "
                    f"{m[f'ndcg@{k}']:8.4f}")
    return {"oracle": best, "expected": expected, "popularity": base}
