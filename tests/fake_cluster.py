"""Ray's fake multi-node autoscaler with cluster.yaml's node types, on this machine.

Ray's own autoscaler tests use ``ray.autoscaler._private.fake_multi_node``: a node provider
whose "instances" are extra raylets on the local machine, started and stopped by the head's
autoscaler (the ``monitor`` process) exactly as a cloud provider's instances would be. Ray
2.60's wheel ships the provider but not the example config its defaults come from, and
``AutoscalingCluster.start`` runs ``ray stop --force`` (every Ray instance on the machine), so
this module writes the whole config from ``cluster.yaml`` and starts the head itself: its own
ports and temp dir, a marker in every process's environment, and a ``stop`` that ends only
the processes carrying that marker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

VENV_BIN = Path(sys.executable).parent
HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head's node type
MARKER = "STYLEHUB_FAKE_CLUSTER"  # environment variable every process of the cluster carries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_config(cluster_yaml: Path, gcs_address: str, idle_timeout_minutes: float) -> dict:
    """The autoscaler config for the fake provider: ``cluster.yaml``'s node types with their
    resources (``memory`` left out for worker types, see below), min and max workers and the
    cluster's limits, everything cloud-specific (instance types, docker, setup commands) left
    out. Complete as ``ray up`` would prepare it: the monitor reads it as it is."""
    src = yaml.safe_load(Path(cluster_yaml).read_text())
    head = src["head_node_type"]
    types = {HEAD_TYPE: {"resources": dict(src["available_node_types"][head]["resources"]),
                         "node_config": {}, "min_workers": 0, "max_workers": 0}}
    for name, t in src["available_node_types"].items():
        if name == head:
            continue
        if not t.get("resources"):
            raise ValueError(f"{cluster_yaml}: available_node_types.{name}.resources is empty; "
                             f"the autoscaler needs each type's CPU, GPU and memory to plan")
        # The fake provider passes every resource but CPU and GPU to RayParams as a custom
        # one, and Ray refuses `memory` there: the fake nodes plan without it (cloud
        # providers read it as written).
        resources = {k: v for k, v in t["resources"].items() if k != "memory"}
        types[name] = {"resources": resources, "node_config": {},
                       "min_workers": t.get("min_workers", 0),
                       "max_workers": t.get("max_workers", src["max_workers"])}
    return {
        "cluster_name": f"{src['cluster_name']}-fake",
        "max_workers": src["max_workers"],
        "upscaling_speed": src.get("upscaling_speed", 1.0),
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address,
                     "launch_multiple": True, "disable_launch_config_check": True,
                     "disable_node_updaters": True,
                     # Every fake node has this machine's IP: the autoscaler must tell them
                     # apart by node id, or it never sees a worker go idle.
                     "use_node_id_as_ip": True},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": types,
        "head_node_type": HEAD_TYPE,
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [],
        "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


class FakeAutoscalingCluster:
    """A head started with ``--autoscaling-config`` for the fake provider; worker nodes come
    and go as the autoscaler decides. Use as a context manager."""

    def __init__(self, cluster_yaml: Path, idle_timeout_minutes: float = 0.1,
                 update_interval_s: int = 1):
        self.cluster_yaml = Path(cluster_yaml)
        self.idle_timeout_minutes = idle_timeout_minutes
        self.update_interval_s = update_interval_s
        self.marker = uuid.uuid4().hex
        self.temp_dir = tempfile.mkdtemp(prefix="fc", dir="/tmp")  # short: socket paths
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.config = fake_config(self.cluster_yaml, self.address, idle_timeout_minutes)
        self.config_path = Path(self.temp_dir) / "autoscaling.json"
        self.env = self._env()

    def _env(self) -> dict:
        env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",
                   RAY_FAKE_CLUSTER="1",
                   AUTOSCALER_UPDATE_INTERVAL_S=str(self.update_interval_s),
                   **{MARKER: self.marker})
        env.pop("RAY_ADDRESS", None)  # the test session's own head
        return env

    def start(self) -> FakeAutoscalingCluster:
        self.config_path.write_text(json.dumps(self.config))
        head = self.config["available_node_types"][HEAD_TYPE]["resources"]
        cmd = [str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1",
               f"--port={self.port}", f"--ray-client-server-port={free_port()}",
               "--include-dashboard=false", f"--dashboard-agent-listen-port={free_port()}",
               f"--num-cpus={int(head.get('CPU', 1))}", f"--num-gpus={int(head.get('GPU', 0))}",
               "--object-store-memory=200000000", "--disable-usage-stats",
               f"--temp-dir={self.temp_dir}",
               f"--autoscaling-config={self.config_path}"]
        if "memory" in head:
            cmd.append(f"--memory={int(head['memory'])}")
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=180)
        if out.returncode:
            raise RuntimeError(f"ray start --head failed ({out.returncode}):\n"
                               f"{(out.stdout + out.stderr)[-3000:]}")
        return self

    def pids(self) -> list[int]:
        """Every live process of this cluster: its environment carries the marker (the head's
        daemons, the autoscaler, the nodes it started and all their workers)."""
        found = []
        needle = f"{MARKER}={self.marker}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
        return found

    def stop(self, grace: float = 10.0) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 3.0)):
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.2)

    def driver(self, script: str, timeout: float = 300.0) -> dict:
        """Run ``script`` as a driver of this cluster in a fresh Python (``ADDRESS`` is defined
        for it); it prints one JSON line last, which is returned."""
        code = f"ADDRESS = {self.address!r}\n{script}"
        out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True,
                             text=True, timeout=timeout)
        if out.returncode:
            raise RuntimeError(f"driver failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def __enter__(self) -> FakeAutoscalingCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
