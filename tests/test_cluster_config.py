"""cluster.yaml is a valid Ray 2.60 cluster-launcher config with the groups the design asks for."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_cluster_yaml_passes_rays_schema_and_scales_from_zero():
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(config)  # Ray's own JSON schema and cross-field checks
    types = config["available_node_types"]
    head = config["head_node_type"]
    workers = {name: t for name, t in types.items() if name != head}
    gpu = [n for n, t in workers.items() if "gpu" in t.get("docker", {}).get("worker_image", "")]
    cpu = [n for n in workers if n not in gpu]
    assert gpu and cpu, "a CPU and a GPU worker group"
    assert all(t["min_workers"] == 0 for t in workers.values()), "worker groups scale from zero"
    assert sum(t["max_workers"] for t in workers.values()) <= config["max_workers"]
    mounts = config["file_mounts"]
    assert "." in mounts.values(), "the repository is mounted on every node"
    # Every node installs the package; CPU nodes take the CPU build of torch.
    assert any("pip install" in c and "stylehub-ray" in c for c in config["setup_commands"])
    assert any("whl/cpu" in c for c in config["setup_commands"])
    for name in gpu:
        assert any("stylehub-ray" in c for c in workers[name]["worker_setup_commands"])
