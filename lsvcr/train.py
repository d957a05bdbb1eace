"""What `lsvcr train` and `lsvcr evaluate` do: read the dataset, get the text embeddings, train,
evaluate, write the model directory. ``run_training`` (a ``TrainRequest`` -> ``TrainResult``) is the
whole of `lsvcr train`: which stages run (stage 1 in process or under torchrun, then stage 2) and
where each writes."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from rich.console import Console

import atomic
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
                allow_pickle: bool = False, init: str | Path | None = None, init_sr: bool = True,
                freeze_text: bool = True, overwrite: bool = False) -> dict:
    """Train ``cfg.model`` on ``data_dir``; write the model dir; return its metrics (val + test, sampled100).

    ``init``: an aligned directory (stage 1, ``align_model``): LSVCR then trains on its frozen text
    features and starts from its SR weights and text MLP (see lsvcr/align.py) — the method. Two
    diagnostics take it apart (bench/stage2_parts.py): ``init_sr=False`` starts the SR side fresh (as
    ``--no-align`` does) and keeps only the aligned text MLP; ``freeze_text=False`` trains that MLP on.
    An existing ``out_dir`` is replaced only with ``overwrite``, and never when it holds the dataset or
    the aligned directory."""
    atomic.check_output(out_dir, inputs=[data_dir, init], overwrite=overwrite)
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
        if not init_sr:
            state = {k: v for k, v in state.items() if k.startswith("project.")}
        model, report = train_lsvcr(ds, cfg, titles, comments, mcfg, align.aligned_text_config(meta), console,
                                    init_state=state, freeze_text=freeze_text)
        report.aligned_from = os.path.relpath(init, out_dir)  # in metrics.json; relative: no absolute paths
        if not (init_sr and freeze_text):  # a diagnostic, not the method: say so in metrics.json
            report.stage2_from_aligned = {"sr": init_sr, "freeze_text": freeze_text}
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
                   text_encoder=None if init is None else Path(init) / "llm", timings=timings, replace=overwrite)
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
                allow_pickle: bool = False, resume: bool = False, overwrite: bool = False) -> dict:
    """Stage 1 on ``data_dir`` into the aligned directory ``out_dir``; return its report. An existing
    ``out_dir`` is written into only with ``resume`` (its checkpoint) or ``overwrite``."""
    from dataclasses import asdict

    from lsvcr import align

    from lsvcr import distributed

    atomic.check_output(out_dir, inputs=[data_dir], overwrite=overwrite or resume)
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


# ------------------------------------------------------------------------------------------
# `lsvcr train`: which stages run, in which order, writing where
# ------------------------------------------------------------------------------------------
STAGES = ("finetune", "align", "all")


@dataclass(frozen=True)
class TrainRequest:
    """What `lsvcr train` was asked for: its options, at its defaults (``TrainRequest(data, out)`` is
    ``lsvcr train --data DATA --out OUT``). ``run_training`` resolves and checks the combination."""

    data: Path
    out: Path
    model: str = "lsvcr"  # lsvcr | sasrec
    task: str | None = None  # None: both with stage all, else video
    stage: str | None = None  # None: all for lsvcr without init, else finetune
    no_align: bool = False  # stage all without stage 1 (the ablation)
    init: Path | None = None  # stage finetune: start from this aligned dir
    aligned_out: Path | None = None  # stage all: the aligned dir (None: OUT-aligned beside OUT)
    # stage 1 (AlignConfig; built only when stage 1 runs)
    llm: str = "minilm"
    llm_kind: str = "auto"
    trust_remote_code: bool = False
    dtype: str = "float32"
    prompt_templates: Path | None = None
    align_batch_size: int = 128
    align_lr: float = 3e-4
    align_epochs: int = 1
    align_steps: int | None = None
    max_prompt_tokens: int = 4096  # the official 3840 + 256, clamped to the LLM's context
    max_response_tokens: int | None = None  # None: the official 256, at most half of the budget
    checkpoint_every: int = 50
    bf16_autocast: bool = False  # stage 1's LLM matmuls in bfloat16 (a CPU with avx512_bf16 or AMX)
    resume: bool = False
    ddp: int = 0  # > 1: stage 1 on this many local processes (torchrun)
    # stage 2 (FinetuneConfig)
    selection: str = "per_task"
    epochs: int = 50
    batch_size: int | None = None  # None: FinetuneConfig's (lsvcr samples, sasrec user windows)
    device: str = "cpu"
    seed: int = 0
    threads: int = 1
    allow_pickle: bool = False
    quiet: bool = False  # no progress (also for the --ddp processes)
    overwrite: bool = False  # replace an existing --out (and aligned dir); never one that holds an input


@dataclass(frozen=True)
class Stage1Result:
    """Stage 1's outcome: the aligned directory, and ``align_model``'s report (None when it ran
    under --ddp: the launched processes print their own summary)."""

    aligned: Path
    report: dict | None


@dataclass(frozen=True)
class TrainResult:
    """What ``run_training`` did: the resolved stage, the directory written (the model dir; the
    aligned dir with stage align), stage 1 (None when it did not run) and stage 2's metrics
    (``train_model``'s return; None with stage align)."""

    stage: str
    out: Path
    stage1: Stage1Result | None
    metrics: dict | None


def run_training(req: TrainRequest, console: Console | None = None,
                 stage1_done: Callable[[Stage1Result], None] | None = None) -> TrainResult:
    """`lsvcr train`: stage 1 (in this process, or under ``req.ddp`` processes through torchrun) into
    the aligned directory, then stage 2 from it into ``req.out``; or one of the two (``req.stage``).

    ``console``: where progress goes (nothing when None or ``req.quiet``). ``stage1_done`` is called
    when stage 1 has finished, before stage 2 starts, on rank 0 only. Bad combinations of options
    raise ``InputError`` naming the flags."""
    stage = req.stage or ("all" if req.model == "lsvcr" and req.init is None else "finetune")
    if stage not in STAGES:
        raise InputError(f"--stage must be finetune, align or all, got {stage!r}")
    if stage != "finetune" and req.model != "lsvcr":
        raise InputError(f"--stage {stage} applies to --model lsvcr only (the control has no stage 1)")
    if req.init is not None and stage != "finetune":
        raise InputError("--init goes with --stage finetune (--stage all aligns itself)")
    if req.no_align and stage != "all":
        raise InputError("--no-align goes with --stage all")
    progress = None if req.quiet else console
    cfg = FinetuneConfig(model=req.model, task=req.task or ("both" if stage == "all" else "video"),
                         epochs=req.epochs, device=req.device, seed=req.seed, threads=req.threads,
                         selection=req.selection)
    if req.batch_size is not None:
        cfg = replace(cfg, batch_size=req.batch_size, sasrec_batch_size=req.batch_size)
    out, init, stage1 = Path(req.out), req.init, None
    inputs = [req.data, req.init, req.prompt_templates, req.llm if Path(req.llm).exists() else None]
    aligned = None
    if stage in ("align", "all") and not req.no_align:
        aligned = out if stage == "align" else Path(req.aligned_out or out.with_name(out.name + "-aligned"))
        # --resume continues in the aligned dir's own checkpoint
        atomic.check_output(aligned, inputs=inputs, overwrite=req.overwrite or req.resume,
                            flag="--out" if stage == "align" else "--aligned-out")
    if stage != "align":
        atomic.check_output(out, inputs=[*inputs, aligned], overwrite=req.overwrite)
    if aligned is not None:
        init = aligned
        stage1 = Stage1Result(init, _stage1(req, init, progress))
        if stage1_done is not None and int(os.environ.get("RANK", "0")) == 0:
            stage1_done(stage1)
        if stage == "align":
            return TrainResult(stage, out, stage1, None)
    metrics = train_model(req.data, out, cfg, progress, req.allow_pickle, init, overwrite=req.overwrite)
    return TrainResult(stage, out, stage1, metrics)


def _stage1(req: TrainRequest, aligned: Path, console: Console | None) -> dict | None:
    """Stage 1 into ``aligned``: its report, or None when it ran under --ddp (torchrun processes)."""
    from lsvcr.align import AlignConfig

    acfg = AlignConfig(llm=req.llm, llm_kind=req.llm_kind, dtype=req.dtype, trust_remote_code=req.trust_remote_code,
                       prompt_templates=str(req.prompt_templates) if req.prompt_templates else None,
                       batch_size=req.align_batch_size, lr=req.align_lr, epochs=req.align_epochs,
                       max_steps=req.align_steps, max_prompt_tokens=req.max_prompt_tokens,
                       max_response_tokens=req.max_response_tokens, bf16_autocast=req.bf16_autocast,
                       checkpoint_every=req.checkpoint_every, seed=req.seed, threads=req.threads, device=req.device)
    if req.ddp > 1:
        import subprocess
        import sys

        from lsvcr.align_main import argv as align_argv

        args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={req.ddp}",
                "-m", "lsvcr.align_main", *align_argv(acfg, req.data, aligned, req.resume, req.allow_pickle, req.quiet,
                                                      req.overwrite)]
        if subprocess.run(args).returncode != 0:
            raise InputError(f"stage 1 under --ddp {req.ddp} failed (see the output above)")
        return None
    return align_model(req.data, aligned, acfg, console, req.allow_pickle, req.resume, req.overwrite)
