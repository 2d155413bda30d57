"""Ingest of the Polyvore-U layout through the same `stylehub ingest` command."""

from __future__ import annotations

from stylehub_ray.cli import main
from stylehub_ray.data.ingest import read_table
from stylehub_ray.run import Run
from stylehub_ray.synth.outfits import generate_outfits


def test_outfits_ingest_detects_layout_and_reconciles(tmp_path, capsys):
    src = tmp_path / "polyvore"
    summary = generate_outfits(str(src), scale="tiny", seed=0)
    assert main(["ingest", str(src), "--run", str(tmp_path / "run")]) == 0
    run = Run(str(tmp_path / "run"))
    entry = run.entry("ingest")
    assert entry["inputs"]["layout"] == "polyvore"
    outfits = read_table(run, "raw/outfits")
    expected_rows = sum(sum(s["rows"].values()) for s in summary["sets"].values())
    assert entry["counts"]["outfit_rows"] == {"read": expected_rows, "kept": expected_rows,
                                             "quarantined": 0}
    assert outfits.num_rows == expected_rows
    assert set(outfits.column("split").to_pylist()) == {"train", "val", "test"}
    assert entry["sets"]["519"]["variable_length"] and not entry["sets"]["630"]["variable_length"]
    assert run.is_complete("raw/oracle") and run.is_complete("raw/outfit_items")
    assert "outfit_rows" in capsys.readouterr().out
