"""No photos at all: the image stage records every article as missing in one line and the
two-tower trains without image features (has_image = 0 everywhere)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from conftest import copy_run

from stylehub_ray.data.ingest import read_table


def _remove_photos(run) -> int:
    """raw/images as ingest writes it for a source without an images/ folder."""
    images = read_table(run, "raw/images")
    n = images.num_rows
    names = [f"{a:010d}" for a in images.column("article_id").to_pylist()]
    gone = images.set_column(images.schema.get_field_index("status"), "status",
                             pa.array(["missing"] * n))
    gone = gone.set_column(gone.schema.get_field_index("path"), "path", pa.nulls(n, pa.string()))
    gone = gone.set_column(gone.schema.get_field_index("reason"), "reason",
                           pa.array([f"no file images/{m[:3]}/{m}.jpg" for m in names]))
    folder = run.path("raw/images")
    for f in Path(folder).glob("*.parquet"):
        f.unlink()
    pq.write_table(gone.select(images.schema.names), f"{folder}/part-0.parquet")
    return n


def test_no_photo_at_all_embeds_as_missing_and_two_tower_trains(hm_features, tmp_path, logged):
    from stylehub_ray.embed.images import EmbedImagesConfig, embed_images
    from stylehub_ray.train.two_tower import TrainTwoTowerConfig, train_two_tower

    run = copy_run(hm_features, tmp_path / "run")
    n = _remove_photos(run)
    entry = embed_images(run, EmbedImagesConfig(image_size=64, pca_dim=32, actors=1, threads=1))
    assert entry["counts"]["images"]["missing"] == n
    assert entry["counts"]["images"]["embedded"] == 0
    lines = [m for m in logged() if "no photo at all" in m]
    assert lines == [f"embed images: no photo at all: all {n:,} articles recorded as missing; "
                     f"the models train without image features (has_image = 0)"]
    emb = read_table(run, "embeddings/images")
    assert emb.num_rows == n and not pc.any(emb.column("has_image")).as_py()
    assert emb.column("embedding").null_count == n
    out = train_two_tower(run, TrainTwoTowerConfig(epochs=1, batch_size=512, val_customers=50,
                                                   n_candidates=20, choose=()))
    assert out["status"] == "complete"
    assert run.is_complete("models/two-tower/default")
