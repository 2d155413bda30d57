"""Latency and load of the Ray Serve recommendation graph, on loopback, in one run.

One local Ray instance serves two applications side by side:
- the real graph (``/``): Ingress -> CustomerEncoder -> Retriever + BoughtFilter -> Ranker;
- the trivial graph (``/trivial``): the same deployments, handle hops and @serve.batch, each
  part answering at once (``serve.core.Trivial*Part``).
For each concurrency (1, 8, 32 by default) it sends a bounded number of ``GET /recommend``
requests for trained customers to each and records p50 / p99 latency, throughput and errors;
beside them, the floor: the same recommendation computed in this process by the same flow
(``serve.core.recommend_flow``) over the same parts called directly. Then a load test at the
highest concurrency whose p99 stayed under 200 ms: requests for ``--load-seconds`` (bounded in
time and count), failures, and every replica's resident memory before and after.

The client runs on the same machine as the server: on a 2-core machine it takes CPU from the
replicas, so the numbers are an upper bound on what the graph costs. The load average before
and after is recorded.

    python bench/serve.py --run runs/demo-serve [--concurrency 1 8 32] [--requests 300]
        [--load-seconds 120] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import time
from pathlib import Path

import numpy as np

from stylehub_ray.run import Run

P99_GOAL_MS = 200.0
RATIO_GOAL = 1.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(lat_s: list[float], errors: int, wall: float) -> dict:
    ms = np.asarray(lat_s) * 1000
    return {"requests": len(lat_s) + errors, "ok": len(lat_s), "errors": errors,
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
            "mean_ms": round(float(ms.mean()), 2) if len(ms) else None,
            "throughput_rps": round(len(lat_s) / wall, 1) if wall > 0 else None,
            "wall_s": round(wall, 2)}


async def http_load(url_of, ids: list[str], concurrency: int, max_requests: int,
                    max_seconds: float) -> dict:
    """``concurrency`` clients in a closed loop, until ``max_requests`` are sent or
    ``max_seconds`` pass; a non-200 or a transport error counts as an error."""
    import aiohttp

    lat: list[float] = []
    errors: list[str] = []
    sent = 0
    deadline = time.perf_counter() + max_seconds
    timeout = aiohttp.ClientTimeout(total=60)

    async def worker(session) -> None:
        nonlocal sent
        while sent < max_requests and time.perf_counter() < deadline:
            cid = ids[sent % len(ids)]
            sent += 1
            t0 = time.perf_counter()
            try:
                async with session.get(url_of(cid)) as r:
                    await r.read()
                    if r.status == 200:
                        lat.append(time.perf_counter() - t0)
                    else:
                        errors.append(f"HTTP {r.status}")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                errors.append(type(exc).__name__)

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    out = _stats(lat, len(errors), wall)
    out["error_kinds"] = sorted(set(errors))[:5]
    return out


def in_process(parts, ids: list[str], k: int, candidates: int, n: int) -> dict:
    """The floor: the same flow over the same parts, called directly, one at a time."""
    from stylehub_ray.serve.core import recommend_flow

    async def go() -> list[float]:
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            await recommend_flow(parts, ids[i % len(ids)], k, np.zeros(0, np.int64), "avg",
                                 True, candidates)
            lat.append(time.perf_counter() - t0)
        return lat

    t0 = time.perf_counter()
    lat = asyncio.run(go())
    return _stats(lat, 0, time.perf_counter() - t0)


def replica_memory(base: str) -> dict:
    import requests

    h = requests.get(f"{base}/healthz", timeout=60).json()
    mem = {name: p.get("rss_mb") for name, p in h["parts"].items()}
    mem["ingress"] = h["ingress"]["rss_mb"]
    return mem


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo-serve")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=300, help="per level and graph")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="per level and graph")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--load-seconds", type=float, default=120.0)
    ap.add_argument("--load-max-requests", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--customers", type=int, default=500)
    ap.add_argument("--cpus", type=int, default=None, help="logical CPUs of the local Ray")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()

    import ray
    import torch
    from ray import serve

    from stylehub_ray.models.recommender import TwoTowerRecommender
    from stylehub_ray.serve import core
    from stylehub_ray.serve.app import APP_NAME, TRIVIAL_APP_NAME, build_app, start_http
    from stylehub_ray.serve.settings import ServeConfig

    torch.set_num_threads(1)  # as every replica: the floor runs the parts on one thread
    run = Run(args.run)
    if os.environ.get("RAY_ADDRESS"):  # a running instance (e.g. `ray start --head`)
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False,
                 log_to_driver=False)
    port = _free_port()
    start_http("127.0.0.1", port)
    load_before = loadavg()
    cfg = ServeConfig(run=run.uri)
    settings = {"run": run.uri}
    t0 = time.perf_counter()
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
    serve.run(build_app({**settings, "trivial": True}), name=TRIVIAL_APP_NAME,
              route_prefix="/trivial")
    deploy_s = time.perf_counter() - t0
    base = f"http://127.0.0.1:{port}"

    rec = TwoTowerRecommender.load(run)
    cmap = core.CustomerMap.load(run)
    known = np.flatnonzero(rec.known(cmap.idx))
    pick = np.random.default_rng(0).choice(known, min(args.customers, len(known)),
                                           replace=False)
    ids = [cmap.ids[i].decode() for i in pick]
    parts = core.LocalParts(core.EncoderPart(run, cfg), core.RetrieverPart(run, cfg),
                            core.RankerPart(run, cfg), core.HistoryPart(run, cfg))
    del rec

    def real(cid: str) -> str:
        return f"{base}/recommend/{cid}?k={args.k}"

    def trivial(cid: str) -> str:
        return f"{base}/trivial/recommend/{cid}?k={args.k}"

    in_process(parts, ids, args.k, cfg.candidates, args.warmup)
    floor = in_process(parts, ids, args.k, cfg.candidates, args.requests)
    results = {"floor": floor, "levels": []}
    for c in args.concurrency:
        row = {"concurrency": c}
        for name, url_of in (("real", real), ("trivial", trivial)):
            asyncio.run(http_load(url_of, ids, c, args.warmup, 30))
            row[name] = asyncio.run(http_load(url_of, ids, c, args.requests,
                                              args.max_seconds))
        row["real_over_trivial_p50"] = round(row["real"]["p50_ms"] / row["trivial"]["p50_ms"],
                                             2)
        row["real_over_floor_p50"] = round(row["real"]["p50_ms"] / floor["p50_ms"], 2)
        row["models_add_p50_ms"] = round(row["real"]["p50_ms"] - row["trivial"]["p50_ms"], 2)
        results["levels"].append(row)
        print(json.dumps(row), flush=True)

    ok = [r["concurrency"] for r in results["levels"]
          if r["real"]["p99_ms"] is not None and r["real"]["p99_ms"] < P99_GOAL_MS
          and r["real"]["errors"] == 0]
    load_c = max(ok) if ok else min(args.concurrency)
    mem_before = replica_memory(base)
    load = asyncio.run(http_load(real, ids, load_c, args.load_max_requests,
                                 args.load_seconds))
    mem_after = replica_memory(base)
    results["load"] = {"concurrency": load_c, **load, "memory_before_mb": mem_before,
                       "memory_after_mb": mem_after}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "loadavg_before": load_before, "loadavg_after": loadavg(),
                          "ray_cpus": ray.cluster_resources().get("CPU")}
    results["run"] = run.uri
    results["deploy_s"] = round(deploy_s, 1)
    results["settings"] = vars(args)
    serve.delete(APP_NAME)
    serve.delete(TRIVIAL_APP_NAME)
    serve.shutdown()
    ray.shutdown()

    print(f"\n/recommend, k={args.k}, {len(ids)} trained customers, run {run.uri}")
    print(f"floor (in process, same flow, sequential): p50 {floor['p50_ms']} ms, "
          f"p99 {floor['p99_ms']} ms, {floor['throughput_rps']} req/s")
    print(f"{'conc':>4} | {'real p50':>9} {'p99':>8} {'req/s':>7} {'err':>4} | "
          f"{'trivial p50':>11} {'p99':>8} {'req/s':>7} {'err':>4} | real/trivial real/floor")
    for r in results["levels"]:
        a, b = r["real"], r["trivial"]
        print(f"{r['concurrency']:>4} | {a['p50_ms']:>9} {a['p99_ms']:>8} "
              f"{a['throughput_rps']:>7} {a['errors']:>4} | {b['p50_ms']:>11} {b['p99_ms']:>8} "
              f"{b['throughput_rps']:>7} {b['errors']:>4} | {r['real_over_trivial_p50']:>12} "
              f"{r['real_over_floor_p50']:>10}")
    first = results["levels"][0]
    print(f"goal: real within {RATIO_GOAL}x of trivial at concurrency "
          f"{first['concurrency']}: {first['real_over_trivial_p50']}x "
          f"({'met' if first['real_over_trivial_p50'] <= RATIO_GOAL else 'not met'})")
    ld = results["load"]
    print(f"load: concurrency {load_c} for {ld['wall_s']} s: {ld['requests']} sent, "
          f"{ld['errors']} failed, p50 {ld['p50_ms']} ms, p99 {ld['p99_ms']} ms, "
          f"{ld['throughput_rps']} req/s")
    print("replica memory MB before -> after: " + ", ".join(
        f"{k} {mem_before[k]} -> {mem_after.get(k)}" for k in mem_before))
    print(f"load average before {load_before}, after {results['machine']['loadavg_after']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
