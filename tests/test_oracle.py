"""The oracle answers from the generative factors: its top-k beats popularity on the data it
generated, its expected score matches the realized one, and real data has no oracle."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from stylehub_ray.data.ingest import read_table
from stylehub_ray.metrics import evaluate_ranking
from stylehub_ray.synth import hm
from stylehub_ray.synth.oracle import HMOracle

START, END = date(2020, 8, 26), date(2020, 9, 22)  # the last four H&M weeks


@pytest.fixture(scope="module")
def period(tiny_run):
    tx = read_table(tiny_run, "raw/transactions").to_pandas()
    test, hist = tx[tx.t_dat >= START], tx[tx.t_dat < START]
    truth = test.groupby("customer_idx").article_idx.apply(set)
    return tx, hist, truth


def test_probabilities_are_distributions(tiny_run, period):
    oracle = HMOracle.load(tiny_run)
    customers = period[2].index.to_numpy()[:20]
    p = oracle.probabilities(customers, START, END)
    assert p.shape == (20, oracle.n_articles)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-9)
    top = oracle.topk(customers, START, END, k=5)
    assert np.all(np.take_along_axis(p, top, 1)[:, :-1] >= np.take_along_axis(p, top, 1)[:, 1:])
    assert np.all(np.take_along_axis(p, top[:, -1:], 1) >= np.sort(p, 1)[:, -5:-4] - 1e-15)


def test_oracle_beats_popularity_and_matches_its_expectation(tiny_run, period):
    oracle = HMOracle.load(tiny_run)
    _, hist, truth = period
    customers = truth.index.to_numpy()
    got = evaluate_ranking(oracle.topk(customers, START, END), list(truth), ks=(12,))
    popular = hist.article_idx.value_counts().index[:12].to_numpy()
    base = evaluate_ranking(np.tile(popular, (len(customers), 1)), list(truth), ks=(12,))
    assert got["map@12"] > 1.2 * base["map@12"] and got["recall@12"] > base["recall@12"]
    n = [len(s) for s in truth]
    expected = oracle.expected_metrics(customers, n, START, END, k=12, draws=8)
    assert 0 < expected["map@12"] < 1 and expected["n_users"] == len(customers)
    # The realized score of the true ranking is one draw of what the expectation averages.
    assert abs(expected["map@12"] - got["map@12"]) < 0.5 * expected["map@12"]


def test_history_feeds_the_repeat_component(tiny_run, period):
    oracle = HMOracle.load(tiny_run)
    _, hist, _ = period
    buyer = int(hist.customer_idx.value_counts().index[0])
    bought = hist[hist.customer_idx == buyer].article_idx.unique()
    p = oracle.probabilities(np.array([buyer]), START, END)[0]
    others = np.setdiff1d(np.arange(oracle.n_articles), bought)
    assert p[bought].mean() > p[others].mean()


def test_real_data_has_no_oracle(tmp_path):
    from stylehub_ray.run import Run

    assert HMOracle.load(Run(str(tmp_path / "empty"))) is None


def test_topk_reads_the_history_once_with_the_same_answers(tiny_run, period, monkeypatch):
    """The purchases before the period are read once a call, not once a batch (a batch's read
    scans every transaction: at full size 1,200 scans of 31.8M rows for the test buyers)."""
    oracle = HMOracle.load(tiny_run)
    customers = period[2].index.to_numpy()[:40]
    whole = oracle.topk(customers, START, END, k=12, batch=len(customers))
    history = oracle._history(customers, (START - hm.START).days)
    np.testing.assert_array_equal(oracle.probabilities(customers[:7], START, END, history),
                                  oracle.probabilities(customers[:7], START, END))
    reads, read = [], oracle._history
    monkeypatch.setattr(oracle, "_history", lambda c, before: reads.append(len(c)) or read(
        c, before))
    np.testing.assert_array_equal(oracle.topk(customers, START, END, k=12, batch=7), whole)
    oracle.expected_metrics(customers, np.ones(len(customers), np.int64), START, END, batch=7)
    assert reads == [len(customers), len(customers)]
