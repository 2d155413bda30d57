"""The CLI contract: `stylehub pipeline` prints the summary; errors name what is wrong."""

from __future__ import annotations

import subprocess
import sys

from stylehub_ray.cli import main


def test_pipeline_prints_summary(ray_head, tiny_hm, tmp_path, capsys):
    assert main(["pipeline", str(tiny_hm), "--run", str(tmp_path / "run"),
                 "--set", "ingest.chunk_mb=0.2"]) == 0
    out = capsys.readouterr().out
    assert "transactions" in out and "ingest" in out and "complete" in out
    assert main(["pipeline", str(tiny_hm), "--run", str(tmp_path / "run"),
                 "--set", "ingest.chunk_mb=0.2"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["ingest", str(tmp_path / "nowhere"), "--run", str(tmp_path / "run")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["pipeline", str(tmp_path), "--run", str(tmp_path / "r"), "--set", "x=1"]) == 2


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "stylehub_ray", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "pipeline" in out.stdout
