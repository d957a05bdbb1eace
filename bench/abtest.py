"""Benchmark: `lsvcr abtest report` against tea-tasting 1.14 on one Parquet file, in the same run.

    .venv/bin/python bench/abtest.py [--users 10000000] [--metrics 6]

Writes bench/.cache/abtest_<users>.parquet (user_id, variant, m1..mK and their pre-period covariates
pre_m1..pre_mK; cached), creates tea-tasting's own venv (bench/.cache/venv-tea, `python3 -m venv` +
pip install tea-tasting==1.14.* with pandas and ibis[duckdb]) on first use, then times in separate
processes, each from the file on disk to the finished results (imports excluded):

* ours: abtest.report.build_report with every metric CUPED-adjusted (DuckDB over the Parquet file);
* tea-tasting: Experiment(Mean(m, pre_m)...).analyze on a pandas DataFrame (pd.read_parquet), and on
  an ibis DuckDB table (con.read_parquet), its two documented ways in.

Prints the wall-time ratios and the largest relative difference over the numbers both compute:
adjusted control and treatment means, absolute effect and its CI, relative effect, p-value. (The
relative CI under CUPED differs by design: ours is the full-delta interval, tea-tasting's is not.)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
TEA_VENV = CACHE / "venv-tea"
TEA_SPEC = "tea-tasting==1.14.*"
LIFTS = (0.002, 0.005, 0.0, 0.01, -0.003, 0.001, 0.004, 0.0)  # true relative lifts of m1..m8


def make_data(path: Path, users: int, metrics: int, seed: int = 20240601, chunk: int = 1_000_000) -> None:
    """Users with a latent engagement level; pre-period and experiment metrics both depend on it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import atomic  # here, not at the top: tea-tasting's venv runs this file's workers without it

    rng = np.random.default_rng(seed)
    with atomic.writing(path) as tmp:
        writer = None
        for start in range(0, users, chunk):
            n = min(chunk, users - start)
            treat = rng.random(n) < 0.5
            u = rng.gamma(2.0, 0.5, n)  # engagement
            cols = {"user_id": pa.array(np.arange(start, start + n, dtype=np.int64)),
                    "variant": pa.array(np.where(treat, "treatment", "control")).dictionary_encode()}
            for k in range(metrics):
                lift = 1 + LIFTS[k % len(LIFTS)] * treat
                if k % 2 == 0:  # watch-time-like: Gamma around the user's level
                    scale = 20.0 * (k + 1) * u / 2
                    pre, post = rng.gamma(2.0, scale), rng.gamma(2.0, scale * lift)
                else:  # count-like: Poisson around the user's level
                    rate = 3.0 * (k + 1) * u
                    pre, post = rng.poisson(rate).astype(float), rng.poisson(rate * lift).astype(float)
                cols[f"m{k + 1}"] = pa.array(post)
                cols[f"pre_m{k + 1}"] = pa.array(pre)
            table = pa.table(cols)
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        writer.close()


def ensure_tea_venv() -> Path:
    python = TEA_VENV / "bin" / "python"
    stamp = TEA_VENV / ".installed"
    if not stamp.exists():
        subprocess.run(["python3", "-m", "venv", str(TEA_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", TEA_SPEC, "pandas", "ibis-framework[duckdb]"], check=True)
        stamp.touch()
    return python


# ---- workers: each runs in its own process and prints one JSON line --------------------------------
def worker_ours(path: str, metrics: list[str]) -> dict:
    sys.path.insert(0, str(ROOT))
    from abtest.report import ReportConfig, build_report

    config = ReportConfig(metrics=tuple(metrics), covariates=tuple((m, f"pre_{m}", None) for m in metrics))
    t0 = time.perf_counter()
    report = build_report(path, config)
    seconds = time.perf_counter() - t0
    rows = {m.name: [m.control_mean, m.treatment_mean, m.abs_effect, *m.abs_ci, m.rel_effect, m.p_value]
            for m in report.metrics}
    return {"seconds": seconds, "rows": rows}


def worker_tea(path: str, metrics: list[str], backend: str) -> dict:
    import tea_tasting as tt

    if backend == "pandas":
        import pandas as pd
    else:
        import ibis
    experiment = tt.Experiment(**{m: tt.Mean(m, f"pre_{m}") for m in metrics})
    t0 = time.perf_counter()
    if backend == "pandas":
        data = pd.read_parquet(path)
    else:
        data = ibis.duckdb.connect().read_parquet(path)
    result = experiment.analyze(data, control="control")
    seconds = time.perf_counter() - t0
    rows = {r["metric"]: [r["control"], r["treatment"], r["effect_size"], r["effect_size_ci_lower"],
                          r["effect_size_ci_upper"], r["rel_effect_size"], r["pvalue"]] for r in result.to_dicts()}
    return {"seconds": seconds, "rows": rows, "version": tt.__version__}


def run_worker(python: Path, *args: str) -> dict:
    out = subprocess.run([str(python), str(Path(__file__).resolve()), "--worker", *args],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def max_rel_diff(a: dict, b: dict) -> tuple[float, str]:
    names = ("control", "treatment", "abs_effect", "abs_ci_low", "abs_ci_high", "rel_effect", "p_value")
    worst, where = 0.0, ""
    for metric, row in a.items():
        for name, x, y in zip(names, row, b[metric]):
            d = abs(x - y) / max(abs(x), abs(y), 1e-300)
            if d > worst:
                worst, where = d, f"{metric}.{name} ({x!r} vs {y!r})"
    return worst, where


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--metrics", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=1, help="timed runs of each engine (the best is kept)")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, path, metrics = args.worker[0], args.worker[1], args.worker[2].split(",")
        result = worker_ours(path, metrics) if kind == "ours" else worker_tea(path, metrics, kind)
        print(json.dumps(result))
        return

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"abtest_{args.users}x{args.metrics}.parquet"
    if not path.exists():
        t0 = time.perf_counter()
        make_data(path, args.users, args.metrics)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s")
    tea_python = ensure_tea_venv()
    metrics = ",".join(f"m{k + 1}" for k in range(args.metrics))

    def best(python, kind):
        runs = [run_worker(python, kind, str(path), metrics) for _ in range(args.repeat)]
        return min(runs, key=lambda r: r["seconds"])

    ours = best(Path(sys.executable), "ours")
    tea = {kind: best(tea_python, kind) for kind in ("pandas", "ibis-duckdb")}
    print(f"{args.users:,} users x {args.metrics} metrics, CUPED on every metric; tea-tasting {tea['pandas']['version']}")
    print(f"  ours (DuckDB over Parquet)         {ours['seconds']:8.2f} s")
    for kind, r in tea.items():
        diff, where = max_rel_diff(ours["rows"], r["rows"])
        print(f"  tea-tasting ({kind:<11})         {r['seconds']:8.2f} s   ratio {r['seconds'] / ours['seconds']:5.1f}x   "
              f"max rel diff {diff:.2e}  [{where}]")


if __name__ == "__main__":
    main()
