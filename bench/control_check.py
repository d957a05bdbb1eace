"""Check: would a tuned control change bench/align_study.py's A/B lifts?

On ml-100k the control's default training windows (no overlap) reach test NDCG@10 0.051-0.060, one
sample per prefix (``sasrec_stride=1``, RecBole's scheme) 0.060-0.063 (bench/sr_tune.py). The A/B world's
histories are short (median 5 videos), so the scheme should matter little there; this measures it.

For each seed whose align_study pieces are under ``--work`` (run bench/align_study.py first): SASRec with
``sasrec_stride=1`` (``sasrec-stride1``), its test NDCG@10 (full and sampled-100) beside the default
control's, and three online A/Bs on align_study's settings (2,000 users, 1 pre-period day, 1 day, noise
seed 1000 + s): the tuned control against the default one (does tuning move what users do?), and each
LSVCR arm against the tuned control (the lifts align_study reports, against it). Rows go to
``bench/control_check.json``.

Usage: python bench/control_check.py [--seeds 2] [--work bench/.cache/align_study]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # the packages first: bench/abtest.py must not shadow abtest/
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from align_study import AB_USERS, ARMS, _sha256, _trained_with, control_config  # noqa: E402

METRICS = (("comment_watch_time", "comment watch time"), ("video_watch_time", "video watch time"))


def ab(world: Path, out: Path, control: str, treatment: str, seed: int) -> dict:
    """The CUPED relative lift, its 95% CI and p of both watch times; rerun unless ``out`` holds this
    pair's A/B (its ``inputs.json``: the sha256 of both models)."""
    from abtest.render import to_json
    from abtest.report import ReportConfig, build_report
    from pipeline import run_ab

    inputs = {arm: _sha256(Path(spec.split(":", 1)[1]) / "model.safetensors")
              for arm, spec in (("control", control), ("treatment", treatment))}
    if not ((out / "inputs.json").is_file() and json.loads((out / "inputs.json").read_text()) == inputs
            and (out / "report.json").is_file()):
        run_ab(world, out, control, treatment, users=AB_USERS, pre_days=1, days=1, seed=1000 + seed)
        (out / "report.json").write_text(to_json(build_report(out, ReportConfig())))
        (out / "inputs.json").write_text(json.dumps(inputs, indent=1))
    report = json.loads((out / "report.json").read_text())
    res = {}
    for name, label in METRICS:
        m = next(x for x in report["metrics"] if x["name"] == name and x["variant"] == "treatment" and x.get("cuped"))
        res[label] = {"lift": m["rel_effect"], "ci": m["rel_ci"], "p": m["p_value"]}
    return res


def check_seed(seed: int, work: Path, threads: int, log) -> dict:
    from lsvcr.evaluate import EvalConfig
    from lsvcr.train import evaluate_model, train_model

    d, data = work / f"seed{seed}", work / "data"
    world = work / "world"
    for arm in ("sasrec", *ARMS):
        if not (d / arm / "metrics.json").is_file():
            raise SystemExit(f"{d / arm}: missing; run python bench/align_study.py --seeds {seed} first")
    tuned = replace(control_config(seed, threads), sasrec_stride=1)
    out = d / "sasrec-stride1"
    if not _trained_with(out, tuned):
        log(f"seed {seed}: sasrec-stride1 ...")
        t0 = time.perf_counter()
        train_model(data, out, tuned, overwrite=True)
        log(f"seed {seed}: trained in {time.perf_counter() - t0:.0f} s")
    row: dict = {"seed": seed, "sasrec_stride": 1}
    for name in ("sasrec", "sasrec-stride1"):
        for protocol in ("full", "sampled100"):
            m = evaluate_model(str(d / name), data, EvalConfig(protocol=protocol, split="test", seed=seed), threads=threads)
            row[f"{name} video NDCG@10 {protocol}"] = m["tasks"]["video"]["ndcg@10"]
    log(f"seed {seed}: A/B sasrec-stride1 vs sasrec ...")
    row["A/B sasrec-stride1 vs sasrec"] = ab(world, d / "ab-stride1-vs-default", f"sasrec:{d / 'sasrec'}", f"sasrec:{out}", seed)
    for arm in ARMS:
        log(f"seed {seed}: A/B {arm} vs sasrec-stride1 ...")
        row[f"A/B {arm} vs sasrec-stride1"] = ab(world, d / f"ab-{arm}-vs-stride1", f"sasrec:{out}", f"lsvcr:{d / arm}", seed)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[2])
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache" / "align_study")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "control_check.json")
    args = ap.parse_args(argv)
    import atomic

    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
    stored = json.loads(args.results.read_text())["rows"] if args.results.is_file() else []
    for seed in args.seeds:
        row = check_seed(seed, args.work, args.threads, log)
        stored = sorted([r for r in stored if r["seed"] != seed] + [row], key=lambda r: r["seed"])
        atomic.write_text(args.results, json.dumps({"rows": stored}, indent=1) + "\n")
        print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
