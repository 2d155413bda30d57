"""The end of `make demo`: serve a run's trained models, fetch three customers'
recommendations over HTTP, print them, shut down.

    python -m stylehub_ray.serve.demo --run runs/demo [--outfits-run runs/demo-outfits]
"""

from __future__ import annotations

import argparse
import json
import logging
import urllib.error
import urllib.request

from stylehub_ray import logs
from stylehub_ray.run import Run

# By name: run as `python -m stylehub_ray.serve.demo` its __name__ is "__main__".
logger = logging.getLogger("stylehub_ray.serve.demo")


def _get(url: str, timeout: float = 120.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def demo_customers(run: Run, limit: int = 50) -> list[tuple[str, set[str]]]:
    """Customers to show, most purchases in the test period first (with what they bought
    then, to mark the hits), then the rest of the customer map."""
    import pyarrow.compute as pc

    from stylehub_ray.data.ingest import read_table

    cmap = read_table(run, "raw/customer_map").sort_by("customer_idx")
    ids = cmap.column("customer_id").to_pylist()
    amap = read_table(run, "raw/article_map").sort_by("article_idx")
    art = amap.column("article_id").to_numpy()
    bought: dict[int, set[str]] = {}
    if run.is_complete("features/interactions"):
        t = read_table(run, "features/interactions", ["customer_idx", "article_idx", "split"])
        t = t.filter(pc.equal(t.column("split"), "test"))
        for c, a in zip(t.column("customer_idx").to_numpy().tolist(),
                        t.column("article_idx").to_numpy().tolist()):
            bought.setdefault(c, set()).add(f"{int(art[a]):010d}")
    first = sorted(bought, key=lambda c: (-len(bought[c]), c))
    rest = [c for c in range(len(ids)) if c not in bought]
    order = (first + rest)[:limit]
    return [(ids[c], bought.get(c, set())) for c in order]


def _serve_running() -> bool:
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        return True
    except ValueError:
        return False


def serve_demo(run: str, outfits_run: str = "", port: int = 8000, n: int = 3, k: int = 12,
               app_name: str = "stylehub", route_prefix: str = "/") -> list[dict]:
    """Deploy the graph for ``run`` (and ``outfits_run``), fetch ``n`` customers' top-``k``
    over HTTP (customers the model knows, most test-period purchases first), print them with
    the hits among what each bought in the test period, and take the app down again (and
    Serve, when this call started it). Returns the responses."""
    from ray import serve

    from stylehub_ray.ray_utils import ensure_ray
    from stylehub_ray.serve.app import build_app, settings_from, start_http

    cfg = settings_from({"run": run, "outfits_run": outfits_run, "port": port})
    ensure_ray()
    started = not _serve_running()
    if started:
        start_http("127.0.0.1", port)
    shown: list[dict] = []
    try:
        serve.run(build_app({"run": cfg.run, "outfits_run": cfg.outfits_run}), name=app_name,
                  route_prefix=route_prefix)
        base = f"http://127.0.0.1:{port}{route_prefix.rstrip('/')}"
        health = _get(f"{base}/healthz")
        logger.info(f"serving {cfg.run} at {base}/ (OpenAPI at {base}/docs): "
                    + ", ".join(f"{name} {'ok' if 'unavailable' not in p else 'unavailable'}"
                        for name, p in health["parts"].items()))
        for customer_id, test_bought in demo_customers(Run(cfg.run)):
            body = _get(f"{base}/recommend/{customer_id}?k={k}")
            if body["path"] not in ("ranker", "model"):  # a model answered, not a fallback
                continue
            ids = [item["article_id"] for item in body["items"]]
            hits = [a for a in ids if a in test_bought]
            logger.info(f"customer {customer_id[:16]}... ({body['path']}; bought "
                        f"{len(test_bought)} articles in the test week, {len(hits)} of them "
                        f"among these {len(ids)}, marked *)")
            cells = [f"{rank:2d}. {item['article_id']} "
                     f"{(item.get('prod_name') or '')[:14]:14s} "
                     f"{(item.get('colour_group_name') or '')[:10]:10s}"
                     f"{'*' if item['article_id'] in test_bought else ' '}"
                     for rank, item in enumerate(body["items"], 1)]
            for row in range(0, len(cells), 3):  # three to a line; * bought in the test week
                logger.info("  " + "   ".join(cells[row:row + 3]))
            shown.append(body)
            if len(shown) == n:
                break
        if len(shown) < n:
            logger.info(f"only {len(shown)} customers known to the model were found")
    finally:
        serve.delete(app_name)
        if started:
            serve.shutdown()
    return shown


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--outfits-run", default="")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--customers", type=int, default=3)
    p.add_argument("--verbose", action="store_true", help="Ray's logs on the console too")
    args = p.parse_args(argv)
    with logs.console_session(logs.default_log_path(args.run, "serve-demo"), args.verbose):
        try:
            shown = serve_demo(args.run, args.outfits_run, args.port, args.customers)
        except (urllib.error.URLError, FileNotFoundError) as exc:
            logger.error(f"serve demo: {exc}")
            return 2
    return 0 if len(shown) == args.customers else 1


__all__ = ["serve_demo", "demo_customers"]

if __name__ == "__main__":
    raise SystemExit(main())
