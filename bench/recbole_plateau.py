"""The independent reference for the control: RecBole 1.2.1's own SASRec trained on ml-100k to its
early stop, with its test curve, beside ours under the same protocol.

Why: issue 12 asks for a control at the plateau of a well-trained SASRec before quoting lifts. The
plateau quoted there (0.068) came from a one-seed run nobody can rerun; RecBole is a maintained peer
that anyone can. This trains RecBole's SASRec with its defaults (hidden 64, FFN 256, 2 layers, 2 heads,
dropout 0.5, lr 1e-3, batch 2048 prefixes, CE over all items, max length 50; leave-one-out by timestamp,
full ranking, seen items not masked) and after every epoch records validation NDCG@10 / MRR@10 and
test NDCG@10 / HR@10 — test for the curve only; the *selected* figure is the test value at the epoch of
the best validation NDCG@10, stopping once 10 epochs pass without a gain (``stopping_step`` 10). RecBole's
own trainer (``recbole.utils.early_stopping``) waits for an 11th epoch without a gain before it stops, so
its pick differs from this one only if that 11th epoch beats the best. Rows go to
``bench/recbole_plateau.json`` after each epoch, so a run cut short keeps what it measured and a rerun
with the same seed resumes nothing (RecBole cannot resume): it is redone only with ``--force``.

RecBole runs in its own virtual environment (bench/sr_train.py sets it up; Python 3.11 with pins) with
``set_detect_anomaly`` switched off after import (its sine.py turns it on; identical results).

Usage: python bench/recbole_plateau.py [--seeds 0] [--threads 1] [--max-epochs 80] [--force]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT.parent), str(ROOT)]

import atomic  # noqa: E402
from sr_train import CACHE, RECBOLE_SETUP, ensure_data, ensure_recbole_venv  # noqa: E402

OUT = ROOT / "recbole_plateau.json"
STOPPING_STEP = 10

RUNNER = RECBOLE_SETUP + r'''
print("CONFIG " + json.dumps({k: cfg[k] for k in ("hidden_size", "inner_size", "n_layers", "n_heads",
      "hidden_dropout_prob", "attn_dropout_prob", "learning_rate", "train_batch_size", "MAX_ITEM_LIST_LENGTH",
      "loss_type", "eval_args")} | {"train_samples": len(train.dataset), "test_users": len(test.dataset)},
      default=str), flush=True)
spent = 0.0
for epoch in range(args["max_epochs"]):
    t0 = time.perf_counter()
    loss = trainer._train_epoch(train, epoch, show_progress=False)
    spent += time.perf_counter() - t0
    v = trainer.evaluate(valid, load_best_model=False, show_progress=False)
    t = trainer.evaluate(test, load_best_model=False, show_progress=False)
    print("EPOCH " + json.dumps({"epoch": epoch + 1, "loss": float(loss), "train_seconds": spent,
          "val_ndcg@10": float(v["ndcg@10"]), "val_mrr@10": float(v["mrr@10"]),
          "test_ndcg@10": float(t["ndcg@10"]), "test_hr@10": float(t["hit@10"])}), flush=True)
'''


def selected(epochs: list[dict], stopping_step: int = STOPPING_STEP) -> dict | None:
    """Early stopping on validation NDCG@10: the best epoch so far, once ``stopping_step`` epochs have
    passed without a gain; None while the run has not stopped yet."""
    best = None
    for e in epochs:
        if best is None or e["val_ndcg@10"] > best["val_ndcg@10"]:
            best = e
        elif e["epoch"] - best["epoch"] >= stopping_step:
            return best
    return None


def run_seed(py: Path, seed: int, threads: int, max_epochs: int, rows: dict) -> dict:
    args = {"threads": threads, "seed": seed, "max_epochs": max_epochs, "data_path": str(CACHE),
            "ckpt": str(CACHE / "recbole-saved")}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    row = {"seed": seed, "threads": threads, "epochs": [], "config": None, "stopped": None}
    p = subprocess.Popen([str(py), "-c", RUNNER, json.dumps(args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env, cwd=str(CACHE))
    for line in p.stdout:
        if line.startswith("CONFIG "):
            row["config"] = json.loads(line[7:])
        elif line.startswith("EPOCH "):
            e = json.loads(line[6:])
            row["epochs"].append(e)
            print(f"seed {seed} epoch {e['epoch']}: val NDCG@10 {e['val_ndcg@10']:.4f}  test NDCG@10 "
                  f"{e['test_ndcg@10']:.4f} HR@10 {e['test_hr@10']:.4f}  ({e['train_seconds']:.0f} s)", flush=True)
            row["stopped"] = selected(row["epochs"])
            rows.update(json.loads(OUT.read_text()) if OUT.is_file() else {})  # seeds run beside this one
            rows[str(seed)] = row
            atomic.write_text(OUT, json.dumps(rows, indent=1, sort_keys=True))
            if row["stopped"] is not None:
                p.kill()
                break
    p.wait()
    if not row["epochs"]:
        sys.exit(f"RecBole run failed (exit {p.returncode}):\n{p.stderr.read()[-3000:]}")
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-epochs", type=int, default=80)
    ap.add_argument("--force", action="store_true", help="rerun seeds already stopped in the json")
    a = ap.parse_args(argv)
    ensure_data()
    py = ensure_recbole_venv()
    rows = json.loads(OUT.read_text()) if OUT.is_file() else {}
    for seed in a.seeds:
        if not a.force and rows.get(str(seed), {}).get("stopped"):
            continue
        run_seed(py, seed, a.threads, a.max_epochs, rows)
    for seed, row in sorted(rows.items()):
        s, ep = row["stopped"], row["epochs"]
        tail = [e["test_ndcg@10"] for e in ep[-STOPPING_STEP:]]
        sel = (f"selected epoch {s['epoch']}: test NDCG@10 {s['test_ndcg@10']:.4f} HR@10 {s['test_hr@10']:.4f}"
               if s else f"not stopped after {len(ep)} epochs")
        print(f"RecBole SASRec seed {seed}: {sel}; test NDCG@10 over the last {len(tail)} epochs "
              f"{sum(tail) / len(tail):.4f} (max over the run {max(e['test_ndcg@10'] for e in ep):.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
