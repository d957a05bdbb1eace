"""Study: which part of stage 1's output makes LSVCR worse on text_study's small world?

Stage 2 from an aligned directory differs from the ablation (``--no-align``) in two parts: its text
side (the stage-1 LLM's item features through the stage-1 MLP, frozen) and its SR side (started from
the stage-1 SR weights instead of a fresh initialisation). This takes them apart, on
bench/text_study.py's world at ``--fidelity`` (default 1: 400 users, 1,000 videos, 2 days) and its
cached pieces, with three stage-2 diagnostics next to text_study's two arms:

==================  ==================================  =========================
arm                 text side                           SR side starts from
==================  ==================================  =========================
lsvcr-align         stage 1's, frozen (the method)      stage 1
text-trained        stage 1's, trained on               stage 1
sr-fresh            stage 1's, frozen                   fresh (the ablation's init)
sr-fresh-trained    stage 1's, trained on               fresh
lsvcr-noalign       MiniLM + a fresh MLP, trained       fresh (the ablation)
==================  ==================================  =========================

"fresh" is the very initialisation the ablation starts from (same seed, same draws). Every arm is
scored as text_study scores its two: test NDCG@10 (sampled-100 and full, both tasks) and an online
A/B against the seed's SASRec (2,000 users). The two text_study arms come from
bench/align_study.py's ``run_seed`` (cached pieces reused, a missing stage 1 recomputed), and are
checked against the rows stored in bench/text_study.json. Rows go to ``bench/stage2_parts.json``.

Usage: python bench/stage2_parts.py [--seeds 1 2] [--fidelity 1] [--threads 1]
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

from align_study import ARMS, _trained_with, arm_numbers, run_seed, treatment_config  # noqa: E402
from text_study import world_data  # noqa: E402

DIAGNOSTICS = {"text-trained": {"init_sr": True, "freeze_text": False},
               "sr-fresh": {"init_sr": False, "freeze_text": True},
               "sr-fresh-trained": {"init_sr": False, "freeze_text": False}}
ORDER = ("lsvcr-align", "text-trained", "sr-fresh", "sr-fresh-trained", "lsvcr-noalign")
KEYS = ("video NDCG@10 full", "video NDCG@10 sampled100", "comment NDCG@10 full", "comment NDCG@10 sampled100",
        "A/B comment watch time lift", "A/B video watch time lift")


def _diagnostic_done(model_dir: Path, cfg, parts: dict) -> bool:
    if not _trained_with(model_dir, cfg):
        return False
    return json.loads((model_dir / "metrics.json").read_text())["train"].get("stage2_from_aligned") == \
        {"sr": parts["init_sr"], "freeze_text": parts["freeze_text"]}


def table(rows: list[dict]) -> list[str]:
    """Per metric: each arm's mean ± sd over seeds; then each diagnostic's paired difference against the
    method (lsvcr-align) with scipy.stats.ttest_rel's p."""
    import numpy as np
    from scipy import stats

    fmt = lambda k: (lambda x: f"{100 * x:+.1f}%") if "lift" in k else (lambda x: f"{x:.4f}")
    seeds = ", ".join(str(r["seed"]) for r in rows)
    lines = [f"seeds {seeds}; mean ± sd", "", "| metric (test) | " + " | ".join(ORDER) + " |", "|---" * (len(ORDER) + 1) + "|"]
    for k in KEYS:
        f = fmt(k)
        cells = []
        for arm in ORDER:
            x = np.array([r[arm][k] for r in rows])
            cells.append(f(x.mean()) + (f" ± {f(x.std(ddof=1)).lstrip('+')}" if len(x) > 1 else ""))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "difference from lsvcr-align (paired t p):", "",
              "| metric (test) | " + " | ".join(ORDER[1:]) + " |", "|---" * len(ORDER) + "|"]
    for k in KEYS:
        f = fmt(k)
        base = np.array([r["lsvcr-align"][k] for r in rows])
        cells = []
        for arm in ORDER[1:]:
            x = np.array([r[arm][k] for r in rows])
            p = f" ({stats.ttest_rel(x, base).pvalue:.2g})" if len(rows) > 1 else ""
            cells.append(f((x - base).mean()) + p)
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fidelity", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--users", type=int, default=400)
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache" / "text_study")
    ap.add_argument("--text-study", type=Path, default=ROOT / "bench" / "text_study.json")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "stage2_parts.json")
    args = ap.parse_args(argv)
    import atomic
    from lsvcr.train import train_model

    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
    work = args.work / f"fidelity{args.fidelity:g}"
    data = world_data(work, args.fidelity, args.users, args.videos, args.days)
    world = {"text_fidelity": args.fidelity, "users": args.users, "videos": args.videos, "days": args.days}
    stored = json.loads(args.text_study.read_text())["rows"] if args.text_study.is_file() else []
    rows = json.loads(args.results.read_text())["rows"] if args.results.is_file() else []
    for seed in args.seeds:
        row = run_seed(seed, data, data.parent / "world", work, args.threads, lambda m: log(f"f={args.fidelity:g} {m}"))
        ref = next((r for r in stored if r["fidelity"] == args.fidelity and r["seed"] == seed and r["world"] == world), None)
        if ref is not None:
            same = all(ref[arm][k] == row[arm][k] for arm in ARMS for k in KEYS)
            log(f"seed {seed}: the two text_study arms {'equal' if same else 'DIFFER from'} the stored text_study row")
        d = work / f"seed{seed}"
        timings = json.loads((d / "timings.json").read_text())

        def piece(name, done, fn):
            if not done:
                log(f"seed {seed}: {name} ...")
                t0 = time.perf_counter()
                fn()
                timings[name] = time.perf_counter() - t0
                (d / "timings.json").write_text(json.dumps(timings, indent=1))

        cfg = treatment_config(seed, args.threads)
        out = {"seed": seed, "world": world, "threads": args.threads, "method": row["method"],
               **{arm: row[arm] for arm in ARMS}}
        for arm, parts in DIAGNOSTICS.items():
            piece(arm, _diagnostic_done(d / arm, cfg, parts),
                  lambda arm=arm, parts=parts: train_model(data, d / arm, cfg, init=d / "aligned", overwrite=True, **parts))
            out[arm] = arm_numbers(d, arm, data, data.parent / "world", seed, args.threads, piece)
        rows = sorted([r for r in rows if r["seed"] != seed] + [out], key=lambda r: r["seed"])
        atomic.write_text(args.results, json.dumps({"rows": rows, "table": table(rows)}, indent=1) + "\n")
    print("\n".join(table([r for r in rows if r["seed"] in args.seeds])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
