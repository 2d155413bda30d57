"""The Ray Serve graph on the session's Ray head (127.0.0.1, a free port): every endpoint,
every bad input and its error body, the served answers against the same functions in process,
the three /recommend layouts giving the same answers, the API contract checked by
schemathesis (`--checks all`) on a graph with every model and on one without the outfit
model, request ids in the logs, `serve deploy serve_config.yaml` through the dashboard, and a
hot reload onto a new run with no failed request. The run to serve is the tiny run, copied,
with features, image and text embeddings and a one-epoch two-tower built once per module; the
outfits run has a one-epoch FND-CL teacher."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from conftest import REPO, VENV_BIN, _free_port, copy_run, wait_for

from stylehub_ray.run import Run

UPLOAD_LIMIT_MB = 0.05  # /similar-image limit in these tests: 52,428 bytes


@pytest.fixture(scope="module")
def hm_run(hm_trained, tmp_path_factory) -> Run:
    """The shared run with a one-epoch two-tower (conftest), copied, with TF-IDF text vectors
    (the similar-items fallback)."""
    from stylehub_ray.embed.text import EmbedTextConfig, embed_text

    run = copy_run(hm_trained, tmp_path_factory.mktemp("serve") / "run")
    embed_text(run, EmbedTextConfig(encoder="tfidf", actors=1, threads=1))
    return run


@pytest.fixture(scope="module")
def outfits_run(outfits_teacher) -> Run:
    """Tiny generated outfits with a one-epoch N-pair teacher (conftest; read-only here)."""
    return outfits_teacher


@pytest.fixture(scope="module")
def serve_port(ray_head):
    """Serve's HTTP proxy on 127.0.0.1 and a free port (fixed for the head's life), shut
    down at the end of the module."""
    from ray import serve

    from stylehub_ray.serve.app import start_http

    port = _free_port()
    start_http("127.0.0.1", port)
    try:
        yield port
    finally:
        serve.shutdown()


def _settings(hm_run: Run, outfits_run: Run | None) -> dict:
    return {"run": hm_run.uri, "outfits_run": outfits_run.uri if outfits_run else "",
            "max_upload_mb": UPLOAD_LIMIT_MB, "candidates": 100}


@pytest.fixture(scope="module")
def base(serve_port, hm_run, outfits_run):
    """The graph deployed with serve.run (the default layout: /recommend in the ingress);
    yields its base URL."""
    from ray import serve

    from stylehub_ray.serve.app import APP_NAME, build_app

    serve.run(build_app(_settings(hm_run, outfits_run)), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{serve_port}"
    wait_for(lambda: _ok(f"{url}/healthz"), timeout=120)
    yield url


@pytest.fixture(scope="module")
def split_base(serve_port, hm_run, base):
    """A second app beside it at /split: retrieval and ranking as two deployments, and no
    outfits run (so no outfit model)."""
    from ray import serve

    from stylehub_ray.serve.app import build_app

    settings = {**_settings(hm_run, None), "recommend_layout": "split"}
    serve.run(build_app(settings), name="stylehub-split", route_prefix="/split")
    url = f"http://127.0.0.1:{serve_port}/split"
    wait_for(lambda: _ok(f"{url}/healthz"), timeout=120)
    yield url
    if "stylehub-split" in serve.status().applications:  # the config test deletes it
        serve.delete("stylehub-split")


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def rec(hm_run):
    from stylehub_ray.models.recommender import TwoTowerRecommender

    return TwoTowerRecommender.load(hm_run)


@pytest.fixture(scope="module")
def customers(hm_run, rec) -> dict:
    """Customer ids by kind: trained ones, ones in the data but not trained."""
    from stylehub_ray.data.ingest import read_table

    t = read_table(hm_run, "raw/customer_map").sort_by("customer_idx")
    ids = np.array(t.column("customer_id").to_pylist())
    idx = t.column("customer_idx").to_numpy().astype(np.int64)
    known = rec.known(idx)
    return {"known": list(zip(ids[known][:3], idx[known][:3])),
            "untrained": list(zip(ids[~known][:1], idx[~known][:1]))}


def _ids_of(hm_run: Run, article_idx) -> list[str]:
    from stylehub_ray.serve.core import Catalog

    cat = Catalog.load(hm_run)
    return [f"{int(cat.id_of[i]):010d}" for i in article_idx]


# ------------------------------------------------------------------------------------------
# Endpoints
# ------------------------------------------------------------------------------------------
def test_healthz_reports_every_part_and_openapi_lists_the_endpoints(base, hm_run, outfits_run):
    h = requests.get(f"{base}/healthz", timeout=30).json()
    assert h["status"] == "ok" and h["run"] == hm_run.uri
    assert h["recommend_layout"] == "ingress" and all(h["served"].values())
    assert set(h["parts"]) == {"recommend", "similar", "image", "outfits"}
    for name, part in h["parts"].items():
        assert "unavailable" not in part, (name, part)
        expected = outfits_run.uri if name == "outfits" else hm_run.uri
        assert part["run"] == expected and part["rss_mb"] > 0
    assert h["parts"]["outfits"]["variant"] == "teacher-npair"
    spec = requests.get(f"{base}/openapi.json", timeout=30).json()
    assert set(spec["paths"]) == {"/recommend/{customer_id}", "/recommend",
                                  "/similar/{article_id}", "/similar-image", "/outfit-score",
                                  "/healthz"}
    assert requests.get(f"{base}/docs", timeout=30).status_code == 200
    # The contract: every error code with the one error body, the request id header on
    # every response, a pattern or bounds on every parameter.
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for code, response in op["responses"].items():
                assert "X-Request-ID" in response["headers"], (path, method, code)
                if code[0] in "45":
                    assert response["content"]["application/json"]["schema"] == error
            if path != "/healthz":
                assert {"422", "500", "503"} <= set(op["responses"]), (path, method)
            for p in op.get("parameters", []):
                sch = p["schema"]
                assert ("pattern" in sch or "maximum" in sch or "enum" in sch
                        or sch.get("type") == "boolean"
                        or {b.get("type") for b in sch.get("anyOf", [{}])} == {"boolean",
                                                                                "null"}
                        or "pattern" in sch.get("items", {})), (path, p)
    assert spec["paths"]["/similar-image"]["post"]["responses"].keys() >= {"413", "415"}
    body = spec["components"]["schemas"]["RecommendRequest"]["properties"]
    assert body["customer_id"]["pattern"] == "^[0-9a-f]{64}$"
    assert body["purchased"]["items"]["pattern"] == "^[0-9]{1,10}$"
    assert (body["k"]["minimum"], body["k"]["maximum"]) == (1, 100)


def test_recommend_known_customers_match_the_recommender_in_process(base, hm_run, rec,
                                                                     customers):
    assert len(customers["known"]) == 3
    for cid, idx in customers["known"]:
        r = requests.get(f"{base}/recommend/{cid}", params={"k": 5}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["path"] == "model" and body["known_customer"] and body["k"] == 5
        got = [item["article_id"] for item in body["items"]]
        expected, scores, path = rec.recommend(np.array([idx]), 5)
        assert path == ["model"]
        assert got == _ids_of(hm_run, expected[0])
        np.testing.assert_allclose([i["score"] for i in body["items"]], scores[0], rtol=1e-5)
        assert body["items"][0]["prod_name"] and body["items"][0]["product_type_name"]
        bought = set(_ids_of(hm_run, rec.bought(np.array([idx]))[0]))
        assert rec.choices["drop_bought"] is False or not bought & set(got)
    # POST with JSON gives the same answer as GET.
    cid, _ = customers["known"][0]
    g = requests.get(f"{base}/recommend/{cid}", params={"k": 4}, timeout=60).json()
    p = requests.post(f"{base}/recommend", json={"customer_id": cid, "k": 4}, timeout=60).json()
    assert g == p


def test_unseen_customers_get_popularity_or_the_cold_start_path(base, hm_run, rec, customers):
    from stylehub_ray.serve import core
    from stylehub_ray.serve.settings import ServeConfig

    new_id = "f" * 64
    r = requests.get(f"{base}/recommend/{new_id}", params={"k": 6}, timeout=60).json()
    assert r["path"] == "popularity" and not r["known_customer"]
    assert [i["article_id"] for i in r["items"]] == _ids_of(hm_run, rec.popular(6))
    if customers["untrained"]:
        cid, idx = customers["untrained"][0]
        u = requests.get(f"{base}/recommend/{cid}", params={"k": 6}, timeout=60).json()
        # A customer without a training positive: the model's vector from their features
        # (model-cold) when it beat popularity on val, else popularity; as in process.
        expected, _scores, path = rec.recommend(np.array([idx]), 6)
        assert [u["path"]] == path and u["known_customer"]
        assert [i["article_id"] for i in u["items"]] == _ids_of(hm_run, expected[0])
        bought = set(_ids_of(hm_run, rec.bought(np.array([idx]))[0]))
        if rec.choices["drop_bought"]:
            assert not bought & {i["article_id"] for i in u["items"]}
    # With purchases, the cold-start path answers, from the purchased articles' vectors.
    purchased = _ids_of(hm_run, rec.popular(3))
    local = core.TwoTowerPart(hm_run, ServeConfig(run=hm_run.uri))
    for strategy in ("avg", "w-avg"):
        r = requests.get(f"{base}/recommend/{new_id}", timeout=60,
                         params={"k": 5, "purchased": ",".join(purchased),
                                 "cold_start": strategy, "drop_bought": "true"}).json()
        assert r["path"] == f"cold-start-{strategy}" and r["ranked_by"] == "retrieval score"
        got = [i["article_id"] for i in r["items"]]
        assert len(got) == 5 and not set(purchased) & set(got)
        [want] = local.recommend_many([core.RecommendQuery(
            new_id, 5, np.asarray(rec.popular(3)), strategy, True)])
        assert got == _ids_of(hm_run, want.article_idx)
    # avg is the mean of the purchased articles' retrieval vectors: its top article scores
    # the mean of their dot products with it.
    v = rec.article_vectors[rec.popular(3)].mean(0)
    top = requests.get(f"{base}/recommend/{new_id}", timeout=60, params={
        "k": 1, "purchased": purchased, "cold_start": "avg", "drop_bought": "false"}).json()
    assert top["path"] == "cold-start-avg"
    assert top["items"][0]["score"] == pytest.approx(float((rec.article_vectors @ v).max()),
                                                     rel=1e-4)


def test_similar_items_and_photo_search(base, hm_run, tiny_hm):
    from stylehub_ray.data.ingest import read_table

    images = read_table(hm_run, "raw/images").to_pandas()
    row = images[images.status == "present"].iloc[0]
    aid = f"{int(row.article_id):010d}"
    r = requests.get(f"{base}/similar/{aid}", params={"k": 3}, timeout=60).json()
    assert r["article_id"] == aid and r["source"] == "text-embeddings" and len(r["items"]) == 3
    assert aid not in [i["article_id"] for i in r["items"]]
    scores = [i["score"] for i in r["items"]]
    assert scores == sorted(scores, reverse=True)
    # A catalogue photo finds its own article first (same encoder, PCA and index).
    data = Path(row.path).read_bytes()
    p = requests.post(f"{base}/similar-image", params={"k": 3}, data=data, timeout=60,
                      headers={"Content-Type": "image/jpeg"}).json()
    assert p["items"][0]["article_id"] == aid
    assert p["items"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert p["source"].startswith("image-embeddings")


def test_outfit_scores_for_a_trained_user_and_a_cold_starter(base, outfits_run):
    import torch

    from stylehub_ray.eval.fndcl import ColdStartScorer

    outfits = [{"top": 1, "bottom": 2, "shoe": 3}, {"top": 4, "bottom": 5, "shoe": 6}]
    r = requests.post(f"{base}/outfit-score", json={"user": 7, "outfits": outfits},
                      timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] == "model" and body["set_name"] == "630" and len(body["scores"]) == 2
    scorer = ColdStartScorer.from_run(outfits_run, "teacher-npair", "630")
    rows = torch.as_tensor(scorer.outfit_rows(outfits))
    want = scorer.model.score_outfits(scorer.item_table, torch.full((2,), 7), rows).numpy()
    np.testing.assert_allclose(body["scores"], want, rtol=1e-5, atol=1e-6)
    # A new user of the cold-start set, from one liked outfit (w-avg, Eq. 20-24).
    liked = [{"top": 0, "bottom": 0, "shoe": 0}]
    c = requests.post(f"{base}/outfit-score", timeout=60, json={
        "set_name": "53", "liked": liked, "outfits": outfits}).json()
    assert c["path"] == "cold-start-w-avg" and c["set_name"] == "53"
    cold = ColdStartScorer.from_run(outfits_run, "teacher-npair", "53")
    np.testing.assert_allclose(c["scores"], cold.score(liked, outfits, "w-avg"), rtol=1e-5,
                               atol=1e-6)


def test_every_bad_input_is_a_4xx_with_a_message_and_the_graph_survives(base, hm_run,
                                                                        customers):
    from PIL import Image

    cid, _ = customers["known"][0]
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), (10, 200, 30)).save(buf, format="PNG")
    png = buf.getvalue()
    big = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="BMP")  # an image, but over the 52 KB limit
    oversized = buf.getvalue()
    assert len(oversized) > UPLOAD_LIMIT_MB * 1024 * 1024
    good_outfit = {"top": 1, "bottom": 2, "shoe": 3}
    jpeg = {"Content-Type": "image/jpeg"}
    cases = [
        ("GET", "/recommend/not-a-customer", {}, 422),
        ("GET", f"/recommend/{cid}?k=0", {}, 422),
        ("GET", f"/recommend/{cid}?k=101", {}, 422),
        ("GET", f"/recommend/{cid}?k=abc", {}, 422),
        ("GET", f"/recommend/{'e' * 64}?purchased=0000000001", {}, 404),
        ("GET", f"/recommend/{'e' * 64}?purchased=12x", {}, 422),
        ("GET", f"/recommend/{'e' * 64}?purchased=0000000001&cold_start=median", {}, 422),
        ("POST", "/recommend", {"data": b"{not json", "headers": {
            "Content-Type": "application/json"}}, 422),
        ("POST", "/recommend", {"json": {"customer_id": cid, "k": 5, "colour": "red"}}, 422),
        ("POST", "/recommend", {"json": {"customer_id": cid, "k": 500}}, 422),
        ("GET", "/similar/0000000001", {}, 404),
        ("GET", "/similar/abc", {}, 422),
        ("GET", "/similar/0000000001?k=1000", {}, 422),
        ("POST", "/similar-image", {"data": b"hello, not a photo", "headers": jpeg}, 415),
        ("POST", "/similar-image", {"data": png[: len(png) // 3], "headers": jpeg}, 415),
        ("POST", "/similar-image", {"data": b"", "headers": jpeg}, 422),
        ("POST", "/similar-image", {"data": oversized, "headers": jpeg}, 413),
        ("POST", "/similar-image", {"files": {"file": ("a.png", png, "image/png")}}, 415),
        ("POST", "/similar-image?k=0", {"data": png, "headers": jpeg}, 422),
        ("POST", "/outfit-score", {"data": b"[1, 2", "headers": {
            "Content-Type": "application/json"}}, 422),
        ("POST", "/outfit-score", {"json": {"user": 1, "outfits": [
            {"top": 1, "bottom": 2, "shoe": 3, "hat": 4}]}}, 422),
        ("POST", "/outfit-score", {"json": {"user": 1, "outfits": [{"top": 1, "shoe": 3}]}},
         422),
        ("POST", "/outfit-score", {"json": {"user": 1, "outfits": [
            {"top": 10 ** 6, "bottom": 2, "shoe": 3}]}}, 404),
        ("POST", "/outfit-score", {"json": {"user": 10 ** 6, "outfits": [good_outfit]}}, 404),
        ("POST", "/outfit-score", {"json": {"outfits": [good_outfit]}}, 422),
        ("POST", "/outfit-score", {"json": {"user": 1, "outfits": []}}, 422),
        ("POST", "/outfit-score", {"json": {"set_name": "999", "liked": [good_outfit],
                                            "outfits": [good_outfit]}}, 404),
        ("POST", "/outfit-score", {"json": {"user": 1, "set_name": "53",
                                            "outfits": [good_outfit]}}, 404),
        ("POST", "/recommend", {"json": {"customer_id": cid, "k": "5"}}, 422),
        ("POST", "/outfit-score", {"data": b"\xff\xfe{", "headers": {
            "Content-Type": "application/json"}}, 400),
        ("POST", "/outfit-score", {"json": {"user": None, "outfits": [good_outfit]}}, 422),
        ("PUT", "/recommend", {"json": {"customer_id": cid}}, 405),
        ("GET", "/no-such-endpoint", {}, 404),
    ]
    for method, path, kwargs, status in cases:
        r = requests.request(method, f"{base}{path}", timeout=60, **kwargs)
        assert r.status_code == status, (method, path, r.status_code, r.text[:300])
        # One error body everywhere, with the request id of the response's header.
        body = r.json()
        assert set(body) == {"status", "error", "detail", "request_id", "fields"}, body
        assert body["status"] == status and body["detail"], (path, body)
        assert body["request_id"] == r.headers["X-Request-ID"], (path, body)
        assert "Traceback" not in r.text and "\x1b[" not in r.text
        assert status != 422 or body["fields"] or "body" in body["detail"], (path, body)
    # Messages name what was wrong.
    r = requests.get(f"{base}/similar/0000000001", timeout=60).json()
    assert "0000000001" in r["detail"]
    r = requests.post(f"{base}/outfit-score", timeout=60, json={
        "user": 1, "outfits": [{"top": 1, "bottom": 2, "shoe": 3, "hat": 4}]}).json()
    assert "hat" in r["detail"] and r["fields"][0]["loc"][-1] == "hat"
    # No replica was taken down: every part still answers.
    h = requests.get(f"{base}/healthz", timeout=30).json()
    assert all("unavailable" not in p for p in h["parts"].values())
    assert requests.get(f"{base}/recommend/{cid}", timeout=60).status_code == 200


def test_the_three_layouts_give_the_same_answers(base, split_base, hm_run, rec, customers,
                                                 serve_port):
    """/recommend in the ingress (base), as Retriever + Ranker deployments (split_base), and
    in one TwoTower deployment (the serve_config.yaml test below) compute the same thing."""
    h = requests.get(f"{split_base}/healthz", timeout=30).json()
    assert h["recommend_layout"] == "split"
    assert set(h["parts"]["recommend"]) == {"retriever", "ranker"}
    new_id = "e" * 64
    purchased = ",".join(_ids_of(hm_run, rec.popular(3)))
    asks = [(f"/recommend/{cid}", {"k": 7}) for cid, _ in customers["known"]] + [
        (f"/recommend/{new_id}", {"k": 5}),
        (f"/recommend/{new_id}", {"k": 5, "purchased": purchased, "cold_start": "w-avg"})]
    for path, params in asks:
        a = requests.get(f"{base}{path}", params=params, timeout=60)
        b = requests.get(f"{split_base}{path}", params=params, timeout=60)
        assert a.status_code == b.status_code == 200, (a.text[:200], b.text[:200])
        assert a.json() == b.json()


@pytest.fixture(scope="module")
def ranker_run(hm_run, tmp_path_factory) -> Run:
    """hm_run, copied, with a tiny LightGBM ranker published (issue 18)."""
    from stylehub_ray.eval.ranker import TrainRankerConfig, train_ranker

    run = copy_run(hm_run, tmp_path_factory.mktemp("serve_ranker") / "run")
    train_ranker(run, TrainRankerConfig(
        weeks=1, train_customers=300, val_customers=200, rounds=20, patience=5,
        n_repurchase=12, n_copurchase=12, n_same_product=6, n_popular=12, n_popular_age=12,
        n_als=12, als_iterations=3, als_factors=8))
    return run


def test_a_run_with_a_ranker_serves_its_submission_on_the_ranker_path(
        serve_port, ranker_run, customers, tmp_path):
    """With a published LightGBM ranker the run's customers get the ranker's answer (path
    "ranker"), the one `stylehub recommend --set model=ranker` writes; a new customer and a
    request naming purchases still take the two-tower's paths. Every layout goes through the
    same part (in process here: the split layout's Retriever holds it)."""
    import pandas as pd
    from ray import serve

    from stylehub_ray.config import load_config
    from stylehub_ray.eval.recommend import RecommendConfig, recommend
    from stylehub_ray.serve import core
    from stylehub_ray.serve.app import build_app
    from stylehub_ray.serve.settings import ServeConfig

    recommend(ranker_run, load_config(RecommendConfig, None, ["model=ranker"]),
              out=str(tmp_path / "sub.csv"))
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str).set_index("customer_id")["prediction"]
    serve.run(build_app(_settings(ranker_run, None)), name="stylehub-ranker",
              route_prefix="/ranker")
    url = f"http://127.0.0.1:{serve_port}/ranker"
    try:
        wait_for(lambda: _ok(f"{url}/healthz"), timeout=120)
        health = requests.get(f"{url}/healthz", timeout=30).json()
        assert health["parts"]["recommend"]["ranker"]["variant"] == "default"
        asks = customers["known"] + customers["untrained"]
        for cid, _ in asks:
            r = requests.get(f"{url}/recommend/{cid}", timeout=60)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["path"] == "ranker" and body["ranked_by"] == "ranking model"
            assert [i["article_id"] for i in body["items"]] == sub[cid].split(), cid
            scores = [i["score"] for i in body["items"]]
            assert scores == sorted(scores, reverse=True)
        new = requests.get(f"{url}/recommend/{'d' * 64}", params={"k": 5}, timeout=60).json()
        assert new["path"] == "popularity"
        cid = customers["known"][0][0]
        purchased = sub[cid].split()[:2]
        cold = requests.get(f"{url}/recommend/{cid}", timeout=60, params={
            "k": 5, "purchased": ",".join(purchased)}).json()
        assert cold["path"] == "model"
    finally:
        serve.delete("stylehub-ranker")
    part = core.CandidatePart(ranker_run, ServeConfig(run=ranker_run.uri))
    got = part.candidates_many([core.RecommendQuery(cid, 12, np.zeros(0, np.int64), "avg", None)
                                for cid, _ in asks])
    assert all(g.path == "ranker" for g in got)
    assert [_ids_of(ranker_run, g.article_idx) for g in got] == [sub[c].split()
                                                                 for c, _ in asks]
    off = core.CandidatePart(ranker_run, ServeConfig(run=ranker_run.uri, ranker=""))
    assert off.candidates_many([core.RecommendQuery(asks[0][0], 12, np.zeros(0, np.int64),
                                                    "avg", None)])[0].path == "model"


def test_an_endpoint_the_runs_cannot_serve_is_left_out_of_the_schema(split_base):
    spec = requests.get(f"{split_base}/openapi.json", timeout=30).json()
    assert "/outfit-score" not in spec["paths"] and "/recommend" in spec["paths"]
    r = requests.post(f"{split_base}/outfit-score", timeout=30, json={
        "user": 1, "outfits": [{"top": 1, "bottom": 2, "shoe": 3}]})
    assert r.status_code == 404 and "outfits run" in r.json()["detail"]
    assert r.json()["request_id"] == r.headers["X-Request-ID"]


def test_every_response_has_a_request_id_that_the_replica_logs_show(base, customers, ray_head):
    cid, _ = customers["known"][0]
    ok = requests.get(f"{base}/recommend/{cid}", timeout=60)
    bad = requests.get(f"{base}/recommend/{cid}", params={"k": 0}, timeout=60)
    ids = [ok.headers["X-Request-ID"], bad.headers["X-Request-ID"]]
    assert ids[0] != ids[1] and bad.json()["request_id"] == ids[1]
    logs = Path(ray_head["temp_dir"]) / "session_latest" / "logs" / "serve"

    def logged() -> bool:  # Serve's access log line of each request names its id
        text = "".join(p.read_text(errors="replace")
                       for p in logs.glob("replica_stylehub_Ingress_*.log"))
        return all(i in text for i in ids)

    wait_for(logged, timeout=60, every=1.0)


def test_an_unexpected_exception_is_a_500_with_the_error_body_and_no_traceback():
    """The error handling every route has, on a FastAPI app of its own (no Ray): a bug
    answers the one error body, and its traceback goes to the log under the request id."""
    import logging

    from fastapi import FastAPI, HTTPException

    from stylehub_ray.serve.app import install_errors

    app = FastAPI()
    install_errors(app)

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("secret internals")

    @app.get("/gone")
    async def gone() -> dict:
        raise HTTPException(404, "no such thing")

    def call(path: str) -> tuple[int, dict]:
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
                 "headers": [(b"x-request-id", b"rid-42")], "server": ("127.0.0.1", 1),
                 "client": ("127.0.0.1", 2)}
        asyncio.run(app(scope, receive, send))
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return sent[0]["status"], json.loads(body)

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # Serve's logger does not propagate to pytest's
    serve_log = logging.getLogger("ray.serve")
    serve_log.addHandler(handler)
    try:
        status, body = call("/boom")
    finally:
        serve_log.removeHandler(handler)
    assert status == 500 and body["status"] == 500 and body["request_id"] == "rid-42"
    assert "secret internals" not in json.dumps(body) and "rid-42" in body["detail"]
    assert any("rid-42" in r.getMessage() and r.exc_info for r in records)
    assert call("/gone") == (404, {"status": 404, "error": "Not Found",
                                   "detail": "no such thing", "request_id": "rid-42",
                                   "fields": []})


def _schemathesis(url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """schemathesis, every check, a bounded number of examples per operation, on loopback;
    photos for the upload's media types come from tests/schemathesis_hooks.py."""
    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
               PYTHONPATH=os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH",
                                                                              "")]))
    cmd = [str(VENV_BIN / "schemathesis"), "run", f"{url}/openapi.json", "--url", url,
           "--checks", "all", "--max-examples", "15", "--seed", "17", "--workers", "1",
           "--phases", "examples,coverage,fuzzing", "--request-timeout", "60", "--no-color",
           "--generation-database", "none", "--report", "junit",
           "--report-dir", str(tmp_path)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)


def test_schemathesis_finds_nothing_with_every_model(base, tmp_path):
    done = _schemathesis(base, tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "6 selected / 6 total" in done.stdout


def test_schemathesis_finds_nothing_without_the_outfit_model(split_base, tmp_path):
    done = _schemathesis(split_base, tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "5 selected / 5 total" in done.stdout


def test_demo_prints_three_customers_fetched_over_http(base, serve_port, hm_run, outfits_run,
                                                        logged):
    from stylehub_ray.serve.demo import serve_demo

    shown = serve_demo(hm_run.uri, outfits_run.uri, port=serve_port, app_name="demo-test",
                       route_prefix="/demo")
    assert len(shown) == 3 and all(s["path"] == "model" and len(s["items"]) == 12
                                   for s in shown)
    text = "\n".join(logged())
    for s in shown:
        assert s["customer_id"][:12] in text and s["items"][0]["article_id"] in text


# --------------------------------------------------------------------------------------------
# In a real browser (chromium, headless, off the network): the demo page at / and the report
# --------------------------------------------------------------------------------------------
def test_demo_page_in_a_browser(base, hm_run, tmp_path):
    """Customer lookup shows their purchases and recommendations as photos; a photo upload
    shows similar items; the outfit picker scores an outfit; no request fails."""
    from browser import chromium_driver, failed_requests, images, screenshot, wait_until
    from selenium.webdriver.common.by import By

    from stylehub_ray.data.ingest import read_table

    t = read_table(hm_run, "raw/images").to_pandas()
    photo = Path(t[t.status == "present"].iloc[0].path)
    driver = chromium_driver()
    try:
        driver.get(f"{base}/")
        wait_until(lambda: "run " in driver.find_element(By.ID, "status").text)
        driver.find_element(By.ID, "random-customer").click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#rec-cards .card img"))
        loaded = lambda css: wait_until(  # noqa: E731 - every image of css decoded
            lambda: (imgs := images(driver, css)) and all(c for c, _, _ in imgs) and imgs)
        recs = loaded("#rec-cards img")
        assert len(recs) == 12 and all(w > 0 for _, w, _ in recs), recs
        assert all(w > 0 for _, w, _ in loaded("#recent-cards img"))
        assert "answered by the" in driver.find_element(By.ID, "customer-out").text
        driver.find_element(By.ID, "photo-upload").send_keys(str(photo))
        similar = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR,
                                                          "#similar-cards .card"))
        assert f"{int(t[t.status == 'present'].iloc[0].article_id):010d}" in similar[0].text
        assert all(w > 0 for _, w, _ in loaded("#similar-cards img"))
        wait_until(lambda: len(images(driver, "#outfit-picker img")) >= 3)
        assert all(w > 0 for _, w, _ in loaded("#outfit-picker img"))
        driver.find_element(By.ID, "score-user").click()
        score = wait_until(lambda: driver.find_elements(By.ID, "outfit-score"))
        assert score[0].text.startswith("score ")
        assert failed_requests(driver) == []
        screenshot(driver, "demo-page")
    finally:
        driver.quit()


def test_report_in_a_browser(hm_run, tmp_path):
    """The report of a run with recommendations: the photo cards show real images, nothing
    is fetched from the network, no request fails."""
    from browser import chromium_driver, failed_requests, images, screenshot

    from stylehub_ray.eval.recommend import RecommendConfig, recommend
    from stylehub_ray.report import ReportConfig, write_report

    driver = chromium_driver()  # skips first when there is no browser
    try:
        run = copy_run(hm_run, tmp_path / "run")
        recommend(run, RecommendConfig(actors=1, n_candidates=50))
        page = write_report(run, ReportConfig(customers=2))
        driver.get(f"file://{page}")
        cards = images(driver, ".card img")
        assert len(cards) >= 12 and all(c and w > 0 for c, w, _ in cards), cards
        assert all(src.startswith("data:image/") for _, _, src in images(driver))
        assert failed_requests(driver) == []
        screenshot(driver, "report")
    finally:
        driver.quit()


# ------------------------------------------------------------------------------------------
# serve deploy serve_config.yaml, and a new run without failed requests (runs last)
# ------------------------------------------------------------------------------------------
def _deploy(ray_head, config: dict, path: Path) -> None:
    path.write_text(yaml.safe_dump(config))
    env = dict(ray_head["env"], RAY_AUTH_MODE="token")
    done = subprocess.run([str(VENV_BIN / "serve"), "deploy", str(path), "--address",
                           ray_head["dashboard"]], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _serving(url: str, run: Run) -> bool:
    try:
        h = requests.get(f"{url}/healthz", timeout=10).json()
    except (requests.RequestException, ValueError):
        return False
    parts = [p for n, p in h.get("parts", {}).items() if n != "outfits"]
    return h.get("run") == run.uri and bool(parts) and all(p.get("run") == run.uri
                                                            for p in parts)


# Every deployment sets max_surge_percent=100 (serve_config.yaml, app.py): without it Serve
# stopped each one-replica deployment before starting its replacement, and 2 of 151 requests
# sent during the rollover got a 500.
def test_serve_deploy_config_then_a_new_run_without_failed_requests(
        ray_head, serve_port, base, hm_run, outfits_run, customers, rec, tmp_path):
    from ray import serve

    from stylehub_ray.serve.app import APP_NAME

    # The config takes over: Serve refuses a config while apps deployed by serve.run remain.
    for name in list(serve.status().applications):
        serve.delete(name)
    config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    config["http_options"] = {"host": "127.0.0.1", "port": serve_port}
    app = config["applications"][0]
    assert app["import_path"] == "stylehub_ray.serve.app:build_app"
    app["args"].update(_settings(hm_run, outfits_run))
    for d in app["deployments"]:  # the config's CPU shares, scaled to the 4-CPU test head
        d["ray_actor_options"]["num_cpus"] = 0.1
    _deploy(ray_head, config, tmp_path / "serve_a.yaml")
    url = f"http://127.0.0.1:{serve_port}"
    wait_for(lambda: _serving(url, hm_run), timeout=240, every=1.0)
    assert serve.status().applications[APP_NAME].status == "RUNNING"
    # The config's layout: retrieval and ranking in one TwoTower deployment, same answers.
    assert requests.get(f"{url}/healthz", timeout=30).json()["recommend_layout"] == "together"
    for cid, idx in customers["known"]:
        got = requests.get(f"{url}/recommend/{cid}", params={"k": 5}, timeout=60).json()
        assert [i["article_id"] for i in got["items"]] == _ids_of(
            hm_run, rec.recommend(np.array([idx]), 5)[0][0])

    # A newer run (here: a copy at a new path) replaces the models under load.
    new_run = Run(str(shutil.copytree(hm_run.root, tmp_path / "newer_run")))
    cid, _ = customers["known"][0]
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def client() -> None:
        deadline = time.monotonic() + 300  # bounded even if the test fails
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                r = requests.get(f"{url}/recommend/{cid}", params={"k": 5}, timeout=60)
                results.append((r.status_code, r.text[:200]))
            except requests.RequestException as exc:
                results.append((-1, repr(exc)[:200]))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: len(results) >= 5, timeout=60)
    before = len(results)
    app["args"]["run"] = new_run.uri
    _deploy(ray_head, config, tmp_path / "serve_b.yaml")
    wait_for(lambda: _serving(url, new_run), timeout=240, every=1.0)
    during = len(results) - before
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(timeout=90)
    failed = [r for r in results if r[0] != 200]
    assert during > 0 and not failed, failed[:5]
    # The new replicas answer before the old ones have stopped: DEPLOYING until then.
    wait_for(lambda: serve.status().applications[APP_NAME].status == "RUNNING", timeout=120,
             every=0.5)

