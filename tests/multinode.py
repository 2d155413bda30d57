"""A Ray cluster of a head and worker nodes on this machine, for the multi-node tests and
bench/three_nodes.py: separate raylets started by ``ray.cluster_utils.Cluster``, each with its
own resources, all on 127.0.0.1, the head with a dashboard and job server.

Run as a script in a process of its own (the test session's head is untouched): it writes
``{"address", "dashboard", "nodes": {node_id: name}}`` to ``--info`` once every node is up,
and stops its nodes when its standard input closes. ``start_cluster`` does that from Python.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# ray.init turns a 127.0.0.1 address into the machine's IP (where these nodes do not listen)
# unless Ray takes the machine for a single-node one (its switch for Windows and OSX).
SINGLE_HOST_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(args: argparse.Namespace) -> None:
    from ray._private.utils import write_ray_address
    from ray.cluster_utils import Cluster

    store = int(args.object_store_mb * 2**20)
    dash = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="mn", dir="/tmp")  # short: socket paths
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": args.head_cpus, "gcs_server_port": _free_port(),
        "node_ip_address": "127.0.0.1", "object_store_memory": store, "temp_dir": temp_dir,
        "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dash,
        # Ray's default (52365) may be another instance's, a test session's head among them:
        # the job server then never finds the head's agent ("No available agent").
        "dashboard_agent_listen_port": _free_port()})
    workers = [cluster.add_node(num_cpus=args.worker_cpus, node_ip_address="127.0.0.1",
                                object_store_memory=store) for _ in range(args.workers)]
    cluster.wait_for_nodes()
    # A job's driver finds its cluster through the address file in the head's temp dir
    # (Cluster writes only the default one): without it, it attached to another instance.
    write_ray_address(cluster.address, temp_dir)
    nodes = {cluster.head_node.node_id: "head",
             **{w.node_id: f"worker{i}" for i, w in enumerate(workers)}}
    info = {"address": cluster.address, "dashboard": f"http://127.0.0.1:{dash}",
            "nodes": nodes}
    tmp = args.info + ".tmp"
    Path(tmp).write_text(json.dumps(info))
    os.replace(tmp, args.info)
    sys.stdin.read()  # until the parent closes it
    cluster.shutdown()


@contextlib.contextmanager
def start_cluster(workers: int = 2, head_cpus: int = 1, worker_cpus: int = 2,
                  env: dict | None = None, timeout: float = 300) -> Iterator[dict]:
    """The cluster as a context: yields its info (plus ``env``: the variables for commands
    that talk to it, ``RAY_ADDRESS`` included)."""
    env = dict(os.environ if env is None else env, **SINGLE_HOST_ENV)
    env.pop("RAY_ADDRESS", None)  # a test session's own head
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    folder = tempfile.mkdtemp(prefix="multinode-")
    info_path = os.path.join(folder, "info.json")
    log = open(os.path.join(folder, "cluster.log"), "w")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen([sys.executable, __file__, "--info", info_path, "--workers",
                             str(workers), "--head-cpus", str(head_cpus), "--worker-cpus",
                             str(worker_cpus)], stdin=subprocess.PIPE, stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not os.path.exists(info_path):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError("the multi-node cluster did not start: "
                                   + Path(log.name).read_text()[-3000:])
            time.sleep(0.5)
        info = json.loads(Path(info_path).read_text())
        info["env"] = dict(env, RAY_ADDRESS=info["address"])
        yield info
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
        log.close()


class JobFailed(RuntimeError):
    """A stage's job ended in failure; ``output`` is what ``ray job submit`` printed."""

    def __init__(self, name: str, output: str):
        super().__init__(f"job {name} failed")
        self.output = output


def submit_stage(info: dict, args: list[str], tmp: Path, name: str) -> tuple[str, float]:
    """``python -m stylehub_ray ARGS`` as a job (``ray job submit --working-dir`` the
    repository), waited for; its processes' temporary directory is ``tmp``, deleted after,
    so nothing a later stage reads can come from this job's local disk. Returns the job's
    output and its seconds from submission to end."""
    tmp.mkdir(parents=True)
    repo = Path(__file__).resolve().parents[1]
    ray = str(Path(sys.executable).parent / "ray")
    # The job's driver keeps the cluster's 127.0.0.1 address too.
    runtime_env = {"env_vars": {"TMPDIR": str(tmp), **SINGLE_HOST_ENV}}
    cmd = [ray, "job", "submit", "--address", info["dashboard"], "--working-dir", str(repo),
           "--submission-id", name, "--runtime-env-json", json.dumps(runtime_env), "--",
           "python", "-m", "stylehub_ray", *args]
    t0 = time.monotonic()
    while True:
        out = subprocess.run(cmd, cwd=repo, env=info["env"], capture_output=True, text=True,
                             timeout=900)
        # The head's job agent can come up after the node does: Ray asks to try again later.
        if "No available agent" not in out.stderr + out.stdout or time.monotonic() - t0 > 120:
            break
        time.sleep(3)
    seconds = time.monotonic() - t0
    if out.returncode != 0:  # `ray job submit` exits 1 when the job fails
        raise JobFailed(name, out.stdout[-6000:] + "\n" + out.stderr[-3000:])
    shutil.rmtree(tmp)
    return out.stdout, seconds


# Ray's state API, asked in a process of its own: in one attached to another Ray instance (a
# test session's head) it answers for that instance whatever address it is given.
PLACEMENTS = """
import json, sys
from ray.util.state import list_actors, list_tasks
tasks = list_tasks(address=sys.argv[1], limit=10_000, raise_on_missing_output=False)
actors = list_actors(address=sys.argv[1], limit=10_000, raise_on_missing_output=False)
print(json.dumps({"tasks": [[t.node_id, t.name] for t in tasks],
                  "actors": [[a.node_id, a.class_name] for a in actors]}))
"""


def placements(info: dict) -> dict:
    """``{"tasks": [[node_id, name]], "actors": [[node_id, class_name]]}`` from Ray's state."""
    out = subprocess.run([sys.executable, "-c", PLACEMENTS, info["dashboard"]], env=info["env"],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--info", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--head-cpus", type=int, default=1)
    parser.add_argument("--worker-cpus", type=int, default=2)
    parser.add_argument("--object-store-mb", type=float, default=300)
    _serve(parser.parse_args())
