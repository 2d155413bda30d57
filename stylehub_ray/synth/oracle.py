"""The ground truth of a generated H&M run: true top-K and the best achievable scores.

Generated data keeps its generative factors (``raw/oracle/``, copied by ingest from the
generator's ``_oracle/``). For a customer c and a day t, the generator draws a new purchase as

    p(a | c, t) = (1 - r_c [c has history]) * theta_c(t)[style(a)] * pi_a(week(t)) + r_c * h_c(a)

with theta_c(t) = (1 - t/T) theta0_c + (t/T) theta1_c (sparse tastes over styles), pi_a(w) the
article's share of its style's popularity in week w, r_c the repeat rate and h_c the customer's
earlier purchases (same-basket duplicates do not change which articles are bought). Over a
period the oracle averages p over its days, weighted by the daily purchase intensity, and ranks
articles by it: that ranking is the best any model can do in expectation. Everything is computed
in batches of customers against all articles, never as a dense customers x articles matrix.

Evaluation asks it through :meth:`HMOracle.topk` and :meth:`HMOracle.expected_metrics`; on real
data :meth:`HMOracle.load` returns None and evaluation runs without it.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from stylehub_ray.run import Run
from stylehub_ray.synth import hm as gen


def _day(d: date | str) -> int:
    d = date.fromisoformat(d) if isinstance(d, str) else d
    return (d - gen.START).days


class HMOracle:
    def __init__(self, run: Run, articles, customers, popularity: np.ndarray,
                 intensity: np.ndarray, n_styles: int):
        self.run = run
        self.n_styles = n_styles
        # Reorder the generator's tables to the run's dense idx (rank of the sorted id).
        amap = _read(run, "raw/article_map")
        a_ids = amap.column("article_id").to_numpy()
        a_idx = amap.column("article_idx").to_numpy()
        order = np.argsort(a_idx)
        gen_ids = articles.column("article_id").to_numpy()
        pos = np.searchsorted(gen_ids, a_ids[order])  # generator ids are sorted
        if not np.array_equal(gen_ids[np.minimum(pos, len(gen_ids) - 1)], a_ids[order]):
            raise ValueError("raw/oracle does not match raw/article_map: the run was ingested "
                             "from another source")
        self.n_articles = len(a_ids)
        self.style = articles.column("style").to_numpy()[pos].astype(np.int64)
        pop = popularity[:, pos].astype(np.float64)
        totals = np.zeros((pop.shape[0], n_styles))
        for z in range(n_styles):
            totals[:, z] = pop[:, self.style == z].sum(1)
        totals[totals == 0] = 1.0
        self.pi = pop / totals[:, self.style]  # (weeks, articles): share within the style
        self.intensity = intensity
        cmap = _read(run, "raw/customer_map")
        c_pos = {cid: i for i, cid in enumerate(customers.column("customer_id").to_pylist())}
        c_ids = cmap.column("customer_id").to_pylist()
        c_idx = cmap.column("customer_idx").to_numpy()
        rows = np.array([c_pos[c] for c in c_ids])
        n = len(c_ids)
        self.customer_rows = np.empty(n, np.int64)
        self.customer_rows[c_idx] = rows  # customer_idx -> row in the oracle tables

        def mat(name: str) -> np.ndarray:
            col = customers.column(name).combine_chunks()
            return col.values.to_numpy().reshape(len(col), -1)

        self.taste0_idx, self.taste0_w = mat("taste0_idx"), mat("taste0_w")
        self.taste1_idx, self.taste1_w = mat("taste1_idx"), mat("taste1_w")
        self.repeat_rate = customers.column("repeat_rate").to_numpy()

    @classmethod
    def load(cls, run: Run) -> HMOracle | None:
        """The oracle of a generated run, or None for real data (no raw/oracle)."""
        if not run.is_complete("raw/oracle"):
            return None
        import io

        meta = run.read_json("raw/oracle/generator.json")

        def npy(name: str) -> np.ndarray:
            with run.fs.open_input_file(run.path(f"raw/oracle/{name}")) as f:
                return np.load(io.BytesIO(f.read()))

        articles = pq.read_table(run.path("raw/oracle/articles.parquet"), filesystem=run.fs)
        customers = pq.read_table(run.path("raw/oracle/customers.parquet"), filesystem=run.fs)
        return cls(run, articles, customers, npy("popularity.npy"), npy("daily_intensity.npy"),
                   int(meta["params"]["styles"]))

    # -- probabilities --------------------------------------------------------------------
    def _period_vectors(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """A0, A1 (articles,): intensity-weighted period means of (1-lam) pi and lam pi."""
        days = np.arange(max(start, 0), min(end, gen.N_DAYS - 1) + 1)
        if len(days) == 0:
            raise ValueError(f"period {start}..{end} lies outside the generated dates "
                             f"{gen.START}..{gen.END}")
        g = self.intensity[days]
        lam = days / (gen.N_DAYS - 1)
        weeks = days // 7
        w0 = np.bincount(weeks, weights=g * (1 - lam), minlength=self.pi.shape[0])
        w1 = np.bincount(weeks, weights=g * lam, minlength=self.pi.shape[0])
        return (w0 @ self.pi) / g.sum(), (w1 @ self.pi) / g.sum()

    def _history(self, customer_idx: np.ndarray, before: int) -> dict[int, np.ndarray]:
        """Article idx of each customer's purchases before day ``before`` (repeat component)."""
        ds = pads.dataset(self.run.path("raw/transactions"), filesystem=self.run.fs,
                          format="parquet", partitioning="hive", ignore_prefixes=["_", "."])
        from datetime import timedelta

        import pyarrow as pa

        cutoff = pa.scalar(gen.START + timedelta(days=int(before)), pa.date32())
        t = ds.to_table(columns=["customer_idx", "article_idx"],
                        filter=(pc.field("customer_idx").isin(customer_idx.tolist()))
                        & (pc.field("t_dat") < cutoff))
        c = t.column("customer_idx").to_numpy()
        a = t.column("article_idx").to_numpy()
        order = np.argsort(c, kind="stable")
        c, a = c[order], a[order]
        bounds = np.searchsorted(c, customer_idx, side="left"), np.searchsorted(
            c, customer_idx, side="right")
        return {int(ci): a[lo:hi] for ci, lo, hi in zip(customer_idx, *bounds)}

    def probabilities(self, customer_idx: np.ndarray, start: date | str,
                      end: date | str, history: dict[int, np.ndarray] | None = None
                      ) -> np.ndarray:
        """p(article | customer, period), (len(customer_idx), n_articles) float64; rows sum
        to 1. Keep batches small: this one is dense over articles. ``history``: the
        customers' purchases before ``start`` (:meth:`_history`), read once by a caller that
        works batch after batch; None reads this batch's (one scan of the transactions)."""
        s, e = _day(start), _day(end)
        a0, a1 = self._period_vectors(s, e)
        rows = self.customer_rows[customer_idx]
        b = len(rows)
        theta0 = np.zeros((b, self.n_styles))
        theta1 = np.zeros((b, self.n_styles))
        np.put_along_axis(theta0, self.taste0_idx[rows].astype(np.int64), self.taste0_w[rows], 1)
        np.put_along_axis(theta1, self.taste1_idx[rows].astype(np.int64), self.taste1_w[rows], 1)
        p_new = theta0[:, self.style] * a0[None, :] + theta1[:, self.style] * a1[None, :]
        p_new /= p_new.sum(1, keepdims=True)
        hist = self._history(customer_idx, s) if history is None else history
        r = self.repeat_rate[rows].astype(np.float64)
        p = p_new.copy()
        for i, c in enumerate(customer_idx):
            h = hist[int(c)]
            if len(h):
                p[i] *= 1 - r[i]
                np.add.at(p[i], h, r[i] / len(h))
        return p

    def topk(self, customer_idx, start: date | str, end: date | str, k: int = 12,
             batch: int = 256) -> np.ndarray:
        """The true top-k article_idx for each customer over [start, end], (n, k) int64."""
        customer_idx = np.asarray(customer_idx, np.int64)
        out = np.empty((len(customer_idx), k), np.int64)
        history = self._history(customer_idx, _day(start))  # one scan, not one a batch
        for lo in range(0, len(customer_idx), batch):
            p = self.probabilities(customer_idx[lo:lo + batch], start, end, history)
            out[lo:lo + batch] = _top(p, k)
        return out

    def expected_metrics(self, customer_idx, n_purchases, start: date | str, end: date | str,
                         k: int = 12, draws: int = 8, seed: int = 0,
                         batch: int = 128) -> dict[str, float]:
        """Expected score of the oracle's top-k when each customer buys ``n_purchases[i]``
        articles drawn from the model (Monte Carlo over ``draws`` draws): the best achievable
        MAP@k / recall@k / NDCG@k for customers with that many purchases."""
        from stylehub_ray.metrics import evaluate_ranking

        customer_idx = np.asarray(customer_idx, np.int64)
        n_purchases = np.asarray(n_purchases, np.int64)
        rng = np.random.default_rng(seed)
        history = self._history(customer_idx, _day(start))  # one scan, not one a batch
        sums: dict[str, float] = {}
        weight = 0
        for lo in range(0, len(customer_idx), batch):
            cs, ns = customer_idx[lo:lo + batch], n_purchases[lo:lo + batch]
            p = self.probabilities(cs, start, end, history)
            recs = _top(p, k)
            cdf = np.cumsum(p, 1)
            cdf /= cdf[:, -1:]
            for _ in range(draws):
                truth = [set(np.searchsorted(cdf[i], rng.random(n), side="right").tolist())
                         for i, n in enumerate(ns)]
                m = evaluate_ranking(recs, truth, ks=(k,))
                n_scored = m.pop("n_users")
                for name, value in m.items():
                    if name.startswith("coverage"):
                        continue
                    sums[name] = sums.get(name, 0.0) + value * n_scored
                weight += n_scored
        return {name: s / weight for name, s in sums.items()} | {"n_users": int(
            (n_purchases > 0).sum())}


def _top(p: np.ndarray, k: int) -> np.ndarray:
    k = min(k, p.shape[1])
    part = np.argpartition(-p, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(p, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def _read(run: Run, rel: str):
    return pq.read_table(run.path(rel), filesystem=run.fs)


# --------------------------------------------------------------------------------------------
# Generated Polyvore-U outfits (stylehub_ray.synth.outfits): the generator's own scores
# --------------------------------------------------------------------------------------------
def outfit_oracle_scores(run: Run, set_name: str, split: str, kind: str
                         ) -> dict[str, np.ndarray] | None:
    """The generator's scores of one tuple file (``kind`` posi / nega / nega_hard): ``row``,
    ``user``, ``oracle_score`` (log likelihood ratio of the user's positive model over random
    mixing, :func:`stylehub_ray.synth.outfits.oracle_log_ratio`) and, for negatives,
    ``is_false_negative``; sorted by row. None on real data (no ``raw/oracle``) or for an
    oracle written before the generator kept its scores."""
    if not run.is_complete("raw/oracle"):
        return None
    name = "positives" if kind == "posi" else "negatives"
    t = _read(run, f"raw/oracle/{name}.parquet")
    if "oracle_score" not in t.schema.names:
        return None
    mask = pc.and_(pc.equal(t["set_name"], set_name), pc.equal(t["split"], split))
    if kind != "posi":
        mask = pc.and_(mask, pc.equal(t["kind"], kind))
    t = t.filter(mask).sort_by("row")
    cols = ["row", "user", "oracle_score"] + (["is_false_negative"] if kind != "posi" else [])
    return {c: t[c].to_numpy(zero_copy_only=False) for c in cols}
