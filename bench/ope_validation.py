"""Validate the offline A/B prediction against the online A/B, on the simulator where the truth is known.

For each world seed: one logging run (popularity sampled as a Plackett–Luce ranking at
``--temperature``, the same kind of run `lsvcr demo` logs), then for every control/treatment pair
(a) the offline prediction of treatment's lift over control per user-day from that logging run
(`lsvcr abtest offline`, every estimator of --estimators) and (b) the online A/B of the same pair on
the same world (`lsvcr abtest run`: 1 pre-period day + 1 experiment day, CUPED report). Prints one row
per (seed, pair, estimator): offline lift [CI], online lift [CI] and p, whether the sign agrees where
the online lift is significant, and whether the offline CI covers the online point; then per
estimator the share of pairs meeting each target (sign agreement in every significant pair; CI
coverage in at least 80% of the pairs).

Pairs: built-in policies and their tempered (Plackett–Luce) variants; with --models also SASRec
(control arm) and LSVCR (treatment arm) trained on each seed's logging run as the demo trains them.

    python bench/ope_validation.py [--quick] [--seeds 0 1 2] [--users 2000] [--models] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from abtest.offline.prediction import predict  # noqa: E402
from abtest.report import ReportConfig, build_report  # noqa: E402
from abtest.render import to_json  # noqa: E402
from abtest.offline.feedback import read_feedback  # noqa: E402
from pipeline import (logged_requests, offline_targets, offline_units, resolve_policy, response_models,  # noqa: E402
                      session_fits)
from simulator import SimConfig, simulate  # noqa: E402
from simulator.counterfactual import LoggedRequests  # noqa: E402
from simulator.experiment import run_experiment, world_config  # noqa: E402

BUILTIN_PAIRS = [
    ("popularity", "oracle"),
    ("popularity", "oracle@0.5"),
    ("popularity", "popularity@1"),
    ("popularity@1", "oracle@1"),
    ("oracle@1", "oracle"),
    ("random", "popularity"),
]
MODEL_PAIRS = [("sasrec", "lsvcr"), ("popularity", "sasrec"), ("popularity", "lsvcr"), ("lsvcr", "oracle")]
METRIC = "comment_watch_time"
HOLD = "+hold"
MARGINAL_ESTIMATORS = {"model-pdr", "model-pcm", "iips", "dr"}  # position-wise: the replays need the targets' marginals


def train_models(world: Path, work: Path, seed: int, quick: bool) -> dict[str, str]:
    """SASRec and LSVCR (short stage 1 + stage 2) on the logging run, as `lsvcr demo` trains them."""
    from lsvcr.align import AlignConfig
    from lsvcr.config import FinetuneConfig
    from lsvcr.data.build import build_dataset
    from lsvcr.data.layout import write_dataset
    from lsvcr.train import align_model, train_model
    from rich.console import Console

    quiet = Console(quiet=True)
    names = {"sasrec": f"sasrec:{work / 'sasrec'}", "lsvcr": f"lsvcr:{work / 'lsvcr'}"}
    if (work / "lsvcr" / "model.safetensors").is_file():  # a kept --work dir: trained already
        return names
    write_dataset(build_dataset(world), work / "data", replace=True)
    train_model(work / "data", work / "sasrec", FinetuneConfig(model="sasrec", epochs=10 if quick else 30, seed=seed), quiet,
                overwrite=True)
    align_model(work / "data", work / "aligned", AlignConfig(batch_size=16, max_prompt_tokens=256,
                                                            max_steps=2 if quick else 10, seed=seed), quiet, overwrite=True)
    train_model(work / "data", work / "lsvcr", FinetuneConfig(model="lsvcr", task="both", epochs=2 if quick else 4, seed=seed),
                quiet, init=work / "aligned", overwrite=True)
    return {"sasrec": f"sasrec:{work / 'sasrec'}", "lsvcr": f"lsvcr:{work / 'lsvcr'}"}


def ranking_metrics(work: Path, seed: int) -> dict[str, dict[str, float]]:
    """Comment-task NDCG@10 (full ranking) and IPS DCG@10 of popularity, SASRec (comments by popularity) and LSVCR:
    the classic full-ranking protocol and the exposure-debiased IPS protocol (lsvcr evaluate)."""
    from lsvcr.evaluate import EvalConfig
    from lsvcr.train import evaluate_model

    out = {}
    for name, model in (("popularity", "popularity"), ("sasrec", str(work / "sasrec")), ("lsvcr", str(work / "lsvcr"))):
        full = evaluate_model(model, work / "data", EvalConfig(protocol="full", split="test", seed=seed))
        ips = evaluate_model(model, work / "data", EvalConfig(protocol="ips", split="test", seed=seed))
        out[name] = {"full": full["tasks"]["comment"]["ndcg@10"], "ips": ips["tasks"]["comment"]["dcg@10"]}
    return out


def online(world: Path, out: Path, control: str, treatment: str, users: int, reuse: bool = False) -> dict:
    saved = out / "truth.json"
    key = {"control": control, "treatment": treatment, "users": users}
    if reuse and saved.is_file() and json.loads(saved.read_text())["key"] == key:
        return json.loads(saved.read_text())["truth"]
    shutil.rmtree(out, ignore_errors=True)  # a kept --work dir: run the A/B again
    base = world_config(world)
    cfg = base.replace(n_users=users, days=2, pre_days=1, log_slates=False, noise_seed=base.seed + 1)

    def factory(spec):
        return lambda w, comments, config: resolve_policy(spec, w, comments, config)

    run_experiment(cfg, out, factory(control), factory(treatment), (control, treatment), world_dir=world)
    report = json.loads(to_json(build_report(out, ReportConfig())))
    rows = [m for m in report["metrics"] if m["name"] == METRIC and m["variant"] == "treatment"]
    m = next((r for r in rows if r.get("cuped")), rows[0])
    truth = {"rel_effect": m["rel_effect"], "rel_ci": m["rel_ci"], "p_value": m["p_value"], "alpha": report["alpha"]}
    saved.write_text(json.dumps({"key": key, "truth": truth}))
    return truth


def consistent_with(offline: float, offline_ci, truth: dict) -> bool:
    """Whether offline and online agree within both their noises: on the log-ratio scale, the
    difference of the two points within 1.96 combined standard errors (each SE from its 95% CI).
    The CI-covers-the-online-point target ignores the online A/B's own sampling error; this does not."""
    def log_se(point, ci):
        lo, hi = (math.log1p(max(c, -0.999999)) for c in ci)
        return math.log1p(max(point, -0.999999)), (hi - lo) / (2 * 1.959964)

    a, sa = log_se(offline, offline_ci)
    b, sb = log_se(truth["rel_effect"], truth["rel_ci"])
    return abs(a - b) <= 1.959964 * math.hypot(sa, sb)


def pct(x) -> str:
    return "  –  " if x is None else f"{100 * x:+.1f}%"


def ess(pair) -> str:
    return "–" if pair[0] is None else f"{pair[0]:,.0f} / {pair[1]:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small worlds (400 users, 1 logging day), built-in pairs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--users", type=int, default=None, help="users of the world and of each A/B [default 2000; quick 400]")
    ap.add_argument("--days", type=int, default=None, help="logging days [default 2; quick 1]")
    ap.add_argument("--temperature", type=float, default=1.0, help="the logging policy's temperature")
    ap.add_argument("--models", action="store_true", help="also SASRec and LSVCR pairs (trains both per seed)")
    ap.add_argument("--models-only", action="store_true", help="only the SASRec and LSVCR pairs")
    ap.add_argument("--work", type=Path, default=None, help="keep every world, model and A/B here (default: a temp dir)")
    ap.add_argument("--reuse-online", action="store_true",
                    help="with --work: reuse each online A/B's saved result (same pair and users) instead of rerunning it")
    ap.add_argument("--rows", type=Path, nargs="+", default=None,
                    help="print the tables from rows saved by earlier runs (--json) instead of running")
    ap.add_argument("--estimators", default="model-pcm,model-pdr,model-dr,model,cascade-ips,model-pcm+hold",
                    help="comma-separated; NAME+hold: the per-request estimate with the logged sessions held fixed "
                         "(lsvcr abtest offline --hold-sessions), else with the session model")
    ap.add_argument("--json", type=Path, default=None, help="write every row here")
    ap.add_argument("--bootstrap", type=int, default=30, help="user-bootstrap replicates of each interval")
    args = ap.parse_args()
    users = args.users or (400 if args.quick else 2000)
    days = args.days or (1 if args.quick else 2)
    estimators = args.estimators.split(",")
    setup = {"users": users, "days": days, "temperature": args.temperature}
    rows = []
    ranking: dict[int, dict] = {}
    start = time.perf_counter()
    if args.rows:
        for path in args.rows:
            saved = json.loads(path.read_text())
            rows += saved["rows"]
            ranking.update({int(k): v for k, v in saved["ranking"].items()})
            setup = saved.get("setup", {})  # the run's sizes, for the table's heading
            users, days, args.temperature = (setup.get("users", users), setup.get("days", days),
                                             setup.get("temperature", args.temperature))
        args.seeds = sorted({r["seed"] for r in rows})
        estimators = list(dict.fromkeys(r["estimator"] for r in rows))
    with tempfile.TemporaryDirectory(prefix="ope-validation-") as tmp:
        tmp = args.work or tmp
        for seed in [] if args.rows else args.seeds:
            work = Path(tmp) / f"seed{seed}"
            world = work / "world"
            if not (world / "manifest.json").is_file():  # a kept --work dir has it already
                simulate(SimConfig().replace(n_users=users, days=days, seed=seed), world, "popularity",
                         temperature=args.temperature)
            names = {}
            pairs = [] if args.models_only else list(BUILTIN_PAIRS)
            if args.models or args.models_only:
                names = train_models(world, work, seed, args.quick)
                pairs += MODEL_PAIRS
                ranking[seed] = ranking_metrics(work, seed)
                print(json.dumps({"seed": seed, "ranking": ranking[seed]}), file=sys.stderr, flush=True)
            spec = lambda p: names.get(p, p)  # noqa: E731
            fb = read_feedback(world)
            logged = logged_requests(fb)
            response_model = response_models(fb)
            fits = session_fits(fb, args.bootstrap)
            requests = LoggedRequests(fb)
            replays = {}
            marginals = any(e.removesuffix(HOLD) in MARGINAL_ESTIMATORS for e in estimators)
            for p in sorted({p for pair in pairs for p in pair}):
                replays[p] = offline_targets(fb, requests, spec(p), marginals)
            for control, treatment in pairs:
                truth = online(world, work / f"ab-{control}-vs-{treatment}", spec(control), spec(treatment), users,
                               args.reuse_online)
                significant = truth["p_value"] is not None and truth["p_value"] < truth["alpha"]
                for est in estimators:
                    base, held = est.removesuffix(HOLD), est.endswith(HOLD)
                    (m,) = predict(logged, replays[control], replays[treatment], units=offline_units(fb),
                                   preview=fb.meta["comment_preview"],
                                   metrics=(METRIC,), estimator=base, response_model=response_model,
                                   bootstrap=args.bootstrap, sessions=None if held else fits)
                    lo, hi = m.rel_ci
                    predicted = m.control is not None and math.isfinite(m.rel_effect)
                    # no prediction (e.g. no logged prefix matches a deterministic target) counts as a miss
                    covers = bool(predicted and lo <= truth["rel_effect"] <= hi)
                    same_sign = bool(predicted and (m.rel_effect > 0) == (truth["rel_effect"] > 0))
                    consistent = bool(predicted and consistent_with(m.rel_effect, (lo, hi), truth))
                    rows.append({"seed": seed, "control": control, "treatment": treatment, "estimator": est,
                                 "offline": m.rel_effect if predicted else None,
                                 "offline_ci": [lo, hi] if predicted else [None, None],
                                 "ess": [m.control.ess, m.treatment.ess] if predicted else [None, None],
                                 "online": truth["rel_effect"], "online_ci": truth["rel_ci"],
                                 "online_p": truth["p_value"], "significant": significant,
                                 "sign_agrees": same_sign, "covers": covers, "consistent": consistent,
                                 "flags": list(m.flags)})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                print(f"seed {seed}: {control} vs {treatment} done ({time.perf_counter() - start:.0f} s)",
                      file=sys.stderr, flush=True)
                if args.json:
                    args.json.write_text(json.dumps({"rows": rows, "ranking": ranking, "setup": setup}, indent=1))
    print(f"Offline prediction vs online A/B, {METRIC} per user, treatment vs control "
          f"({len(args.seeds)} world seeds, {users} users, logging: popularity@{args.temperature:g} over {days} day(s); "
          f"online: {users} users, 1 pre-period + 1 experiment day, CUPED)")
    print()
    print("| seed | control | treatment | estimator | offline lift [95% CI] | ESS c / t | online lift [95% CI], p | sign (online sig.) | CI covers online | consistent |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sign = ("agrees" if r["sign_agrees"] else "DIFFERS") if r["significant"] else "(online n.s.)"
        print(f"| {r['seed']} | {r['control']} | {r['treatment']} | {r['estimator']} | {pct(r['offline'])} "
              f"[{pct(r['offline_ci'][0])}, {pct(r['offline_ci'][1])}] | {ess(r['ess'])} | "
              f"{pct(r['online'])} [{pct(r['online_ci'][0])}, {pct(r['online_ci'][1])}], p = {r['online_p']:.2g} | "
              f"{sign} | {'yes' if r['covers'] else 'NO'} | {'yes' if r.get('consistent') else 'NO'} |")
    print()
    print("| estimator | pairs | sign agrees where online significant (target: all) | CI covers online point (target: >= 80%) "
          "| consistent with online, both noises |")
    print("|---|---|---|---|---|")
    for est in estimators:
        mine = [r for r in rows if r["estimator"] == est]
        sig = [r for r in mine if r["significant"]]
        agree = sum(r["sign_agrees"] for r in sig)
        cover = sum(r["covers"] for r in mine)
        both = sum(bool(r.get("consistent")) for r in mine)
        print(f"| {est} | {len(mine)} | {agree}/{len(sig)} | {cover}/{len(mine)} ({100 * cover / max(len(mine), 1):.0f}%) "
              f"| {both}/{len(mine)} ({100 * both / max(len(mine), 1):.0f}%) |")
    if ranking:
        print()
        print("Offline ranking metrics (comment task, test split: full-ranking NDCG@10, IPS DCG@10) beside the online comment watch time lift "
              "over popularity: which protocol orders the policies as the A/B does")
        print()
        print("| seed | policy | full ranking | IPS (exposure-debiased) | online lift vs popularity |")
        print("|---|---|---|---|---|")
        agree, pairs, ties = {"full": 0, "ips": 0}, {"full": 0, "ips": 0}, {"full": 0, "ips": 0}
        for seed, metrics in ranking.items():
            lift = {r["treatment"]: r["online"] for r in rows if r["seed"] == seed and r["control"] == "popularity"
                    and r["estimator"] == estimators[0]}
            lift["popularity"] = 0.0
            for policy, m in metrics.items():
                print(f"| {seed} | {policy} | {m['full']:.4f} | {m['ips']:.4f} | {pct(lift.get(policy))} |")
            for a, b in [("popularity", "sasrec"), ("popularity", "lsvcr"), ("sasrec", "lsvcr")]:
                for protocol in agree:
                    d_off = metrics[b][protocol] - metrics[a][protocol]
                    if abs(d_off) < 1e-12:  # SASRec ranks comments by likes: no comment-ranking difference offline
                        ties[protocol] += 1
                        continue
                    agree[protocol] += (d_off > 0) == (lift.get(b, 0.0) > lift.get(a, 0.0))
                    pairs[protocol] += 1
        print()
        print("policy pairs whose comment-ranking order offline equals the order of their online comment watch time "
              "(pairs tied offline left out: SASRec ranks comments by likes, as popularity does): "
              + ", ".join(f"{p} {agree[p]}/{pairs[p]} ({ties[p]} tied)" for p in agree))
    print(f"\nwall {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ranking": ranking, "setup": setup}, indent=1))


if __name__ == "__main__":
    main()
