"""Ray Tune sweeps (issue 8): bad input stops before any trial; tiny sweeps of FND-CL (with a
failing trial and ASHA), the contrastive model and the two-tower on the session's Ray head;
tables, plots and the best config that `stylehub train --set config=best` picks up."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from stylehub_ray import config as C
from stylehub_ray.run import Run
from stylehub_ray.tune.spaces import parse_param
from stylehub_ray.tune.sweep import (
    expand_config_sets,
    load_tune_config,
    plan_sweep,
    tune_model,
)

TINY_FND = ["train_fndcl.epochs=2", "train_fndcl.batch_size=16", "train_fndcl.loss=fnd",
            "max_concurrent=2"]


# --------------------------------------------------------------------------------------------
# Spaces and checks (no Ray)
# --------------------------------------------------------------------------------------------
def test_specs_parse_to_typed_values_and_grid_points():
    p = parse_param("tau", "loguniform:0.01,1", float)
    assert (p.kind, p.low, p.high, p.log, p.swept) == ("loguniform", 0.01, 1.0, True, True)
    assert p.points(3) == pytest.approx([0.01, 0.1, 1.0])
    u = parse_param("alpha", "uniform:0.5,2", float | None)
    assert u.points(4) == pytest.approx([0.5, 1.0, 1.5, 2.0])
    i = parse_param("batch_size", "int:8,10", int)
    assert i.points(5) == [8, 9, 10] and i.end_values() == [8, 10]
    a = parse_param("augmentations", "choice:erase+replace,identity+erase", tuple[str, ...])
    assert a.values == (("erase", "replace"), ("identity", "erase")) and a.categorical
    assert parse_param("lam", "0.3", float).swept is False
    assert parse_param("lam", [0.1, 0.2], float).kind == "choice"


def test_plan_linear_lr_and_sweep_names():
    from stylehub_ray.tune.sweep import trial_values

    plan = plan_sweep(load_tune_config("fndcl", None, ["space.batch_size=grid:16,64"]))
    assert plan.sweep == "batch_size" and plan.trials == 2 and plan.metric == "val_auc"
    assert plan.base["stage"] == "student" and plan.base["loss"] == "fndcl"
    # Fig. 7: the learning rate scales with the batch size (defaults 0.05 at 32).
    assert trial_values(plan, {"batch_size": 64})["lr"] == pytest.approx(0.1)
    assert trial_values(plan, {"batch_size": 16})["lr"] == pytest.approx(0.025)
    fixed_lr = plan_sweep(load_tune_config("fndcl", None, ["space.batch_size=grid:16,64",
                                                            "scale_lr=false"]))
    assert "lr" not in trial_values(fixed_lr, {"batch_size": 64})
    grid = plan_sweep(load_tune_config("fndcl", None, ["params=alpha,lam", "search=grid",
                                                       "grid_points=4", "samples=2"]))
    assert grid.sweep == "alpha-lam" and grid.trials == 2 * 4 * 4
    assert plan_sweep(load_tune_config("fndcl", None, [])).sweep == "default"


@pytest.mark.parametrize("sets, match", [
    (["space.alpha=uniform:2,0.5"], r"space\.alpha.*inverted range"),
    (["space.alpha=uniform:1,1"], r"space\.alpha.*empty range"),
    (["space.alpha=grid:"], r"space\.alpha.*empty list"),
    (["space.alhpa=grid:1,2"], r"space\.alhpa: unknown parameter"),
    (["params=alhpa"], r"space\.alhpa: unknown parameter"),
    (["space.alpha=grid:1,2", "metric=val_map12"], r"metric 'val_map12' is not reported"),
    (["space.augmentations=grid:erase+replace,identity+identity"],
     r"space\.augmentations.*identity\+identity.*no second view"),
    (["space.tau_fnd=loguniform:0,1"], r"space\.tau_fnd.*low > 0"),
    (["space.batch_size=uniform:8,64"], r"space\.batch_size.*integer"),
    (["space.workers=grid:1,2"], r"space\.workers: a resource setting"),
    (["space.alpha=1.5"], r"nothing to sweep"),
    (["space.alpha=grid:1,2", "train_fndcl.epochs=1", "grace_period=2"], r"grace_period"),
    (["space.alpha=grid:1,2", "trial_cpus=0"], r"trial_cpus"),
    (["space.alpha=grid:1,2", "train_fndcl.epoch=3"], r"unknown train_fndcl setting 'epoch'"),
])
def test_bad_input_stops_before_any_trial(tmp_path, sets, match):
    run = Run(str(tmp_path / "run"))
    with pytest.raises(ValueError, match=match):
        tune_model(run, load_tune_config("fndcl", None, sets))
    assert not run.exists("tune") and not run.exists("manifest.json")


def test_tables_and_best_config_from_trial_results(tmp_path):
    """A loss sweep: `loss` is a swept setting and a reported metric; statuses, best epochs,
    the best trial and the lr scaled with batch_size (no Ray: stand-in results)."""
    from types import SimpleNamespace

    from stylehub_ray.tune.results import collect, format_trials, write_results

    plan = plan_sweep(load_tune_config("fndcl", None, [
        "space.loss=grid:bpr,npair", "space.batch_size=grid:16,64", "train_fndcl.stage=student",
        "train_fndcl.epochs=3"]))

    def result(tid, loss, bs, aucs, error=None):
        hist = pd.DataFrame({"epoch": range(len(aucs)), "loss": [0.5] * len(aucs),
                             "val_auc": aucs, "val_ndcg": [0.4] * len(aucs),
                             "epoch_s": [2.0] * len(aucs),
                             "training_iteration": range(1, len(aucs) + 1),
                             "time_total_s": [3.0 * (i + 1) for i in range(len(aucs))]})
        return SimpleNamespace(path=f"/x/tune/{tid}", config={"loss": loss, "batch_size": bs},
                               metrics_dataframe=hist, error=error)

    grid = [result("t_00001", "npair", 64, [0.6, 0.9, 0.8]),
            result("t_00000", "bpr", 16, [0.7]),  # stopped at the first rung
            result("t_00002", "bpr", 64, [0.95], error=RuntimeError(
                "Traceback...\n  File x\nValueError: bad batch\n(pid=3) more"))]
    trials, history = collect(grid, plan)
    assert list(trials["trial_id"]) == ["t_00000", "t_00001", "t_00002"]
    assert list(trials["status"]) == ["STOPPED", "COMPLETE", "ERROR"]
    assert list(trials["loss"]) == ["bpr", "npair", "bpr"]  # the setting, not the metric
    assert list(trials["metric_loss"]) == [0.5, 0.5, 0.5]
    assert list(trials["val_auc"]) == [0.7, 0.9, 0.95] and list(trials["best_epoch"]) == [0, 1, 0]
    assert list(trials["lr"]) == pytest.approx([0.025, 0.1, 0.1])  # Fig. 7 linear scaling
    assert trials["error"][2] == "ValueError: bad batch" and len(history) == 5
    assert list(trials["time_s"]) == [3.0, 9.0, 3.0] and trials["train_s"][1] == 6.0
    run = Run(str(tmp_path / "run"))
    best = write_results(run, run.path("out"), plan, trials, history)
    # The failed trial's 0.95 does not count: the best finished trial is t_00001.
    assert best["trial_id"] == "t_00001" and best["value"] == 0.9 and best["epoch"] == 1
    assert best["params"] == {"loss": "npair", "batch_size": 64}
    assert best["config"]["lr"] == pytest.approx(0.1) and best["config"]["stage"] == "student"
    for p in ("loss", "batch_size"):
        assert run.exists(f"out/plots/val_auc_vs_{p}.png")
    lines = format_trials(trials, plan)
    assert lines[0].split() == ["trial", "loss", "batch_size", "lr", "val_auc", "best", "ep",
                                "epochs", "status", "time", "s"]
    assert lines[-1].strip() == "t_00002 failed: ValueError: bad batch"


def test_cli_reports_bad_space_with_exit_2(tmp_path, capsys):
    from stylehub_ray.cli import main

    rc = main(["tune", "fndcl", "--run", str(tmp_path / "run"), "--set",
               "space.lam=uniform:0.9,0.1"])
    assert rc == 2
    assert "space.lam='uniform:0.9,0.1': inverted range" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown model"):
        load_tune_config("bert", None, [])
    with pytest.raises(ValueError, match="tune --set foo.bar"):
        load_tune_config("fndcl", None, ["foo.bar=1"])


# --------------------------------------------------------------------------------------------
# FND-CL sweep on tiny outfits (Ray)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fnd_run(outfits_teacher, tmp_path_factory):
    """The session's tiny outfits with their teacher (conftest), copied: the sweeps write."""
    from conftest import copy_run

    return copy_run(outfits_teacher, tmp_path_factory.mktemp("tune_outfits") / "run")


@pytest.mark.cluster  # about 1 minute: in the CI's second suite (make test-cluster)
def test_fndcl_alpha_sweep_failing_trials_and_best_config(fnd_run, logged):
    run = fnd_run
    # FIFO: ASHA could stop a trial at its first rung before its injected failure.
    cfg = load_tune_config("fndcl", None, [*TINY_FND, "space.alpha=grid:0.5,2.0",
                                           "space.fail_after_epoch=grid:null,0",
                                           "scheduler=fifo"])
    entry = tune_model(run, cfg)
    out = "tune/fndcl/alpha"
    assert entry["status"] == "complete" and run.is_complete(out)
    assert not run.exists("tune/fndcl/_ray/alpha")  # Tune's and Train's folders cleaned up
    trials = pd.read_parquet(run.path(f"{out}/trials.parquet"))
    assert len(trials) == 4 and entry["counts"]["trials"]["total"] == 4
    assert sorted(trials["alpha"]) == [0.5, 0.5, 2.0, 2.0]
    csv = pd.read_csv(run.path(f"{out}/trials.csv"))
    assert list(csv.columns) == list(trials.columns)
    history = pd.read_parquet(run.path(f"{out}/history.parquet"))

    # The two trials told to crash after epoch 0 are reported with their error; the sweep
    # went on and the other two trained.
    failed = trials[trials["status"] == "ERROR"]
    assert len(failed) == 2 and entry["counts"]["trials"]["error"] == 2
    assert set(failed["alpha"]) == {0.5, 2.0} and (failed["epochs_run"] <= 1).all()
    assert (failed["error"] == "RuntimeError: injected failure after epoch 0 (resume "
                               "test)").all()
    assert any("failed: RuntimeError: injected failure" in ln for ln in logged())
    ok = trials[trials["status"] != "ERROR"]
    assert len(ok) == 2 and set(ok["alpha"]) == {0.5, 2.0}
    for _, t in ok.iterrows():
        h = history[history["trial_id"] == t["trial_id"]]
        assert list(h["epoch"]) == [0, 1] and t["epochs_run"] == 2
        assert t["status"] == "COMPLETE"
        assert t["val_auc"] == pytest.approx(h["val_auc"].max())
        assert t["best_epoch"] == int(h.loc[h["val_auc"].idxmax(), "epoch"])
        assert 0.5 < t["val_auc"] <= 1.0  # the FND student learns on tiny outfits
        assert t["error"] == "" or pd.isna(t["error"])
    assert run.exists(f"{out}/plots/val_auc_vs_alpha.png")

    # The best config: the finished trial with the highest val_auc, where train picks it up.
    best = run.read_json("tune/fndcl/best.json")
    top = ok.loc[ok["val_auc"].idxmax()]
    assert best["value"] == pytest.approx(top["val_auc"])
    assert best["params"] == {"alpha": top["alpha"]} and best["sweep"] == "alpha"
    assert best["config"]["alpha"] == top["alpha"] and best["config"]["loss"] == "fnd"
    assert "workers" not in best["config"]
    assert run.read_json(f"{out}/best_config.json")["trial_id"] == best["trial_id"]
    sets = expand_config_sets(run.uri, "fndcl", ["epochs=1", "config=best"])
    cfg_best = C.load_config(C.stage_config("train_fndcl"), None, sets)
    assert cfg_best.alpha == top["alpha"] and cfg_best.loss == "fnd"
    assert cfg_best.epochs == 1  # a later --set overrides the best config
    assert cfg_best.batch_size == 16 and cfg_best.stage == "student"

    # Up to date: the same sweep is skipped.
    assert tune_model(run, cfg).get("skipped")


def test_fractional_gpu_share_rebuilds_the_trainer(fnd_run, tmp_path):
    """Two trials per GPU: the trainer's TorchTrainer, built through the same builder with
    half a GPU per worker (nothing runs: this machine has no GPU)."""
    from stylehub_ray.train.fndcl import TrainFNDCLConfig, build_trainer

    cfg = TrainFNDCLConfig(use_gpu=True, cpus_per_worker=0.5)
    trainer, name = build_trainer(fnd_run, cfg, storage_path=str(tmp_path), name="trial_1")
    shared, _ = build_trainer(fnd_run, cfg, storage_path=str(tmp_path), name="trial_1",
                              gpus_per_worker=0.5)
    assert name == "trial_1" and shared.run_config.name == "trial_1"
    assert shared.run_config.storage_path == str(tmp_path)
    assert shared.scaling_config.use_gpu
    assert shared.scaling_config.resources_per_worker == {"CPU": 0.5, "GPU": 0.5}
    assert shared.train_loop_config == trainer.train_loop_config


def test_train_config_best_without_a_sweep_names_the_command(tmp_path):
    run = Run(str(tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match="stylehub tune two-tower"):
        expand_config_sets(run.uri, "two-tower", ["config=best"])
    with pytest.raises(ValueError, match="expected best or best:SWEEP"):
        expand_config_sets(run.uri, "fndcl", ["config=worst"])


# --------------------------------------------------------------------------------------------
# Contrastive and two-tower sweeps on the tiny H&M run (Ray)
# --------------------------------------------------------------------------------------------
@pytest.mark.cluster  # 30-40 s: in the CI's second suite (make test-cluster)
def test_contrastive_tau_sweep(tiny_run, tmp_path):
    from stylehub_ray.embed.pairs import PairsConfig, mine_pairs
    from stylehub_ray.embed.text import EmbedTextConfig, embed_text

    shutil.copytree(tiny_run.root, tmp_path / "run")
    run = Run(str(tmp_path / "run"))
    embed_text(run, EmbedTextConfig(encoder="tfidf"))
    mine_pairs(run, PairsConfig(), "text")
    cfg = load_tune_config("contrastive", None, [
        "space.tau=grid:0.1,0.5", "space.projection_dim=choice:8,16", "samples=1",
        "train_contrastive.epochs=2", "train_contrastive.batch_size=64",
        "train_contrastive.hidden=64", "train_contrastive.embed_dim=32",
        "train_contrastive.projection_hidden=32", "scheduler=fifo", "max_concurrent=2"])
    entry = tune_model(run, cfg)
    trials = pd.read_parquet(run.path("tune/contrastive/projection_dim-tau/trials.parquet"))
    assert entry["counts"]["trials"] == {"total": 2, "complete": 2}
    assert sorted(trials["tau"]) == [0.1, 0.5]
    assert set(trials["projection_dim"]) <= {8, 16}
    assert (trials["epochs_run"] == 2).all()  # FIFO: no early stopping
    assert (trials["val_recall5"] > 0).all() and (trials["val_separation"] > 0).all()
    best = run.read_json("tune/contrastive/best.json")
    assert best["value"] == pytest.approx(trials["val_recall5"].max())
    assert best["config"]["tau"] in (0.1, 0.5) and best["config"]["hidden"] == [64]
    for p in ("tau", "projection_dim"):
        assert run.exists(f"tune/contrastive/projection_dim-tau/plots/val_recall5_vs_{p}.png")


@pytest.mark.cluster  # 30-50 s: in the CI's second suite (make test-cluster)
def test_two_tower_temperature_sweep(hm_embedded, tmp_path):
    shutil.copytree(hm_embedded.root, tmp_path / "run")  # features + images (conftest)
    run = Run(str(tmp_path / "run"))
    cfg = load_tune_config("two-tower", None, [
        "space.temperature=grid:0.05,0.5", "space.ranking_weight=0.5",
        "train_two_tower.epochs=2", "train_two_tower.batch_size=512",
        "train_two_tower.val_customers=300", "train_two_tower.n_candidates=50",
        "max_concurrent=1", "grace_period=1", "reduction_factor=2"])
    entry = tune_model(run, cfg)
    trials = pd.read_parquet(run.path("tune/two-tower/temperature/trials.parquet"))
    history = pd.read_parquet(run.path("tune/two-tower/temperature/history.parquet"))
    assert entry["counts"]["trials"]["total"] == 2 and "error" not in entry["counts"]["trials"]
    assert list(trials["temperature"]) == [0.05, 0.5]  # grid order, one trial at a time
    assert ((trials["val_map12"] >= 0) & (trials["val_map12"] <= 1)).all()
    # ASHA (rung at epoch 1, reduction factor 2): the first trial sets the cutoff and runs
    # on; the second is stopped at the rung exactly when its epoch-0 MAP@12 is below it.
    first = history[history["trial_id"] == trials["trial_id"][0]]["val_map12"].tolist()
    second = history[history["trial_id"] == trials["trial_id"][1]]["val_map12"].tolist()
    assert trials["status"][0] == "COMPLETE" and len(first) == 2
    stopped = second[0] < first[0]
    assert trials["status"][1] == ("STOPPED" if stopped else "COMPLETE")
    assert len(second) == (1 if stopped else 2) == trials["epochs_run"][1]
    best = json.loads((tmp_path / "run/tune/two-tower/best.json").read_text())
    assert best["config"]["ranking_weight"] == 0.5
    assert best["config"]["temperature"] == trials.loc[trials["val_map12"].idxmax(),
                                                        "temperature"]
    assert np.isfinite(best["value"])


# --------------------------------------------------------------------------------------------
# Sweeps sized to the cluster (issue 20): as many trials at once as the CPUs hold, or refused
# at once naming what to change; the default sweep of each model finishes.
# --------------------------------------------------------------------------------------------
def test_trials_at_once_fit_the_cpus():
    from stylehub_ray.tune.sweep import trials_at_once

    assert trials_at_once(1, cpus=2, demand=1.25) == 1  # this machine, the defaults
    assert trials_at_once(4, cpus=2, demand=1.25) == 1  # never more than fit
    assert trials_at_once(0, cpus=8, demand=1.25) == 6  # 0: as many as fit
    assert trials_at_once(2, cpus=8, demand=1.25) == 2
    assert trials_at_once(1, cpus=2, demand=2.25) == 0  # not even one: refused
    assert trials_at_once(0, cpus=16, demand=1.25, gpus=1, cluster_gpus=2) == 2


def test_a_trial_larger_than_the_cluster_is_refused_at_once(fnd_run):
    run = fnd_run
    cfg = load_tune_config("fndcl", None, [*TINY_FND, "train_fndcl.workers=8",
                                           "space.alpha=grid:0.5,2.0"])
    before = run.entry("tune", "fndcl/alpha")  # an earlier test's sweep may share the run
    with pytest.raises(ValueError, match=r"a trial needs 8.25 CPUs .*train_fndcl.workers 8 .* "
                                         r"cluster has 4: lower them \(e.g. --set "
                                         r"train_fndcl.workers=1"):
        tune_model(run, cfg)
    assert run.entry("tune", "fndcl/alpha") == before  # nothing started, nothing recorded


@pytest.mark.parametrize("model", ["fndcl", "contrastive", "two-tower"])
def test_the_default_sweep_of_each_model_finishes(model, request, tmp_path):
    """`stylehub tune MODEL --samples 2` with the default space and tune settings (one
    epoch, tiny models, so it stays short)."""
    tiny = {"fndcl": ["train_fndcl.epochs=1"],
            "contrastive": ["train_contrastive.epochs=1", "train_contrastive.hidden=32",
                            "train_contrastive.embed_dim=16",
                            "train_contrastive.projection_hidden=16"],
            "two-tower": ["train_two_tower.epochs=1", "train_two_tower.val_customers=50",
                          "train_two_tower.n_candidates=20", "train_two_tower.choose=[]"]}
    if model == "fndcl":
        run = request.getfixturevalue("fnd_run")
    elif model == "contrastive":
        from stylehub_ray.embed.pairs import PairsConfig, mine_pairs
        from stylehub_ray.embed.text import EmbedTextConfig, embed_text

        shutil.copytree(request.getfixturevalue("tiny_run").root, tmp_path / "run")
        run = Run(str(tmp_path / "run"))
        embed_text(run, EmbedTextConfig(encoder="tfidf"))
        mine_pairs(run, PairsConfig(), "text")
    else:
        shutil.copytree(request.getfixturevalue("hm_embedded").root, tmp_path / "run")
        run = Run(str(tmp_path / "run"))
    entry = tune_model(run, load_tune_config(model, None, ["samples=2", *tiny[model]]))
    trials = entry["counts"]["trials"]
    assert trials["total"] == 2 and "error" not in trials, trials
    assert run.is_complete(f"tune/{model}/default")
