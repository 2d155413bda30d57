"""SimCLR image encoder: views, the checkpoint `embed images --model simclr:PATH` loads, and
the Ray Train stage on the tiny run's photos (fine-tuning the pretrained Lite0, resume after an
injected failure, evaluation against the encoder it started from)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from stylehub_ray.embed.image_model import build_backbone
from stylehub_ray.embed.weights import resolve_image_weights
from stylehub_ray.models.artifacts import Artifact, write_artifact
from stylehub_ray.models.simclr_images import (
    SimCLRImages,
    SimCLRImagesSpec,
    make_augment,
    normalise,
    simclr_loss,
    two_views,
)
from stylehub_ray.run import Run


def test_two_views_differ_and_are_normalised():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 40, 40, 3), dtype=np.uint8)
    torch.manual_seed(0)
    v1, v2 = two_views(images, make_augment(32), "resnet18")
    assert v1.shape == v2.shape == (4, 3, 32, 32) and v1.dtype == torch.float32
    assert not torch.allclose(v1, v2)  # independent random views
    torch.manual_seed(0)
    again, _ = two_views(images, make_augment(32), "resnet18")
    assert torch.allclose(v1, again)  # seeded: reproducible
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert normalise(white, "resnet18")[0, 0, 0, 0].item() == pytest.approx(
        (1 - 0.485) / 0.229, rel=1e-5)  # torchvision's ImageNet statistics
    assert normalise(white, "efficientnet_lite0")[0, 0, 0, 0].item() == pytest.approx(
        (255 - 127) / 128, rel=1e-5)  # EfficientNet-Lite's (x - 127) / 128


def test_checkpoint_loads_as_embedding_backbone(tmp_path):
    spec = SimCLRImagesSpec("resnet18", image_size=32, projection_hidden=32, projection_dim=8)
    model = SimCLRImages(spec)
    with torch.no_grad():  # make it differ from the random init it started from
        model.backbone.conv1.weight.mul_(2.0)
    model.train()
    x = torch.randn(4, 3, 32, 32)
    loss = simclr_loss(model, x, x + 0.1 * torch.randn_like(x), 0.5)
    assert loss.item() > 0
    # Published as `train simclr-images` does: model.pt (the state dict) beside spec.json.
    run = Run(str(tmp_path / "run"))
    write_artifact(run, run.path("models/simclr_images/v"),
                   Artifact("simclr_images", spec, model.state_dict(), {"variant": "v"}))
    path = tmp_path / "run/models/simclr_images/v/model.pt"
    weights = resolve_image_weights(f"simclr:{path}", "resnet18")
    net = build_backbone("resnet18", weights)
    assert torch.equal(net.conv1.weight, model.backbone.conv1.weight)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), model.embed(x), atol=1e-5)
    with pytest.raises(ValueError, match="a resnet18 checkpoint, but arch='resnet34'"):
        build_backbone("resnet34", resolve_image_weights(f"simclr:{path}", "resnet34"))


def test_fine_tuning_starts_from_the_pretrained_weights():
    from stylehub_ray.tensor_io import load_tensors

    file = load_tensors(resolve_image_weights("pretrained", "efficientnet_lite0").path)
    model = SimCLRImages(SimCLRImagesSpec(init="pretrained", projection_hidden=16,
                                          projection_dim=4))
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, file[key]), key
    scratch = SimCLRImages(SimCLRImagesSpec(projection_hidden=16, projection_dim=4))
    assert SimCLRImagesSpec().init == "random"  # a spec saved before `init` existed
    assert not torch.equal(scratch.backbone._conv_stem.weight, file["_conv_stem.weight"])


@pytest.mark.cluster  # about 1 minute: in the CI's second suite (make test-cluster)
def test_train_resume_embed_and_evaluate(tiny_run, tmp_path):
    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.embed.images import EmbedImagesConfig, embed_images
    from stylehub_ray.embed.vectors import read_embeddings
    from stylehub_ray.eval.contrastive import EvaluateContrastiveConfig, evaluate_contrastive
    from stylehub_ray.train.simclr_images import (
        TrainSimCLRImagesConfig,
        build_trainer,
        checkpoint_path,
        embed_catalog,
        train_simclr_images,
    )

    shutil.copytree(tiny_run.root, tmp_path / "run")
    run = Run(str(tmp_path / "run"))
    cfg = TrainSimCLRImagesConfig(image_size=32, epochs=2, batch_size=32, max_images=96,
                                  projection_hidden=64, projection_dim=16)
    assert (cfg.arch, cfg.init, cfg.variant()) == ("efficientnet_lite0", "pretrained",
                                                   "efficientnet_lite0-32")
    trainer, _ = build_trainer(run, cfg, fail_after_epoch=0)
    with pytest.raises(Exception, match="injected failure"):
        trainer.fit()
    entry = train_simclr_images(run, cfg)
    assert entry["counts"]["epochs"] == {"trained": 2, "resumed_at": 1, "restarts": 1}
    assert entry["counts"]["images"]["photos"] == 96
    history = run.read_json("models/simclr_images/efficientnet_lite0-32/history.json")[
        "history"]
    assert [h["epoch"] for h in history] == [0, 1]
    assert all(np.isfinite(h["loss"]) and h["loss"] > 0 for h in history)

    # The checkpoint is what `embed images --model simclr:PATH` takes.
    path = checkpoint_path(run, "efficientnet_lite0-32")
    embed_images(run, EmbedImagesConfig(model=f"simclr:{path}", image_size=32, pca_dim=16))
    emb = read_embeddings(run, "embeddings/images")
    assert emb.column("has_image").to_numpy(zero_copy_only=False).sum() > 500
    trained, present = embed_catalog(run, "efficientnet_lite0-32")
    start, present_s = embed_catalog(run, "efficientnet_lite0-32", start=True)
    np.testing.assert_array_equal(present, present_s)
    assert trained.shape[1] == start.shape[1] == 1280  # backbone features, no colour part
    assert not np.allclose(trained[present], start[present])  # training moved the backbone
    # The start is the pretrained encoder `embed images` runs by default.
    from stylehub_ray.embed.image_model import ImageEncoder, decode_image
    from stylehub_ray.embed.images import read_bytes

    i = int(np.flatnonzero(present)[0])
    raw = read_table(run, "raw/images").to_pandas().set_index("article_idx")
    photo = decode_image(read_bytes(raw.loc[i, "path"]), 32)[None]
    ref = ImageEncoder.load("efficientnet_lite0", resolve_image_weights(
        "pretrained", "efficientnet_lite0")).encode(photo)[0]
    np.testing.assert_allclose(start[i], ref, rtol=1e-4, atol=1e-5)

    res = evaluate_contrastive(run, EvaluateContrastiveConfig(agreement_items=300))
    r = res["simclr"]["efficientnet_lite0-32"]
    assert r["images"] == int(present.sum()) and r["start_weights"] == "pretrained"
    for enc in ("simclr", "start"):
        for col in ("product_type_name", "colour_group_name", "all"):
            assert 0 <= r[enc][col]["share"] <= 1 and 0 < r[enc][col]["chance"] < 1
    assert run.read_json("eval/simclr_images/efficientnet_lite0-32/metrics.json")[
        "arch"] == "efficientnet_lite0"
