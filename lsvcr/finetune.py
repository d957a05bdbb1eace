"""Stage-2 fine-tuning of LSVCR and training of the control SASRec.

* LSVCR video task: softmax CE over all videos; comment task: 1 positive + 19 negatives from the
  target video's other comments (global pool when it has too few); plus the ID-text contrast over
  every non-pad history position: its ID against its merged title+comment text, 99 negatives from
  the batch's other positions, tau 0.07, video-history and record-history losses summed, weight 0.1.
* SASRec: next-item CE at all positions of each user window.
* AdamW; after each epoch validation NDCG@5 (sampled100, the paper's protocol); the best weights
  are kept; stop after ``patience`` epochs without gain.

Randomness: batch order and negatives from a numpy Generator / torch Generator seeded from
``cfg.seed``; initialisation and dropout draw from torch's global generator, forked and seeded
with ``cfg.seed`` around the whole of training (``lsvcr.determinism.seeded``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lsvcr.config import FinetuneConfig, LSVCRConfig, SASRecConfig, TextConfig
from lsvcr.data.layout import Dataset
from lsvcr.determinism import seeded
from lsvcr.data.loader import Batch, TaskTensors, length_bucketed, sequence_windows, user_sequences
from lsvcr.errors import InputError
from lsvcr.evaluate import EvalConfig, ModelScorer, evaluate_task
from lsvcr.losses import first_is_positive_ce, full_softmax_ce, id_text_contrast
from lsvcr.recommender import LSVCRRecommender, top_comments
from lsvcr.sasrec import SASRec


@dataclass
class TrainReport:
    best_epoch: int = -1
    best_val_ndcg5: float = float("-inf")
    epochs: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    targets_per_s: float = 0.0
    tasks: dict = field(default_factory=dict)  # per-task selection: each task's own report (as a dict)


class CommentNegatives:
    """Samples, per comment-task example, one positive and K negatives, as the official code does:
    the negatives are the target video's comments that are not positives, in random order,
    repeated (each pass a fresh permutation) until K are filled; only a video without such
    comments draws K distinct negatives from the global pool (positives excluded)."""

    def __init__(self, ds: Dataset, k: int):
        self.lists, self.k, self.n_comments = ds.comment_lists, k, ds.n_comments

    def __call__(self, b: Batch, rng: np.random.Generator) -> torch.Tensor:
        """[B, 1+K] candidate comments, the positive first (0 = padding)."""
        out = np.zeros((len(b.target), 1 + self.k), np.int64)
        pos_all = b.pos_comments.numpy()
        for i, t in enumerate(b.target.numpy()):
            pos = pos_all[i][pos_all[i] > 0]
            out[i, 0] = rng.choice(pos)
            out[i, 1:] = self._negatives(self.lists[t][~np.isin(self.lists[t], pos)], pos, rng)
        return torch.from_numpy(out)

    def _negatives(self, own: np.ndarray, pos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if len(own):
            passes = -(-self.k // len(own))  # ceil
            return np.concatenate([rng.permutation(own) for _ in range(passes)])[: self.k]
        # k + |pos| distinct draws hold at least k that are not positives (or every other comment)
        take = rng.choice(self.n_comments - 1, min(self.k + len(pos), self.n_comments - 1), replace=False) + 1
        take = take[~np.isin(take, pos)][: self.k]
        out = np.zeros(self.k, np.int64)  # padding where the whole dataset has fewer comments
        out[: len(take)] = take
        return out


def _progress(console: Console | None) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                    console=console, disable=console is None, transient=False)


def _validate(model, ds: Dataset, tasks, val_tensors, cfg: FinetuneConfig) -> dict:
    ecfg = EvalConfig(protocol=cfg.val_protocol, split="val", seed=cfg.seed, batch_size=cfg.eval_batch_size)
    scorer = ModelScorer(model, tasks, device=cfg.device)
    out = {t: evaluate_task(scorer, ds, t, ecfg, val_tensors[t]) for t in tasks}
    model.train()
    return out


def _fit(model, step: Callable, epoch_batches: Callable, ds: Dataset, tasks, cfg: FinetuneConfig,
         console: Console | None, on_epoch: Callable | None, max_seconds: float | None) -> TrainReport:
    """The shared loop: epochs, validation NDCG@5, early stopping, best weights kept."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    val_tensors = {t: TaskTensors(ds.splits[t]["val"], 50, cfg.max_record_comments) for t in tasks}
    for t in tasks:
        if not len(ds.splits[t]["val"]):
            raise InputError(f"no validation examples for the {t} task: early stopping needs a val split")
    report, best_state, bad, t_train, n_targets = TrainReport(), None, 0, 0.0, 0
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    with _progress(console) as bar:
        job = bar.add_task("epoch 1", total=None, info="")
        for epoch in range(cfg.epochs):
            batches = epoch_batches(rng)
            bar.update(job, description=f"epoch {epoch + 1}/{cfg.epochs}", total=len(batches), completed=0)
            model.train()
            t0, losses = time.perf_counter(), []
            for b in batches:
                loss, n = step(b, rng, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                n_targets += n
                bar.update(job, advance=1, info=f"loss {np.mean(losses[-20:]):.4f}")
            t_train += time.perf_counter() - t0
            val = _validate(model, ds, tasks, val_tensors, cfg)
            score = float(np.mean([val[t]["ndcg@5"] for t in tasks]))
            row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_ndcg@5": score,
                   "train_seconds": t_train, **{f"val_{t}": val[t] for t in tasks}}
            report.epochs.append(row)
            if score > report.best_val_ndcg5:
                report.best_val_ndcg5, report.best_epoch, bad = score, epoch + 1, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            bar.update(job, info=f"loss {row['loss']:.4f}  val NDCG@5 {score:.4f} (best {report.best_val_ndcg5:.4f} @ {report.best_epoch})")
            if console is not None:
                bar.console.print(f"epoch {epoch + 1}: loss {row['loss']:.4f}  val NDCG@5 {score:.4f}", highlight=False)
            if on_epoch is not None:
                on_epoch(model, row)
            if bad >= cfg.patience or (max_seconds is not None and t_train >= max_seconds):
                break
    model.load_state_dict(best_state)
    report.train_seconds, report.targets_per_s = t_train, n_targets / max(t_train, 1e-9)
    return report


def history_id_text_loss(bb, h, cfg: FinetuneConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """The official ID–text contrast: every non-pad position of the video history pairs its video's
    ID embedding with its merged title+comment text, negatives from the batch's other positions
    of that history; the same over the comment-record history; the two losses summed."""
    out = 0.0
    for title, comment, ids, mask in ((h.video_title, h.video_comment, h.video_ids, h.video_mask),
                                      (h.record_title, h.record_comment, h.record_ids, h.record_mask)):
        text = bb.history_text(title[mask], comment[mask])  # [N, d]
        out = out + id_text_contrast(bb.video_id(ids[mask]), text, cfg.id_text_negatives, cfg.id_text_tau, gen)
    return out


def train_lsvcr(ds: Dataset, cfg: FinetuneConfig, titles: torch.Tensor, comments: torch.Tensor,
                model_cfg: LSVCRConfig = LSVCRConfig(), text_cfg: TextConfig = TextConfig(),
                console: Console | None = None, on_epoch=None, max_seconds=None,
                init_state: dict[str, torch.Tensor] | None = None,
                freeze_text: bool = True) -> tuple[LSVCRRecommender, TrainReport]:
    """Stage 2. ``init_state``: starting weights from stage 1 (``lsvcr.align.stage2_state``); the
    video-ID table and the gate, new in stage 2, keep their fresh initialisation, as do the SR side's
    weights when ``init_state`` holds only the text MLP (``project.*``). With it the text MLP is
    frozen, so the 256-d text embeddings stay the stage-1 ones (the official code's
    ``photo_embs.npy``); ``freeze_text=False`` trains it on from there (a diagnostic, not the method).
    Without it (``--no-align``) the MLP trains on the raw features.
    Initialisation and dropout draw from torch's RNG seeded with ``cfg.seed`` (``seeded``).

    ``task="both"`` with ``selection="per_task"`` (the default) trains the two tasks as the official
    code does, one model per task, each with its own early stopping on its own validation NDCG@5,
    and returns them as one model (``attach_comment_model``); ``selection="joint"`` trains one model
    on both, stopped on the mean of the two."""
    if cfg.task == "both" and cfg.selection == "per_task":
        models, reports = {}, {}
        for task in ("video", "comment"):
            with seeded(cfg.seed, cfg.threads, cfg.device):
                models[task], reports[task] = _train_lsvcr(ds, replace(cfg, task=task), titles, comments, model_cfg,
                                                           text_cfg, console, on_epoch, max_seconds, init_state,
                                                           freeze_text)
        return models["video"].attach_comment_model(models["comment"]).eval(), _combined(reports)
    with seeded(cfg.seed, cfg.threads, cfg.device):
        return _train_lsvcr(ds, cfg, titles, comments, model_cfg, text_cfg, console, on_epoch, max_seconds, init_state,
                            freeze_text)


def _combined(reports: dict[str, TrainReport]) -> TrainReport:
    """One report of per-task trainings: the mean of the tasks' best val NDCG@5, their total time."""
    seconds = sum(r.train_seconds for r in reports.values())
    targets = sum(r.targets_per_s * r.train_seconds for r in reports.values())
    return TrainReport(best_epoch=-1, best_val_ndcg5=float(np.mean([r.best_val_ndcg5 for r in reports.values()])),
                       train_seconds=seconds, targets_per_s=targets / max(seconds, 1e-9),
                       tasks={t: {k: v for k, v in r.__dict__.items() if k != "tasks"} for t, r in reports.items()})


def _train_lsvcr(ds, cfg, titles, comments, model_cfg, text_cfg, console, on_epoch, max_seconds, init_state,
                 freeze_text=True):
    tasks = cfg.tasks
    for t in tasks:
        if not len(ds.splits[t]["train"]):
            raise InputError(f"the dataset has no training examples for the {t} task")
    model = LSVCRRecommender(model_cfg, text_cfg, ds.n_videos, ds.n_comments, top_comments(ds.comment_lists))
    if init_state is not None:
        missing, unexpected = model.load_state_dict(init_state, strict=False)
        fresh = {"backbone.video_id.weight", "backbone.gate", "popular"}
        if not any(k.startswith("backbone.") for k in init_state):  # the text MLP only: the SR side starts fresh
            fresh |= {k for k in missing if k.startswith("backbone.")}
        bad = sorted(set(missing) - fresh) + sorted(unexpected)
        if bad:
            raise InputError(f"the aligned weights do not fit the stage-2 model ({', '.join(bad[:3])})")
        if freeze_text:  # the official stage 2 reads the aligned 256-d MLP outputs, frozen: only the SR side trains
            model.project.requires_grad_(False)
    model.set_text(titles, comments)
    model.to(cfg.device)
    train = {t: TaskTensors(ds.splits[t]["train"], model_cfg.max_len, cfg.max_record_comments) for t in tasks}
    negatives = CommentNegatives(ds, cfg.comment_negatives)
    bb = model.backbone
    all_ids = torch.arange(ds.n_videos, device=cfg.device)

    def epoch_batches(rng):
        out = [(t, b) for t in tasks for b in train[t].batches(cfg.batch_size, rng)]
        return [out[i] for i in rng.permutation(len(out))]

    def step(item, rng, gen):
        task, b = item
        cands = negatives(b, rng) if task == "comment" else None
        b = b.to(cfg.device)
        h = model.histories(b, gen)
        user = model.task_repr(bb.encode(h), task, b.target)  # [B, d]
        if task == "video":
            title256 = model.project(model.title_text)  # [V, 256]
            loss = full_softmax_ce(bb.scores(user, bb.video_candidates(title256, all_ids)), b.target)
        else:
            c = cands.to(cfg.device)
            loss = first_is_positive_ce(model.comment_scores(user, c), c > 0)
        if cfg.id_text_weight > 0:
            loss = loss + cfg.id_text_weight * history_id_text_loss(bb, h, cfg, gen)
        return loss, len(b.target)

    report = _fit(model, step, epoch_batches, ds, tasks, cfg, console, on_epoch, max_seconds)
    return model.eval(), report


def train_sasrec(ds: Dataset, cfg: FinetuneConfig, model_cfg: SASRecConfig = SASRecConfig(),
                 console: Console | None = None, on_epoch=None, max_seconds=None) -> tuple[SASRec, TrainReport]:
    """The control; initialisation and dropout draw from torch's RNG seeded with ``cfg.seed``."""
    with seeded(cfg.seed, cfg.threads, cfg.device):
        return _train_sasrec(ds, cfg, model_cfg, console, on_epoch, max_seconds)


def _train_sasrec(ds, cfg, model_cfg, console, on_epoch, max_seconds):
    model = SASRec(model_cfg, ds.n_videos).to(cfg.device)
    inputs, targets = sequence_windows(user_sequences(ds.splits["video"]["train"]), model_cfg.max_len, cfg.sasrec_stride)
    inputs, targets = torch.from_numpy(inputs), torch.from_numpy(targets)

    lengths = (inputs > 0).sum(1).numpy()

    def epoch_batches(rng):
        return [torch.from_numpy(r) for r in length_bucketed(lengths, cfg.sasrec_batch_size, rng)]

    def step(rows, rng, gen):
        seq, tgt = inputs[rows], targets[rows]
        width = max(int((seq > 0).sum(1).max()), 1)  # trim the batch to its longest window
        seq, tgt = seq[:, :width].to(cfg.device), tgt[:, :width].to(cfg.device)
        return model.loss(seq, tgt, gen), int((tgt > 0).sum())

    report = _fit(model, step, epoch_batches, ds, ("video",), cfg, console, on_epoch, max_seconds)
    return model.eval(), report
