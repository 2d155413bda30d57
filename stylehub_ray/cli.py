"""The `stylehub` command: one place that parses arguments and calls the stage functions."""

from __future__ import annotations

import argparse
import json
import sys

from stylehub_ray import config as C


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file: a stage's keys, or sections named by stage")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (repeatable)")
    p.add_argument("--force", action="store_true", help="redo the stage even if up to date")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylehub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write synthetic data in a real layout")
    gsub = gen.add_subparsers(dest="dataset", required=True)
    hm = gsub.add_parser("hm", help="H&M Kaggle layout with an oracle")
    hm.add_argument("out")
    hm.add_argument("--scale", choices=C.SCALES)
    hm.add_argument("--seed", type=int)
    hm.add_argument("--no-images", action="store_true")
    _common(hm)
    outfits = gsub.add_parser("outfits", help="Polyvore-U layout with planted false negatives")
    outfits.add_argument("out")
    outfits.add_argument("--scale", choices=C.SCALES)
    outfits.add_argument("--seed", type=int)
    _common(outfits)

    ing = sub.add_parser("ingest", help="validate and type a source into RUN/raw")
    ing.add_argument("source")
    ing.add_argument("--run", required=True)
    _common(ing)

    feat = sub.add_parser("features", help="split, features, negatives, preprocessing")
    feat.add_argument("--run", required=True)
    _common(feat)

    emb = sub.add_parser("embed", help="item vectors: images (ResNet + PCA) or text")
    esub = emb.add_subparsers(dest="what", required=True)
    for what in ("images", "text"):
        e = esub.add_parser(what)
        e.add_argument("--run", required=True)
        e.add_argument("--model", help="images: random | imagenet | PATH | simclr:PATH; "
                                       "text: default (the bundled MiniLM) | PATH")
        _common(e)

    pairs = sub.add_parser("pairs", help="positive / negative item pairs and the FAISS index")
    pairs.add_argument("kind", choices=["text", "image", "transactions"])
    pairs.add_argument("--run", required=True)
    _common(pairs)

    train = sub.add_parser("train", help="train a model with Ray Train")
    tsub = train.add_subparsers(dest="model", required=True)
    tf = tsub.add_parser("fndcl", help="FND-CL outfit model: --set stage=teacher|student "
                                       "--set loss=bpr|npair|fnd|fndcl")
    tf.add_argument("--run", required=True)
    tf.add_argument("--workers", type=int)
    tf.add_argument("--gpus-per-worker", type=float)
    _common(tf)
    for name, what in (("contrastive", "contrastive item model: --set pairs=text|image|"
                                       "transactions"),
                       ("simclr-images", "self-supervised SimCLR image encoder on the photos")):
        tc = tsub.add_parser(name, help=what)
        tc.add_argument("--run", required=True)
        tc.add_argument("--workers", type=int)
        tc.add_argument("--gpus-per-worker", type=float)
        _common(tc)

    tt = tsub.add_parser("two-tower", help="two-tower retrieval + ranking (hybrid paper)")
    tt.add_argument("--run", required=True)
    tt.add_argument("--workers", type=int)
    tt.add_argument("--gpus-per-worker", type=float)
    _common(tt)

    rec = sub.add_parser("recommend", help="two-tower top-K for every customer: submission CSV")
    rec.add_argument("--run", required=True)
    rec.add_argument("--out", help="also write the submission CSV here (path or URI)")
    rec.add_argument("--k", type=int)
    _common(rec)

    tune = sub.add_parser("tune", help="Ray Tune sweep over a trainer's hyper-parameters: "
                                       "--set space.<param>=grid:a,b|choice:a,b|uniform:lo,hi"
                                       "|loguniform:lo,hi|int:lo,hi")
    tune.add_argument("model", choices=["contrastive", "two-tower", "fndcl"])
    tune.add_argument("--run", required=True)
    tune.add_argument("--samples", type=int, help="random search: trials; grid: repeats")
    _common(tune)

    ev = sub.add_parser("evaluate", help="evaluate trained models")
    evsub = ev.add_subparsers(dest="model", required=True)
    ef = evsub.add_parser("fndcl")
    ef.add_argument("--run", required=True)
    _common(ef)
    ec = evsub.add_parser("contrastive", help="contrastive item model and SimCLR encoders")
    ec.add_argument("--run", required=True)
    _common(ec)
    for name, what in (("two-tower", "the two-tower on the test period, with the oracle"),
                       ("baselines", "popularity, item-based CF and ALS on the test period")):
        e = evsub.add_parser(name, help=what)
        e.add_argument("--run", required=True)
        _common(e)

    srv = sub.add_parser("serve", help="serve the trained models over HTTP (Ray Serve)")
    srv.add_argument("--run", required=True, help="the H&M run (two-tower, similar items)")
    srv.add_argument("--outfits-run", help="a Polyvore-U run with a trained FND-CL model")
    srv.add_argument("--port", type=int, help="HTTP port (default 8000)")
    _common(srv)

    pipe = sub.add_parser("pipeline", help="every stage that exists, idempotent")
    pipe.add_argument("source")
    pipe.add_argument("--run", required=True)
    _common(pipe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"stylehub {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "train" and any(s.split("=", 1)[0].strip() == "config"
                                       for s in args.sets):
        from stylehub_ray.tune.sweep import expand_config_sets

        # --set config=best[:SWEEP]: the settings of a sweep's best trial, before other --set
        args.sets = expand_config_sets(args.run, args.model, args.sets)
    if args.command == "tune":
        from stylehub_ray.run import Run
        from stylehub_ray.tune.sweep import load_tune_config, tune_model

        cfg = load_tune_config(args.model, args.config, args.sets, samples=args.samples)
        tune_model(Run(args.run), cfg, force=args.force)
        return 0
    if args.command == "generate" and args.dataset == "hm":
        from stylehub_ray.synth.hm import generate_hm

        cfg = C.load_config(C.GenerateHMConfig, args.config, args.sets, scale=args.scale,
                            seed=args.seed, images=False if args.no_images else None)
        summary = generate_hm(args.out, cfg, force=args.force)
        print(json.dumps(summary, indent=2))
        return 0
    if args.command == "generate" and args.dataset == "outfits":
        from stylehub_ray.synth.outfits import generate_outfits

        cfg = C.load_config(C.GenerateOutfitsConfig, args.config, args.sets, scale=args.scale,
                            seed=args.seed)
        summary = generate_outfits(args.out, scale=cfg.scale, seed=cfg.seed,
                                   image_size=cfg.image_size)
        print(json.dumps(summary, indent=2, default=str))
        return 0
    if args.command == "ingest":
        from stylehub_ray.data.ingest import ingest
        from stylehub_ray.pipeline import log_run_summary
        from stylehub_ray.run import Run

        cfg = C.load_config(C.IngestConfig, args.config, args.sets)
        run = Run(args.run)
        ingest(args.source, run, cfg, force=args.force)
        log_run_summary(run)
        return 0
    if args.command == "features":
        from stylehub_ray.features.stage import build_features
        from stylehub_ray.run import Run

        build_features(Run(args.run), C.load_config(C.FeaturesConfig, args.config, args.sets),
                       force=args.force)
        return 0
    if args.command == "embed":
        from stylehub_ray.run import Run

        name = f"embed_{args.what}"
        cfg = C.load_config(C.stage_config(name), args.config, args.sets, model=args.model)
        if args.what == "images":
            from stylehub_ray.embed.images import embed_images as stage
        else:
            from stylehub_ray.embed.text import embed_text as stage
        stage(Run(args.run), cfg, force=args.force)
        return 0
    if args.command == "pairs":
        from stylehub_ray.embed.pairs import mine_pairs
        from stylehub_ray.run import Run

        cfg = C.load_config(C.stage_config("pairs"), args.config, args.sets)
        mine_pairs(Run(args.run), cfg, args.kind, force=args.force)
        return 0
    if args.command == "train" and args.model == "fndcl":
        from stylehub_ray.run import Run
        from stylehub_ray.train.fndcl import prepare_fndcl_items, train_fndcl

        run = Run(args.run)
        sets = _split_sets([s for s in args.sets if s.startswith("fndcl_items.")])
        prepare_fndcl_items(run, C.load_config(C.stage_config("fndcl_items"), args.config,
                                               sets.get("fndcl_items", [])))
        gpus = args.gpus_per_worker
        cfg = C.load_config(C.stage_config("train_fndcl"), args.config,
                            [s for s in args.sets if not s.startswith("fndcl_items.")],
                            workers=args.workers, use_gpu=None if gpus is None else gpus > 0)
        train_fndcl(run, cfg, force=args.force)
        return 0
    if args.command == "train" and args.model == "two-tower":
        from stylehub_ray.run import Run
        from stylehub_ray.train.two_tower import train_two_tower

        gpus = args.gpus_per_worker
        cfg = C.load_config(C.stage_config("train_two_tower"), args.config, args.sets,
                            workers=args.workers, use_gpu=None if gpus is None else gpus > 0)
        train_two_tower(Run(args.run), cfg, force=args.force)
        return 0
    if args.command == "recommend":
        from stylehub_ray.eval.recommend import recommend
        from stylehub_ray.run import Run

        cfg = C.load_config(C.stage_config("recommend"), args.config, args.sets, k=args.k)
        recommend(Run(args.run), cfg, out=args.out, force=args.force)
        return 0
    if args.command == "train" and args.model in ("contrastive", "simclr-images"):
        from stylehub_ray.run import Run

        if args.model == "contrastive":
            from stylehub_ray.train.contrastive import train_contrastive as stage
        else:
            from stylehub_ray.train.simclr_images import train_simclr_images as stage
        gpus = args.gpus_per_worker
        name = "train_" + args.model.replace("-", "_")
        cfg = C.load_config(C.stage_config(name), args.config, args.sets,
                            workers=args.workers, use_gpu=None if gpus is None else gpus > 0)
        stage(Run(args.run), cfg, force=args.force)
        return 0
    if args.command == "evaluate" and args.model == "contrastive":
        from stylehub_ray.eval.contrastive import evaluate_contrastive
        from stylehub_ray.run import Run

        evaluate_contrastive(Run(args.run), C.load_config(
            C.stage_config("evaluate_contrastive"), args.config, args.sets), force=args.force)
        return 0
    if args.command == "evaluate" and args.model == "fndcl":
        from stylehub_ray.eval.fndcl import evaluate_fndcl
        from stylehub_ray.run import Run

        evaluate_fndcl(Run(args.run), C.load_config(C.stage_config("evaluate_fndcl"),
                                                    args.config, args.sets), force=args.force)
        return 0
    if args.command == "evaluate" and args.model in ("two-tower", "baselines"):
        from stylehub_ray.eval.ranking import evaluate_baselines, evaluate_two_tower
        from stylehub_ray.run import Run

        name = "evaluate_ranking" if args.model == "two-tower" else "baselines"
        stage = evaluate_two_tower if args.model == "two-tower" else evaluate_baselines
        stage(Run(args.run), C.load_config(C.stage_config(name), args.config, args.sets),
              force=args.force)
        return 0
    if args.command == "serve":
        from stylehub_ray.serve.app import serve_forever, settings_from

        cfg = C.load_config(C.stage_config("serve"), args.config, args.sets, run=args.run,
                            outfits_run=args.outfits_run, port=args.port)
        serve_forever(settings_from(C.resolved(cfg)))
        return 0
    if args.command == "pipeline":
        from stylehub_ray.pipeline import run_pipeline

        stage_sets = _split_sets(args.sets)
        names = ("pipeline", "ingest", "features", "embed_images", "embed_text", "pairs",
                 "train_contrastive", "evaluate_contrastive", "train_two_tower", "recommend",
                 "evaluate_ranking", "baselines", "fndcl_items", "train_fndcl", "evaluate_fndcl")
        unknown = set(stage_sets) - set(names)
        if unknown:
            raise ValueError(f"pipeline --set: unknown stage(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(names)}")
        configs = {name: C.load_config(C.stage_config(name), args.config,
                                       stage_sets.get(name, [])) for name in names}
        run_pipeline(args.source, args.run, configs, force=args.force)
        return 0
    raise ValueError(f"unknown command {args.command}")


def _split_sets(sets: list[str]) -> dict[str, list[str]]:
    """Pipeline overrides name their stage: ``--set ingest.chunk_mb=8``."""
    out: dict[str, list[str]] = {}
    for item in sets:
        key = item.split("=", 1)[0]
        if "." not in key:
            raise ValueError(f"pipeline --set needs stage.key=value, got {item!r}")
        stage, rest = item.split(".", 1)
        out.setdefault(stage, []).append(rest)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
