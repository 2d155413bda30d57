"""Run directory: manifest, atomic steps, skip / force / crash recovery, local paths and URIs."""

from __future__ import annotations

import pytest

from stylehub_ray.run import MARKER, Run


def _write(step, rel: str, text: str) -> None:
    with step.run.fs.open_output_stream(f"{step.tmp(rel)}/data.txt") as f:
        f.write(text.encode())


@pytest.fixture(params=["path", "uri"])
def run(request, tmp_path):
    root = tmp_path / "run"
    return Run(str(root) if request.param == "path" else f"file://{root}")


def test_step_publishes_outputs_marker_and_manifest(run):
    step = run.step("s", "v1", config={"a": 1}, inputs={"src": "x"}, outputs=["out/a"])
    assert not step.done
    with step:
        _write(step, "out/a", "hello")
        step.counts["rows"] = 5
        assert not run.exists("out/a")  # nothing visible under the final name before the end
    assert run.is_complete("out/a")
    assert run.marker("out/a")["fingerprint"] == step.fingerprint
    entry = run.entry("s", "v1")
    assert entry["status"] == "complete" and entry["counts"] == {"rows": 5}
    assert entry["config"] == {"a": 1} and entry["inputs"] == {"src": "x"}
    assert "code_version" in entry and "total_s" in entry["timings"]
    assert not run.exists("_tmp") or not list(run.fs.get_file_info(
        __import__("pyarrow.fs", fromlist=["FileSelector"]).FileSelector(run.path("_tmp"))))


def test_skip_only_when_config_and_inputs_match(run):
    def step(config, inputs, force=False):
        return run.step("s", config=config, inputs=inputs, outputs=["o"], force=force)

    with step({"a": 1}, {"i": "1"}) as s:
        _write(s, "o", "x")
    assert step({"a": 1}, {"i": "1"}).done
    assert not step({"a": 2}, {"i": "1"}).done  # config changed
    assert not step({"a": 1}, {"i": "2"}).done  # input fingerprint changed
    assert not step({"a": 1}, {"i": "1"}, force=True).done


def test_crash_leaves_no_complete_output_and_rerun_redoes(run):
    with run.step("s", config={}, inputs={}, outputs=["o"]) as s:
        _write(s, "o", "first")
    with pytest.raises(RuntimeError), run.step("s", config={"b": 1}, inputs={},
                                                outputs=["o"]) as s:
        _write(s, "o", "half")
        raise RuntimeError("killed")
    entry = run.entry("s")
    assert entry["status"] == "failed" and "killed" in entry["error"]
    again = run.step("s", config={"b": 1}, inputs={}, outputs=["o"])
    assert not again.done
    with again:
        _write(again, "o", "second")
    with run.fs.open_input_stream(run.path("o/data.txt")) as f:
        assert f.read() == b"second"


def test_output_without_marker_is_not_complete(run):
    with run.step("s", config={}, inputs={}, outputs=["o"]) as s:
        _write(s, "o", "x")
    run.delete(f"o/{MARKER}")  # e.g. a crash between the move and the marker
    assert not run.step("s", config={}, inputs={}, outputs=["o"]).done


def test_local_run_is_addressed_by_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Run("relative/run")
    assert run.uri == str(tmp_path / "relative" / "run")
    monkeypatch.chdir("/")
    assert Run(run.uri).root == run.root  # a worker elsewhere opens the same folder


def test_forced_rerun_makes_dependent_steps_out_of_date(run):
    with run.step("up", config={}, inputs={}, outputs=["u"]) as s:
        _write(s, "u", "v1")

    def down():
        return run.step("down", config={}, inputs={"u": run.marker("u")["fingerprint"]},
                        outputs=["d"])

    with down() as s:
        _write(s, "d", "from v1")
    assert down().done
    assert run.step("up", config={}, inputs={}, outputs=["u"]).done  # unchanged: skipped
    with run.step("up", config={}, inputs={}, outputs=["u"], force=True) as s:
        _write(s, "u", "v2")
    assert not down().done  # its input was recomputed, so it is redone


def test_require_returns_the_fingerprint_or_names_the_command(run):
    with pytest.raises(FileNotFoundError, match=r"out/a is missing or incomplete: run "
                                                r"`stylehub make-a` first"):
        run.require("out/a", "stylehub make-a")
    step = run.step("s", config={}, inputs={}, outputs=["out/a"])
    with step:
        step.write_bytes("out/a", "blob.bin", b"\x00\x01")
        step.write_json("out/a", "meta.json", {"k": [1, 2]})
    assert run.require("out/a", "stylehub make-a") == step.fingerprint
    with run.fs.open_input_stream(run.path("out/a/blob.bin")) as f:
        assert f.read() == b"\x00\x01"
    assert run.read_json("out/a/meta.json") == {"k": [1, 2]}
