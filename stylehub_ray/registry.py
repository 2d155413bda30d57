"""The stage registry: one table from which the CLI, the configs, the pipeline and the manifest
take their names, so each stage has one name.

A stage's ``name`` is its config section (``--set name.key=value`` in a pipeline, a section
of a YAML file), its entry in ``pipeline.stages`` and its manifest key (``name`` or
``name/variant``). ``cli`` is the command that runs it. Names used before the registry stay
accepted: ``aliases`` as config sections, ``PIPELINE_ALIASES`` in ``pipeline.stages`` and
``MANIFEST_RENAMES`` for manifests written before, so an older run is not redone because a key
changed.

This module sits at the bottom layer: it names modules (``"package.module:attribute"``) and
never imports them; :func:`resolve` imports one on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

HM, OUTFITS, ANY = "hm", "outfits", "any"


@dataclass(frozen=True)
class Stage:
    name: str
    cli: tuple[str, ...]  # the command's words after `stylehub`; () when only the pipeline runs it
    help: str
    config: str  # "module:Class" of its config dataclass
    function: str = ""  # "module:function" of the stage function; "" for commands that are not
    aliases: tuple[str, ...] = ()  # older config section names, still accepted
    layout: str = ""  # which runs the pipeline runs it on: hm | outfits | any; "": not in it
    steps: tuple[str, ...] = ()  # other manifest keys its function records (its parts)


STAGES: tuple[Stage, ...] = (
    Stage("generate_hm", ("generate", "hm"), "H&M Kaggle layout with an oracle",
          "stylehub_ray.config:GenerateHMConfig", "stylehub_ray.synth.hm:generate_hm"),
    Stage("generate_outfits", ("generate", "outfits"),
          "Polyvore-U layout with its false negatives flagged",
          "stylehub_ray.config:GenerateOutfitsConfig",
          "stylehub_ray.synth.outfits:generate_outfits"),
    Stage("ingest", ("ingest",), "validate and type a source into RUN/raw",
          "stylehub_ray.config:IngestConfig", "stylehub_ray.data.ingest:ingest", layout=ANY),
    Stage("features", ("features",), "split, features, negatives, preprocessing",
          "stylehub_ray.config:FeaturesConfig", "stylehub_ray.features.stage:build_features",
          layout=HM),
    Stage("embed_images", ("embed", "images"), "item vectors from the photos (CNN + PCA)",
          "stylehub_ray.embed.images:EmbedImagesConfig",
          "stylehub_ray.embed.images:embed_images", layout=HM),
    Stage("embed_text", ("embed", "text"), "item vectors from the descriptions",
          "stylehub_ray.embed.text:EmbedTextConfig", "stylehub_ray.embed.text:embed_text",
          layout=HM),
    Stage("pairs", ("pairs",), "positive / negative item pairs and the FAISS index",
          "stylehub_ray.embed.pairs:PairsConfig", "stylehub_ray.embed.pairs:mine_pairs",
          layout=HM),
    Stage("train_contrastive", ("train", "contrastive"),
          "contrastive item model: --set pairs=text|image|transactions",
          "stylehub_ray.train.contrastive:TrainContrastiveConfig",
          "stylehub_ray.train.contrastive:train_contrastive", layout=HM),
    Stage("evaluate_contrastive", ("evaluate", "contrastive"),
          "contrastive item model and SimCLR encoders",
          "stylehub_ray.eval.contrastive:EvaluateContrastiveConfig",
          "stylehub_ray.eval.contrastive:evaluate_contrastive", layout=HM,
          steps=("evaluate_simclr_images",)),
    Stage("train_simclr_images", ("train", "simclr-images"),
          "self-supervised SimCLR image encoder on the photos",
          "stylehub_ray.train.simclr_images:TrainSimCLRImagesConfig",
          "stylehub_ray.train.simclr_images:train_simclr_images"),
    Stage("train_two_tower", ("train", "two-tower"),
          "two-tower retrieval + ranking (hybrid paper)",
          "stylehub_ray.train.two_tower:TrainTwoTowerConfig",
          "stylehub_ray.train.two_tower:train_two_tower", layout=HM,
          steps=("index_two_tower",)),
    Stage("train_ranker", ("train", "ranker"),
          "multi-source candidates ranked by LightGBM lambdarank (Ray Train)",
          "stylehub_ray.eval.ranker:TrainRankerConfig", "stylehub_ray.eval.ranker:train_ranker",
          layout=HM),
    Stage("recommend", ("recommend",), "two-tower top-K for every customer: submission CSV",
          "stylehub_ray.eval.recommend:RecommendConfig", "stylehub_ray.eval.recommend:recommend",
          layout=HM),
    Stage("evaluate_baselines", ("evaluate", "baselines"),
          "popularity, item-based CF and ALS on the test period",
          "stylehub_ray.eval.ranking:EvaluateBaselinesConfig",
          "stylehub_ray.eval.ranking:evaluate_baselines", aliases=("baselines",), layout=HM,
          steps=("evaluate_oracle", "evaluate_summary")),
    Stage("evaluate_two_tower", ("evaluate", "two-tower"),
          "the two-tower on the test period, with the oracle",
          "stylehub_ray.eval.ranking:EvaluateRankingConfig",
          "stylehub_ray.eval.ranking:evaluate_two_tower", aliases=("evaluate_ranking",),
          layout=HM, steps=("evaluate_oracle", "evaluate_summary")),
    Stage("evaluate_ranker", ("evaluate", "ranker"),
          "the LightGBM ranker on the test period, with the oracle",
          "stylehub_ray.eval.ranker:EvaluateRankerConfig",
          "stylehub_ray.eval.ranker:evaluate_ranker", layout=HM,
          steps=("evaluate_oracle", "evaluate_summary")),
    Stage("fndcl_items", (), "FND-CL item features and replace neighbours",
          "stylehub_ray.train.fndcl:FNDCLItemsConfig",
          "stylehub_ray.train.fndcl:prepare_fndcl_items", layout=OUTFITS),
    Stage("train_fndcl", ("train", "fndcl"),
          "FND-CL outfit model: --set stage=teacher|student --set loss=bpr|npair|fnd|fndcl",
          "stylehub_ray.train.fndcl:TrainFNDCLConfig", "stylehub_ray.train.fndcl:train_fndcl",
          layout=OUTFITS),
    Stage("evaluate_fndcl", ("evaluate", "fndcl"), "FND-CL teacher, students and cold start",
          "stylehub_ray.eval.fndcl:EvaluateFNDCLConfig",
          "stylehub_ray.eval.fndcl:evaluate_fndcl", layout=OUTFITS),
    Stage("tune", ("tune",), "Ray Tune sweep over a trainer's hyper-parameters: --set "
          "space.<param>=grid:a,b|choice:a,b|uniform:lo,hi|loguniform:lo,hi|int:lo,hi",
          "stylehub_ray.tune.sweep:TuneSweepConfig", "stylehub_ray.tune.sweep:tune_model"),
    Stage("serve", ("serve",), "serve the trained models over HTTP (Ray Serve)",
          "stylehub_ray.serve.settings:ServeConfig", "stylehub_ray.serve.app:serve_forever"),
    Stage("report", ("report",), "one self-contained HTML page of the run: RUN/report.html",
          "stylehub_ray.report:ReportConfig", "stylehub_ray.report:write_report"),
    Stage("pipeline", ("pipeline",), "every stage that exists, idempotent",
          "stylehub_ray.config:PipelineConfig", "stylehub_ray.pipeline:run_pipeline"),
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
# Older config section names -> the stage's name.
ALIASES: dict[str, str] = {a: s.name for s in STAGES for a in s.aliases}
# Pipeline entries used before the registry -> the stages they ran, in order.
PIPELINE_ALIASES: dict[str, tuple[str, ...]] = {
    "pairs_text": ("pairs",),
    "contrastive": ("train_contrastive", "evaluate_contrastive"),
    "two_tower": ("train_two_tower",),
    "evaluate": ("evaluate_baselines", "evaluate_two_tower"),
    "fndcl": ("fndcl_items", "train_fndcl", "evaluate_fndcl"),
}
# Manifest keys written before the registry -> today's.
MANIFEST_RENAMES: dict[str, str] = {"embed/images": "embed_images", "embed/text": "embed_text"}


def pipeline_stages() -> tuple[str, ...]:
    """Every stage the pipeline runs, in order."""
    return tuple(s.name for s in STAGES if s.layout)


def stage(name: str) -> Stage:
    """The stage named ``name`` or one of its aliases."""
    name = ALIASES.get(name, name)
    if name not in BY_NAME:
        raise ValueError(f"unknown stage {name!r}; known: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def by_cli(words: tuple[str, ...]) -> Stage:
    for s in STAGES:
        if s.cli == tuple(words):
            return s
    raise ValueError(f"no stage runs `stylehub {' '.join(words)}`")


def expand_pipeline(names: tuple[str, ...]) -> tuple[str, ...]:
    """``pipeline.stages`` with older entries expanded, duplicates dropped, order kept."""
    out: list[str] = []
    for name in names:
        for s in PIPELINE_ALIASES.get(name, (name,)):
            s = stage(s).name
            if not stage(s).layout:
                raise ValueError(f"pipeline.stages: {s!r} is not a pipeline stage; pipeline "
                                 f"stages: {', '.join(pipeline_stages())}")
            if s not in out:
                out.append(s)
    return tuple(out)


def manifest_key(key: str) -> str:
    """Today's manifest key of ``key`` (keys written before the registry are renamed)."""
    return MANIFEST_RENAMES.get(key, key)


def resolve(path: str):
    """Import ``"module:attribute"`` and return the attribute."""
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)
