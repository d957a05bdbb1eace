"""A/B simulation throughput per arm, with batched model inference.

Trains (once, cached in bench/.cache/abtest_run) a SASRec control and an LSVCR treatment on a
logged simulation, then simulates N users x 1 day under each arm's policy: popularity (the peer:
no model), SASRec + comments by likes (control), LSVCR for videos and comments (treatment).
Prints simulated user-days per second per arm, the ratio to the popularity arm measured in the
same run, and the projected wall time of 100k users x 1 day per arm (goal: under 10 minutes).

    python bench/abtest_run.py [--users 20000] [--threads 1]
"""
from __future__ import annotations

import argparse
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
                  "--epochs", "5", "-q")
    return world, sasrec, lsvcr


def arm(world_dir: Path, spec: str, users: int, tmp: Path) -> tuple[float, int, object]:
    config = world_config(world_dir).replace(n_users=users, days=1, pre_days=0, log_slates=False,
                                             noise_seed=1)
    world = generate_world(config.world, config.seed)
    comments = CommentStore(world)
    if ":" in spec:
        kind, path = spec.split(":", 1)
        policy = load_policy(kind, Path(path))
    else:
        policy = make_policy(spec, world, comments, config)
    out = tmp / spec.split(":")[0]
    start = time.perf_counter()
    summary = execute(config, out, world, comments, {"arm": policy}, lambda u: "arm", {"policy": spec})
    wall = time.perf_counter() - start
    shutil.rmtree(out)
    return wall, summary["events"], policy


def main() -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world, sasrec, lsvcr = models()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in ("popularity", f"sasrec:{sasrec}", f"lsvcr:{lsvcr}"):
            rows[spec.split(":")[0]] = arm(world, spec, args.users, Path(tmp))
    base = rows["popularity"][0]
    lines = [f"A/B arms: {args.users:,} users x 1 day each, {args.threads} torch thread(s), world of {world}"]
    for name, (wall, events, policy) in rows.items():
        batches = getattr(policy, "batch_stats", None)
        lines.append(
            f"  {name:10s} {args.users / wall:8,.0f} user-days/s  {events / wall:9,.0f} events/s  "
            f"{wall / base:5.2f}x popularity's time  -> 100k users x 1 day: {100_000 / (args.users / wall) / 60:5.1f} min"
            + (f"  ({batches})" if batches else "")
        )
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
