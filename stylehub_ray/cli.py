"""The `stylehub` command: one place that parses arguments and calls the stage functions."""

from __future__ import annotations

import argparse
import json

from stylehub_ray import config as C
from stylehub_ray import logs, registry


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file: a stage's keys, or sections named by stage")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (repeatable)")
    p.add_argument("--force", action="store_true", help="redo the stage even if up to date")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's and the libraries' logs on the console too (by default "
                        "they go to a log file in the run, RUN/logs/)")


def _stage_arguments(name: str, p: argparse.ArgumentParser) -> None:
    """The arguments a command takes beyond --config, --set and --force."""
    if name in ("generate_hm", "generate_outfits"):
        p.add_argument("out")
        p.add_argument("--scale", choices=C.SCALES)
        p.add_argument("--seed", type=int)
        if name == "generate_hm":
            p.add_argument("--no-images", action="store_true")
        return
    if name == "tune":
        p.add_argument("model", choices=["contrastive", "two-tower", "fndcl"])
    if name == "pairs":
        p.add_argument("kind", choices=["text", "image", "transactions"])
    if name in ("ingest", "pipeline"):
        p.add_argument("source")
    if name == "serve":
        p.add_argument("--run", required=True, help="the H&M run (two-tower, similar items)")
        p.add_argument("--outfits-run", help="a Polyvore-U run with a trained FND-CL model")
        p.add_argument("--port", type=int, help="HTTP port (default 8000)")
        return
    p.add_argument("--run", required=True)
    if name in ("embed_images", "embed_text"):
        p.add_argument("--model", help="images: pretrained (default) | random | imagenet | "
                                       "PATH | simclr:PATH; text: default (the bundled "
                                       "MiniLM) | PATH")
    if name.startswith("train_"):
        p.add_argument("--workers", type=int)
        p.add_argument("--gpus-per-worker", type=float)
    if name == "recommend":
        p.add_argument("--out", help="also write the submission CSV here (path or URI)")
        p.add_argument("--k", type=int)
    if name == "tune":
        p.add_argument("--samples", type=int, help="random search: trials; grid: repeats")


GROUP_HELP = {"generate": "write synthetic data in a real layout",
              "embed": "item vectors: images (CNN + PCA) or text",
              "train": "train a model with Ray Train", "evaluate": "evaluate trained models"}


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per stage of the registry that has a command (``stage.cli``)."""
    parser = argparse.ArgumentParser(prog="stylehub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for stage in registry.STAGES:
        if not stage.cli:
            continue
        if len(stage.cli) == 1:
            p = sub.add_parser(stage.cli[0], help=stage.help)
        else:
            if stage.cli[0] not in groups:
                g = sub.add_parser(stage.cli[0], help=GROUP_HELP.get(stage.cli[0]))
                groups[stage.cli[0]] = g.add_subparsers(dest="what", required=True)
            p = groups[stage.cli[0]].add_parser(stage.cli[1], help=stage.help)
        p.set_defaults(stage=stage.name)
        _stage_arguments(stage.name, p)
        _common(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = " ".join(w for w in (args.command, getattr(args, "what", None)) if w)
    where = getattr(args, "run", None) or None
    with logs.console_session(logs.default_log_path(where, command),
                              verbose=args.verbose) as log_file:
        try:
            return _dispatch(args)
        except (ValueError, FileNotFoundError) as exc:
            print(f"stylehub {command}: error: {exc}", file=logs.console_err())
            return 2
        except BaseException as exc:
            if log_file is None or isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            import traceback

            traceback.print_exc()  # into the log file
            print(f"stylehub {command}: failed: {type(exc).__name__}: {exc}\n"
                  f"  the traceback and Ray's logs are in {log_file}", file=logs.console_err())
            return 1


def _config(name: str, args: argparse.Namespace, sets: list[str] | None = None, **given):
    return C.load_config(C.stage_config(name), args.config,
                         args.sets if sets is None else sets, **given)


def _dispatch(args: argparse.Namespace) -> int:
    """Load the stage's config (defaults < --config < the command's arguments < --set) and
    call its function from the registry."""
    from stylehub_ray.run import Run

    name = args.stage
    stage = registry.stage(name)
    fn = registry.resolve(stage.function)
    if name.startswith("train_") and any(s.split("=", 1)[0].strip() == "config"
                                         for s in args.sets):
        from stylehub_ray.tune.sweep import expand_config_sets

        # --set config=best[:SWEEP]: the settings of a sweep's best trial, before other --set
        args.sets = expand_config_sets(args.run, args.what, args.sets)
    if name.startswith("train_"):
        gpus = args.gpus_per_worker
        given = {"workers": args.workers, "use_gpu": None if gpus is None else gpus > 0}
    if name == "generate_hm":
        cfg = _config(name, args, scale=args.scale, seed=args.seed,
                      images=False if args.no_images else None)
        _say_generated(args.out, fn(args.out, cfg, force=args.force))
    elif name == "generate_outfits":
        cfg = _config(name, args, scale=args.scale, seed=args.seed)
        _say_generated(args.out, fn(args.out, scale=cfg.scale, seed=cfg.seed,
                                    image_size=cfg.image_size))
    elif name == "tune":
        from stylehub_ray.tune.sweep import load_tune_config

        cfg = load_tune_config(args.model, args.config, args.sets, samples=args.samples)
        fn(Run(args.run), cfg, force=args.force)
    elif name == "ingest":
        from stylehub_ray.pipeline import log_run_summary

        run = Run(args.run)
        fn(args.source, run, _config(name, args), force=args.force)
        log_run_summary(run)
    elif name in ("embed_images", "embed_text"):
        fn(Run(args.run), _config(name, args, model=args.model), force=args.force)
    elif name == "pairs":
        fn(Run(args.run), _config(name, args), args.kind, force=args.force)
    elif name == "train_fndcl":
        # The item features first (`--set fndcl_items.KEY=V` configures them).
        run = Run(args.run)
        items = [s for s in args.sets if s.startswith("fndcl_items.")]
        registry.resolve(registry.stage("fndcl_items").function)(
            run, _config("fndcl_items", args, _split_sets(items).get("fndcl_items", [])))
        rest = [s for s in args.sets if not s.startswith("fndcl_items.")]
        fn(run, _config(name, args, rest, **given), force=args.force)
    elif name.startswith("train_"):
        fn(Run(args.run), _config(name, args, **given), force=args.force)
    elif name == "recommend":
        fn(Run(args.run), _config(name, args, k=args.k), out=args.out, force=args.force)
    elif name == "serve":
        from stylehub_ray.serve.app import settings_from

        cfg = _config(name, args, run=args.run, outfits_run=args.outfits_run, port=args.port)
        fn(settings_from(C.resolved(cfg)))
    elif name == "pipeline":
        stage_sets = _split_sets(args.sets)
        names = ("pipeline", *registry.pipeline_stages())
        known = {*names, *(a for n in names for a in registry.stage(n).aliases)}
        unknown = set(stage_sets) - known
        if unknown:
            raise ValueError(f"pipeline --set: unknown stage(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(names)}")
        configs = {}
        for n in names:
            given_sets = [s for key in (n, *registry.stage(n).aliases)
                          for s in stage_sets.get(key, [])]
            configs[n] = _config(n, args, given_sets)
        fn(args.source, args.run, configs, force=args.force)
    else:
        fn(Run(args.run), _config(name, args), force=args.force)
    return 0


def _say_generated(out: str, summary: dict) -> None:
    """One line for a generated source (its counts; the whole summary in the log file)."""
    import logging

    log = logging.getLogger(__name__)
    if "sets" in summary:  # outfits: one part per set
        parts = [f"set {name}: {s['users']} users, "
                 f"{sum(s['items'].values()):,} items, {s['rows'].get('train_posi', 0):,} "
                 f"training outfits" for name, s in summary["sets"].items()]
        log.info(f"generated outfits in {out}: {summary.get('images', 0):,} images; "
                 + "; ".join(parts))
    else:
        log.info(f"generated H&M data in {out}: " + ", ".join(
            f"{summary[k]:,} {k.replace('_', ' ')}" for k in
            ("articles", "customers", "transactions", "images", "articles_without_image")
            if isinstance(summary.get(k), int))
            + (f" in {summary['total_s']:.0f} s" if "total_s" in summary else ""))
    logs.detail(json.dumps(summary, indent=2, default=str))


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
