"""Run every benchmark and write bench/results.md from what they print (nothing typed by hand).

Each benchmark measures us against a peer in the same run and prints the ratio:
simulate.py (bare simpy), abtest.py (tea-tasting 1.14), sr_train.py (RecBole 1.2.1 SASRec),
abtest_run.py (the popularity arm), scale.py (embedded DuckDB vs Spark local[2] on 10M users; one process vs Ray with 2 shards on
20,000 users x 1 day; about 4 min on 2 shared CPUs), ope_validation.py
(the offline A/B prediction against the online A/B of the same pair; short mode: 300-user worlds),
align_speed.py (stage 1's CPU levers against the plain path on the default world; ~10 min), obd.py (our
ips/snips/dr against obp 0.5.7's on the Open Bandit Dataset sample; its own obp venv, ~1 min after the first). `make bench`
runs this; bench/align_study.py (a full stage-1 epoch against none, 3 seeds: hours) runs apart.

    python bench/run_all.py [--only simulate,abtest] [--quick]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import atomic

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "simulate": (["simulate.py"], ["simulate.py", "--users", "2000", "--repeats", "1"]),
    "abtest": (["abtest.py"], ["abtest.py", "--users", "1000000"]),
    "sr_train": (["sr_train.py"], ["sr_train.py"]),
    "abtest_run": (["abtest_run.py"], ["abtest_run.py", "--users", "2000"]),
    "scale": (["scale.py"], ["scale.py", "--users", "1000000"]),
    "ope_validation": (["ope_validation.py", "--quick", "--users", "300"], ["ope_validation.py", "--quick", "--seeds", "0", "--users", "200"]),
    "align_speed": (["align_speed.py"], ["align_speed.py", "--micro-batches", "1"]),
    "obd": (["obd.py"], ["obd.py"]),
}


def previous_sections(path: Path) -> dict[str, str]:
    """The sections of an earlier results.md, by benchmark name."""
    if not path.is_file():
        return {}
    parts = path.read_text().split("\n## ")[1:]
    return {p.split("\n", 1)[0].strip(): "## " + p.rstrip("\n") + "\n" for p in parts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not the reported figures)")
    args = ap.parse_args()
    out = HERE / "results.md"
    sections = previous_sections(out)  # --only keeps the other benchmarks' last results
    for name in args.only.split(","):
        full, quick = BENCHMARKS[name]
        cmd = [sys.executable, str(HERE / (quick if args.quick else full)[0]), *(quick if args.quick else full)[1:]]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        lines = [ln for ln in run.stdout.splitlines() if ln.strip()]
        print("\n".join(lines), flush=True)
        status = "ok" if run.returncode == 0 else f"FAILED (exit {run.returncode}): {run.stderr.strip().splitlines()[-1:]}"
        shown = " ".join([f"bench/{Path(cmd[1]).name}", *cmd[2:]])
        sections[name] = (f"## {name}\n\n`python {shown}` — {wall:.0f} s, {status}, "
                          f"{datetime.date.today().isoformat()}\n\n```\n" + "\n".join(lines) + "\n```\n")
    header = (f"# Benchmark results\n\nWritten by `make bench` (bench/run_all.py) on {platform.machine()}, "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}; each section names its command, "
              "wall time and date. "
              "Every figure is a ratio against a peer measured in the same run; the machine is shared and "
              "noisy, so compare ratios, not absolute times.\n\n")
    atomic.write_text(out, header + "\n".join(sections[n] for n in BENCHMARKS if n in sections))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
