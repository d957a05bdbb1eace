"""A/B simulation throughput per arm, with batched model inference.

Trains (once, cached in bench/.cache/abtest_run) a SASRec control and an LSVCR treatment on a
logged simulation, then simulates N users x 1 day under each arm's policy: popularity (the peer:
no model), SASRec + comments by likes (control), LSVCR for videos and comments (treatment).
Each arm runs as ``--shards`` simulation shards in parallel processes (``execute(shard=(i, n))``,
as ``lsvcr simulate --shard`` does; one torch thread each), so a 2-core machine uses both cores.
Prints simulated user-days per second per arm (users / the slowest shard's simulation time; model
loading excluded and printed), the ratio to the popularity arm measured in the same run, and the
projected wall time of 100k users x 1 day per arm (goal: under 10 minutes).

    python bench/abtest_run.py [--users 20000] [--shards 2] [--arms popularity,sasrec,lsvcr]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lsvcr.policy import load_policy
from simulator.engine import CommentStore
from simulator.experiment import world_config
from simulator.run import execute, make_policy
from simulator.world import generate_world

CACHE = Path(__file__).resolve().parent / ".cache" / "abtest_run"


def lsvcr_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "cli", *args], check=True, stdout=subprocess.DEVNULL)


def models() -> tuple[Path, Path, Path]:
    world, data = CACHE / "world", CACHE / "data"
    sasrec, lsvcr = CACHE / "sasrec", CACHE / "lsvcr"
    if not world.exists():
        lsvcr_cli("simulate", "--out", str(world), "--users", "2000", "--days", "2", "--explore", "0.1", "-q")
    if not data.exists():
        lsvcr_cli("data", "build", str(world), "--out", str(data))
    if not sasrec.exists():
        lsvcr_cli("train", "--data", str(data), "--out", str(sasrec), "--model", "sasrec", "--epochs", "20", "-q")
    if not lsvcr.exists():
        lsvcr_cli("train", "--data", str(data), "--out", str(lsvcr), "--model", "lsvcr", "--task", "both",
                  "--no-align", "--epochs", "5", "-q")  # stage 2 only, as before `train` defaulted to both stages
    return world, sasrec, lsvcr


def arm(world_dir: Path, spec: str, users: int, out: Path, shard: tuple[int, int] | None = None) -> dict:
    """Simulate ``users`` x 1 day under ``spec`` (one shard of it); wall times in seconds."""
    start = time.perf_counter()
    config = world_config(world_dir).replace(n_users=users, days=1, pre_days=0, log_slates=False,
                                             noise_seed=1)
    world = generate_world(config.world, config.seed)
    comments = CommentStore(world)
    if ":" in spec:
        kind, path = spec.split(":", 1)
        policy = load_policy(kind, Path(path))
    else:
        policy = make_policy(spec, world, comments, config)
    loaded = time.perf_counter()
    summary = execute(config, out, world, comments, {"arm": policy}, lambda u: "arm", {"policy": spec}, shard=shard)
    return {"setup_s": loaded - start, "wall_s": time.perf_counter() - loaded, "events": summary["events"]}


def sharded_arm(world_dir: Path, spec: str, users: int, shards: int, tmp: Path) -> dict:
    """Run the arm as ``shards`` processes at once; the slowest shard's simulation time counts."""
    out = tmp / spec.split(":")[0]
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", spec, "--world", str(world_dir),
                               "--users", str(users), "--shard", f"{i}/{shards}", "--out", str(out)],
                              stdout=subprocess.PIPE, text=True) for i in range(shards)]
    results = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"shard of {spec} failed (exit {p.returncode})")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    shutil.rmtree(out, ignore_errors=True)
    return {"wall_s": max(r["wall_s"] for r in results), "setup_s": max(r["setup_s"] for r in results),
            "events": sum(r["events"] for r in results)}


def main() -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--shards", type=int, default=2, help="parallel simulation processes per arm")
    ap.add_argument("--arms", default="popularity,sasrec,lsvcr", help="comma-separated subset of the arms")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # one shard of one arm (internal)
    ap.add_argument("--world", help=argparse.SUPPRESS)
    ap.add_argument("--shard", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.worker:
        i, n = (int(x) for x in args.shard.split("/"))
        print(json.dumps(arm(Path(args.world), args.worker, args.users, Path(args.out), (i, n))))
        return []
    world, sasrec, lsvcr = models()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in ("popularity", f"sasrec:{sasrec}", f"lsvcr:{lsvcr}"):
            if spec.split(":")[0] in args.arms.split(","):
                rows[spec.split(":")[0]] = sharded_arm(world, spec, args.users, args.shards, Path(tmp))
    base = rows["popularity"]["wall_s"] if "popularity" in rows else float("nan")
    lines = [f"A/B arms: {args.users:,} users x 1 day each, {args.shards} shard process(es) x 1 torch thread, "
             f"{os.cpu_count()} CPUs"]
    for name, r in rows.items():
        wall = r["wall_s"]
        lines.append(
            f"  {name:10s} {args.users / wall:8,.0f} user-days/s  {r['events'] / wall:9,.0f} events/s  "
            + (f"{wall / base:5.2f}x popularity's time  " if "popularity" in rows else "")
            + f"-> 100k users x 1 day: {100_000 / (args.users / wall) / 60:5.1f} min"
            f"  (+ {r['setup_s']:.0f} s world and model loading)"
        )
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
