"""Serving parts for benchmarks and tests only, never part of the served graph.

:func:`build_noop_app`: a Serve app of one FastAPI deployment that answers
``GET /recommend/{customer_id}`` at once with an empty list, the floor ``bench/serve.py``
measures the real graph against (the same proxy, HTTP parsing and FastAPI, no hop, no work).
"""

from fastapi import FastAPI
from ray import serve

noop_api = FastAPI(title="do-nothing")


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=100)
@serve.ingress(noop_api)
class NoOp:
    @noop_api.get("/recommend/{customer_id}")
    async def recommend(self, customer_id: str, k: int = 12) -> dict:
        return {"customer_id": customer_id, "k": k, "items": []}


def build_noop_app(args: dict | None = None):
    return NoOp.bind()
