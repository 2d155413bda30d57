"""Stage configs: defaults < YAML file < explicit values < --set, with typed checks."""

from __future__ import annotations

import pytest

from stylehub_ray.config import GenerateHMConfig, IngestConfig, load_config, resolved


def test_defaults_and_sets():
    cfg = load_config(IngestConfig, None, ["chunk_mb=8", "verify_images=false", "channels=1,2,3"])
    assert cfg.chunk_mb == 8.0 and cfg.verify_images is False and cfg.channels == (1, 2, 3)
    assert resolved(cfg)["chunk_mb"] == 8.0
    assert load_config(IngestConfig, None, ["channels="]).channels == ()  # the empty tuple


def test_yaml_flat_and_sectioned(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("chunk_mb: 4\n")
    assert load_config(IngestConfig, str(flat)).chunk_mb == 4.0
    sectioned = tmp_path / "all.yaml"
    sectioned.write_text("ingest:\n  chunk_mb: 2\ngenerate_hm:\n  scale: tiny\n  seed: 7\n")
    assert load_config(IngestConfig, str(sectioned)).chunk_mb == 2.0
    gen = load_config(GenerateHMConfig, str(sectioned), ["seed=9"], scale=None)
    assert (gen.scale, gen.seed) == ("tiny", 9)  # --set beats the file


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="unknown ingest setting 'chunk'"):
        load_config(IngestConfig, None, ["chunk=3"])
    with pytest.raises(ValueError, match="ingest.verify_images: expected true/false"):
        load_config(IngestConfig, None, ["verify_images=maybe"])
    with pytest.raises(ValueError, match="generate_hm.seed: expected an integer"):
        load_config(GenerateHMConfig, None, ["seed=1.5"])
    with pytest.raises(ValueError, match="scale must be one of"):
        load_config(GenerateHMConfig, None, ["scale=huge"])
    with pytest.raises(ValueError, match="chunk_mb must be positive"):
        load_config(IngestConfig, None, ["chunk_mb=0"])
