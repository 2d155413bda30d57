"""`ray job submit` of the ingest job on tiny data, against the session's Ray head."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO, wait_for
from ray.job_submission import JobStatus, JobSubmissionClient

from stylehub_ray.data.ingest import read_table
from stylehub_ray.run import Run


def test_ingest_job_submitted_succeeds_and_writes_artifacts(ray_head, tiny_hm, tmp_path):
    run_dir = tmp_path / "job-run"
    ray = str(Path(sys.executable).parent / "ray")
    cmd = [ray, "job", "submit", "--no-wait", "--address", ray_head["dashboard"],
           "--working-dir", str(REPO), "--submission-id", f"ingest-{tmp_path.name}",
           "--", "python", "jobs/ingest.py", str(tiny_hm), "--run", str(run_dir)]

    def submit():
        out = subprocess.run(cmd, cwd=REPO, env=ray_head["env"], capture_output=True,
                             text=True, timeout=300)
        # The head's job agent can come up after `ray start` returns (seen on a loaded
        # 2-core machine): Ray answers "No available agent" and asks to try again later.
        return out if "No available agent" not in out.stderr + out.stdout else None

    out = wait_for(submit, timeout=120, every=3.0)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    client = JobSubmissionClient(ray_head["dashboard"])
    job_id = f"ingest-{tmp_path.name}"
    status = wait_for(lambda: (s := client.get_job_status(job_id)).is_terminal() and s,
                      timeout=300, every=1.0)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    run = Run(str(run_dir))
    entry = run.entry("ingest")
    assert entry["status"] == "complete"
    assert read_table(run, "raw/transactions").num_rows == entry["counts"]["transactions"]["kept"]
    assert "transactions" in logs and "quarantined" in logs  # the job printed its summary
