"""What `lsvcr train` and `lsvcr evaluate` do: read the dataset, get the text embeddings, train,
evaluate, write the model directory."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console

from lsvcr import text
from lsvcr.checkpoint import describe, load_model, save_model_dir
from lsvcr.config import FinetuneConfig, LSVCRConfig, SASRecConfig, TextConfig
from lsvcr.data.layout import Dataset, read_dataset
from lsvcr.errors import InputError
from lsvcr.evaluate import EvalConfig, ModelScorer, Popularity, evaluate
from lsvcr.finetune import train_lsvcr, train_sasrec

DATA_TEXT_CACHE = "text_embeddings.minilm.safetensors"  # reused across models trained on one dataset


def text_embeddings(ds: Dataset, data_dir: Path, cfg: TextConfig, console: Console | None) -> tuple[torch.Tensor, torch.Tensor]:
    """MiniLM embeddings of every title and comment, cached beside the dataset."""
    cache = data_dir / DATA_TEXT_CACHE
    if cache.is_file():
        try:
            t, c = text.load_text_embeddings(cache, ds.fingerprint())
            if t.shape[0] == ds.n_videos and c.shape[0] == ds.n_comments:
                return t, c
        except InputError:
            pass  # stale cache from another build of this directory: encode again
    if console is not None:
        console.print(f"encoding {ds.n_videos - 1} titles and {ds.n_comments - 1} comments with {cfg.encoder} ...")
    t, c = text.encode_items(ds.titles, ds.comment_texts, cfg)
    try:
        text.save_text_embeddings(cache, t, c, ds.fingerprint(), cfg)
    except OSError:
        pass  # a read-only dataset directory: the model dir keeps its own copy
    return t, c


def train_model(data_dir: str | Path, out_dir: str | Path, cfg: FinetuneConfig, console: Console | None = None,
                allow_pickle: bool = False, init: str | Path | None = None) -> dict:
    """Train ``cfg.model`` on ``data_dir``; write the model dir; return its metrics (val + test, sampled100).

    ``init``: an aligned directory (stage 1, ``align_model``): LSVCR then trains on its frozen text
    features and starts from its SR weights and text MLP (see lsvcr/align.py)."""
    torch.set_num_threads(cfg.threads)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    data_dir = Path(data_dir)
    ds = read_dataset(data_dir, allow_pickle)
    if init is not None and cfg.model != "lsvcr":
        raise InputError("--init (an aligned directory) applies to --model lsvcr only")
    if cfg.model == "sasrec":
        model, report = train_sasrec(ds, cfg, SASRecConfig(), console)
    elif init is not None:
        from lsvcr import align

        meta, titles, comments = align.read_aligned(init, ds)
        mcfg = LSVCRConfig()
        state = align.stage2_state(init, mcfg, cfg.seed)
        model, report = train_lsvcr(ds, cfg, titles, comments, mcfg, align.aligned_text_config(meta), console,
                                    init_state=state)
        report.aligned_from = os.path.relpath(init, out_dir)  # in metrics.json; relative: no absolute paths
    else:
        tcfg = TextConfig()
        titles, comments = text_embeddings(ds, data_dir, tcfg, console)
        model, report = train_lsvcr(ds, cfg, titles, comments, LSVCRConfig(), tcfg, console)
    model = model.cpu()
    scorer = ModelScorer(model, cfg.tasks, Popularity(ds))
    train, timings = split_timings(report.__dict__)
    metrics = {"train": train,
               "test_sampled100": evaluate(scorer, ds, EvalConfig("sampled100", "test", cfg.seed), cfg.tasks)}
    save_model_dir(out_dir, model, describe(model, ds, replace(cfg, device="cpu"), cfg.tasks), metrics, ds,
                   text_encoder=None if init is None else Path(init) / "llm", timings=timings)
    return {**metrics, "train": dict(report.__dict__)}  # the whole report, timings included


TIMING_KEYS = ("train_seconds", "targets_per_s")


def split_timings(report: dict) -> tuple[dict, dict]:
    """A training report -> (results, timings): wall-clock fields (also per epoch) move to the
    timings, so the results are the same bytes in two runs with one seed."""
    results = {k: v for k, v in report.items() if k not in TIMING_KEYS}
    results["epochs"] = [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in report.get("epochs", [])]
    timings = {k: report[k] for k in TIMING_KEYS if k in report}
    timings["epochs"] = [{"epoch": e["epoch"], **{k: e[k] for k in TIMING_KEYS if k in e}} for e in report.get("epochs", [])]
    if report.get("tasks"):  # per-task selection: each task's report split the same way
        parts = {t: split_timings(r) for t, r in report["tasks"].items()}
        results["tasks"], timings["tasks"] = {t: p[0] for t, p in parts.items()}, {t: p[1] for t, p in parts.items()}
    return results, timings


def align_model(data_dir: str | Path, out_dir: str | Path, cfg, console: Console | None = None,
                allow_pickle: bool = False, resume: bool = False) -> dict:
    """Stage 1 on ``data_dir`` into the aligned directory ``out_dir``; return its report."""
    from dataclasses import asdict

    from lsvcr import align

    from lsvcr import distributed

    ds = read_dataset(Path(data_dir), allow_pickle)
    try:
        return asdict(align.align(ds, out_dir, cfg, console, resume=resume))
    finally:
        distributed.shutdown()


def evaluate_model(model: str, data_dir: str | Path, ecfg: EvalConfig, allow_pickle: bool = False,
                   threads: int = 1) -> dict:
    """Evaluate a model directory, or the ``popularity`` baseline, on both tasks where available."""
    torch.set_num_threads(threads)
    ds = read_dataset(data_dir, allow_pickle)
    pop = Popularity(ds)
    if model == "popularity":
        return evaluate(pop, ds, ecfg)
    net, cfg = load_model(model, ds)
    out = evaluate(ModelScorer(net, tuple(cfg["tasks"]), pop), ds, ecfg)
    fallback = [t for t in out["tasks"] if t not in cfg["tasks"]]
    if fallback:
        out["fallback"] = {t: "popularity" for t in fallback}
    return out
