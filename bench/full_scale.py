"""The H&M pipeline at the real size, stage by stage, each stage measured (issue 23).

For one size (``1/16``, ``1/4`` or ``full``: that share of the full data's 1,371,980 customers
and 31,788,324 transactions, always with the full 105,542-article catalogue and its photos),
generates the source, then runs every stage of the H&M pipeline as its own ``stylehub``
command (each starts its own local Ray instance, as a job on a cluster would) and, while it
runs, samples every process it started once a second. For each stage it records: wall time,
rows or items per second (the stage's own count), peak resident memory of the driver and of the
largest other process (a Ray worker, a Serve replica; with its private part: resident minus
shared, since Ray's object store is shared memory mapped into each reader), the object-store
spill (the largest spill folder seen, and Ray's own "Spilled" lines), disk written (the
machine's block devices, so run it on a quiet machine), swap-outs and the machine's lowest
available memory. Serving is measured by the Serve demo: deploy the graph with the run loaded,
answer three customers over HTTP, take it down.

Each completed stage's figures are written to ``bench/full_scale_figures/<size>.json`` at once
(committed; the bulky source and run stay in ``WORK``), so a long run
leaves what it did; run it again and it goes on at the first stage without figures (the
pipeline's own stages are idempotent too). Runs for hours at full size on 2 cores: start it in
the background.

    python bench/full_scale.py --size 1/16 [--work DIR] [--image-size 64] [--until STAGE]
    python bench/full_scale.py --table          # the table of every size measured so far
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "full-scale"  # the data (source, run, log): not committed
FIGURES = ROOT / "bench" / "full_scale_figures"  # each size's figures: committed as they land
FULL_CUSTOMERS, FULL_TRANSACTIONS = 1_371_980, 31_788_324
SIZES = {"1/16": 16, "1/4": 4, "full": 1, "tiny": 0}  # tiny: the generator's tiny scale
PAGE = os.sysconf("SC_PAGE_SIZE")
SECTOR = 512
SPILL_GLOB = "/tmp/ray/session_*/ray_spilled_objects*"


@dataclass
class Step:
    name: str
    argv: list[str]  # after the `stylehub` command (or a python -m module, see module)
    count_key: str = ""  # what "rows/s" counts, read from the stage's manifest entry
    module: str = ""  # run `python -m MODULE argv` instead of `stylehub argv`


def steps_for(size: str, src: str, run: str, image_size: int, extra: list[str]) -> list[Step]:
    share = SIZES[size]
    gen = ["generate", "hm", src, "--scale", "full" if share else "tiny",
           "--set", f"image_width={image_size}", "--set", f"image_height={image_size * 4 // 3}"]
    if share > 1:
        gen += ["--set", f"n_customers={FULL_CUSTOMERS // share}",
                "--set", f"n_transactions={FULL_TRANSACTIONS // share}"]
    r = ["--run", run]
    steps = [
        Step("generate", gen),
        Step("ingest", ["ingest", src, *r]),
        Step("features", ["features", *r]),
        Step("embed_images", ["embed", "images", *r, "--set", f"image_size={image_size}"]),
        Step("embed_text", ["embed", "text", *r]),
        Step("pairs", ["pairs", "text", *r]),
        Step("train_contrastive", ["train", "contrastive", *r]),
        Step("evaluate_contrastive", ["evaluate", "contrastive", *r]),
        Step("train_two_tower", ["train", "two-tower", *r]),
        Step("train_ranker", ["train", "ranker", *r]),
        Step("recommend", ["recommend", *r]),
        Step("evaluate_baselines", ["evaluate", "baselines", *r]),
        Step("evaluate_two_tower", ["evaluate", "two-tower", *r]),
        Step("evaluate_ranker", ["evaluate", "ranker", *r]),
        Step("serve", ["--run", run, "--port", "8765", "--customers", "3"],
             module="stylehub_ray.serve.demo"),
    ]
    for s in steps:  # --set STAGE.KEY=VALUE from the command line, for the stage it names
        for item in extra:
            stage, _, kv = item.partition(".")
            if stage == s.name:
                s.argv += ["--set", kv]
    return steps


# --------------------------------------------------------------------------------------------
# Sampling the processes a step started (Linux /proc)
# --------------------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _tree(root: int) -> list[int]:
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _memory(pid: int) -> tuple[int, int, str] | None:
    """(resident, shared) bytes and the process's name (Ray workers set their title)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            _, resident, shared = (int(x) for x in f.read().split()[:3])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            name = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
    except (OSError, ValueError):
        return None
    return resident * PAGE, shared * PAGE, name


def _disk_sectors_written() -> int:
    """Sectors written by every whole block device (partitions and virtual devices left out)."""
    total = 0
    with open("/proc/diskstats") as f:
        for line in f:
            parts = line.split()
            dev = parts[2]
            if dev.startswith(("loop", "ram", "dm-", "zram")) or not os.path.exists(
                    f"/sys/block/{dev}"):
                continue
            total += int(parts[9])
    return total


def _vmstat(key: str) -> int:
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            if k == key:
                return int(v)
    return 0


def _available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _folder_bytes(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


@dataclass
class Peaks:
    driver_rss: int = 0
    worker_rss: int = 0
    worker_private: int = 0
    worker_name: str = ""
    processes: int = 0
    spill_bytes: int = 0
    min_available: int = 1 << 62
    samples: int = 0


class Sampler(threading.Thread):
    """Samples the process tree under ``pid`` every ``every_s`` seconds until stopped."""

    def __init__(self, pid: int, every_s: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peaks = pid, every_s, Peaks()
        self.t_start = time.time()
        self.stop = threading.Event()

    def run(self) -> None:
        p = self.peaks
        while not self.stop.is_set():
            pids = _tree(self.pid)
            p.processes = max(p.processes, len(pids))
            for pid in pids:
                m = _memory(pid)
                if m is None:
                    continue
                rss, shared, name = m
                if pid == self.pid:
                    p.driver_rss = max(p.driver_rss, rss)
                elif rss > p.worker_rss:
                    p.worker_rss, p.worker_name = rss, name
                if pid != self.pid:
                    p.worker_private = max(p.worker_private, rss - shared)
            # Ray's default spill folder: in the session's folder (sessions of this step only).
            spill = sum(_folder_bytes(d) for d in glob.glob(SPILL_GLOB)
                        if os.path.getctime(d) >= self.t_start - 5)
            p.spill_bytes = max(p.spill_bytes, spill)
            p.min_available = min(p.min_available, _available())
            p.samples += 1
            self.stop.wait(self.every_s)


def _spilled_lines(since: float) -> list[str]:
    """Ray's own "Spilled N MiB" lines in the sessions started since ``since``."""
    out = []
    for session in glob.glob("/tmp/ray/session_2*"):
        if os.path.getmtime(session) < since - 5:
            continue
        for log in glob.glob(f"{session}/logs/raylet*.out") + glob.glob(f"{session}/logs/*.err"):
            try:
                text = Path(log).read_text(errors="replace")
            except OSError:
                continue
            out += [m.group(0) for m in re.finditer(r"Spilled \d+ MiB, \d+ objects[^\n]*", text)]
    return out


# Stages whose input is the catalogue alone, the same at every size.
CATALOGUE = {"embed_images", "embed_text", "pairs", "train_contrastive", "evaluate_contrastive"}

# What "per second" counts for each stage: paths into its manifest entries' counts, summed.
COUNTS = {
    "ingest": ("transactions rows", [("transactions", "read")]),
    "features": ("transaction rows", [("split_rows", "train"), ("split_rows", "val"),
                                      ("split_rows", "test")]),
    "embed_images": ("images", [("images", "embedded")]),
    "embed_text": ("articles", [("text", "embedded")]),
    "pairs": ("pairs", [("pairs", "positive"), ("pairs", "negative")]),
    "train_contrastive": ("pairs x epochs", [("pairs", "train")]),
    "evaluate_contrastive": ("articles", [("items", "embedded")]),
    "train_two_tower": ("customers trained", [("customers", "trained")]),
    "train_ranker": ("training rows", [("train",)]),
    "recommend": ("customers", [("customers", "total")]),
}


def _stage_count(run: str, step: Step) -> tuple[str, float] | None:
    """The stage's own count of what it processed, from the run's manifest."""
    manifest = Path(run) / "manifest.json"
    if step.name not in COUNTS or not manifest.exists():
        return None
    label, paths = COUNTS[step.name]
    total, found = 0.0, False
    for key, entry in json.loads(manifest.read_text()).get("steps", {}).items():
        if key.split("/")[0] != step.name:
            continue
        counts = entry.get("counts") or {}
        times = (counts.get("epochs", {}).get("trained") or 1
                 if step.name == "train_contrastive" else 1)
        for path in paths:
            x = counts
            for part in path:
                x = x.get(part) if isinstance(x, dict) else None
            if isinstance(x, (int, float)):
                total, found = total + x * times, True
    return (label, total) if found else None


def measure(step: Step, run: str, log_path: Path) -> dict:
    """Run one step as its own process and sample it; returns its figures."""
    py = sys.executable
    cmd = ([py, "-m", step.module] if step.module else
           [str(Path(py).parent / "stylehub")]) + step.argv
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    os.sync()  # earlier steps' pages are not counted against this one
    disk0, swap0, t_wall = _disk_sectors_written(), _vmstat("pswpout"), time.time()
    run_bytes0 = _folder_bytes(run)
    t0 = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        sampler = Sampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        sampler.stop.set()
        sampler.join()
    wall = time.perf_counter() - t0
    os.sync()  # written pages reach the disk, so the block counters below include them
    p = sampler.peaks
    fig = {
        "stage": step.name, "rc": rc, "wall_s": round(wall, 1),
        "driver_peak_rss_mib": round(p.driver_rss / 2**20),
        "largest_other_rss_mib": round(p.worker_rss / 2**20),
        "largest_other_private_mib": round(p.worker_private / 2**20),
        "largest_other": p.worker_name,
        "processes": p.processes,
        "spill_peak_mib": round(p.spill_bytes / 2**20),
        "ray_spilled": _spilled_lines(t_wall)[-3:],
        "disk_written_mib": round((_disk_sectors_written() - disk0) * SECTOR / 2**20),
        "run_growth_mib": round((_folder_bytes(run) - run_bytes0) / 2**20),
        "swap_out_pages": _vmstat("pswpout") - swap0,
        "min_available_mib": round(p.min_available / 2**20),
        "samples": p.samples,
        "load_end": os.getloadavg()[0],
    }
    count = _stage_count(run, step)
    if count:
        fig["count_name"], fig["count"] = count
        fig["per_s"] = round(count[1] / wall, 1) if wall else None
    return fig


def figures_file(size: str) -> Path:
    return FIGURES / f"{size.replace('/', '-')}.json"


def run_size(size: str, work: Path, image_size: int, until: str, extra: list[str],
             redo: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> int:
    work.mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    src, run = str(work / "src"), str(work / "run")
    figures_path = figures_file(size)
    figures = json.loads(figures_path.read_text()) if figures_path.exists() else {
        "size": size, "image_size": image_size, "machine": machine(), "stages": {}}
    figures["settings"] = extra  # --set STAGE.KEY=VALUE given to this (last) invocation
    log_path = work / "stages.log"
    for step in steps_for(size, src, run, image_size, extra):
        if only and step.name not in only:
            continue
        done = figures["stages"].get(step.name)
        if done and step.name in redo:  # measured again (--force), the earlier figures kept
            figures.setdefault("earlier", []).append(figures["stages"].pop(step.name))
            if not step.module:  # the Serve demo redoes everything anyway
                step.argv.append("--force")
            done = None
        if done and done["rc"] == 0:
            print(f"{size} {step.name}: measured before ({done['wall_s']} s)", flush=True)
        else:
            print(f"{size} {step.name}: running (load {os.getloadavg()[0]:.2f}; log "
                  f"{log_path})", flush=True)
            load_start = round(os.getloadavg()[0], 2)
            fig = measure(step, run, log_path)
            fig["argv"] = step.argv
            if step.name == "generate" and SIZES[size]:
                n = FULL_TRANSACTIONS // SIZES[size]
                fig.update(count_name="transactions", count=n,
                           per_s=round(n / fig["wall_s"], 1))
            fig["load_start"] = load_start
            figures["stages"][step.name] = fig
            figures_path.write_text(json.dumps(figures, indent=2) + "\n")
            print(f"{size} {step.name}: rc {fig['rc']}, {fig['wall_s']} s, driver "
                  f"{fig['driver_peak_rss_mib']} MiB, largest other "
                  f"{fig['largest_other_rss_mib']} MiB, spill {fig['spill_peak_mib']} MiB, "
                  f"disk {fig['disk_written_mib']} MiB", flush=True)
            if fig["rc"] != 0:
                print(f"{size} {step.name} failed: see {log_path}", flush=True)
                return 1
        if step.name == until:
            break
    return 0


def machine() -> dict:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpus": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version()}


def table(base: Path) -> list[str]:
    """Every measured size side by side, one row per stage."""
    sizes = {}
    for path in sorted(base.glob("*.json")):
        f = json.loads(path.read_text())
        sizes[f["size"]] = f
    order = [s for s in SIZES if s in sizes]
    names = [s.name for s in steps_for("full", "", "", 64, [])]
    lines = ["| stage | " + " | ".join(
        f"{s} wall s | {s} per s | {s} driver / largest MiB | {s} spill / disk MiB"
        for s in order) + " |",
        "|---|" + "---|" * (4 * len(order))]
    for name in names:
        cells = []
        for s in order:
            g = sizes[s]["stages"].get(name)
            if not g:
                cells += ["-"] * 4
                continue
            fail = "" if g["rc"] == 0 else f" (rc {g['rc']})"
            cells += [f"{g['wall_s']}{fail}",
                      f"{g.get('per_s', '-')} {g.get('count_name', '')}".strip(),
                      f"{g['driver_peak_rss_mib']} / {g['largest_other_rss_mib']}",
                      f"{g['spill_peak_mib']} / {g['disk_written_mib']}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def growth(base: Path, small: str = "1/16", large: str = "1/4") -> list[str]:
    """Each stage from ``small`` to ``large`` (4x the customers and transactions): the ratio
    of wall times (linear growth is 4.0; below it, a fixed cost such as the catalogue's) and
    the peak memories extrapolated to full along the line through the two sizes (an
    estimate, not a measurement: the memory of a stage that grows faster than linearly is
    underestimated). Stages that read only the catalogue (the same 105,542 articles and
    photos at every size) are projected at the larger of their two measurements instead: their
    difference is this machine's noise, not growth."""
    sizes = {}
    for path in sorted(base.glob("*.json")):
        f = json.loads(path.read_text())
        sizes[f["size"]] = f
    if small not in sizes or large not in sizes:
        return [f"(needs both {small} and {large} measured)"]
    share = {s: 1 / SIZES[s] for s in (small, large, "full")}
    lines = [f"| stage | wall {large} / {small} | wall s full (line) | driver MiB {small} -> "
             f"{large} -> full (line) | largest other MiB {small} -> {large} -> full (line) |",
             "|---|---|---|---|---|"]
    total = 0.0
    for name in [s.name for s in steps_for("full", "", "", 64, [])]:
        a, b = sizes[small]["stages"].get(name), sizes[large]["stages"].get(name)
        if not a or not b or a["rc"] or b["rc"]:
            lines.append(f"| {name} | - | - | - | - |")
            continue

        def line(key: str, a: dict = a, b: dict = b, fixed: bool = name in CATALOGUE) -> float:
            if fixed:  # the same input at every size: the larger measurement
                return max(a[key], b[key])
            slope = (b[key] - a[key]) / (share[large] - share[small])
            return max(a[key] + slope * (share["full"] - share[small]), 0.0)

        total += max(line("wall_s"), b["wall_s"])
        cells = [f"{b['wall_s'] / a['wall_s']:.2f}" if a["wall_s"] else "-",
                 f"{max(line('wall_s'), b['wall_s']):.0f}"]
        for key in ("driver_peak_rss_mib", "largest_other_rss_mib"):
            cells.append(f"{a[key]} -> {b[key]} -> {line(key):.0f}")
        label = f"{name} (catalogue only)" if name in CATALOGUE else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(f"| all stages | | {total:.0f} ({total / 3600:.1f} h) | | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=SIZES, default="1/16")
    p.add_argument("--work", default="", help="default bench/results/full-scale/<size>")
    p.add_argument("--image-size", type=int, default=64,
                   help="photo side generated and embedded (reduced from 128 to fit hours)")
    p.add_argument("--until", default="", help="stop after this stage")
    p.add_argument("--set", dest="sets", action="append", default=[],
                   metavar="STAGE.KEY=VALUE", help="a setting of one stage (repeatable)")
    p.add_argument("--redo", action="append", default=[], metavar="STAGE",
                   help="measure this stage again with --force (e.g. after a fix); the "
                        "earlier figures are kept under 'earlier' (repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="STAGE",
                   help="run only this stage (repeatable; its inputs must be there), e.g. "
                        "the Serve demo before the evaluations when time is short")
    p.add_argument("--table", action="store_true", help="print the table of what was measured")
    args = p.parse_args(argv)
    if args.table:
        print("\n".join(table(FIGURES)))
        print()
        print("\n".join(growth(FIGURES)))
        return 0
    work = Path(args.work) if args.work else RESULTS / args.size.replace("/", "-")
    return run_size(args.size, work, args.image_size, args.until, args.sets, tuple(args.redo),
                    tuple(args.only))


if __name__ == "__main__":
    raise SystemExit(main())
