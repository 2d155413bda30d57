"""Run directory: where a dataset and everything derived from it live, with a manifest.

A run directory is a local path or any URI pyarrow understands (``file://``, ``s3://``, ``gs://``).
Every stage step writes its outputs, writes a ``_SUCCESS`` marker into each output last, and
then records itself in ``manifest.json``: its config, the fingerprints of its inputs, row counts,
timings and the code version. On a local disk the outputs are written under a temporary name
and renamed into place. Object stores have no directories to rename (S3's "move" is a copy of
every object, and fails on a prefix), so there a step writes in place: it first deletes each
output's marker, then the output, and writes the new one where it belongs. Either way the
marker (never the directory's existence) says an output is whole: a step killed mid-write
leaves an output without one, which no later stage takes for whole and the rerun redoes.
Endpoint and credentials of an object store come from pyarrow's own sources (the standard
``AWS_*`` environment variables such as ``AWS_ENDPOINT_URL``, or ``~/.aws``), never from this
code. A step is skipped only when a completed entry has the same config and input fingerprints
and every output still carries its marker; ``force`` redoes it, and since every completed run
of a step gets a fingerprint of its own, the steps that read its outputs are redone too. A
crashed step leaves no marker, so the rerun redoes exactly that step.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from stylehub_ray import __version__
from stylehub_ray.registry import manifest_key

MARKER = "_SUCCESS"
MANIFEST = "manifest.json"


def resolve_fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a pyarrow URI."""
    if "://" in uri:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def stable_hash(obj: Any) -> str:
    """Short content hash of a JSON-able object (sorted keys, so dict order never matters)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def code_version() -> str:
    """Package version plus the git commit (and a dirty flag) when run from a checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


class Run:
    """A run directory: artifacts addressed by relative paths such as ``raw/articles``."""

    def __init__(self, uri: str):
        self.fs, self.root = resolve_fs(uri)
        # A local run is addressed by its absolute path: Ray workers (Train workers, actors)
        # reopen Run(run.uri) from working directories of their own.
        self.uri = uri if "://" in uri else self.root
        self.fs.create_dir(self.root, recursive=True)

    # -- paths -----------------------------------------------------------------
    def path(self, rel: str) -> str:
        """Path of an artifact inside the run's filesystem."""
        return posixpath.join(self.root, rel) if rel else self.root

    def uri_of(self, rel: str) -> str:
        """A location other processes (Ray workers) can open: URI for remote runs, path locally."""
        if "://" in self.uri:
            return self.uri.rstrip("/") + "/" + rel
        return self.path(rel)

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def is_complete(self, rel: str) -> bool:
        """True when the artifact carries its completion marker."""
        return self.exists(posixpath.join(rel, MARKER))

    def require(self, rel: str, command: str) -> str:
        """The fingerprint of a completed input ``rel``; a clear error naming the command that
        makes it when it is missing or incomplete. Every stage asks its inputs this way."""
        if not self.is_complete(rel):
            raise FileNotFoundError(f"{self.uri_of(rel)} is missing or incomplete: run "
                                    f"`{command}` first")
        return self.marker(rel)["fingerprint"]

    def marker(self, rel: str) -> dict:
        with self.fs.open_input_stream(self.path(posixpath.join(rel, MARKER))) as f:
            return json.loads(f.read().decode())

    def read_json(self, rel: str) -> dict:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return json.loads(f.read().decode())

    def write_json(self, rel: str, obj: Any) -> None:
        text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
        self.write_bytes(rel, text.encode())

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write one object whole: a temporary file then a rename locally (atomic there), a
        single PUT on object stores (atomic there)."""
        self.write_at(self.path(rel), data)

    def write_at(self, target: str, data: bytes) -> None:
        """:meth:`write_bytes` to a path in the run's filesystem (a step's temporary output)."""
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        if isinstance(self.fs, pafs.LocalFileSystem):
            tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            os.replace(tmp, target)
        else:
            with self.fs.open_output_stream(target) as f:
                f.write(data)

    def delete(self, rel: str) -> None:
        info = self.fs.get_file_info(self.path(rel))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(rel))
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path(rel))

    @property
    def local(self) -> bool:
        """A local disk, where a rename moves a folder at once (object stores copy)."""
        return isinstance(self.fs, pafs.LocalFileSystem)

    def move(self, src_rel: str, dst_rel: str) -> None:
        """Rename a folder (local disks only: object stores have no rename)."""
        if not self.local:
            raise ValueError(f"{self.uri}: an object store cannot rename {src_rel}")
        self.delete(dst_rel)
        self.fs.create_dir(posixpath.dirname(self.path(dst_rel)), recursive=True)
        self.fs.move(self.path(src_rel), self.path(dst_rel))

    # -- manifest --------------------------------------------------------------
    def manifest(self) -> dict:
        if not self.exists(MANIFEST):
            return {"run": self.uri, "steps": {}}
        manifest = self.read_json(MANIFEST)
        # Keys written before the stage registry read as today's (the next write keeps them).
        manifest["steps"] = {manifest_key(k): v for k, v in manifest["steps"].items()}
        return manifest

    def entry(self, stage: str, variant: str = "") -> dict | None:
        return self.manifest()["steps"].get(step_key(stage, variant))

    def _record(self, key: str, entry: dict) -> None:
        manifest = self.manifest()
        manifest["steps"][key] = entry
        manifest["updated"] = _now()
        self.write_json(MANIFEST, manifest)

    def step(
        self,
        stage: str,
        variant: str = "",
        *,
        config: dict,
        inputs: dict[str, str],
        outputs: list[str],
        force: bool = False,
    ) -> Step:
        """Open a step; check ``.done`` to skip it, else use it as a context manager."""
        return Step(self, stage, variant, config, inputs, outputs, force)


def step_key(stage: str, variant: str = "") -> str:
    return manifest_key(f"{stage}/{variant}" if variant else stage)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Step:
    """One stage step. Outputs are written under ``tmp(rel)`` and published on success."""

    run: Run
    stage: str
    variant: str
    config: dict
    inputs: dict[str, str]
    outputs: list[str]
    force: bool = False
    counts: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key = step_key(self.stage, self.variant)
        self.config_hash = stable_hash(self.config)
        # What the step computes from; stable across reruns.
        self.spec_hash = stable_hash(
            {"step": self.key, "config": self.config_hash, "inputs": self.inputs}
        )
        # The fingerprint of this step's outputs, what downstream steps record as their input.
        # Each completed run gets its own (set on success), so a forced rerun of a step makes
        # every step that read its outputs out of date too.
        self.fingerprint = self.spec_hash
        self._tmp_root = f"_tmp/{self.key.replace('/', '.')}-{uuid.uuid4().hex[:8]}"
        self._t0 = 0.0

    @property
    def done(self) -> bool:
        """True when a completed entry matches config and inputs and all outputs are whole."""
        if self.force:
            return False
        entry = self.run.entry(self.stage, self.variant)
        if not entry or entry.get("status") != "complete":
            return False
        if entry.get("config_hash") != self.config_hash or entry.get("inputs") != self.inputs:
            return False
        for rel in self.outputs:
            if not self.run.is_complete(rel):
                return False
            if self.run.marker(rel).get("fingerprint") != entry.get("fingerprint"):
                return False
        return True

    def previous(self) -> dict | None:
        return self.run.entry(self.stage, self.variant)

    def _written(self, rel: str) -> str:
        """Where output ``rel`` is written during the step: a temporary folder renamed into
        place on a local disk, the output's own place on an object store."""
        assert rel in self.outputs, f"{rel} is not an output of step {self.key}"
        return posixpath.join(self._tmp_root, rel) if self.run.local else rel

    def tmp(self, rel: str) -> str:
        """Where to write output ``rel`` during the step (a path in the run's filesystem)."""
        return self.run.path(self._written(rel))

    def tmp_uri(self, rel: str) -> str:
        return self.run.uri_of(self._written(rel))

    def write_bytes(self, output: str, name: str, data: bytes) -> None:
        """Write file ``name`` into output ``output`` while the step runs."""
        self.run.write_at(posixpath.join(self.tmp(output), name), data)

    def write_json(self, output: str, name: str, obj: Any) -> None:
        text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
        self.write_bytes(output, name, text.encode())

    def time(self, name: str) -> _Timer:
        return _Timer(self.timings, name)

    def __enter__(self) -> Step:
        self._t0 = time.perf_counter()
        for rel in self.outputs:
            if not self.run.local:  # in place: the old output stops being whole first
                self.run.delete(posixpath.join(rel, MARKER))
                self.run.delete(rel)
            self.run.fs.create_dir(self.tmp(rel), recursive=True)
        self.run._record(self.key, {
            "stage": self.stage, "variant": self.variant, "status": "running",
            "started": _now(), "config": self.config, "config_hash": self.config_hash,
            "inputs": self.inputs, "code_version": code_version(),
        })
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            entry = self.run.entry(self.stage, self.variant) or {}
            entry.update(status="failed", error=f"{exc_type.__name__}: {exc}", ended=_now())
            self.run._record(self.key, entry)
            if self.run.local:
                self.run.delete(self._tmp_root)
            else:  # half-written outputs: no marker, removed to save the space
                for rel in self.outputs:
                    self.run.delete(rel)
            return
        self.fingerprint = stable_hash({"spec": self.spec_hash, "run": uuid.uuid4().hex})
        marker = {"step": self.key, "fingerprint": self.fingerprint, "written": _now()}
        if self.run.local:
            for rel in self.outputs:
                self.run.move(posixpath.join(self._tmp_root, rel), rel)
            self.run.delete(self._tmp_root)
        for rel in self.outputs:  # markers last: an output without one is never taken as whole
            self.run.write_json(posixpath.join(rel, MARKER), marker)
        self.timings["total_s"] = round(time.perf_counter() - self._t0, 3)
        entry = self.run.entry(self.stage, self.variant) or {}
        entry.update(
            status="complete", ended=_now(), fingerprint=self.fingerprint,
            outputs=self.outputs, counts=self.counts, timings=self.timings, **self.extra,
        )
        self.run._record(self.key, entry)


class _Timer:
    def __init__(self, sink: dict[str, float], name: str):
        self.sink, self.name = sink, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.sink[self.name] = round(time.perf_counter() - self.t0, 3)


def fingerprint_source(path: str) -> str:
    """Fingerprint of a source file or folder: names, sizes and modification times.

    Hashing the bytes of 3.5 GB of CSV on every rerun would cost more than the skip saves;
    size + mtime catch every edit a user makes in practice.
    """
    fs, root = resolve_fs(path)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"source not found: {path}")
    if info.type == pafs.FileType.File:
        entries = [info]
    else:
        entries = [i for i in fs.get_file_info(pafs.FileSelector(root, recursive=False))]
    listing = sorted(
        (posixpath.basename(i.path), i.size or 0, i.mtime_ns or 0) for i in entries
    )
    return stable_hash(listing)


def iter_files(fs: pafs.FileSystem, root: str, suffix: str = "") -> Iterator[pafs.FileInfo]:
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True)):
        if info.type == pafs.FileType.File and info.path.endswith(suffix):
            yield info
