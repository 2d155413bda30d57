"""A cluster's conditions on one machine (the `cluster` suite: `make test-cluster`, which
`.ci/run` runs after `make test`).

Autoscaling from zero with cluster.yaml's node types: Ray's fake multi-node provider starts
each "instance" as a raylet on this machine, from the head's autoscaler, as a cloud provider
would start an instance of that type. CPU torch here: the GPU is a logical resource, so the
test checks placement and scaling, not CUDA.
"""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO
from fake_cluster import FakeAutoscalingCluster, fake_config

pytestmark = pytest.mark.cluster

SCALE_SCRIPT = r"""
import json, os, time
import ray

ray.init(address=ADDRESS, log_to_driver=False)

def workers():
    # Worker nodes alive now (the head carries node:__internal_head__).
    return [n for n in ray.nodes()
            if n["Alive"] and "node:__internal_head__" not in n["Resources"]]

def where():
    ctx = ray.get_runtime_context()
    return {"node": ctx.get_node_id(), "type": os.environ.get("RAY_NODE_TYPE_NAME"),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}

at_start = len(workers())
t0 = time.monotonic()
gpu = ray.get(ray.remote(num_gpus=1, num_cpus=1)(where).remote(), timeout=240)
gpu_s = time.monotonic() - t0
t0 = time.monotonic()
cpu = ray.get(ray.remote(num_cpus=12)(where).remote(), timeout=240)
cpu_s = time.monotonic() - t0
peak = [{"id": n["NodeID"], "resources": {k: v for k, v in n["Resources"].items()
                                          if k in ("CPU", "GPU")}}
        for n in workers()]
t0 = time.monotonic()
while workers() and time.monotonic() - t0 < 240:
    time.sleep(1)
down_s = time.monotonic() - t0
print(json.dumps({"at_start": at_start, "gpu": gpu, "gpu_s": gpu_s, "cpu": cpu,
                  "cpu_s": cpu_s, "peak": peak, "left": len(workers()), "down_s": down_s}))
"""


def test_fake_config_carries_cluster_yaml_node_types():
    """The fake provider's config is cluster.yaml's node types with their resources, and it
    passes Ray's own config validation."""
    from ray.autoscaler._private.util import validate_config

    src = yaml.safe_load((REPO / "cluster.yaml").read_text())
    cfg = fake_config(REPO / "cluster.yaml", "127.0.0.1:1", 0.1)
    validate_config(cfg)
    for name, t in src["available_node_types"].items():
        key = "ray.head.default" if name == src["head_node_type"] else name
        want = {k: v for k, v in t["resources"].items() if key == "ray.head.default"
                or k != "memory"}
        assert cfg["available_node_types"][key]["resources"] == want
        assert t["resources"].get("CPU"), f"{name}: CPU written out in cluster.yaml"
    assert cfg["max_workers"] == src["max_workers"]


def test_autoscales_from_zero_by_node_type_and_back(tmp_path):
    """A task that needs the GPU group's resources starts a node of that type from zero; one
    that needs more CPUs than the head has starts a CPU worker; idle nodes go away."""
    with FakeAutoscalingCluster(REPO / "cluster.yaml", idle_timeout_minutes=0.1) as cluster:
        out = cluster.driver(SCALE_SCRIPT, timeout=600)
    print(f"autoscaler: GPU node running its task {out['gpu_s']:.1f} s after the request, "
          f"CPU node {out['cpu_s']:.1f} s; idle nodes gone {out['down_s']:.1f} s after the "
          f"last task")
    assert out["at_start"] == 0, "the cluster starts with no worker node"
    assert out["gpu"]["type"] == "gpu-workers" and out["gpu"]["gpu_ids"], out["gpu"]
    assert out["cpu"]["type"] == "cpu-workers", out["cpu"]
    assert out["gpu"]["node"] != out["cpu"]["node"]
    shapes = sorted(tuple(sorted(n["resources"].items())) for n in out["peak"])
    src = yaml.safe_load((REPO / "cluster.yaml").read_text())["available_node_types"]
    expected = sorted(tuple(sorted((k, float(v)) for k, v in src[t]["resources"].items()
                                   if k != "memory"))
                      for t in ("cpu-workers", "gpu-workers"))
    assert shapes == expected, "each node carries its type's resources from cluster.yaml"
    assert out["left"] == 0, "idle worker nodes are terminated"
