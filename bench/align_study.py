"""Study: does stage 1 (a full alignment epoch with the LLM) help LSVCR on the default world?

For each seed s, on the demo's default world (1,000 users, 1,000 videos, 2 days, logged by popularity
at temperature 1; bench/align_speed.py's ``default_data``):

* ``aligned``  — stage 1, one full epoch (``AlignConfig(seed=s, threads=2)``, every other option the
  default: the official method);
* ``lsvcr-align`` — stage 2 from it (``--init``), both tasks, each selected on its own val NDCG@5;
* ``lsvcr-noalign`` — stage 2 on the plain MiniLM features (``--no-align``: the ablation);
* ``sasrec`` — the control;
* test NDCG@10 of both LSVCR models, sampled-100 and full ranking, both tasks;
* an online A/B of each LSVCR model against SASRec (2,000 users, 1 pre-period day, 1 experiment day,
  noise seed 1000 + s): the relative lift of comment watch time per user (CUPED) and its p-value.

Each piece is skipped when its output is already there *and* was computed with the configs it would be
computed with now (a model's saved config.json; an A/B's ``inputs.json``, the sha256 of both models), so the
study resumes where it stopped, seeds can be added later (``--seeds 0 1 2``), and a change to the control
reruns only SASRec and the A/Bs. The table: mean ± sd over seeds per arm, and the paired
t-test over seeds (scipy.stats.ttest_rel) of align minus no-align.

Each finished seed's row (numbers, timings, and the method's configs) is written to
``bench/align_study.json``, which is committed: a later run, on any machine, reruns only the seeds
missing there or computed under a different method.

Usage: python bench/align_study.py [--seeds 0 1 2] [--work bench/.cache/align_study] [--results JSON]
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

ARMS = ("lsvcr-align", "lsvcr-noalign")
AB_USERS = 2000


def _relevant(cfg) -> dict:
    """The FinetuneConfig fields that shape a model of ``cfg.model`` (threads and the other model's fields dropped)."""
    from dataclasses import asdict

    other = {"lsvcr": ("sasrec_batch_size", "sasrec_stride"),
             "sasrec": ("batch_size", "comment_negatives", "id_text_negatives", "id_text_weight", "id_text_tau",
                        "max_record_comments", "selection")}[cfg.model]
    return {k: v for k, v in asdict(cfg).items() if k not in ("threads", *other)}


def _trained_with(model_dir: Path, cfg) -> bool:
    """A model dir holds a finished model trained under ``cfg``'s relevant fields."""
    from lsvcr.config import FinetuneConfig

    if not (model_dir / "metrics.json").is_file():
        return False
    saved = json.loads((model_dir / "config.json").read_text())["finetune"]
    saved = FinetuneConfig(**{k: v for k, v in saved.items() if k != "type"})
    return _relevant(saved) == _relevant(cfg)


def _aligned_with(aligned: Path, cfg) -> bool:
    """A stage-1 dir holds a finished epoch under ``cfg`` (threads aside) with today's LoRA targets."""
    from dataclasses import asdict

    from lsvcr.llm import DEFAULT_TARGET_MODULES

    if not (aligned / "align.json").is_file():
        return False
    saved = json.loads((aligned / "align.json").read_text())["align_config"]
    lora = json.loads((aligned / "llm" / "lora" / "adapter_config.json").read_text())["target_modules"]
    drop = lambda c: {k: v for k, v in c.items() if k != "threads"}
    return drop(saved) == drop(json.loads(json.dumps(asdict(cfg)))) and sorted(lora) == sorted(DEFAULT_TARGET_MODULES["bert"])


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def control_config(seed: int, threads: int = 1):
    from lsvcr.config import FinetuneConfig

    return FinetuneConfig(model="sasrec", seed=seed, threads=threads)


def treatment_config(seed: int, threads: int = 1):
    from lsvcr.config import FinetuneConfig

    return FinetuneConfig(model="lsvcr", task="both", seed=seed, threads=threads)


def run_seed(seed: int, data: Path, world: Path, work: Path, threads: int, log) -> dict:
    """Every piece of one seed (skipping those already computed as they would be now); returns its numbers."""
    from lsvcr.align import AlignConfig
    from lsvcr.train import align_model, train_model

    d = work / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    timings = json.loads((d / "timings.json").read_text()) if (d / "timings.json").is_file() else {}

    def piece(name, done, fn):
        if not done:
            log(f"seed {seed}: {name} ...")
            t0 = time.perf_counter()
            fn()
            timings[name] = time.perf_counter() - t0
            (d / "timings.json").write_text(json.dumps(timings, indent=1))

    align_cfg = AlignConfig(seed=seed, threads=threads)
    piece("stage 1 (one epoch)", _aligned_with(d / "aligned", align_cfg), lambda: align_model(data, d / "aligned", align_cfg, overwrite=True))
    control, treatment = control_config(seed, threads), treatment_config(seed, threads)
    piece("sasrec", _trained_with(d / "sasrec", control), lambda: train_model(data, d / "sasrec", control, overwrite=True))
    piece("lsvcr-align", _trained_with(d / "lsvcr-align", treatment),
          lambda: train_model(data, d / "lsvcr-align", treatment, init=d / "aligned", overwrite=True))
    piece("lsvcr-noalign", _trained_with(d / "lsvcr-noalign", treatment),
          lambda: train_model(data, d / "lsvcr-noalign", treatment, overwrite=True))
    out: dict = {"seed": seed, "stage1": json.loads((d / "aligned" / "timings.json").read_text())}
    for arm in ARMS:
        out[arm] = arm_numbers(d, arm, data, world, seed, threads, piece)
    out["method"] = method_fingerprint(seed)
    return out


def arm_numbers(d: Path, arm: str, data: Path, world: Path, seed: int, threads: int, piece) -> dict:
    """One LSVCR model ``d/arm``: test NDCG@10 (sampled-100 and full, each task) and its online A/B against
    ``d/sasrec`` (run by ``piece`` unless ``d/ab-arm`` holds one of these two very models)."""
    from abtest.render import to_json
    from abtest.report import ReportConfig, build_report
    from lsvcr.evaluate import EvalConfig
    from lsvcr.train import evaluate_model
    from pipeline import run_ab

    res = {}
    for protocol in ("sampled100", "full"):
        tasks = evaluate_model(str(d / arm), data, EvalConfig(protocol=protocol, split="test", seed=seed), threads=threads)["tasks"]
        for task, m in tasks.items():
            res[f"{task} NDCG@10 {protocol}"] = m["ndcg@10"]
    ab = d / f"ab-{arm}"
    inputs = {"control": _sha256(d / "sasrec" / "model.safetensors"), "treatment": _sha256(d / arm / "model.safetensors")}

    def experiment():
        run_ab(world, ab, f"sasrec:{d / 'sasrec'}", f"lsvcr:{d / arm}", users=AB_USERS, pre_days=1, days=1, seed=1000 + seed)
        (ab / "report.json").write_text(to_json(build_report(ab, ReportConfig())))
        (ab / "inputs.json").write_text(json.dumps(inputs, indent=1))

    current = (ab / "inputs.json").is_file() and json.loads((ab / "inputs.json").read_text()) == inputs
    piece(f"A/B {arm} vs sasrec", current and (ab / "report.json").is_file(), experiment)
    report = json.loads((ab / "report.json").read_text())
    for metric, key in (("comment_watch_time", "A/B comment watch time lift"), ("video_watch_time", "A/B video watch time lift")):
        m = [x for x in report["metrics"] if x["name"] == metric and x["variant"] == "treatment"]
        m = next((x for x in m if x.get("cuped")), m[0])
        res[key] = m["rel_effect"]
        res[key.replace(" lift", " CI")] = m["rel_ci"]
        res[key.replace(" lift", " p")] = m["p_value"]
    return res


def method_fingerprint(seed: int) -> dict:
    """What a seed's row was computed with: stage 1's config and the LLM's LoRA targets, the treatment's and
    the control's stage-2 configs (their relevant fields; the control with its model config) and the A/B's
    settings. A stored row is reused only while this is unchanged, so a change to the method reruns the seed."""
    from dataclasses import asdict

    from lsvcr.align import AlignConfig
    from lsvcr.config import SASRecConfig
    from lsvcr.llm import DEFAULT_TARGET_MODULES

    align = asdict(AlignConfig(seed=seed))
    return json.loads(json.dumps({"align": {k: v for k, v in align.items() if k != "threads"},
                                  "lora_targets": list(DEFAULT_TARGET_MODULES["bert"]),
                                  "treatment": _relevant(treatment_config(seed)),
                                  "control": {**_relevant(control_config(seed)), "model_config": asdict(SASRecConfig())},
                                  "ab": {"users": AB_USERS, "pre_days": 1, "days": 1, "seed": 1000 + seed}}, default=str))


def summarise(rows: list[dict]) -> list[str]:
    import numpy as np
    from scipy import stats

    keys = [k for k in rows[0][ARMS[0]] if not k.endswith((" p", " CI"))]
    lines = [f"stage-1 epoch: " + ", ".join(f"seed {r['seed']} {r['stage1']['seconds'] / 60:.1f} min "
                                             f"({r['stage1']['samples_per_s']:.2f} samples/s)" for r in rows),
             "", f"| metric (test) | with stage 1 (mean ± sd, n={len(rows)}) | without stage 1 | difference | paired t p |",
             "|---|---|---|---|---|"]
    for k in keys:
        a = np.array([r["lsvcr-align"][k] for r in rows])
        b = np.array([r["lsvcr-noalign"][k] for r in rows])
        p = float(stats.ttest_rel(a, b).pvalue) if len(rows) > 1 else float("nan")
        fmt = (lambda x: f"{100 * x:+.2f}%") if "lift" in k else (lambda x: f"{x:.4f}")
        lines.append(f"| {k} | {fmt(a.mean())} ± {fmt(a.std(ddof=1)) if len(a) > 1 else '–'} | "
                     f"{fmt(b.mean())} ± {fmt(b.std(ddof=1)) if len(b) > 1 else '–'} | {fmt((a - b).mean())} | "
                     f"{'–' if p != p else f'{p:.3g}'} |")
    lines.append("")
    for k in [k for k in keys if "lift" in k]:
        base = k.replace(" lift", "")
        per = {arm: "; ".join(f"seed {r['seed']} {100 * r[arm][k]:+.1f}% [{100 * r[arm][base + ' CI'][0]:+.1f}, "
                              f"{100 * r[arm][base + ' CI'][1]:+.1f}], p {r[arm][base + ' p']:.2g}" for r in rows) for arm in ARMS}
        lines.append(f"{base} against SASRec, per seed (CUPED, 95% CI): with stage 1 {per['lsvcr-align']}; "
                     f"without {per['lsvcr-noalign']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache" / "align_study")
    ap.add_argument("--data", type=Path, help="the default world's dataset (default: built under --work)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "align_study.json",
                    help="per-seed rows, kept in the repository: a seed already there under the current method "
                         "is not rerun, so the study can be finished across machines")
    args = ap.parse_args(argv)
    import atomic
    from align_speed import default_data

    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
    stored = json.loads(args.results.read_text())["rows"] if args.results.is_file() else []
    rows = []
    for seed in args.seeds:
        row = next((r for r in stored if r["seed"] == seed and r.get("method") == method_fingerprint(seed)), None)
        if row is None:
            data = args.data or default_data(args.work)
            row = run_seed(seed, data, data.parent / "world", args.work, args.threads, log)
            stored = sorted([r for r in stored if r["seed"] != seed] + [row], key=lambda r: r["seed"])
            atomic.write_text(args.results, json.dumps({"rows": stored, "table": summarise(stored)}, indent=1) + "\n")
        else:
            log(f"seed {seed}: stored in {args.results.name}")
        rows.append(row)
    print("\n".join(summarise(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
