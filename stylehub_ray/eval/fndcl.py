"""Evaluation of FND-CL variants: ranking at 1:10, hard negatives, cold starters, efficiency.

- Per user, the test outfits (its positives and their negatives, 1:10) are ranked by the
  model's preference and AUC and NDCG (over the whole candidate list) are averaged over users
  (4.1.2), with ``metrics``; the hard-negative setting swaps the random negatives for other
  users' positives (4.4, Table 4).
- Cold starters (4.3, Table 3): users of the small set (53 for a model trained on 630, 32 for
  519) are scored without retraining from their 1 or 5 training outfits, with the avg and w-avg
  aggregations (Eq. 20-24); 1-shot is averaged over each of the 5 outfits as the single shot.
- False negatives: on generated data, the share of the oracle's false negatives (random
  negatives the user's true taste would accept) among the training negatives a model scores
  above the user's positive average (the negatives FND pulls, Fig. 1), against their share
  among all training negatives.
- The ceiling: on generated data, the generator's own scores (the oracle) ranked the same
  way, printed as the first row of the table.
- Efficiency (4.7, Table 5): time to score every user's test candidates from the images,
  peak memory and parameters of the teacher, XS, S and M models.

:func:`cold_start_scores_for` is what serving calls for a new user.
"""

from __future__ import annotations

import logging
import posixpath
import resource
import time
from dataclasses import asdict, dataclass

import numpy as np

from stylehub_ray.metrics import per_user_auc_ndcg
from stylehub_ray.run import Run

logger = logging.getLogger(__name__)

EVAL = "eval/fndcl"
EFFICIENCY = f"{EVAL}/efficiency"
SIZE_LABEL = {"large": "AlexNet", "xs": "XS", "s": "S", "m": "M", "lite0": "Lite0",
              "lite1": "Lite1", "lite2": "Lite2", "tiny": "tiny", "tiny-s": "tiny-S",
              "tiny-m": "tiny-M"}


@dataclass
class EvaluateFNDCLConfig:
    """`stylehub evaluate fndcl`: every trained variant, plus the efficiency table."""

    variants: tuple[str, ...] = ()  # (): every complete variant under models/fndcl/
    cold_shots: tuple[int, ...] = (1, 5)
    delta: float = 0.0  # 4.1.4: the neighbourhood threshold of Eq. 21
    tau_wavg: float = 0.2  # 4.1.4: tau of Eq. 23
    efficiency: bool = True
    # The first is the teacher the ratios compare with: ours (Lite2 + its 1024-wide head), our
    # students (tiny), and the paper's AlexNet sizes at random init (time and size only).
    efficiency_sizes: tuple[str, ...] = ("lite2", "tiny", "xs", "s", "m", "large")
    efficiency_repeats: int = 3
    image_size: int = 128

    def validate(self) -> None:
        from stylehub_ray.models.fndcl import BACKBONE_DIMS

        if any(s < 1 for s in self.cold_shots):
            raise ValueError("evaluate_fndcl.cold_shots must be positive")
        if self.tau_wavg <= 0:
            raise ValueError("evaluate_fndcl.tau_wavg must be positive")
        for s in self.efficiency_sizes:
            if s not in BACKBONE_DIMS:
                raise ValueError(f"evaluate_fndcl.efficiency_sizes: {s!r} not in "
                                 f"{sorted(BACKBONE_DIMS)}")


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
def candidates(data, split: str, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, outfits, labels) of a split's positives and their ``kind`` negatives."""
    pos, neg = data.get(split, "posi"), data.get(split, kind)
    return (np.r_[pos["user"], neg["user"]], np.r_[pos["outfits"], neg["outfits"]],
            np.r_[np.ones(len(pos["user"]), np.int64), np.zeros(len(neg["user"]), np.int64)])


# --------------------------------------------------------------------------------------------
# Cold starters (3.5)
# --------------------------------------------------------------------------------------------
def cold_start_scores_for(model, item_table, shot_outfits: np.ndarray,
                          candidate_outfits: np.ndarray, strategy: str = "w-avg",
                          delta: float = 0.0, tau: float = 0.2, transform=None) -> np.ndarray:
    """Serving entry point: a new user's preference for ``candidate_outfits`` (M, 4) from the
    outfits they liked, ``shot_outfits`` (P, 4), without retraining (Eq. 20-24). Indices are
    rows of ``item_table`` (the model's frozen features, or images with ``transform``)."""
    import torch

    from stylehub_ray.models.fndcl import cold_start_scores

    with torch.no_grad():
        users = model.user_matrix()  # (U, d)
        shots = model.outfit_matrix(item_table, torch.as_tensor(shot_outfits), transform)
        cands = model.outfit_matrix(item_table, torch.as_tensor(candidate_outfits), transform)
        return cold_start_scores(users @ shots.T, users @ cands.T, strategy, delta,
                                 tau).numpy()


class ColdStartScorer:
    """What serving holds for new users: a trained variant and the item table of one set,
    loaded once; :meth:`score` is Eq. 20-24 for one cold starter."""

    def __init__(self, model, item_table, offsets: dict[str, int], transform=None):
        self.model, self.item_table, self.offsets = model, item_table, offsets
        self.transform = transform

    @classmethod
    def from_run(cls, run: Run, variant: str, set_name: str | None = None) -> ColdStartScorer:
        """Load ``models/fndcl/<variant>`` and the frozen features of ``set_name`` (default:
        the cold-start set paired with the variant's training set, e.g. 53 for 630)."""

        from stylehub_ray.models.artifacts import load_model
        from stylehub_ray.train.fndcl import COLD_SET, item_inputs, load_outfit_set

        model, spec, meta = load_model(run, "fndcl", variant)
        trained = meta["config"]["set_name"]
        data = load_outfit_set(run, set_name or COLD_SET.get(trained, trained))
        # Frozen features, or (an end-to-end student) the set's images and their transform.
        table, transform = item_inputs(run, data, spec, meta["config"]["image_size"])
        return cls(model, table, data.offsets, transform)

    def outfit_rows(self, outfits: list[dict]) -> np.ndarray:
        """``[{"top": id, "top2": id or -1, "bottom": id, "shoe": id}, ...]`` -> (n, 4)."""
        o = self.offsets
        return np.array([[d["top"] + o["top"],
                          d.get("top2", -1) + o["top"] if d.get("top2", -1) >= 0 else -1,
                          d["bottom"] + o["bottom"], d["shoe"] + o["shoe"]] for d in outfits],
                        dtype=np.int64).reshape(-1, 4)

    def score(self, liked: list[dict], candidates: list[dict], strategy: str = "w-avg",
              delta: float = 0.0, tau: float = 0.2) -> np.ndarray:
        """Preference of a new user who liked ``liked`` for each of ``candidates``."""
        return cold_start_scores_for(self.model, self.item_table, self.outfit_rows(liked),
                                     self.outfit_rows(candidates), strategy, delta, tau,
                                     self.transform)


def evaluate_cold_start(model, table, cold, shots_list: tuple[int, ...], delta: float,
                        tau: float, transform=None) -> dict:
    """Table 3 on one cold set: AUC / NDCG per shots and strategy, averaged over cold users."""
    import torch

    from stylehub_ray.models.fndcl import cold_start_scores

    train = cold.get("train", "posi")
    c_users, c_outfits, c_labels = candidates(cold, "test", "nega")
    with torch.no_grad():
        u = model.user_matrix()
        r_train = (u @ model.outfit_matrix(table, torch.from_numpy(train["outfits"]),
                                           transform).T)
        r_cand = (u @ model.outfit_matrix(table, torch.from_numpy(c_outfits), transform).T)
    out: dict[str, dict] = {}
    for shots in shots_list:
        for strategy in ("avg", "w-avg"):
            aucs, ndcgs = [], []
            for user in np.unique(c_users):
                own = np.flatnonzero(train["user"] == user)
                own = own[np.argsort(train["row"][own])]
                if len(own) < shots:
                    continue
                # 1-shot: each of the user's first max(shots) outfits in turn; else the first.
                choices = ([own[i:i + 1] for i in range(min(len(own), max(shots_list)))]
                           if shots == 1 else [own[:shots]])
                cand = np.flatnonzero(c_users == user)
                for chosen in choices:
                    sc = cold_start_scores(r_train[:, chosen], r_cand[:, cand], strategy,
                                           delta, tau).numpy()
                    m = per_user_auc_ndcg(np.zeros(len(cand), np.int64), c_labels[cand], sc)
                    if m["users"]:
                        aucs.append(m["auc"])
                        ndcgs.append(m["ndcg"])
            out[f"{shots}-{strategy}"] = {
                "auc": float(np.mean(aucs)) if aucs else float("nan"),
                "ndcg": float(np.mean(ndcgs)) if ndcgs else float("nan"),
                "trials": len(aucs)}
    return out


# --------------------------------------------------------------------------------------------
# Planted false negatives
# --------------------------------------------------------------------------------------------
def false_negative_discovery(run: Run, data, scores_neg: np.ndarray, scores_pos: np.ndarray
                             ) -> dict | None:
    """Share of the oracle's false negatives (random training negatives the user's true taste
    would accept) among the training negatives scored above the user's positive average
    (d_ijk < 0 in Eq. 12), against their share among all; None on real data."""
    from stylehub_ray.synth.oracle import outfit_oracle_scores

    o = outfit_oracle_scores(run, data.set_name, "train", "nega")
    if o is None:
        return None
    neg, pos = data.get("train", "nega"), data.get("train", "posi")
    flag_of = dict(zip(o["row"].tolist(), o["is_false_negative"].tolist()))
    flagged = np.array([bool(flag_of.get(int(r), False)) for r in neg["row"]], bool)
    mean_pos = np.bincount(pos["user"], weights=scores_pos, minlength=data.n_users) / np.maximum(
        np.bincount(pos["user"], minlength=data.n_users), 1)  # Eq. 11
    above = scores_neg > mean_pos[neg["user"]]  # d_ijk < 0
    n_above = int(above.sum())
    return {
        "negatives": int(len(flagged)), "false_negatives": int(flagged.sum()),
        "share_fn_all": float(flagged.mean()) if len(flagged) else float("nan"),
        "above_positive_mean": n_above,
        "share_fn_above": float(flagged[above].mean()) if n_above else float("nan"),
        "fn_recall": float(above[flagged].mean()) if flagged.any() else float("nan"),
    }


def oracle_ceiling(run: Run, data) -> dict | None:
    """The generator's own scores ranked like a model's (test, random and hard negatives):
    the best any model can do on generated data. None on real data."""
    from stylehub_ray.synth.oracle import outfit_oracle_scores

    out: dict = {}
    for name, kind in (("test", "nega"), ("test_hard", "nega_hard")):
        users, _outfits, labels = candidates(data, "test", kind)
        parts = []
        for k in ("posi", kind):
            o = outfit_oracle_scores(run, data.set_name, "test", k)
            if o is None:
                return None
            score_of = dict(zip(o["row"].tolist(), o["oracle_score"].tolist()))
            parts.append(np.array([score_of[int(r)] for r in data.get("test", k)["row"]]))
        if len(users) and labels.min() != labels.max():
            out[name] = per_user_auc_ndcg(users, labels, np.concatenate(parts))
    return out


# --------------------------------------------------------------------------------------------
# One variant
# --------------------------------------------------------------------------------------------
def evaluate_variant(run: Run, variant: str, cfg: EvaluateFNDCLConfig) -> dict:
    """Every measure of one trained variant (see the module docstring)."""
    import torch

    from stylehub_ray.models.artifacts import load_model
    from stylehub_ray.train.fndcl import COLD_SET, item_inputs, load_outfit_set

    model, spec, meta = load_model(run, "fndcl", variant)
    set_name = meta["config"]["set_name"]
    data = load_outfit_set(run, set_name)

    def table_of(d):
        return item_inputs(run, d, spec, meta["config"]["image_size"])

    table, transform = table_of(data)
    result: dict = {"variant": variant, "set_name": set_name, "best_epoch": meta["best_epoch"],
                    "val": meta["best"]}
    for name, kind in (("test", "nega"), ("test_hard", "nega_hard")):
        users, outfits, labels = candidates(data, "test", kind)
        if not len(users) or labels.min() == labels.max():
            continue
        scores = model.score_outfits(table, torch.from_numpy(users), torch.from_numpy(outfits),
                                     transform).numpy()
        result[name] = per_user_auc_ndcg(users, labels, scores)
    pos, neg = data.get("train", "posi"), data.get("train", "nega")
    s_pos = model.score_outfits(table, torch.from_numpy(pos["user"]),
                                torch.from_numpy(pos["outfits"]), transform).numpy()
    s_neg = model.score_outfits(table, torch.from_numpy(neg["user"]),
                                torch.from_numpy(neg["outfits"]), transform).numpy()
    fn = false_negative_discovery(run, data, s_neg, s_pos)
    if fn is not None:
        result["false_negatives"] = fn
    cold_set = COLD_SET.get(set_name)
    if cold_set:
        try:
            cold = load_outfit_set(run, cold_set)
            cold_table, cold_transform = table_of(cold)
        except ValueError as exc:  # the cold set was not ingested or featurized
            result["cold_start_skipped"] = str(exc)
        else:
            result["cold_start"] = evaluate_cold_start(
                model, cold_table, cold, tuple(cfg.cold_shots), cfg.delta, cfg.tau_wavg,
                cold_transform)
            result["cold_set"] = cold_set
    return result


# --------------------------------------------------------------------------------------------
# Efficiency (4.7, Table 5)
# --------------------------------------------------------------------------------------------
def _efficiency_task(run_uri: str, set_name: str, size: str, image_size: int, repeats: int
                     ) -> dict:
    """In a fresh worker process: score every user's test candidates from the images with a
    model of one size; time, peak memory (weights + activations: the process's peak RSS over
    its RSS before the model was built), parameters."""
    import torch

    from stylehub_ray.models.fndcl import (
        LITE_DIMS,
        FNDCLModel,
        ModelSpec,
        count_parameters,
        preprocess_images,
    )
    from stylehub_ray.train.fndcl import load_item_images, load_outfit_set

    torch.set_num_threads(1)
    run = Run(run_uri)
    data = load_outfit_set(run, set_name)
    users, outfits, _labels = candidates(data, "test", "nega")
    used = np.unique(outfits[outfits >= 0])  # decode only what is scored (not timed)
    images = torch.from_numpy(load_item_images(run, data, image_size, only=used))
    base = _current_rss_mb()  # before the model: its weights count, as on a GPU
    torch.manual_seed(0)
    # As trained: the Lite teacher with its 1024-wide head, every other size with 256.
    model = FNDCLModel(ModelSpec(n_users=data.n_users, backbone=size,
                                 hidden=1024 if size in LITE_DIMS else 256,
                                 frozen_features=False)).eval()
    times = []
    u_t, o_t = torch.from_numpy(users), torch.from_numpy(outfits)
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            model.score_outfits(images, u_t, o_t,
                                lambda r: preprocess_images(r, image_size, size),
                                chunk=len(u_t))
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": SIZE_LABEL.get(size, size), "backbone": size,
            "time_s_mean": float(np.mean(times)), "time_s_std": float(np.std(times)),
            "peak_mb_over_base": round(peak - base, 1), "params": count_parameters(model),
            "outfits_scored": int(len(users)), "users": int(len(np.unique(users)))}


def _current_rss_mb() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def efficiency_table(run: Run, set_name: str, cfg: EvaluateFNDCLConfig) -> list[dict]:
    import ray

    from stylehub_ray.ray_utils import ensure_ray

    ensure_ray()
    task = ray.remote(num_cpus=1, max_calls=1)(_efficiency_task)  # fresh process per size
    rows = []
    for size in cfg.efficiency_sizes:  # one at a time: timings must not share the cores
        rows.append(ray.get(task.remote(run.uri, set_name, size, cfg.image_size,
                                        cfg.efficiency_repeats)))
    teacher = rows[0]["params"] if rows else None  # the first size listed: the teacher
    for r in rows:
        r["ratio"] = r["params"] / teacher if teacher else float("nan")
    return rows


# --------------------------------------------------------------------------------------------
# Stage
# --------------------------------------------------------------------------------------------
def list_variants(run: Run) -> list[str]:
    from stylehub_ray.train.fndcl import MODELS

    steps = run.manifest()["steps"]
    return sorted(v["variant"] for k, v in steps.items()
                  if k.startswith("train_fndcl/") and v.get("status") == "complete"
                  and run.is_complete(f"{MODELS}/{v['variant']}"))


def evaluate_fndcl(run: Run, cfg: EvaluateFNDCLConfig, force: bool = False) -> dict:
    """Evaluate every trained variant (one manifest step each) and print the tables."""
    from stylehub_ray.train.fndcl import MODELS

    cfg.validate()
    variants = list(cfg.variants) or list_variants(run)
    if not variants:
        raise FileNotFoundError(f"{run.uri}: no trained FND-CL variant under {MODELS}/ (run "
                                f"`stylehub train fndcl --run {run.uri}` first)")
    results: dict = {}
    conf = asdict(cfg)
    for variant in variants:
        rel = f"{MODELS}/{variant}"
        if not run.is_complete(rel):
            raise FileNotFoundError(f"{run.uri}/{rel}: not trained")
        out = f"{EVAL}/{variant}"
        metric_conf = {k: conf[k] for k in ("cold_shots", "delta", "tau_wavg")}
        step = run.step("evaluate_fndcl", variant, config=metric_conf,
                        inputs={rel: run.marker(rel)["fingerprint"]}, outputs=[out],
                        force=force)
        if step.done:
            results[variant] = run.read_json(posixpath.join(out, "metrics.json"))
            continue
        with step:
            res = evaluate_variant(run, variant, cfg)
            run.write_json(posixpath.join(_rel_of(run, step.tmp(out)), "metrics.json"), res)
            step.extra["test"] = res.get("test")
        results[variant] = res
    from stylehub_ray.train.fndcl import load_outfit_set

    ceiling = oracle_ceiling(run, load_outfit_set(run, results[variants[0]]["set_name"]))
    if ceiling:
        results["oracle"] = ceiling
    if cfg.efficiency:
        set_name = results[variants[0]]["set_name"]
        eff_conf = {k: conf[k] for k in ("efficiency_sizes", "efficiency_repeats",
                                         "image_size")} | {"set_name": set_name}
        fp = run.entry("ingest")["fingerprint"]
        step = run.step("evaluate_fndcl", "efficiency", config=eff_conf,
                        inputs={"raw/outfits": fp}, outputs=[EFFICIENCY], force=force)
        if step.done:
            results["efficiency"] = run.read_json(posixpath.join(EFFICIENCY, "table.json"))
        else:
            with step:
                rows = efficiency_table(run, set_name, cfg)
                run.write_json(posixpath.join(_rel_of(run, step.tmp(EFFICIENCY)),
                                              "table.json"), rows)
            results["efficiency"] = rows
    for line in format_tables(results):
        logger.info(line)
    return results


def _rel_of(run: Run, path: str) -> str:
    """A path inside the run's filesystem -> the run-relative name write_json takes."""
    return posixpath.relpath(path, run.root)


def format_tables(results: dict) -> list[str]:
    """The AUC / NDCG table (random and hard negatives), cold starters, false negatives and
    efficiency, as printed by `stylehub evaluate fndcl` and `make demo`."""
    lines = ["", "FND-CL: per-user AUC / NDCG at 1:10 (test), hard negatives (4.4)",
             f"{'variant':24s} {'AUC':>7s} {'NDCG':>7s} {'AUC-H':>7s} {'NDCG-H':>7s} "
             f"{'val AUC':>8s} {'epoch':>5s}"]
    variants = [k for k in results if k not in ("efficiency", "oracle")]

    def pct(x) -> str:
        return "   -   " if x is None or x != x else f"{100 * x:7.2f}"

    if "oracle" in results:  # the ceiling: the generator's own scores
        t, h = results["oracle"].get("test", {}), results["oracle"].get("test_hard", {})
        lines.append(f"{'oracle (ceiling)':24s} {pct(t.get('auc'))} {pct(t.get('ndcg'))} "
                     f"{pct(h.get('auc'))} {pct(h.get('ndcg'))} {'-':>8s} {'-':>5s}")

    for v in variants:
        r = results[v]
        t, h = r.get("test", {}), r.get("test_hard", {})
        lines.append(f"{v:24s} {pct(t.get('auc'))} {pct(t.get('ndcg'))} {pct(h.get('auc'))} "
                     f"{pct(h.get('ndcg'))} {pct(r['val'].get('val_auc')):>8s} "
                     f"{r['best_epoch']:5d}")
    cold = [(v, results[v]) for v in variants if "cold_start" in results[v]]
    if cold:
        keys = list(cold[0][1]["cold_start"])
        lines += ["", f"cold starters (set {cold[0][1]['cold_set']}), AUC (Table 3)",
                  f"{'variant':24s} " + " ".join(f"{k:>9s}" for k in keys)]
        for v, r in cold:
            lines.append(f"{v:24s} " + " ".join(f"{pct(r['cold_start'][k]['auc']):>9s}"
                                                for k in keys))
    fns = [(v, results[v]["false_negatives"]) for v in variants
           if "false_negatives" in results[v]]
    if fns:
        lines += ["", "false negatives (the oracle's) among training negatives scored above "
                      "the user's positive mean",
                  f"{'variant':24s} {'share above':>11s} {'share all':>9s} {'recall':>7s} "
                  f"{'n above':>7s}"]
        for v, f in fns:
            lines.append(f"{v:24s} {pct(f['share_fn_above']):>11s} "
                         f"{pct(f['share_fn_all']):>9s} {pct(f['fn_recall'])} "
                         f"{f['above_positive_mean']:7d}")
    if "efficiency" in results:
        lines += ["", "inference efficiency (4.7, Table 5): score every user's test candidates "
                      "from images, CPU, 1 thread",
                  f"{'model':8s} {'time s':>14s} {'peak MB':>8s} {'params':>10s} {'ratio':>6s}"]
        for r in results["efficiency"]:
            lines.append(f"{r['model']:8s} {r['time_s_mean']:7.2f}±{r['time_s_std']:<6.2f} "
                         f"{r['peak_mb_over_base']:8.0f} {r['params'] / 1e6:9.2f}M "
                         f"{100 * r['ratio']:5.1f}%")
    return lines
