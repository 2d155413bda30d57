"""Safe defaults, as tests: local runs bind only 127.0.0.1, token auth stays on, nothing is
unpickled from a run directory, and serve_config.yaml says what must stand in front of its
0.0.0.0. No Ray instance is started here."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "stylehub_ray"


def test_serve_binds_localhost_by_default(monkeypatch):
    from stylehub_ray.config import load_config
    from stylehub_ray.serve import app
    from stylehub_ray.serve.settings import ServeConfig

    assert ServeConfig().host == "127.0.0.1"
    assert load_config(ServeConfig, None, None).host == "127.0.0.1"
    started = {}
    monkeypatch.setattr(app.serve, "start", lambda **kw: started.update(kw))
    app.start_http(ServeConfig().host, ServeConfig().port)
    assert started["http_options"]["host"] == "127.0.0.1"


def test_a_local_instance_has_no_dashboard_or_job_server_and_token_auth(monkeypatch):
    """`ensure_ray` without RAY_ADDRESS: a local instance with no dashboard (hence no job
    server listening anywhere); importing the package turns token auth on."""
    import ray

    from stylehub_ray import ray_utils

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    ray_utils.ensure_ray()
    assert calls and calls[0]["address"] == "local"
    assert calls[0]["include_dashboard"] is False
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", "import os, stylehub_ray; "
                          "print(os.environ['RAY_AUTH_MODE'])"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "token", out.stderr


# Calls that unpickle (run arbitrary code from a file). The one torch.load is in tensor_io,
# with weights_only=True; np.load must never allow pickles.
UNPICKLERS = {("pickle", "load"), ("pickle", "loads"), ("cloudpickle", "load"),
              ("cloudpickle", "loads"), ("joblib", "load"), ("pd", "read_pickle"),
              ("pandas", "read_pickle"), ("dill", "load"), ("dill", "loads")}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(
                node.func.value, ast.Name):
            yield node.func.value.id, node.func.attr, node


def test_nothing_is_unpickled_from_a_run_directory():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO)
        for mod, attr, node in _calls(ast.parse(path.read_text())):
            kw = {k.arg: k.value for k in node.keywords}
            if (mod, attr) in UNPICKLERS:
                found.append(f"{rel}:{node.lineno} {mod}.{attr}")
            elif (mod, attr) == ("torch", "load"):
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    found.append(f"{rel}:{node.lineno} torch.load without weights_only=True")
            elif (mod, attr) == ("np", "load"):
                ap = kw.get("allow_pickle")
                if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                    found.append(f"{rel}:{node.lineno} np.load(allow_pickle=...)")
    assert not found, found


def test_serve_config_says_what_stands_in_front_of_0_0_0_0():
    text = (REPO / "serve_config.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["http_options"]["host"] == "0.0.0.0"
    before = text[: text.index("http_options:")].lower()
    for needed in ("private network", "load balancer", "tls", "authentication", "127.0.0.1"):
        assert needed in before, needed


def test_readme_cluster_section_names_what_was_tested():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## On a cluster"):]
    section = section[: section.index("\n## ", 3)]
    for needed in ("tests/test_object_storage.py", "tests/test_safe_defaults.py", "moto",
                   "SIGKILL", "max_failures"):
        assert needed in section, needed
