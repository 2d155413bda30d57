"""Shared fixtures: one Ray head per test session (127.0.0.1), tiny generated data."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
# The test head's Ray Train controllers poll every 0.2 s, as a local instance's do
# (stylehub_ray.ray_utils.ensure_ray): Ray's 2 s default doubles the cost of a tiny fit.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def logged(caplog):
    """Call it after the code under test: every line the package logged (INFO and up)."""
    import logging

    caplog.set_level(logging.INFO, logger="stylehub_ray")
    return lambda: [line for m in caplog.messages for line in m.split("\n")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The local S3 server of the object-storage tests (moto's server mode), on a port chosen now:
# the Ray head's processes get these standard AWS variables at start (workers read and write
# s3:// runs with them); the server itself starts only when a test asks for `s3`.
S3_PORT = 0


def _port_outside_ray() -> int:
    """A free port below the ephemeral range and above Ray's worker ports (10002-19999): Ray's
    processes take ephemeral ports as they start, so one merely free now could be taken by
    the time the server that was promised it starts."""
    import random

    for port in random.Random().sample(range(20000, 30000), 200):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    raise RuntimeError("no free port in 20000-29999 for the local S3 server")


def _s3_env() -> dict[str, str]:
    global S3_PORT
    if not S3_PORT:
        S3_PORT = _port_outside_ray()
    return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
def s3(ray_head):
    """moto's S3 server on 127.0.0.1 with a bucket ``bucket``; the AWS variables set in this
    process too. Yields the endpoint URL."""
    import urllib.request

    env = _s3_env()
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p",
                             str(S3_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = env["AWS_ENDPOINT_URL"]

    def up() -> bool:
        import http.client

        try:
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bucket", method="PUT"),
                                   timeout=2)
            return True
        except (OSError, http.client.HTTPException):
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode} (port {S3_PORT}"
                                   f" taken?)") from None
            return False

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        wait_for(up, timeout=30, every=0.2)
        yield endpoint
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def ray_head():
    """`ray start --head` on 127.0.0.1 with 4 logical CPUs and a small object store, shared
    by every Ray test (in-process drivers, job submission). Yields its addresses."""
    import ray

    port, dash = _free_port(), _free_port()
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}", **_s3_env())
    env.pop("RAY_ADDRESS", None)
    # With token auth, `ray start` refuses to run until a token exists; on a fresh machine
    # nothing has written one yet (a first ray.init() would).
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if not token.exists() and "RAY_AUTH_TOKEN" not in os.environ:
        subprocess.run([str(VENV_BIN / "ray"), "get-auth-token", "--generate"], check=True,
                       env=env, capture_output=True, timeout=120)
    # A temp dir of its own, so teardown stops this head only (`ray stop` would stop every
    # Ray instance on the machine, other test sessions' included). Short: socket paths.
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1",
           f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           "--num-cpus=4", "--object-store-memory=400000000", "--disable-usage-stats",
           f"--temp-dir={temp_dir}"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, timeout=120)
    address = f"127.0.0.1:{port}"
    os.environ["RAY_ADDRESS"] = address
    ray.init(address=address, log_to_driver=False)
    try:
        yield {"address": address, "dashboard": f"http://127.0.0.1:{dash}", "env": env,
               "temp_dir": temp_dir}
    finally:
        ray.shutdown()
        os.environ.pop("RAY_ADDRESS", None)
        _stop_processes_under(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_processes_under(temp_dir: str, grace: float = 10.0) -> None:
    """Stop the Ray processes whose command line names ``temp_dir`` (this session's head)."""
    import signal

    def pids() -> list[int]:
        out = subprocess.run(["pgrep", "-f", temp_dir], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split() if int(p) != os.getpid()]

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid in pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids() and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture(scope="session")
def tiny_hm(tmp_path_factory) -> Path:
    """A tiny generated H&M source with images (generated once per session)."""
    from stylehub_ray.config import GenerateHMConfig
    from stylehub_ray.synth.hm import generate_hm

    out = tmp_path_factory.mktemp("tiny_hm")
    generate_hm(str(out), GenerateHMConfig(scale="tiny", images=True))
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_hm, ray_head, tmp_path_factory):
    """The tiny source ingested once; tests must not modify it."""
    from stylehub_ray.config import IngestConfig
    from stylehub_ray.data.ingest import ingest
    from stylehub_ray.run import Run

    run = Run(str(tmp_path_factory.mktemp("tiny_run")))
    ingest(str(tiny_hm), run, IngestConfig(chunk_mb=0.1))
    return run


def wait_for(predicate, timeout: float = 60.0, every: float = 0.5):
    """Poll ``predicate`` until it returns a truthy value (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"condition not met in {timeout}s")


def copy_source(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# Shared H&M runs for the Ray-heavy tests (two-tower, recommend, ranking, tune, serve): built
# once per session. Read-only: a test that writes copies one first (`copy_run`).
@pytest.fixture(scope="session")
def hm_features(tiny_run, tmp_path_factory):
    """The tiny run with features (2 buckets)."""
    from stylehub_ray.config import FeaturesConfig
    from stylehub_ray.features.stage import build_features

    run = copy_run(tiny_run, tmp_path_factory.mktemp("hm_features") / "run")
    build_features(run, FeaturesConfig(buckets=2))
    return run


@pytest.fixture(scope="session")
def hm_embedded(hm_features, tmp_path_factory):
    """hm_features with image embeddings (the default encoder, pretrained EfficientNet-Lite0
    with the colour part, at 64 px, PCA to 32)."""
    from stylehub_ray.embed.images import EmbedImagesConfig, embed_images

    run = copy_run(hm_features, tmp_path_factory.mktemp("hm_embedded") / "run")
    embed_images(run, EmbedImagesConfig(image_size=64, pca_dim=32, batch_size=64, actors=1,
                                        threads=1))
    return run


@pytest.fixture(scope="session")
def hm_trained(hm_embedded, tmp_path_factory):
    """hm_embedded with a one-epoch two-tower (default variant) and its index."""
    from stylehub_ray.train.two_tower import TrainTwoTowerConfig, train_two_tower

    run = copy_run(hm_embedded, tmp_path_factory.mktemp("hm_trained") / "run")
    train_two_tower(run, TrainTwoTowerConfig(epochs=1, batch_size=512, val_customers=200,
                                             n_candidates=50))
    return run


@pytest.fixture(scope="session")
def outfits_teacher(ray_head, tmp_path_factory):
    """Tiny generated outfits: ingested, item features, a one-epoch N-pair teacher (the FND
    student's). Read-only, like the H&M runs above (Tune and Serve tests share it)."""
    from stylehub_ray.config import IngestConfig
    from stylehub_ray.data.ingest import ingest
    from stylehub_ray.run import Run
    from stylehub_ray.synth.outfits import generate_outfits
    from stylehub_ray.train.fndcl import (
        FNDCLItemsConfig,
        TrainFNDCLConfig,
        prepare_fndcl_items,
        train_fndcl,
    )

    src = tmp_path_factory.mktemp("outfits_teacher_src")
    generate_outfits(str(src), scale="tiny", seed=0)
    run = Run(str(tmp_path_factory.mktemp("outfits_teacher_run")))
    ingest(str(src), run, IngestConfig())
    prepare_fndcl_items(run, FNDCLItemsConfig(image_size=64, ae_epochs=1, batch_size=256))
    train_fndcl(run, TrainFNDCLConfig(stage="teacher", loss="npair", epochs=1, batch_size=16,
                                      cpus_per_worker=0.5))
    return run


def copy_run(run, dst):
    """A writable copy of a run at ``dst`` (a path that does not exist yet)."""
    from stylehub_ray.run import Run

    shutil.copytree(run.root, dst)
    return Run(str(dst))
