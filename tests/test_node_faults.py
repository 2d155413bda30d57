"""Faults on several nodes (issue 22; the `cluster` suite): a worker node removed while a Ray
Data stage runs, and the driver killed in the middle of a stage.

The nodes are raylets on this machine started by ``ray.cluster_utils.Cluster`` (a head and two
worker nodes, each with its own resources), in a driver process of their own so that the test
session's head is untouched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, _free_port, wait_for

pytestmark = pytest.mark.cluster

NODE_LOSS = r"""
import json, os, sys, tempfile, threading, time
import pyarrow.dataset as pads
from ray.cluster_utils import Cluster

from stylehub_ray.config import FeaturesConfig, GenerateHMConfig, IngestConfig
from stylehub_ray.data.ingest import ingest
from stylehub_ray.features.stage import build_features
from stylehub_ray.run import Run
from stylehub_ray.synth.hm import generate_hm

work = sys.argv[1]
cluster = Cluster(initialize_head=True, connect=True,
                  head_node_args={"num_cpus": 1, "gcs_server_port": int(sys.argv[2]),
                                  "node_ip_address": "127.0.0.1",
                                  "temp_dir": tempfile.mkdtemp(prefix="nf", dir="/tmp"),
                                  "include_dashboard": False})
workers = [cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1") for _ in range(2)]
cluster.wait_for_nodes()
generate_hm(f"{work}/src", GenerateHMConfig(scale="tiny", images=False))

def features(name, fault):
    run = Run(f"{work}/{name}")
    ingest(f"{work}/src", run, IngestConfig(chunk_mb=0.1))
    removed = {}
    if fault:
        def remove():
            # once the stage's shuffle has started writing (its scratch in the run holds files)
            scratch = f"{work}/{name}/_tmp"
            while not any(files for _, _, files in os.walk(scratch)):
                time.sleep(0.02)
            removed["at"] = time.monotonic()
            cluster.remove_node(workers[0], allow_graceful=False)
        threading.Thread(target=remove, daemon=True).start()
    t0 = time.monotonic()
    build_features(run, FeaturesConfig(buckets=8))
    t1 = time.monotonic()
    manifest = json.loads(open(f"{work}/{name}/manifest.json").read())
    entry = next(v for k, v in manifest["steps"].items() if k.startswith("features"))
    rows = pads.dataset(f"{work}/{name}/features/interactions", format="parquet",
                        ignore_prefixes=["_", "."]).count_rows()
    customers = pads.dataset(f"{work}/{name}/features/customers", format="parquet",
                             partitioning="hive",
                             ignore_prefixes=["_", "."]).to_table().to_pandas()
    return {"seconds": t1 - t0, "removed_after": removed.get("at", t1) - t0,
            "counts": entry.get("counts", {}), "interaction_rows": rows,
            "customers": customers.sort_values(["feature_set", "customer_idx"])
            .drop(columns=["feature_set"]).round(6).to_json()}

clean = features("clean", False)
lost = features("lost", True)
print(json.dumps({"clean": clean, "lost": lost}))
import ray
ray.shutdown()
cluster.shutdown()
"""


def test_a_worker_node_removed_mid_stage_and_the_counts_reconcile(tmp_path):
    """The features stage (Ray Data tasks over 8 buckets) on a head and two worker nodes, one
    worker node killed once the stage has started writing: the stage finishes and its outputs
    and counts are those of the same stage without the fault."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("RAY_ADDRESS", None)  # the test session's own head
    # ray.init turns a 127.0.0.1 address into the machine's IP (where these nodes do not
    # listen) unless Ray takes the machine for a single-node one (its switch for Windows/OSX).
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    out = subprocess.run([sys.executable, "-c", NODE_LOSS, str(tmp_path), str(_free_port())],
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    clean, lost = res["clean"], res["lost"]
    print(f"node lost {lost['removed_after']:.1f} s into features: {lost['seconds']:.1f} s "
          f"against {clean['seconds']:.1f} s without the fault")
    assert lost["removed_after"] < lost["seconds"], "the node went while the stage ran"
    assert lost["counts"]["split_rows"] == clean["counts"]["split_rows"]
    assert lost["interaction_rows"] == clean["interaction_rows"] == sum(
        clean["counts"]["split_rows"].values())
    assert lost["customers"] == clean["customers"]


def test_a_driver_killed_mid_stage_then_rerun_finishes_it(tiny_hm, tmp_path):
    """`stylehub features` SIGKILLed while it runs leaves no completion marker that a later
    stage could take for whole; the same command again finishes it, with the outputs of an
    uninterrupted run."""
    stylehub = [sys.executable, "-m", "stylehub_ray"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = tmp_path / "run"
    subprocess.run([*stylehub, "ingest", str(tiny_hm), "--run", str(run)], env=env,
                   check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen([*stylehub, "features", "--run", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    # Kill it once the step has started writing (its temporary outputs under RUN/_tmp exist).
    wait_for(lambda: proc.poll() is not None or any((run / "_tmp").glob("features*/*")),
             timeout=300, every=0.2)
    time.sleep(1.0)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    markers = list((run / "features").rglob("_SUCCESS")) if (run / "features").exists() else []
    manifest = json.loads((run / "manifest.json").read_text())
    done = [k for k, v in manifest.get("steps", {}).items()
            if k.startswith("features") and v["status"] == "complete"]
    if killed:
        assert not markers and not done, "a killed step left a marker or a manifest entry"
    subprocess.run([*stylehub, "features", "--run", str(run)], env=env, check=True,
                   capture_output=True, timeout=900)
    manifest = json.loads((run / "manifest.json").read_text())
    assert [k for k in manifest["steps"] if k.startswith("features")]
    assert list((run / "features").rglob("_SUCCESS"))
    print(f"driver killed mid-stage: {killed}; rerun finished the stage")
    assert killed, "the stage ended before the kill: nothing was tested"
