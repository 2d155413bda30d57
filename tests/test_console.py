"""The console tells the story only: a CLI stage's output (not a terminal) has its lines and
tables, no escape codes and no Ray log line; Ray's logs are in the run's log file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from stylehub_ray.logs import progress

RAY_LINE = re.compile(r"(worker\.py:\d+|core_worker|\(pid=|\(\w+ pid=|streaming_executor| -- )")


def test_cli_stage_output_is_the_story_only(ray_head, tiny_hm, tmp_path):
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(ray_head["env"], RAY_ADDRESS=ray_head["address"],
               PYTHONPATH=os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH"))
                                          if p))
    env.pop("RAY_DATA_DISABLE_PROGRESS_BARS", None)
    out = subprocess.run([sys.executable, "-m", "stylehub_ray", "ingest", str(tiny_hm),
                          "--run", str(tmp_path / "run")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "transactions" in out.stdout and "quarantined" in out.stdout  # the story
    assert "\x1b" not in text
    assert not [line for line in text.splitlines() if RAY_LINE.search(line)], text[-2000:]
    logs = list((tmp_path / "run" / "logs").glob("ingest-*.log"))
    assert len(logs) == 1
    logged = logs[0].read_text()
    assert "Ray" in logged and "transactions" in logged  # Ray's lines and the story, here


def test_progress_is_plain_lines_when_not_a_terminal(capsys):
    bar = progress(None, "rows", total=4, unit="rows", every_s=0.0)
    for _ in range(4):
        bar.update(1)
    bar.close()
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("  rows: 4/4 rows (100%)")
    assert "\x1b" not in out and "\r" not in out
