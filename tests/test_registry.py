"""The stage registry: one name per stage for the CLI, the configs, the pipeline and the
manifest; older names still accepted."""

from __future__ import annotations

import json

import pytest

from stylehub_ray import config as C
from stylehub_ray import registry
from stylehub_ray.cli import build_parser
from stylehub_ray.run import Run


@pytest.mark.parametrize("stage", registry.STAGES, ids=lambda s: s.name)
def test_every_stage_resolves_and_its_config_knows_its_name(stage):
    cls = registry.resolve(stage.config)
    assert callable(registry.resolve(stage.function))
    assert C.stage_config(stage.name) is cls
    assert C._stage_name(cls) == stage.name
    for alias in stage.aliases:
        assert C.stage_config(alias) is cls


def test_every_command_parses_to_its_stage():
    parser = build_parser()
    extra = {"generate_hm": ["out"], "generate_outfits": ["out"], "tune": ["two-tower"],
             "pairs": ["text"], "ingest": ["src"], "pipeline": ["src"]}
    commands = [s for s in registry.STAGES if s.cli]
    assert len({s.cli for s in commands}) == len(commands)
    for s in commands:
        run = [] if s.name.startswith("generate_") else ["--run", "r"]
        args = parser.parse_args([*s.cli, *extra.get(s.name, []), *run])
        assert args.stage == s.name


def test_older_config_sections_are_aliases(tmp_path):
    cls = C.stage_config("evaluate_two_tower")
    assert C.stage_config("evaluate_ranking") is cls
    f = tmp_path / "c.yaml"
    f.write_text("evaluate_ranking:\n  bootstrap: 7\ningest:\n  chunk_mb: 4\n")
    assert C.load_config(cls, str(f)).bootstrap == 7
    f.write_text("evaluate_ranking:\n  bootstrap: 7\nevaluate_two_tower:\n  bootstrap: 8\n")
    with pytest.raises(ValueError, match="configure the same stage"):
        C.load_config(cls, str(f))
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        C.stage_config("nope")


def test_pipeline_stages_expand_older_entries_in_order():
    assert C.PipelineConfig().stages == registry.pipeline_stages()
    old = ("ingest", "features", "embed_images", "embed_text", "pairs_text", "contrastive",
           "two_tower", "recommend", "evaluate", "fndcl")
    # Stages added since those names were retired are not in them.
    newer = ("train_ranker", "evaluate_ranker")
    assert registry.expand_pipeline(old) == tuple(s for s in registry.pipeline_stages()
                                                  if s not in newer)
    assert registry.expand_pipeline(("evaluate", "evaluate_two_tower")) == (
        "evaluate_baselines", "evaluate_two_tower")
    with pytest.raises(ValueError, match="not a pipeline stage"):
        registry.expand_pipeline(("train_simclr_images",))
    with pytest.raises(ValueError, match="unknown stage"):
        C.load_config(C.PipelineConfig, None, ["stages=ingest,bogus"])


def test_a_run_from_before_the_registry_is_not_redone(tmp_path):
    """A manifest written with the older key `embed/images` reads as `embed_images`, so the
    step is up to date and skipped."""
    run = Run(str(tmp_path / "run"))
    step = run.step("embed_images", config={"a": 1}, inputs={"x": "f"}, outputs=["out"])
    with step:
        run.fs.create_dir(step.tmp("out"), recursive=True)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    manifest["steps"] = {"embed/images": manifest["steps"].pop("embed_images")}
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    again = run.step("embed_images", config={"a": 1}, inputs={"x": "f"}, outputs=["out"])
    assert again.done
    assert run.entry("embed", "images") == run.entry("embed_images")


def test_every_manifest_key_a_stage_writes_is_in_the_registry():
    """Each ``run.step(NAME, ...)`` in the package names a registered stage or one of its
    declared parts (``Stage.steps``): the manifest takes its keys from the registry."""
    import ast
    from pathlib import Path

    known = {*registry.BY_NAME, *(p for s in registry.STAGES for p in s.steps)}
    found = {}
    for path in Path(registry.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text())
        consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                  and isinstance(n.value, ast.Constant) for t in n.targets
                  if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "step" and node.args
                    and getattr(node.func.value, "id", "") in ("run", "self")):
                arg = node.args[0]
                name = arg.value if isinstance(arg, ast.Constant) else consts.get(
                    getattr(arg, "id", ""))
                found[name] = path.name
    assert found and None not in found, found
    assert set(found) <= known, {k: v for k, v in found.items() if k not in known}
