"""A Serve replica killed while clients send requests (issue 22, faults; the `cluster` suite).

Two replicas of a deployment behind Serve's proxy; a client sends requests at a steady pace
and retries a failed one once (GET is idempotent); one replica's process is SIGKILLed in the
middle. Measured: requests that failed on their first try, failures left after the retry, and
the time until Serve runs two healthy replicas again.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests
from conftest import _free_port, wait_for

pytestmark = pytest.mark.cluster

APP = "fault-test"


def _replica_pids() -> list[int]:
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
    return [a.pid for a in actors if a.class_name.startswith("ServeReplica:") and
            a.class_name.endswith(":NoOp")]


def test_a_killed_replica_loses_no_request_after_one_retry(ray_head):
    from ray import serve

    from stylehub_ray.serve.app import start_http
    from stylehub_ray.serve.testing import NoOp

    port = _free_port()
    start_http("127.0.0.1", port)
    try:
        serve.run(NoOp.options(num_replicas=2).bind(), name=APP, route_prefix="/")
        url = f"http://127.0.0.1:{port}/recommend/c"
        wait_for(lambda: len(_replica_pids()) == 2, timeout=120)
        first, after_retry, sent = [], [], [0]
        stop = threading.Event()

        def client():
            s = requests.Session()
            while not stop.is_set():
                sent[0] += 1
                ok = False
                for attempt in range(2):
                    try:
                        ok = s.get(url, timeout=10).status_code == 200
                    except requests.RequestException:
                        ok = False
                    if ok:
                        break
                    (first if attempt == 0 else after_retry).append(time.monotonic())
                    time.sleep(0.2)
                time.sleep(0.02)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(3)
        victim = _replica_pids()[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        recovered = wait_for(lambda: (victim not in (p := _replica_pids()) and len(p) == 2
                                      and time.monotonic()), timeout=120)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        print(f"replica killed: {sent[0]} requests, {len(first)} failed on their first try, "
              f"{len(after_retry)} after one retry; two replicas again after "
              f"{recovered - killed_at:.1f} s")
        assert sent[0] > 50
        assert not after_retry, "every request answered after at most one retry"
    finally:
        if APP in serve.status().applications:
            serve.delete(APP)
        serve.shutdown()
