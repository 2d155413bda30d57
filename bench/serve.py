"""Latency, throughput and failures of the Ray Serve graph, on loopback, in one run.

One local Ray instance serves, one after another on the same proxy:
- the do-nothing app (``serve.testing.build_noop_app``): one FastAPI deployment answering
  ``GET /recommend/{id}`` at once, the floor of what Serve costs per request;
- the project's graph (``serve.app.build_app``) in each ``recommend_layout``: ``ingress``
  (retrieval and ranking in the ingress replica), ``together`` (one TwoTower deployment
  behind it) and ``split`` (Retriever and Ranker deployments);
- beside them, the in-process call of the same work (``TwoTowerPart.recommend_many`` on one
  request at a time, what every layout runs).
With a published LightGBM ranker in the run, the run's customers get the ranker's path
(``--ranker ""`` measures the two-tower's instead); the report names the path that answered.
For each concurrency (1, 8, 32 by default), a closed loop of ``GET /recommend/{id}?k=12`` for
trained customers: p50 / p99 latency, throughput and failed requests (any non-200 or
transport error). Then an autoscaling ramp on the first layout: the Ingress (and its
TwoTower in ``together``) with ``min_replicas 1, max_replicas 2``, load stepped up and down
while the replica counts are sampled, and every failed request counted.

The client runs on the same machine as the server: on a 2-core machine it takes CPU from the
replicas, so the numbers are an upper bound on what the graph costs. The load average is
recorded before and after every phase; only timings taken under a load average of 3 count.

    python bench/serve.py --run runs/demo [--layouts ingress together split]
        [--concurrency 1 8 32] [--requests 400] [--ramp-seconds 20] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import threading
import time
from pathlib import Path

import numpy as np

from stylehub_ray.run import Run

LATENCY_GOAL = 3.0  # /recommend p50 at concurrency 1 within 3x the do-nothing app's
THROUGHPUT_GOAL = 0.5  # saturation throughput at least half the do-nothing app's
RAMP_AUTOSCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2,
                    "upscale_delay_s": 1.0, "downscale_delay_s": 4.0,
                    "metrics_interval_s": 0.5, "look_back_period_s": 2.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _stats(lat_s: list[float], errors: int, wall: float) -> dict:
    ms = np.asarray(lat_s) * 1000
    return {"requests": len(lat_s) + errors, "ok": len(lat_s), "errors": errors,
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
            "throughput_rps": round(len(lat_s) / wall, 1) if wall > 0 else None,
            "wall_s": round(wall, 2)}


async def http_load(url_of, ids: list[str], concurrency: int, max_requests: int,
                    max_seconds: float) -> dict:
    """``concurrency`` clients in a closed loop until ``max_requests`` are sent or
    ``max_seconds`` pass; a non-200 or a transport error counts as a failed request."""
    import aiohttp

    lat: list[float] = []
    errors: list[str] = []
    sent = 0
    deadline = time.perf_counter() + max_seconds

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
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    out = _stats(lat, len(errors), wall)
    out["error_kinds"] = sorted(set(errors))[:5]
    return out


def levels(url_of, ids, args) -> dict:
    out = {}
    for c in args.concurrency:
        asyncio.run(http_load(url_of, ids, c, args.warmup, 30))
        out[c] = {"load_before": loadavg(),
                  **asyncio.run(http_load(url_of, ids, c, max(args.requests, 25 * c),
                                          args.max_seconds))}
        print(f"  concurrency {c}: {json.dumps(out[c])}", flush=True)
    return out


def in_process(part, ids: list[str], k: int, n: int) -> dict:
    """The same work as the graph's, called directly, one request at a time."""
    from stylehub_ray.serve.core import RecommendQuery

    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        q = RecommendQuery(ids[i % len(ids)], k, np.zeros(0, np.int64), "avg", True)
        t = time.perf_counter()
        part.recommend_many([q])
        lat.append(time.perf_counter() - t)
    return _stats(lat, 0, time.perf_counter() - t0)


def replica_counts(app: str) -> dict:
    from ray import serve

    deps = serve.status().applications[app].deployments
    return {name: int(d.replica_states.get("RUNNING", 0)) for name, d in deps.items()}


def ramp(url_of, ids, app: str, steps: list[tuple[int, float]]) -> dict:
    """Load stepped through ``steps`` (concurrency, seconds) while a thread samples the
    replica counts; every request's failure counted."""
    samples: list[dict] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.perf_counter()
        while not stop.is_set():
            samples.append({"t": round(time.perf_counter() - t0, 1), **replica_counts(app)})
            stop.wait(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out = []
    try:
        for c, seconds in steps:
            r = asyncio.run(http_load(url_of, ids, c, 10 ** 7, seconds))
            out.append({"concurrency": c, **r})
            print(f"  ramp step concurrency {c}: {json.dumps(r)}", flush=True)
    finally:
        stop.set()
        th.join(timeout=5)
    peak = {}
    for s in samples:
        for name, n in s.items():
            if name != "t":
                peak[name] = max(peak.get(name, 0), n)
    return {"steps": out, "failed": sum(s["errors"] for s in out),
            "sent": sum(s["requests"] for s in out), "peak_replicas": peak,
            "final_replicas": {k: v for k, v in samples[-1].items() if k != "t"}
            if samples else {}, "samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--layouts", nargs="+", default=["ingress", "together", "split"])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=400, help="per level and app (at least "
                                                               "25 per client)")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="per level and app")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--ramp-seconds", type=float, default=15.0, help="per ramp step")
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--customers", type=int, default=500)
    ap.add_argument("--cpus", type=int, default=None, help="logical CPUs of the local Ray")
    ap.add_argument("--ranker", default="default", help='the ranker variant ("": two-tower)')
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()

    import ray
    import torch
    from ray import serve

    from stylehub_ray.serve import core
    from stylehub_ray.serve.app import build_app, build_graph, settings_from, start_http
    from stylehub_ray.serve.testing import build_noop_app

    torch.set_num_threads(1)  # as every replica
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "loadavg_start": loadavg()}, "settings": vars(args)}
    app_args = {"run": args.run, "ranker": args.ranker}
    cfg = settings_from(app_args)
    app_args["run"] = cfg.run
    run = Run(cfg.run)
    part = core.TwoTowerPart(run, cfg)
    known = np.flatnonzero(part.candidates.rec.known(part.candidates.customers.idx))
    pick = np.random.default_rng(0).choice(known, min(args.customers, len(known)),
                                           replace=False)
    ids = [part.candidates.customers.ids[i].decode() for i in pick]
    results["path"] = part.recommend_many([core.RecommendQuery(
        ids[0], args.k, np.zeros(0, np.int64), "avg", None)])[0].path
    in_process(part, ids, args.k, args.warmup)
    results["in_process"] = in_process(part, ids, args.k, args.requests)
    print(f"in process: {json.dumps(results['in_process'])}", flush=True)
    del part

    if os.environ.get("RAY_ADDRESS"):  # a running instance (e.g. `ray start --head`)
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False,
                 log_to_driver=False)
    port = _free_port()
    start_http("127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"

    def url(prefix: str):
        return lambda cid: f"{base}{prefix}/recommend/{cid}?k={args.k}"

    serve.run(build_noop_app(), name="noop", route_prefix="/noop")
    print("do-nothing app", flush=True)
    results["noop"] = levels(url("/noop"), ids, args)
    serve.delete("noop")
    results["layouts"] = {}
    for layout in args.layouts:
        t0 = time.perf_counter()
        serve.run(build_app({**app_args, "recommend_layout": layout}), name="stylehub",
                  route_prefix="/")
        print(f"layout {layout} (deployed in {time.perf_counter() - t0:.1f} s)", flush=True)
        results["layouts"][layout] = levels(url(""), ids, args)
        serve.delete("stylehub")

    layout = args.layouts[0]
    scaled = {"Ingress": {"autoscaling_config": RAMP_AUTOSCALING}}
    if layout == "together":
        scaled["TwoTower"] = scaled["Ingress"]
    serve.run(build_graph({**app_args, "recommend_layout": layout}, options=scaled),
              name="stylehub", route_prefix="/")
    print(f"autoscaling ramp, layout {layout}", flush=True)
    before = loadavg()
    s = args.ramp_seconds
    results["ramp"] = {"layout": layout, "autoscaling_config": RAMP_AUTOSCALING,
                       "load_before": before,
                       **ramp(url(""), ids, "stylehub",
                              [(1, s), (8, s), (32, s), (8, s), (1, 2 * s)]),
                       "load_after": loadavg()}
    serve.delete("stylehub")
    serve.shutdown()
    ray.shutdown()
    results["machine"]["loadavg_end"] = loadavg()
    report(results, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve.json").write_text(json.dumps(results, indent=2) + "\n")


def report(results: dict, args) -> None:
    noop = results["noop"]
    c1 = args.concurrency[0]
    fp = results["in_process"]
    print(f"\nGET /recommend/{{id}}?k={args.k}, run {args.run}, path "
          f"{results.get('path')}; in process (same work, "
          f"sequential): p50 {fp['p50_ms']} ms, {fp['throughput_rps']} req/s")
    print(f"{'app':>10} {'conc':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'failed':>6} "
          f"{'p50/noop':>8} {'load':>5}")
    rows = [("do-nothing", noop)] + list(results["layouts"].items())
    for name, lv in rows:
        for c, r in lv.items():
            ratio = round(r["p50_ms"] / noop[c]["p50_ms"], 2) if r["p50_ms"] else None
            print(f"{name:>10} {c:>5} {r['p50_ms']:>8} {r['p99_ms']:>8} "
                  f"{r['throughput_rps']:>7} {r['errors']:>6} {ratio:>8} "
                  f"{r['load_before'][0]:>5}")
    peak_noop = max(r["throughput_rps"] for r in noop.values())
    for name, lv in results["layouts"].items():
        lat = lv[c1]["p50_ms"] / noop[c1]["p50_ms"]
        thr = max(r["throughput_rps"] for r in lv.values()) / peak_noop
        failed = sum(r["errors"] for r in lv.values())
        met_lat = "met" if lat <= LATENCY_GOAL else "not met"
        met_thr = "met" if thr >= THROUGHPUT_GOAL else "not met"
        print(f"goals {name}: p50 at concurrency {c1} {lat:.2f}x the do-nothing app "
              f"({met_lat}, goal {LATENCY_GOAL}x); saturation throughput {thr:.2f} of it "
              f"({met_thr}, goal {THROUGHPUT_GOAL}); {failed} failed requests")
    rp = results["ramp"]
    print(f"ramp ({rp['layout']}): {rp['sent']} requests, {rp['failed']} failed, peak "
          f"replicas {rp['peak_replicas']}, final {rp['final_replicas']}; load "
          f"{rp['load_before'][0]} -> {rp['load_after'][0]}")
    m = results["machine"]
    print(f"load average start {m['loadavg_start']}, end {m['loadavg_end']}")


if __name__ == "__main__":
    main()
