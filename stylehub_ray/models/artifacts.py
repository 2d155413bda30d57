"""One contract and one file format for every trained model: save, load, and the conversion
from a training checkpoint to what evaluation and serving load.

The contract (:data:`MODELS`): each model has a spec dataclass that rebuilds it (``to_dict`` /
``from_dict``, JSON-able) and a torch module built from that spec alone; the weights are its
``state_dict``. Training keeps nothing else in a model.

A published model, ``models/<model>/<variant>/`` in a run:

- ``model.pt``: the state dict (:func:`stylehub_ray.tensor_io.tensor_bytes`; loaded with
  ``weights_only=True``, so a file in a shared bucket cannot run code);
- ``spec.json``: the spec as a dict;
- ``meta.json``: what training recorded: variant, resolved config, ``best_epoch`` and ``best``
  (the published epoch and its metrics), ``history`` (every epoch's reported metrics),
  ``resumed_at`` and the model's own facts (the two-tower's input layout, ...);
- ``history.json``: ``{"variant", "best_epoch", "history"}``, what plots read;
- ``<name>.parquet``: a 1-D array of the metadata, one column ``<name>`` (the two-tower's
  ``trained_customers``); :func:`load_model` puts it back into ``meta[name]``.

A training checkpoint (a local folder Ray Train keeps, :mod:`stylehub_ray.train.loop`) holds
the same ``model.pt`` and ``spec.json`` plus ``progress.json`` (epoch, history, selection
state, resume point, the worker's facts) and ``train_state.pt`` (optimizer, scheduler, RNG
states). :func:`from_checkpoint` turns the best and the latest checkpoint into an
:class:`Artifact`.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stylehub_ray.run import Run
from stylehub_ray.tensor_io import load_tensors, save_tensors, tensor_bytes

# The format of published models and checkpoints. Training stages record it in their
# manifest config: a model published in another format (before 2: one pickled model.pt) is
# retrained, never loaded.
FORMAT = 2
WEIGHTS, SPEC, META, HISTORY = "model.pt", "spec.json", "meta.json", "history.json"
PROGRESS, TRAIN_STATE = "progress.json", "train_state.pt"


@dataclass(frozen=True)
class ModelKind:
    """One model: its folder under ``models/``, its spec class and its torch module class
    (``module:Class``, imported when used), and the command that trains it."""

    name: str
    spec_class: str
    model_class: str
    command: str

    def spec_from_dict(self, d: dict):
        return _import(self.spec_class).from_dict(d)

    def build(self, spec):
        """The torch module of ``spec`` (freshly initialised; load a state dict into it)."""
        return _import(self.model_class)(spec)


MODELS: dict[str, ModelKind] = {k.name: k for k in (
    ModelKind("contrastive", "stylehub_ray.models.contrastive:ContrastiveSpec",
              "stylehub_ray.models.contrastive:SimCLR", "stylehub train contrastive"),
    ModelKind("simclr_images", "stylehub_ray.models.simclr_images:SimCLRImagesSpec",
              "stylehub_ray.models.simclr_images:SimCLRImages",
              "stylehub train simclr-images"),
    ModelKind("two-tower", "stylehub_ray.models.two_tower:TwoTowerSpec",
              "stylehub_ray.models.two_tower:TwoStageRecommender", "stylehub train two-tower"),
    ModelKind("fndcl", "stylehub_ray.models.fndcl:ModelSpec",
              "stylehub_ray.models.fndcl:FNDCLModel", "stylehub train fndcl"),
)}


def _import(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def kind_of(model: str) -> ModelKind:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    return MODELS[model]


def model_dir(model: str, variant: str) -> str:
    """``models/<model>/<variant>``, relative to the run."""
    return f"models/{kind_of(model).name}/{variant}"


@dataclass
class Artifact:
    """A trained model as published: spec, weights, metadata (JSON-able) and 1-D arrays."""

    model: str
    spec: Any
    state: dict
    meta: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def build(self):
        """The torch module with these weights, on CPU, in eval mode."""
        net = kind_of(self.model).build(self.spec)
        net.load_state_dict(self.state)
        return net.eval()


# --------------------------------------------------------------------------------------------
# Published models (in a run)
# --------------------------------------------------------------------------------------------
def write_artifact(run: Run, folder: str, artifact: Artifact) -> None:
    """Write ``artifact`` into ``folder`` (a path in the run's filesystem, usually a step's
    temporary output ``step.tmp(model_dir(...))``)."""
    def put(name: str, data: bytes) -> None:
        run.write_at(posixpath.join(folder, name), data)

    put(WEIGHTS, tensor_bytes(artifact.state))
    put(SPEC, _json(artifact.spec.to_dict()))
    put(META, _json(artifact.meta))
    put(HISTORY, _json({"variant": artifact.meta.get("variant"),
                        "best_epoch": artifact.meta.get("best_epoch"),
                        "history": artifact.meta.get("history", [])}))
    for name, values in artifact.arrays.items():
        put(f"{name}.parquet", _parquet(name, values))


def _parquet(name: str, values: np.ndarray) -> bytes:
    """A 1-D array as a one-column Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({name: np.asarray(values)}), buf)
    return buf.getvalue()


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, default=_plain) + "\n").encode()


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists (anything else as its str)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _published(run: Run, model: str, variant: str) -> str:
    rel = model_dir(model, variant)
    if not run.is_complete(rel):
        raise FileNotFoundError(f"{run.uri_of(rel)}: no complete model (train it with "
                                f"`{kind_of(model).command} --run {run.uri}`)")
    return rel


def load_meta(run: Run, model: str, variant: str) -> dict:
    """A published model's metadata (``meta.json`` plus its arrays), without the weights."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    rel = _published(run, model, variant)
    meta = run.read_json(posixpath.join(rel, META))
    for info in run.fs.get_file_info(pafs.FileSelector(run.path(rel))):
        name = posixpath.basename(info.path)
        if name.endswith(".parquet"):
            col = name[: -len(".parquet")]
            meta[col] = pq.read_table(info.path, filesystem=run.fs).column(col).to_numpy(
                zero_copy_only=False)
    return meta


def load_spec(run: Run, model: str, variant: str):
    rel = _published(run, model, variant)
    return kind_of(model).spec_from_dict(run.read_json(posixpath.join(rel, SPEC)))


def load_artifact(run: Run, model: str, variant: str) -> Artifact:
    rel = _published(run, model, variant)
    with run.fs.open_input_stream(run.path(posixpath.join(rel, WEIGHTS))) as f:
        state = load_tensors(f.read())
    meta = load_meta(run, model, variant)
    arrays = {k: v for k, v in meta.items() if isinstance(v, np.ndarray)}
    return Artifact(model, load_spec(run, model, variant), state, meta, arrays)


def load_model(run: Run, model: str, variant: str):
    """(torch module on CPU in eval mode, spec, metadata) of a published model; the
    metadata holds its arrays too (``meta["trained_customers"]``: bool per customer)."""
    art = load_artifact(run, model, variant)
    return art.build(), art.spec, art.meta


def list_variants(run: Run, model: str) -> list[str]:
    """The variants of ``model`` published completely in ``run``, sorted."""
    import pyarrow.fs as pafs

    root = f"models/{kind_of(model).name}"
    infos = run.fs.get_file_info(pafs.FileSelector(run.path(root), allow_not_found=True))
    names = (posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.Directory)
    return sorted(v for v in names if run.is_complete(model_dir(model, v)))


# --------------------------------------------------------------------------------------------
# Training checkpoints (local folders) and the conversion to a published model
# --------------------------------------------------------------------------------------------
def write_checkpoint(folder: str, spec, state: dict, progress: dict, train_state: dict,
                     arrays: dict[str, np.ndarray] | None = None) -> None:
    """A training checkpoint in a local ``folder``: the model's weights and spec as published,
    ``progress`` (JSON-able), ``train_state`` (tensors and plain data) and 1-D ``arrays``."""
    save_tensors(state, os.path.join(folder, WEIGHTS))
    save_tensors(train_state, os.path.join(folder, TRAIN_STATE))
    for name, obj in ((SPEC, spec.to_dict()), (PROGRESS, progress)):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(_json(obj))
    for name, values in (arrays or {}).items():
        with open(os.path.join(folder, f"{name}.parquet"), "wb") as f:
            f.write(_parquet(name, values))


def read_checkpoint(folder: str) -> tuple[dict, dict, dict]:
    """(weights, progress, train state) of a checkpoint folder."""
    return (load_tensors(os.path.join(folder, WEIGHTS)), _read_json(folder, PROGRESS),
            load_tensors(os.path.join(folder, TRAIN_STATE)))


def _read_json(folder: str, name: str) -> dict:
    with open(os.path.join(folder, name)) as f:
        return json.load(f)


def from_checkpoint(model: str, best: str, latest: str, meta: dict) -> Artifact:
    """The published model of a training run, from two checkpoint folders: the weights and
    spec of the ``best`` (the best epoch and its metrics too); the history, resume point and
    the worker's facts and arrays of the ``latest``. ``meta`` (variant, config, ...) comes
    from the stage."""
    import pyarrow.parquet as pq

    spec = kind_of(model).spec_from_dict(_read_json(best, SPEC))
    at_best, last = _read_json(best, PROGRESS), _read_json(latest, PROGRESS)
    if at_best["best_epoch"] != at_best["epoch"]:
        raise ValueError(f"{best}: a checkpoint of epoch {at_best['epoch']}, not of the best "
                         f"epoch so far ({at_best['best_epoch']})")
    out = {**meta, **last.get("facts", {}), "best_epoch": at_best["epoch"],
           "best": at_best["best_metrics"], "history": last["history"],
           "resumed_at": last.get("resumed_at", -1), "restarts": last.get("restarts", 0)}
    arrays = {name[: -len(".parquet")]: pq.read_table(os.path.join(latest, name)).column(0)
              .to_numpy(zero_copy_only=False)
              for name in sorted(os.listdir(latest)) if name.endswith(".parquet")}
    return Artifact(model, spec, load_tensors(os.path.join(best, WEIGHTS)), out, arrays)
