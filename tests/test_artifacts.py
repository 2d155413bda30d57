"""The model contract and artifact format (no Ray): tensors load weights-only, every model's
spec round-trips and its published folder loads back, the training checkpoint converts to the
published model, and the loop picks the first best epoch."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch

from stylehub_ray.models import artifacts as A
from stylehub_ray.run import Run
from stylehub_ray.tensor_io import load_tensors, save_tensors, tensor_bytes
from stylehub_ray.train.loop import Progress, Recipe


class _Code:
    """Not a tensor: a weights-only load must refuse it."""


def test_tensor_io_round_trip_and_refuses_code(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "step": 3, "betas": (0.9, 0.99)}
    back = load_tensors(tensor_bytes(state))
    assert torch.equal(back["w"], state["w"]) and back["betas"] == (0.9, 0.99)
    save_tensors(state, tmp_path / "s.pt")
    assert load_tensors(tmp_path / "s.pt")["step"] == 3
    with pytest.raises(pickle.UnpicklingError):
        load_tensors(tensor_bytes({"obj": _Code()}))


def _specs():
    from stylehub_ray.models.contrastive import ContrastiveSpec
    from stylehub_ray.models.fndcl import ModelSpec
    from stylehub_ray.models.simclr_images import SimCLRImagesSpec
    from stylehub_ray.models.two_tower import TwoTowerSpec

    return {"contrastive": ContrastiveSpec(input_dim=6, hidden=(8,), embed_dim=4,
                                           projection_hidden=4, projection_dim=2),
            "simclr_images": SimCLRImagesSpec("resnet18", image_size=32, projection_hidden=8,
                                              projection_dim=4),
            "two-tower": TwoTowerSpec(customer_numeric=2, customer_categories=(3,),
                                      article_numeric=1, article_categories=(4, 2),
                                      article_extra=3, customer_ids=5, article_ids=6),
            "fndcl": ModelSpec(n_users=3, backbone="xs", dim=8, heads=2, hidden=8)}


@pytest.mark.parametrize("model", list(A.MODELS))
def test_every_model_publishes_and_loads_back(model, tmp_path):
    spec = _specs()[model]
    assert type(spec).from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    torch.manual_seed(1)
    net = A.kind_of(model).build(spec)
    run = Run(str(tmp_path / "run"))
    rel = A.model_dir(model, "v")
    meta = {"variant": "v", "history": [{"epoch": 0, "loss": 1.5}], "best_epoch": 0}
    arrays = {"trained_customers": np.array([True, False, True])} if model == "two-tower" else {}
    A.write_artifact(run, run.path(rel), A.Artifact(model, spec, net.state_dict(), meta, arrays))
    run.write_json(f"{rel}/_SUCCESS", {"fingerprint": "x"})
    assert A.list_variants(run, model) == ["v"]

    loaded, spec2, meta2 = A.load_model(run, model, "v")
    assert spec2 == spec and not loaded.training
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert meta2["history"] == meta["history"]
    assert run.read_json(f"{rel}/history.json") == {"variant": "v", "best_epoch": 0,
                                                    "history": meta["history"]}
    if arrays:
        np.testing.assert_array_equal(meta2["trained_customers"], [True, False, True])
        assert meta2["trained_customers"].dtype == bool
    with pytest.raises(FileNotFoundError, match=f"stylehub train {model.replace('_', '-')}"):
        A.load_model(run, model, "missing")


def test_checkpoint_converts_to_the_published_model(tmp_path):
    """The best checkpoint's weights and its epoch's metrics; the latest's history, resume
    point, facts and arrays; the stage's metadata."""
    spec = _specs()["contrastive"]
    torch.manual_seed(0)
    nets = [A.kind_of("contrastive").build(spec) for _ in range(2)]
    history = [{"epoch": 0, "val_recall5": 0.5}, {"epoch": 1, "val_recall5": 0.4}]
    folders = []
    for epoch, net in enumerate(nets):
        d = tmp_path / f"ckpt{epoch}"
        d.mkdir()
        progress = {"epoch": epoch, "history": history[: epoch + 1], "best_epoch": 0,
                    "best_metrics": history[0], "resumed_at": 1 if epoch else -1,
                    "facts": {"pairs": {"train": 64}}}
        A.write_checkpoint(str(d), spec, net.state_dict(), progress, {"optimizer": {}},
                           {"trained": np.array([1, 0, 1], np.int32)} if epoch else None)
        folders.append(str(d))
    art = A.from_checkpoint("contrastive", folders[0], folders[1],
                            {"variant": "text", "config": {"tau": 0.1}})
    assert art.spec == spec
    for k, v in nets[0].state_dict().items():
        assert torch.equal(art.state[k], v), k
    assert art.meta == {"variant": "text", "config": {"tau": 0.1}, "pairs": {"train": 64},
                        "best_epoch": 0, "best": history[0], "history": history,
                        "resumed_at": 1, "restarts": 0}
    np.testing.assert_array_equal(art.arrays["trained"], [1, 0, 1])
    with pytest.raises(ValueError, match="not of the best epoch"):
        A.from_checkpoint("contrastive", folders[1], folders[1], {})


def test_the_first_of_tied_epochs_is_best_and_nan_never_is():
    class R(Recipe):
        select_by = "m"

    recipe, p = R("run", None), Progress()
    ranks = [p.record(recipe, {"epoch": e, "m": m})
             for e, m in enumerate([math.nan, 0.2, 0.5, 0.5, math.nan, 0.7, 0.1])]
    # Every new best gets the next rank; the checkpoint with the top rank is epoch 5.
    assert ranks == [1, 2, 3, 0, 0, 4, 0] and p.best_epoch == 5
    assert p.best_metrics == {"epoch": 5, "m": 0.7} and len(p.history) == 7

    class Last(Recipe):
        pass

    q = Progress()
    assert [q.record(Last("run", None), {"epoch": e}) for e in range(3)] == [1, 2, 3]
    again = Progress.resumed(json.loads(json.dumps(p.to_dict({}))))
    assert (again.epoch, again.resumed_at, again.best_epoch, again.improvements) == (6, 7, 5, 4)
    assert again.restarts == 1 and Progress.resumed(again.to_dict({})).restarts == 2
