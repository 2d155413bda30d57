"""The ranking protocol (stylehub_ray.eval.ranking): test truth, bootstrap, oracle fractions,
the `evaluate baselines` and `evaluate two-tower` stages and their summary, on the tiny run."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from stylehub_ray.config import load_config, stage_config
from stylehub_ray.data.ingest import read_table
from stylehub_ray.eval import ranking as R
from stylehub_ray.eval.baselines import make_baseline
from stylehub_ray.metrics import evaluate_ranking
from stylehub_ray.run import Run

FAST = {"bootstrap": 50, "als_factors": 8, "als_iterations": 3, "cf_neighbors": 20}


@pytest.fixture(scope="module")
def feature_run(hm_features) -> Run:
    """The shared tiny run with features (conftest; tests copy it before writing)."""
    return hm_features


def _copy(run: Run, tmp_path, name="run") -> Run:
    shutil.copytree(run.root, tmp_path / name)
    return Run(str(tmp_path / name))


def test_test_set_and_training_interactions_match_raw_transactions(feature_run):
    test = R.load_test_set(feature_run)
    cut = feature_run.entry("features")["cutoffs"]
    tx = read_table(feature_run, "raw/transactions",
                    ["t_dat", "customer_idx", "article_idx"]).to_pandas()
    t = pd.to_datetime(tx["t_dat"])
    last = tx[t >= pd.Timestamp(cut["test_start"])]
    want = last.groupby("customer_idx")["article_idx"].apply(lambda s: sorted(set(s)))
    assert test.customers.tolist() == want.index.tolist()
    assert [t.tolist() for t in test.truth] == want.tolist()
    assert (test.start, test.end) == (cut["test_start"], cut["test_end"])
    assert test.n_articles == 600 and test.n_customers == 1000
    data = R.load_training_interactions(feature_run)
    assert len(data.customer_idx) == int((t < pd.Timestamp(cut["test_start"])).sum())
    assert data.day.max() < np.datetime64(cut["test_start"])


def test_bootstrap_intervals_by_construction():
    assert R.bootstrap_intervals({"m": np.full(50, 0.25)}, 200) == {"m": [0.25, 0.25]}
    rng = np.random.default_rng(1)
    x = (rng.random(2000) < 0.3).astype(float)
    lo, hi = R.bootstrap_intervals({"m": x}, 1000, seed=0)["m"]
    half = 1.96 * np.sqrt(x.mean() * (1 - x.mean()) / len(x))  # the normal approximation
    assert lo < x.mean() < hi
    assert (hi - lo) == pytest.approx(2 * half, rel=0.15)
    # Same seed and customers: the same resamples, so a model against itself differs by 0.
    again = R.bootstrap_intervals({"m": x, "d": x - x}, 1000, seed=0)
    assert again["m"] == [lo, hi] and again["d"] == [0.0, 0.0]
    assert R.bootstrap_intervals({"m": x}, 0) == {}


def test_score_perfect_list_and_oracle_fraction():
    truth = [np.array([1, 2]), np.array([5])]
    test = R.TestSet(np.array([3, 7]), truth, "2020-09-16", "2020-09-22", 10, 8)
    cfg = R.EvaluateRankingConfig(ks=(2, 3), map_k=2, bootstrap=20)
    perfect = np.array([[1, 2, -1], [5, -1, -1]])
    res, per_user = R.score(perfect, test, cfg)
    m = res["metrics"]
    assert m["map@2"] == 1.0 and m["recall@2"] == 1.0 and m["ndcg@3"] == 1.0
    assert m["precision@2"] == pytest.approx((1 + 0.5) / 2)
    assert m["coverage@2"] == pytest.approx(3 / 10)
    assert res["ci"]["map@2"] == [1.0, 1.0]
    assert per_user["map@2"].tolist() == [1.0, 1.0]
    half = np.array([[1, 9, 8], [6, 5, 4]])  # AP 1/2 and 1/2
    oracle = {"realized": res}
    res_half, _ = R.score(half, test, cfg, oracle)
    assert res_half["metrics"]["map@2"] == pytest.approx(0.5)
    assert res_half["fraction_of_oracle"]["map@2"] == pytest.approx(0.5)
    assert "coverage@2" not in res_half["fraction_of_oracle"]
    with pytest.raises(ValueError, match="3 rows for 2 test customers"):
        R.score(np.zeros((3, 3), np.int64), test, cfg)


def test_evaluate_baselines_stage_oracle_and_summary(feature_run, tmp_path, logged):
    run = _copy(feature_run, tmp_path)
    cfg = R.EvaluateBaselinesConfig(**FAST)
    out = R.evaluate_baselines(run, cfg)
    test = R.load_test_set(run)
    data = R.load_training_interactions(run)
    oracle = out["oracle"]
    assert oracle is not None and oracle["customers"] == len(test.customers)
    o = oracle["realized"]["metrics"]
    for name in ("popularity", "item-cf", "als"):
        res = run.read_json(f"eval/baselines/{name}/metrics.json")
        assert res["customers"] == len(test.customers)
        model = make_baseline(name, **cfg.params(name)).fit(data)
        for drop, setting in ((True, "drop_bought"), (False, "keep_bought")):
            # The stored table is the metrics module's on the model's own recommendations.
            want = evaluate_ranking(model.recommend(test.customers, 30, drop), test.truth,
                                    ks=(10, 12, 20, 30), n_items=600)
            got = res[setting]["metrics"]
            assert got == pytest.approx(want, nan_ok=True)
            assert res[setting]["fraction_of_oracle"]["map@12"] == pytest.approx(
                want["map@12"] / o["map@12"])
            lo, hi = res[setting]["ci"]["map@12"]
            assert lo <= want["map@12"] <= hi
        per_user = pd.read_parquet(run.path(f"eval/baselines/{name}/per_user.parquet"))
        assert len(per_user) == 2 * len(test.customers)
    # The oracle ranks by the true probabilities: it beats popularity on generated data.
    pop = run.read_json("eval/baselines/popularity/metrics.json")
    assert o["map@12"] > pop["keep_bought"]["metrics"]["map@12"]
    text = "\n".join(logged())
    for label in ("oracle (realized)", "oracle (expected)", "popularity", "item-cf", "als"):
        assert label in text
    assert run.fs.open_input_stream(run.path("eval/summary/models.png")).read(8) == \
        b"\x89PNG\r\n\x1a\n"
    # Up to date: a second call recomputes nothing.
    ended = {k: v["ended"] for k, v in run.manifest()["steps"].items()
             if k.startswith("evaluate")}
    R.evaluate_baselines(run, cfg)
    assert ended == {k: v["ended"] for k, v in run.manifest()["steps"].items()
                     if k.startswith("evaluate")}


def test_real_data_runs_without_oracle(feature_run, tmp_path, logged):
    run = _copy(feature_run, tmp_path)
    run.delete("raw/oracle")
    cfg = R.EvaluateBaselinesConfig(**FAST | {"baselines": ("popularity",)})
    out = R.evaluate_baselines(run, cfg)
    assert out["oracle"] is None
    res = run.read_json("eval/baselines/popularity/metrics.json")
    assert "fraction_of_oracle" not in res["drop_bought"]
    assert "oracle" not in "\n".join(logged()) and "popularity" in "\n".join(logged())


def test_cli_evaluate_baselines(feature_run, tmp_path, capsys):
    from stylehub_ray.cli import main

    run = _copy(feature_run, tmp_path)
    assert main(["evaluate", "baselines", "--run", run.uri, "--set", "baselines=popularity",
                 "--set", "bootstrap=20"]) == 0
    assert "popularity" in capsys.readouterr().out
    assert run.is_complete("eval/baselines/popularity")
    assert main(["evaluate", "baselines", "--run", run.uri, "--set", "baselines=knn"]) == 2
    assert "unknown baseline 'knn'" in capsys.readouterr().err
    assert main(["evaluate", "two-tower", "--run", run.uri]) == 2
    assert "models/two-tower/default is missing or incomplete" in capsys.readouterr().err
    cfg = load_config(stage_config("evaluate_ranking"), None, ["ks=5,10", "drop_bought=true"])
    assert cfg.ks == (5, 10) and cfg.drop_bought == (True,)


def test_evaluate_two_tower_with_plots_and_paired_differences(hm_trained, tmp_path, logged):
    from stylehub_ray.models.recommender import recommend_matrix

    run = _copy(hm_trained, tmp_path)  # the shared run with a trained two-tower (conftest)
    R.evaluate_baselines(run, R.EvaluateBaselinesConfig(**FAST | {
        "baselines": ("popularity",)}))
    out = R.evaluate_two_tower(run, R.EvaluateRankingConfig(bootstrap=50))
    res = run.read_json("eval/two-tower/default/metrics.json")
    test = R.load_test_set(run)
    want = evaluate_ranking(recommend_matrix(run, test.customers, 30, drop_bought=True),
                            test.truth, ks=(10, 12, 20, 30), n_items=600)
    assert res["drop_bought"]["metrics"] == pytest.approx(want, nan_ok=True)
    assert set(res) >= {"drop_bought", "keep_bought", "plots"}
    for png in ("curves.png", "articles_2d.png"):
        assert run.fs.open_input_stream(run.path(f"eval/two-tower/default/{png}")).read(4) \
            == b"\x89PNG"
    diff = out["summary"]["differences"]
    assert diff["reference"] == "two-tower/default"
    lo, hi = diff["intervals"]["popularity"]
    base = run.read_json("eval/baselines/popularity/metrics.json")
    point = want["map@12"] - base["drop_bought"]["metrics"]["map@12"]
    assert lo <= point <= hi
    assert any(line.startswith("two-tower/default") for line in logged())
    assert pc.max(read_table(run, "features/interactions", ["t_dat"]).column("t_dat")) \
        .as_py().isoformat() == res["period"][1]
