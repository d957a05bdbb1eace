"""Benchmark: scaling out, each section against its embedded peer in the same run.

    .venv/bin/python bench/scale.py [--users 10000000] [--sim-users 20000] [--only stats,ray]

Sections (``SECTIONS``; ``main`` runs each and prints one table):

* stats — the per-variant sufficient statistics of `lsvcr abtest report` (source checks + the
  aggregate pass, abtest.source.open_source + abtest.aggregate.aggregate) on a synthetic per-unit
  Parquet file (bench/abtest.py's generator: user_id, variant, m1..m4 and their pre-period
  covariates; cached in bench/.cache/), DuckDB embedded vs Spark local[2] (``--engine spark``).
  Each engine runs in its own process, from the file on disk to the aggregates (imports and the
  Spark session's start excluded; the start is printed apart). Prints the Spark / DuckDB ratio and
  the largest relative difference between the two engines' aggregates.
* ray — simulation throughput (user-days/s) of `lsvcr simulate`, one process vs ``--ray`` with two
  shard actors on a local Ray with 2 CPUs (simulator.run.simulate, world generation and writing the
  run directory included; Ray's start excluded and printed apart), each in its own process. Prints
  the ratio and whether the two events.parquet files are the same bytes.

Two CPUs shared with others make absolute times noisy: read the ratios.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
METRICS = 4
SPARK_MASTER = "local[2]"


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- section "stats": per-variant sufficient statistics, DuckDB vs Spark ------------------------------
def stats_data(users: int) -> Path:
    make_data = _bench_module("abtest").make_data  # bench/abtest.py's generator (not the abtest package)

    path = CACHE / f"scale_{users}.parquet"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        make_data(path, users, METRICS)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def worker_stats(path: str, engine_name: str) -> dict:
    """In its own process: open + check the units and aggregate every metric's moments per variant."""
    sys.path.insert(0, str(ROOT))
    from abtest.aggregate import aggregate
    from abtest.source import DuckDBEngine, open_source
    from abtest.spec import metric_specs

    start = 0.0
    if engine_name == "spark":
        from abtest.spark import SparkEngine, spark_session

        t0 = time.perf_counter()
        spark = spark_session(SPARK_MASTER)
        spark.conf.set("spark.sql.shuffle.partitions", "2")
        engine = SparkEngine(spark)
        start = time.perf_counter() - t0
    else:
        import duckdb

        engine = DuckDBEngine(duckdb.connect(config={"threads": 2}))  # the same two cores as local[2]
    metrics = [f"m{k + 1}" for k in range(METRICS)]
    covariates = [(m, f"pre_{m}", None) for m in metrics]
    t0 = time.perf_counter()
    source = open_source(path, engine=engine)
    opened = time.perf_counter() - t0
    specs = metric_specs(source.columns, source.label, False, metrics, (), covariates)
    agg = aggregate(source, specs)
    seconds = time.perf_counter() - t0
    numbers = {f"{name}/{variant}": [float(block.moments.n), *block.moments.mean.tolist(),
                                     *block.moments.comoment.ravel().tolist()]
               for name, arms in agg.blocks.items() for variant, block in arms.items()}
    return {"seconds": seconds, "open_seconds": opened, "start_seconds": start, "numbers": numbers}


def run_worker(section: str, *args: str) -> dict:
    """``WORKERS[section](*args)`` in a fresh process; its last stdout line is the JSON result."""
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", section, *args],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def max_rel_diff(a: dict, b: dict) -> float:
    worst = 0.0
    for key, xs in a.items():
        for x, y in zip(xs, b[key]):
            worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-300))
    return worst


def stats_section(args) -> list[tuple[str, str, float, str]]:
    path = stats_data(args.users)
    duck = run_worker("stats", str(path), "duckdb")
    spark = run_worker("stats", str(path), "spark")
    what = f"{args.users:,} users x {METRICS} CUPED metrics"
    return [
        ("stats", f"DuckDB embedded (2 threads), {what}", duck["seconds"],
         f"checks {duck['open_seconds']:.1f} s"),
        ("stats", f"Spark {SPARK_MASTER}, {what}", spark["seconds"],
         f"checks {spark['open_seconds']:.1f} s; ratio Spark/DuckDB {spark['seconds'] / duck['seconds']:.1f}x; "
         f"max rel diff {max_rel_diff(duck['numbers'], spark['numbers']):.1e}"),
        ("stats", f"Spark {SPARK_MASTER} session start (not in the ratio)", spark["start_seconds"], ""),
    ]


# ---- section "ray": simulation user-days/s, one process vs Ray with 2 shard actors -------------------
RAY_SHARDS = 2


def worker_ray(users: str, days: str, mode: str, out: str) -> dict:
    """In its own process: one `simulate` run into ``out``, in one process or on a local Ray."""
    import hashlib

    sys.path.insert(0, str(ROOT))
    from simulator import SimConfig, simulate

    options, start = None, 0.0
    if mode == "ray":
        import ray

        from simulator.ray import RayOptions

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        start = time.perf_counter() - t0
        options = RayOptions(shards=RAY_SHARDS)
    t0 = time.perf_counter()
    summary = simulate(SimConfig().replace(n_users=int(users), days=int(days)), Path(out), "popularity", on_ray=options)
    seconds = time.perf_counter() - t0
    digest = hashlib.sha256((Path(out) / "events.parquet").read_bytes()).hexdigest()
    return {"seconds": seconds, "start_seconds": start, "events": summary["events"], "sha256": digest}


def ray_section(args) -> list[tuple[str, str, float, str]]:
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="scale-ray-"))
    try:
        one = run_worker("ray", str(args.sim_users), str(args.sim_days), "one", str(tmp / "one"))
        on_ray = run_worker("ray", str(args.sim_users), str(args.sim_days), "ray", str(tmp / "ray"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    user_days = args.sim_users * args.sim_days
    what = f"{args.sim_users:,} users x {args.sim_days} day(s)"
    same = "yes" if one["sha256"] == on_ray["sha256"] else "NO"
    return [
        ("ray", f"simulate, one process, {what}", one["seconds"],
         f"{user_days / one['seconds']:,.0f} user-days/s, {one['events']:,} events"),
        ("ray", f"simulate --ray, {RAY_SHARDS} shard actors (local Ray, 2 CPUs), {what}", on_ray["seconds"],
         f"{user_days / on_ray['seconds']:,.0f} user-days/s; ratio Ray/one-process user-days/s "
         f"{one['seconds'] / on_ray['seconds']:.2f}x; events.parquet same bytes: {same}"),
        ("ray", "local Ray start (not in the ratio)", on_ray["start_seconds"], ""),
    ]


# ---- the table -------------------------------------------------------------------------------------
SECTIONS = {"stats": stats_section, "ray": ray_section}
WORKERS = {"stats": worker_stats, "ray": worker_ray}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--sim-users", type=int, default=20_000, help="section ray: simulated users")
    ap.add_argument("--sim-days", type=int, default=1, help="section ray: simulated days")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated subset of: " + ", ".join(SECTIONS))
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker[0]](*args.worker[1:])))
        return
    rows = []
    for name in args.only.split(","):
        rows += SECTIONS[name](args)
    width = max(len(r[1]) for r in rows)
    print(f"{'section':<8} {'case':<{width}} {'seconds':>8}  notes")
    for section, case, seconds, note in rows:
        print(f"{section:<8} {case:<{width}} {seconds:8.2f}  {note}")


if __name__ == "__main__":
    main()
