"""Benchmark: stage 1 (alignment, lsvcr/align.py) on a CPU, one lever at a time, on the default dataset.

Each row adds one lever to the row above and times a forward + backward of the same fixed micro-batches
of 16 samples (the official in-batch pool) in training mode, after one warm-up pass:

1. plain: the frozen MiniLM keeps its own dropout (0.1: attention then runs the unfused kernel), each
   micro-batch's prompts padded to its longest, 1 thread;
2. + the frozen LLM's own dropout off (the default; as in the paper's ChatGLM3-6B, whose config sets
   hidden and attention dropout to 0.0; LoRA's dropout 0.1 stays);
3. + prompts and item texts in 4 length groups (``AlignConfig.length_buckets``, the default);
4. + 2 threads (``--threads 2``: both cores);
5. + bf16 autocast (``AlignConfig.bf16_autocast``; off by default: another rounding).

Beside each time: the speed-up over the row above and over row 1 (ratios measured in the same run),
and how far the row's losses on the fixed batch are from the row above's, with dropout off (eval
mode) so that they can compare: the largest relative difference over L_rec, L_VCC, L_SSC and the total.
Rows 2-4 change how the same numbers are computed (row 2 changes the training noise only, so its eval-mode
losses are equal by construction); row 5 rounds matmuls to bfloat16. The projected epoch is the time per
micro-batch times the epoch's micro-batches (the optimizer step and batch building are not in it);
``lsvcr train --stage align --threads 2`` on the same data measures a whole epoch (timings.json).

Usage: python bench/align_speed.py [--data DIR] [--micro-batches 2] [--json OUT]
(without --data the default world is simulated first, as ``lsvcr demo`` does: ~5 minutes)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_data(work: Path) -> Path:
    """The demo's default world (1,000 users, 1,000 videos, 2 days, seed 0) and its dataset."""
    from pipeline import DEMO_LOGGING_TEMPERATURE, DEMO_SIZES, simulation_config
    from lsvcr.data.build import build_dataset
    from lsvcr.data.layout import write_dataset
    from simulator.run import simulate

    data = work / "data"
    if not (data / "meta.json").is_file():
        size = DEMO_SIZES["default"]
        cfg = simulation_config(None, seed=0, n_users=size["users"], n_videos=size["videos"], days=size["days"])
        simulate(cfg, work / "world", "popularity", None, DEMO_LOGGING_TEMPERATURE, None)
        write_dataset(build_dataset(work / "world"), data, replace=True)
    return data


def cpu() -> str:
    """The CPU's model name and its bf16 matmul units (AMX, AVX-512 BF16): bf16 autocast pays only with them."""
    import platform

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.processor() or "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    units = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return f"{name}, {os.cpu_count()} cores, bf16 units: {', '.join(units) or 'none'}"


def measure(ds, cfg, threads: int, micro, repeats: int = 1) -> tuple[float, dict]:
    """(seconds per micro-batch, forward + backward in training mode; eval-mode losses of the first)."""
    import torch

    from lsvcr.align import build_aligner

    torch.set_num_threads(threads)
    aligner = build_aligner(ds, cfg)
    aligner.eval()
    with torch.no_grad():
        losses = {k: float(v) for k, v in aligner(micro[0])._asdict().items() if v is not None}
    aligner.train()
    torch.manual_seed(0)
    aligner(micro[0]).total.backward()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        for m in micro:
            aligner.zero_grad(set_to_none=True)
            aligner(m).total.backward()
    return (time.perf_counter() - start) / (repeats * len(micro)), losses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a dataset directory (default: simulate the default world)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache" / "align_speed")
    ap.add_argument("--micro-batches", type=int, default=2, help="fixed micro-batches of 16 timed per row")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from lsvcr.align import AlignConfig, micro_batches
    from lsvcr.align_data import AlignSamples
    from lsvcr.data.layout import read_dataset

    data = args.data or default_data(args.work)
    ds = read_dataset(data)
    base = AlignConfig()
    samples = AlignSamples(ds, base.history_len, base.max_positions, base.max_record_comments, base.position_ids,
                           base.record_fallback)
    batch = samples.batch(samples.order(base.seed, 0)[: base.batch_size], base.seed, 0)
    micro = micro_batches(batch, base.contrast_pool)[: args.micro_batches]
    per_epoch = math.ceil(len(samples) / base.contrast_pool)
    plain = replace(base, backbone_dropout=True, length_buckets=1)
    rows = [("plain: MiniLM's own dropout on, one padded group, 1 thread", plain, 1),
            ("+ frozen LLM's dropout off (default; as ChatGLM3-6B)", replace(plain, backbone_dropout=False), 1),
            ("+ 4 length groups (default)", replace(plain, backbone_dropout=False, length_buckets=4), 1),
            ("+ 2 threads (--threads 2)", replace(plain, backbone_dropout=False, length_buckets=4), 2),
            ("+ bf16 autocast (optional)", replace(plain, backbone_dropout=False, length_buckets=4, bf16_autocast=True), 2)]
    print(f"CPU: {cpu()}")
    print(f"data {data}: {len(samples):,} stage-1 samples = {per_epoch} micro-batches of {base.contrast_pool} per epoch; "
          f"{len(micro)} fixed micro-batches timed per row")
    print(f"{'lever':<58} {'s/micro':>8} {'x prev':>7} {'x plain':>8} {'epoch min':>10} {'loss Δ vs prev':>15}")
    results, prev = [], None
    for label, cfg, threads in rows:
        seconds, losses = measure(ds, cfg, threads, micro)
        delta = None if prev is None else max(abs(losses[k] - prev[1][k]) / max(abs(prev[1][k]), 1e-12) for k in losses)
        row = {"lever": label, "threads": threads, "seconds_per_micro_batch": seconds, "epoch_minutes": seconds * per_epoch / 60,
               "speedup_vs_prev": None if prev is None else prev[0] / seconds,
               "speedup_vs_plain": results[0]["seconds_per_micro_batch"] / seconds if results else 1.0,
               "max_rel_loss_diff_vs_prev": delta, "losses_eval": losses}
        results.append(row)
        print(f"{label:<58} {seconds:>8.2f} {'' if prev is None else f'{prev[0] / seconds:.2f}':>7} "
              f"{row['speedup_vs_plain']:>8.2f} {row['epoch_minutes']:>10.1f} {'' if delta is None else f'{delta:.1e}':>15}",
              flush=True)
        prev = (seconds, losses)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu(), "data": str(data), "samples": len(samples), "micro_batches_per_epoch": per_epoch,
                                         "rows": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
