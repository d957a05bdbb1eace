"""Study: when does stage 1 help? The with/without-stage-1 gap along what the world's text carries.

``WorldConfig.text_fidelity`` f is the share of title topic words and comment topic and style words
that follow the latent truth (the rest are uniform redraws; the truth and every response are
unchanged). At f = 0 the text says nothing a user responds to, so neither LSVCR arm can gain from
reading it and the gap between them must vanish: a check of the study with a known answer. At f = 1
(the calibrated world) the words reveal each comment's style, which only words reveal, and each
title's topics.

For each f and seed s: a world of ``--users`` users and ``--videos`` videos (``--days`` logged days,
popularity at temperature 1, as the demo logs; world seed 0), its dataset, and then exactly
bench/align_study.py's pieces for seed s: a full stage-1 epoch, stage 2 from it and without it,
SASRec, test NDCG@10 (sampled-100 and full, both tasks), and an online A/B of each LSVCR model
against SASRec (2,000 users). Each finished (f, seed) row goes to the committed
``bench/text_study.json`` (with its world and method configs), so the sweep can be finished across
machines; a row is rerun only when missing or computed under another method or world.

Usage: python bench/text_study.py [--fidelity 0 0.5 1] [--seeds 0] [--users 400] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # the packages first: bench/abtest.py must not shadow abtest/
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from align_study import method_fingerprint, run_seed  # noqa: E402


def world_data(work: Path, fidelity: float, users: int, videos: int, days: int) -> Path:
    """The logged world at ``fidelity`` and its dataset (built once under ``work``)."""
    from lsvcr.data.build import build_dataset
    from lsvcr.data.layout import write_dataset
    from pipeline import DEMO_LOGGING_TEMPERATURE, simulation_config
    from simulator.run import simulate

    data = work / "data"
    if not (data / "meta.json").is_file():
        cfg = simulation_config(None, seed=0, n_users=users, n_videos=videos, days=days, text_fidelity=fidelity)
        simulate(cfg, work / "world", "popularity", None, DEMO_LOGGING_TEMPERATURE, None)
        write_dataset(build_dataset(work / "world"), data, replace=True)
    return data


def table(rows: list[dict]) -> list[str]:
    """Per fidelity: each arm's mean ± sd over its seeds, the gap (with minus without stage 1) and the
    paired t-test over seeds (scipy.stats.ttest_rel; '–' with one seed)."""
    import numpy as np
    from scipy import stats

    keys = ["video NDCG@10 full", "video NDCG@10 sampled100", "comment NDCG@10 full", "comment NDCG@10 sampled100",
            "A/B comment watch time lift", "A/B video watch time lift"]
    lines = ["| text_fidelity | seeds | metric (test) | with stage 1 (mean ± sd) | without stage 1 | gap | paired t p |",
             "|---|---|---|---|---|---|---|"]
    for f in sorted({r["fidelity"] for r in rows}):
        rs = [r for r in rows if r["fidelity"] == f]
        for k in keys:
            a = np.array([r["lsvcr-align"][k] for r in rs])
            b = np.array([r["lsvcr-noalign"][k] for r in rs])
            fmt = (lambda x: f"{100 * x:+.1f}%") if "lift" in k else (lambda x: f"{x:.4f}")
            sd = lambda x: f" ± {fmt(x.std(ddof=1)).lstrip('+')}" if len(x) > 1 else ""
            p = f"{stats.ttest_rel(a, b).pvalue:.2g}" if len(rs) > 1 else "–"
            lines.append(f"| {f:g} | {', '.join(str(r['seed']) for r in rs)} | {k} | {fmt(a.mean())}{sd(a)} | "
                         f"{fmt(b.mean())}{sd(b)} | {fmt((a - b).mean())} | {p} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fidelity", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--users", type=int, default=400)
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache" / "text_study")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "text_study.json")
    args = ap.parse_args(argv)
    import atomic

    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
    stored = json.loads(args.results.read_text())["rows"] if args.results.is_file() else []
    rows = []
    save = lambda: atomic.write_text(args.results, json.dumps({"rows": stored, "table": table(stored)}, indent=1) + "\n")
    for f in args.fidelity:
        world = {"text_fidelity": f, "users": args.users, "videos": args.videos, "days": args.days}
        for seed in args.seeds:
            key = lambda r: r["fidelity"] == f and r["seed"] == seed
            row = next((r for r in stored if key(r) and r.get("method") == method_fingerprint(seed)
                        and r.get("world") == world), None)
            if row is None:
                work = args.work / f"fidelity{f:g}"
                data = world_data(work, f, args.users, args.videos, args.days)
                row = {"fidelity": f, "world": world,
                       **run_seed(seed, data, data.parent / "world", work, args.threads, lambda m: log(f"f={f:g} {m}"))}
                stored = sorted([r for r in stored if not key(r)] + [row], key=lambda r: (r["fidelity"], r["seed"]))
                save()
            else:
                log(f"f={f:g} seed {seed}: stored in {args.results.name}")
            rows.append(row)
    save()
    print("\n".join(table(rows)))
    print("\nstage-1 epochs: " + ", ".join(f"f={r['fidelity']:g} seed {r['seed']} {r['stage1']['seconds'] / 60:.1f} min"
                                           for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
