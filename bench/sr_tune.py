"""Tuning the control: our SASRec on ml-100k under training-scheme variants, same protocol as
bench/sr_train.py (RecBole's: leave-one-out by timestamp, full ranking over all items, hidden 64,
2 layers, 2 heads, dropout 0.5, lr 1e-3, no weight decay, batch 128 windows of 50, early stopping on
validation NDCG@5 with full ranking).

A variant is NAME:FIELD=VALUE,... over FinetuneConfig and SASRecConfig fields (e.g.
``stride5:sasrec_stride=5,patience=10`` or ``d03:sasrec_stride=1,dropout=0.3``).
``sasrec_stride`` S: a training window ends every S items, each keeping only its last S positions as
targets, so every target is trained once per epoch and sees at least 50 - S items before it (S = 1:
RecBole's one-sample-per-prefix scheme, computed as windows). Rows (test NDCG@10 / HR@10, best epoch,
training seconds) are appended to ``--json`` as they finish; ``--curve`` adds the test NDCG@10 after every
epoch (to see where training plateaus; the selected row still comes from validation).

``--data DIR`` tunes the control on an LSVCR dataset instead (the A/B's control config as the base).

Usage: python bench/sr_tune.py [--variants NAME:F=V,... ...] [--seeds 0 1] [--threads 1] [--data DIR] [--json OUT] [--curve]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

DEFAULT_VARIANTS = ["default:", "stride5:sasrec_stride=5,patience=10", "stride1:sasrec_stride=1,patience=10"]


def parse_variant(spec: str, base, model_base) -> tuple[str, object, object]:
    """NAME:FIELD=VALUE,... -> (name, FinetuneConfig, SASRecConfig); a field goes to whichever config has it."""
    name, _, body = spec.partition(":")
    owners = {f.name: ("train", f.type) for f in fields(base)} | {f.name: ("model", f.type) for f in fields(model_base)}
    changes = {"train": {}, "model": {}}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in owners:
            raise SystemExit(f"unknown FinetuneConfig/SASRecConfig field {key!r} in variant {spec!r}")
        changes[owners[key][0]][key] = None if value == "None" else (float(value) if "." in value or "e" in value else int(value))
    return name, replace(base, **changes["train"]), replace(model_base, **changes["model"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--data", type=Path, help="an LSVCR dataset dir (e.g. bench/.cache/align_study/data): tune the "
                    "control as the A/B trains it there (FinetuneConfig(model='sasrec'), SASRecConfig()) instead of ml-100k")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--curve", action="store_true", help="also record full-ranking test NDCG@10 after every epoch "
                    "(the curve only: selection stays on validation)")
    args = ap.parse_args(argv)

    import torch

    from lsvcr.config import FinetuneConfig, SASRecConfig
    from lsvcr.data.layout import read_dataset
    from lsvcr.data.recbole import import_recbole
    from lsvcr.evaluate import EvalConfig, ModelScorer, evaluate
    from lsvcr.finetune import train_sasrec
    from sr_train import ensure_data, recbole_protocol

    torch.set_num_threads(args.threads)
    if args.data:
        ds = read_dataset(args.data)
        mcfg, base = SASRecConfig(), FinetuneConfig(model="sasrec", threads=args.threads)
    else:
        ds = import_recbole(ensure_data() / "ml-100k.inter")
        mcfg, base = recbole_protocol(max_epochs=args.max_epochs, threads=args.threads)
    rows = json.loads(args.json.read_text()) if args.json and args.json.is_file() else []
    for spec in args.variants:
        name, cfg, model_cfg = parse_variant(spec, base, mcfg)
        for seed in args.seeds:
            t0 = time.perf_counter()
            curve = []

            def progress(m, r, name=name, seed=seed):  # one line per epoch: a run takes up to hours
                extra = ""
                if args.curve:  # eval mode, no grad, no random draw: training goes on exactly as without it
                    m.eval()
                    with torch.no_grad():
                        t = evaluate(ModelScorer(m, ("video",)), ds, EvalConfig(protocol="full", split="test"),
                                     ("video",))["tasks"]["video"]["ndcg@10"]
                    m.train()
                    curve.append(t)
                    extra = f"  test NDCG@10 {t:.4f}"
                print(f"  {name} seed {seed} epoch {r['epoch']}: val NDCG@5 {r['val_ndcg@5']:.4f}{extra} "
                      f"({r['train_seconds']:.0f} s)", file=sys.stderr, flush=True)

            model, rep = train_sasrec(ds, replace(cfg, seed=seed), model_cfg, on_epoch=progress)
            res, sampled = (evaluate(ModelScorer(model, ("video",)), ds, EvalConfig(protocol=protocol, split="test", seed=seed),
                                     ("video",))["tasks"]["video"] for protocol in ("full", "sampled100"))
            row = {"data": str(args.data or "ml-100k"), "variant": name, "spec": spec, "seed": seed,
                   "test_ndcg@10": res["ndcg@10"], "test_hr@10": res["recall@10"],
                   "test_ndcg@10_sampled100": sampled["ndcg@10"],
                   "best_epoch": rep.best_epoch, "epochs": len(rep.epochs), "val_ndcg@5": rep.best_val_ndcg5,
                   "train_s": rep.train_seconds, "wall_s": time.perf_counter() - t0}
            if args.curve:
                row["test_ndcg@10_curve"] = curve
            rows.append(row)
            print(f"{name:12s} seed {seed}: test NDCG@10 {row['test_ndcg@10']:.4f} HR@10 {row['test_hr@10']:.4f} "
                  f"(sampled-100 NDCG@10 {row['test_ndcg@10_sampled100']:.4f}) "
                  f"(best epoch {row['best_epoch']} of {row['epochs']}, {row['train_s']:.0f} s training)", flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
