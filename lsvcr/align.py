"""Stage 1 — personalised preference alignment of the SR model with a supplemental LLM under LoRA.

The LLM (``--llm``: the packaged MiniLM, or a local directory of any Hugging Face encoder or
decoder; ChatGLM through ``trust_remote_code``) is LoRA-wrapped (lsvcr/llm.py); the SR backbone
(text + position input, no IDs: ``LSVCRConfig(use_id=False)``), its two heads and the LLM's text MLP
and user head train fully beside it. One mixed-task batch (lsvcr/align_data.py) per step:

    L = L_LM + 1.0·L_rec + 0.5·(L_VCC + L_SSC),   τ = 0.07          (lsvcr/contrastive.py)

Item texts (history titles and comments, targets) are embedded on the fly by the same LoRA LLM as the
prompts (mean pooling → MLP → 256), so gradients reach LoRA and the MLP. An encoder backbone sees
prompts without the response and skips L_LM (said once).

**Outputs** (an *aligned directory*): ``llm/`` (LoRA adapter, text MLP, user head, config),
``sr.safetensors`` (the aligned backbone), ``text_embeddings.safetensors`` and ``align.json``
(configs, loss curve, dataset fingerprint); ``timings.json`` (seconds, throughput).

**How stage 2 consumes it.** After stage 1 every title and comment is encoded once with the aligned
LLM into its *mean-pooled features* ``[N, hidden]`` (``text_embeddings.safetensors``, frozen). Stage 2's
``LSVCRRecommender.project`` is exactly the method's MLP ``hidden → hidden/4 → GELU → 256``: it is the
aligned MLP, frozen, so the 256-d text embeddings stage 2 reads are stage 1's (the official code
precomputes them, ``photo_embs.npy``, and trains only the SR side on top); the backbone starts from the aligned SR weights (the video-ID table and the gate
are new; the position tables keep their learned rows and are padded with fresh N(0, 0.02) rows when
stage 2 uses more positions). This follows the method ("load the aligned SR weights and the MLP; text
embeddings frozen"), keeps one stage-2 model for both arms — ``--no-align`` is the same model on the
plain MiniLM features with a fresh MLP and backbone — and nothing after this point needs the LLM.

**Distributed.** ``torchrun --nproc-per-node N -m lsvcr.align_main --data D --out O ...``, ``accelerate
launch --multi_gpu --num_processes N -m lsvcr.align_main ...`` (see lsvcr/align_main.py) or ``lsvcr train
--stage align --ddp N``: every rank builds the same global batch (draws depend on seed and step
only) and keeps a contiguous slice; in-batch negatives are gathered with gradients
(``distributed.gather_with_grad``), L_LM is normalised by the *global* response-token count, and
gradients are averaged over ranks after backward (what ``DistributedDataParallel`` does; done by hand
so the LoRA-wrapped LLM needs no wrapper). The loss and the update equal one process on the global
batch up to float rounding. Batch size is global; gloo on CPU, nccl on GPUs.

**Checkpoints and resume.** Every ``checkpoint_every`` steps ``OUT/checkpoint/`` receives the trainable
weights and the AdamW state (safetensors) and ``trainer.json`` (step, configs). The LR is a pure
function of the step (linear warm-up over 3 %, then linear decay), and every random draw of step s —
sample augmentations, template choice, positions, dropout — is seeded from (seed, s, rank), so
``resume`` reproduces the uninterrupted run's weights exactly.

**A 6B model (not wired here).** ``accelerate launch`` starts the processes; the gradients are
averaged by hand, not by an ``Accelerator``, so DeepSpeed ZeRO is not used (no DeepSpeed config ships:
none was ever run). With ``--llm /models/chatglm3-6b --trust-remote-code --dtype bfloat16
--gradient-checkpointing`` only LoRA, the heads and the SR model train (a few M parameters), so their
AdamW state is small and the frozen 6B weights are replicated in bf16 (~12 GB per GPU). Partitioning
that state (ZeRO-2) would mean handing the Aligner and optimizer to ``accelerator.prepare`` and calling
``accelerator.backward`` in ``train_step``.
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from safetensors.torch import save_file
from torch import nn

import atomic
from lsvcr import distributed, text
from lsvcr.align_data import POSITION_IDS, RECORD_FALLBACKS, AlignBatch, AlignSamples, rank_slice
from lsvcr.config import LSVCRConfig, TextConfig, dumps, from_dict, to_dict
from lsvcr.contrastive import IGNORE_INDEX, Stage1Losses, Stage1Weights, stage1_loss
from lsvcr.data.layout import Dataset
from lsvcr.errors import InputError
from lsvcr.files import load_tensors, read_json
from lsvcr.llm import LLM, LLMConfig, length_buckets, load_llm
from lsvcr.prompts import DEFAULT_TEMPLATES, PromptTemplates, collate, encode_example, load_templates
from lsvcr.sr import Histories, LSVCRBackbone

SR_FILE, META_FILE, CKPT_DIR = "sr.safetensors", "align.json", "checkpoint"
TIMING_FIELDS = ("seconds", "samples_per_s")  # AlignReport's wall-clock fields: timings.json, not align.json


@dataclass(frozen=True)
class AlignConfig:
    """Stage 1 (the paper's defaults where it has them; ``batch_size`` is global over all ranks)."""

    llm: str = "minilm"
    llm_kind: str = "auto"  # auto | encoder | decoder
    dtype: str = "float32"
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False
    prompt_templates: str | None = None  # a .json/.toml file; None: the English defaults
    batch_size: int = 128
    contrast_pool: int = 16  # samples per micro-batch: the in-batch negative pool (official: 8 GPUs x 2;
    # 128 = 8 accumulation steps of 16)
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: float = 0.03
    epochs: int = 1
    max_steps: int | None = None  # stop earlier (CPU budgets)
    history_len: int = 20
    max_positions: int = 50
    position_ids: str = "batch"  # sorted random position ids: one draw per batch (official) | "row"
    record_fallback: str = "global"  # record augmentation without other popular comments: global pool (official) | "none"
    max_record_comments: int = 3
    # the official budgets: max_source_length 3840 + max_target_length 256 (4,096 in all), clamped to
    # the LLM's context (MiniLM: 512; an encoder never sees the response)
    max_prompt_tokens: int = 4096
    max_response_tokens: int | None = None  # None: the official 256, at most half of the prompt budget
    max_text_tokens: int = 64
    lm_weight: float = 1.0
    rec_weight: float = 1.0
    contrast_weight: float = 0.5
    temperature: float = 0.07
    checkpoint_every: int = 0  # steps; 0: none
    embed_batch_size: int = 128
    # CPU speed (bench/align_speed.py): the LLM sees each micro-batch's prompts and item texts in this many
    # groups of similar length (less padding; the same values, tests/lsvcr/test_align.py), and with
    # bf16_autocast runs its matmuls in bfloat16 (a different rounding: off by default)
    length_buckets: int = 4
    bf16_autocast: bool = False
    backbone_dropout: bool = False  # the frozen LLM's own dropout (lsvcr.llm.LLMConfig.backbone_dropout)
    seed: int = 0
    threads: int = 1
    device: str = "cpu"

    def __post_init__(self):
        for name in ("batch_size", "contrast_pool", "lr", "epochs", "history_len", "max_positions", "max_record_comments",
                     "max_prompt_tokens", "max_text_tokens", "threads", "embed_batch_size", "length_buckets"):
            if not getattr(self, name) > 0:
                raise InputError(f"AlignConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"--align-steps must be >= 1, got {self.max_steps}")
        if not 0.0 <= self.warmup < 1.0:
            raise InputError(f"warmup must be in [0, 1), got {self.warmup}")
        if self.record_fallback not in RECORD_FALLBACKS:
            raise InputError(f"AlignConfig.record_fallback must be one of {', '.join(RECORD_FALLBACKS)}, got {self.record_fallback!r}")
        if self.position_ids not in POSITION_IDS:
            raise InputError(f"AlignConfig.position_ids must be one of {', '.join(POSITION_IDS)}, got {self.position_ids!r}")
        if self.checkpoint_every < 0:
            raise InputError("--checkpoint-every must be >= 0")
        if self.max_response_tokens is not None and not 0 < self.max_response_tokens <= self.max_prompt_tokens - 8:
            raise InputError(f"--max-prompt-tokens ({self.max_prompt_tokens}) must exceed the response budget "
                             f"({self.max_response_tokens} tokens) by at least 8")
        if self.history_len > self.max_positions:
            raise InputError(f"history_len ({self.history_len}) cannot exceed max_positions ({self.max_positions})")
        Stage1Weights(self.lm_weight, self.rec_weight, self.contrast_weight, self.temperature)
        self.llm_config()

    def llm_config(self, sr_hidden: int = 64, text_dim: int = 256) -> LLMConfig:
        return LLMConfig(llm=self.llm, kind=self.llm_kind, dtype=self.dtype, trust_remote_code=self.trust_remote_code,
                         gradient_checkpointing=self.gradient_checkpointing, text_dim=text_dim, user_dim=sr_hidden,
                         max_text_tokens=self.max_text_tokens, backbone_dropout=self.backbone_dropout)

    def weights(self) -> Stage1Weights:
        return Stage1Weights(self.lm_weight, self.rec_weight, self.contrast_weight, self.temperature)

    def sr_config(self, base: LSVCRConfig = LSVCRConfig()) -> LSVCRConfig:
        return replace(base, use_id=False, max_len=self.max_positions)


def lr_at(step: int, total: int, peak: float, warmup: float) -> float:
    """Linear warm-up over ``warmup``·total steps, then linear decay to 0 (HF's default schedule)."""
    w = max(1, math.ceil(warmup * total))
    if step < w:
        return peak * (step + 1) / w
    return peak * max(0.0, (total - step) / max(1, total - w))


def global_lm_loss(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Next-token CE summed over this rank's response tokens (``parts``: (logits, labels) of each length
    group) / the response tokens of *all* ranks, times the world size: its mean over ranks is the
    global batch's token mean (== contrastive.lm_loss of one padded batch in one process)."""
    total, n = None, torch.zeros(1, dtype=torch.float64)
    for logits, labels in parts:
        shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
        shift_labels = labels[:, 1:].reshape(-1)
        keep = shift_labels != IGNORE_INDEX
        n = n + keep.sum().cpu().to(torch.float64)
        term = F.cross_entropy(shift_logits[keep], shift_labels[keep], reduction="sum") if keep.any() else logits.sum() * 0.0
        total = term if total is None else total + term
    if distributed.is_distributed():
        n = n.to(total.device)
        torch.distributed.all_reduce(n)
    return total / n.clamp(min=1.0).to(total.device, total.dtype).squeeze() * distributed.world_size()


OFFICIAL_RESPONSE_TOKENS = 256  # the official max_target_length


def prompt_budget(cfg: AlignConfig, context: int | None) -> tuple[int, int]:
    """(prompt + response tokens, response tokens): the configured budget clamped to the LLM's context
    (``context``: its position limit, None if it has none), and the response's share of it."""
    total = cfg.max_prompt_tokens if context is None else min(cfg.max_prompt_tokens, context)
    response = cfg.max_response_tokens if cfg.max_response_tokens is not None else min(OFFICIAL_RESPONSE_TOKENS, total // 2)
    if total < response + 8:
        raise InputError(f"the LLM's context ({context} tokens) leaves no room for a {response}-token response: "
                         "lower --max-response-tokens")
    return total, response


class Aligner(nn.Module):
    """The LoRA LLM and the stage-1 SR backbone; ``forward(batch)`` gives the stage-1 losses."""

    def __init__(self, llm: LLM, sr: LSVCRBackbone, ds: Dataset, cfg: AlignConfig, templates: PromptTemplates):
        super().__init__()
        self.llm, self.sr = llm, sr
        self.titles, self.comments = ds.titles, ds.comment_texts
        self.cfg, self.templates, self.weights = cfg, templates, cfg.weights()
        self.max_tokens, self.max_response = prompt_budget(cfg, llm.context_length)

    def _texts(self, b: AlignBatch):
        """Unique titles and comments the SR view needs: (texts, title index map, comment index map)."""
        t_ids = torch.unique(torch.cat([b.video_hist.flatten(), b.record_videos.flatten(), b.target]))
        c_ids = torch.unique(torch.cat([b.video_comment.flatten(), b.record_comments.flatten(), b.target_comment]))
        t_ids, c_ids = t_ids[t_ids > 0], c_ids[c_ids > 0]
        texts = [self.titles[i] for i in t_ids.tolist()] + [self.comments[i] for i in c_ids.tolist()]
        return texts, t_ids, c_ids

    def _llm(self, b: AlignBatch, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The LLM's part of a micro-batch: (user representations [B, user_dim], L_LM or None, item text
        embeddings [N, 256]), prompts and texts each run in ``length_buckets`` groups of similar length."""
        llm, dev = self.llm, self.llm.device
        enc = [encode_example(p, llm.tokenizer, self.templates, max_length=self.max_tokens,
                              max_response_tokens=self.max_response, with_response=llm.is_decoder,
                              template_index=t) for p, t in zip(b.prompts, b.templates)]
        groups = length_buckets([len(e.input_ids) for e in enc], self.cfg.length_buckets)
        users, lm_parts = [], []
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.cfg.bf16_autocast):
            for rows in groups:
                prompt = {k: v.to(dev) for k, v in collate([enc[i] for i in rows], llm.tokenizer.pad_token_id, "right").items()}
                out = llm(**prompt)
                users.append(out.user.float())
                if out.logits is not None:
                    lm_parts.append((out.logits, out.labels))
            emb = llm.embed_texts(texts, self.cfg.length_buckets).float()
        order = torch.tensor([i for rows in groups for i in rows], device=dev)
        user = torch.cat(users)[torch.argsort(order)]
        return user, (global_lm_loss(lm_parts) if lm_parts else None), emb

    def forward(self, b: AlignBatch) -> Stage1Losses:
        sr, dev = self.sr, self.llm.device
        texts, t_ids, c_ids = self._texts(b)
        user, lm, emb = self._llm(b, texts)
        zero = emb.new_zeros(1, emb.shape[1])
        t_map = torch.zeros(len(self.titles), dtype=torch.long)
        t_map[t_ids] = torch.arange(1, len(t_ids) + 1)
        c_map = torch.zeros(len(self.comments), dtype=torch.long)
        c_map[c_ids] = torch.arange(len(t_ids) + 1, len(t_ids) + len(c_ids) + 1)
        table = torch.cat([zero, emb])  # row 0: padding / none

        def title(idx):  # [...] title indices -> [..., 256]
            return table[t_map[idx.cpu()].to(dev)]

        def comment(idx):
            return table[c_map[idx.cpu()].to(dev)]

        rc = comment(b.record_comments)  # [B, Lc, K, 256]
        b = AlignBatch(**{k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in b.__dict__.items()})
        w = (b.record_comments > 0).float()
        record_comment = (rc * w[..., None]).sum(2) / w.sum(2, keepdim=True).clamp(min=1.0)  # mean of the record's comments
        h = Histories(video_title=title(b.video_hist), video_comment=comment(b.video_comment),
                      video_ids=b.video_hist, video_mask=b.video_hist > 0,
                      record_title=title(b.record_videos), record_comment=record_comment,
                      record_ids=b.record_videos, record_mask=b.record_videos > 0,
                      video_pos=b.video_pos, record_pos=b.record_pos)
        e = sr.encode(h)
        query = sr.video_item(title(b.target))  # [B, d] the target video (comment task)
        is_video = b.is_video.to(dev)[:, None]  # [B, 1]
        f_vv, f_vc = sr.f_v(e.video, e.video_mask), sr.f_v(e.record, e.record_mask)
        f_cc, f_cv = sr.f_c(e.record, e.record_mask, query), sr.f_c(e.video, e.video_mask, query)
        sr_task = torch.where(is_video, f_vv, f_cc)  # F_v(Ĥ^v) | F_c(Ĥ^c)
        sr_cross = torch.where(is_video, f_vc, f_cv)  # F_v(Ĥ^c) | F_c(Ĥ^v)
        target_text = sr.adapter(torch.where(is_video, title(b.target), comment(b.target_comment)))
        return stage1_loss(sr_task, sr_cross, user, target_text, lm, self.weights)


@dataclass
class AlignReport:
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    samples_per_s: float = 0.0
    epoch_samples: int = 0  # training samples in one epoch (both tasks): samples / epoch_samples epochs seen
    losses: list[dict] = field(default_factory=list)  # per step: total, lm, rec, vcc, ssc (mean over ranks)


def build_aligner(ds: Dataset, cfg: AlignConfig, model_cfg: LSVCRConfig = LSVCRConfig()) -> Aligner:
    templates = load_templates(cfg.prompt_templates) if cfg.prompt_templates else DEFAULT_TEMPLATES
    sr_cfg = cfg.sr_config(model_cfg)
    with torch.random.fork_rng(devices=[]):  # LoRA, heads and SR initialised from the seed alone
        torch.manual_seed(cfg.seed)
        llm = load_llm(cfg.llm_config(sr_cfg.hidden, sr_cfg.text_dim))
        sr = LSVCRBackbone(sr_cfg, ds.n_videos)
    return Aligner(llm, sr, ds, cfg, templates).to(cfg.device)


def trainable(aligner: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in aligner.named_parameters() if p.requires_grad}


def average_gradients(params) -> None:
    """Mean of every gradient over ranks (DistributedDataParallel's reduction); no-op in one process."""
    if not distributed.is_distributed():
        return
    world = distributed.world_size()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad)
        p.grad /= world


def micro_batches(batch: AlignBatch, pool: int, rank: int = 0, world: int = 1) -> list[AlignBatch]:
    """The global ``batch`` cut into chunks of ``pool`` samples (the in-batch negative pool of the
    contrastive losses, gathered over ranks), each chunk's slice for ``rank``."""
    bounds = list(range(0, len(batch), pool)) + [len(batch)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < world:
        del bounds[-2]  # a tail too small to give every rank a sample joins the chunk before it
    return [batch.slice(lo, hi).slice(*rank_slice(hi - lo, rank, world)) for lo, hi in zip(bounds, bounds[1:])]


def train_step(aligner: Aligner, opt: torch.optim.Optimizer, params: list[nn.Parameter],
               batch: AlignBatch | list[AlignBatch], lr: float, seed: int) -> Stage1Losses:
    """One update on this rank's slice, or on its slices of several micro-batches (``micro_batches``:
    losses, in-batch negatives included, per micro-batch; gradients averaged over them, as gradient
    accumulation does); dropout (LoRA, SR) drawn from ``seed`` only. Returns the mean losses."""
    for g in opt.param_groups:
        g["lr"] = lr
    micro = batch if isinstance(batch, list) else [batch]
    dev = aligner.llm.device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        opt.zero_grad(set_to_none=True)
        parts = []
        for m in micro:
            losses = aligner(m)
            (losses.total / len(micro)).backward()
            parts.append(losses)
        average_gradients(params)
        opt.step()
    if len(parts) == 1:
        return parts[0]
    return Stage1Losses(*[None if v[0] is None else sum(x.detach() for x in v) / len(v) for v in zip(*parts)])


# ---- checkpoints ------------------------------------------------------------------------------
def save_checkpoint(directory: Path, aligner: nn.Module, opt: torch.optim.Optimizer, step: int,
                    cfg: AlignConfig, report: AlignReport) -> None:
    """``trainable.safetensors``, ``optimizer.safetensors`` (AdamW moments and step counts per parameter)
    and ``trainer.json``; written under a temp name and renamed (atomic.publishing_dir)."""
    params = trainable(aligner)
    names = list(params)
    with atomic.publishing_dir(directory, parents=True) as tmp:
        save_file({n: p.detach().cpu().contiguous() for n, p in params.items()}, str(tmp / "trainable.safetensors"))
        sd = opt.state_dict()
        opt_tensors = {f"{names[i]}::{k}": v.detach().cpu().contiguous().reshape(v.shape)
                       for i, st in sd["state"].items() for k, v in st.items()}
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        groups = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
        (tmp / "trainer.json").write_text(dumps({"step": step, "param_names": names, "param_groups": groups,
                                                 "align_config": asdict(cfg), "report": asdict(report)}))


_RUN_ONLY = {"threads", "checkpoint_every", "embed_batch_size", "device"}  # may change on resume


def load_checkpoint(directory: Path, aligner: nn.Module, opt: torch.optim.Optimizer,
                    cfg: AlignConfig | None = None) -> tuple[int, AlignReport]:
    meta_path = directory / "trainer.json"
    if not meta_path.is_file():
        raise InputError(f"--resume: no checkpoint in {directory}")
    meta = read_json(meta_path, "checkpoint")
    if cfg is not None:
        saved, now = meta["align_config"], asdict(cfg)
        changed = sorted(k for k in now if k not in _RUN_ONLY and saved.get(k) != now[k])
        if changed:
            raise InputError(f"--resume: {directory} was started with other stage-1 options ({', '.join(changed)})")
    params = trainable(aligner)
    if meta["param_names"] != list(params):
        raise InputError(f"{directory}: the checkpoint's trainable parameters do not match this model/config")
    weights = load_tensors(directory / "trainable.safetensors", "checkpoint")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n])
    flat = load_tensors(directory / "optimizer.safetensors", "checkpoint")
    index = {n: i for i, n in enumerate(meta["param_names"])}
    state: dict[int, dict] = {}
    for key, v in flat.items():
        name, k = key.rsplit("::", 1)
        state.setdefault(index[name], {})[k] = v
    groups = [{**g, "params": list(range(len(params)))} for g in meta["param_groups"]]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})
    return int(meta["step"]), AlignReport(**meta["report"])


# ---- the loop -------------------------------------------------------------------------------------
def align(ds: Dataset, out_dir: str | Path, cfg: AlignConfig = AlignConfig(), console: Console | None = None,
          resume: bool = False, model_cfg: LSVCRConfig = LSVCRConfig()) -> AlignReport:
    """Run stage 1 and write the aligned directory (rank 0 writes; every rank trains)."""
    torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    info = distributed.init_from_env()
    if cfg.device.startswith("cuda") and info.world_size > 1:
        cfg = replace(cfg, device=str(info.device))
    main = distributed.is_main_process()
    console = console if main else None
    samples = AlignSamples(ds, cfg.history_len, cfg.max_positions, cfg.max_record_comments, cfg.position_ids,
                           cfg.record_fallback)
    if min(cfg.batch_size, cfg.contrast_pool) < info.world_size:
        raise InputError(f"the global batch ({cfg.batch_size}) and the contrast pool ({cfg.contrast_pool}) must hold "
                         f"at least one sample per rank ({info.world_size})")
    aligner = build_aligner(ds, cfg, model_cfg)
    params = list(trainable(aligner).values())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(samples) / cfg.batch_size)
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, per_epoch * cfg.epochs)
    step, report = 0, AlignReport(epoch_samples=len(samples))
    if resume:
        step, report = load_checkpoint(out_dir / CKPT_DIR, aligner, opt, cfg)
    if console is not None and not aligner.llm.is_decoder:
        console.print(f"stage 1: {aligner.llm.model_type} is an encoder: prompts without the response, L_LM skipped")
    from lsvcr.finetune import _progress

    aligner.train()
    with _progress(console) as bar:
        job = bar.add_task("stage 1 (align)", total=total, completed=step, info="")
        while step < total:
            epoch, k = divmod(step, per_epoch)
            idx = samples.order(cfg.seed, epoch)[k * cfg.batch_size: (k + 1) * cfg.batch_size]
            batch = samples.batch(idx, cfg.seed, step)
            local = micro_batches(batch, cfg.contrast_pool, info.rank, info.world_size)
            t0 = time.perf_counter()
            losses = train_step(aligner, opt, params, local, lr_at(step, total, cfg.lr, cfg.warmup),
                                seed=int(np.random.default_rng([cfg.seed, step, 3, info.rank]).integers(2**62)))
            report.seconds += time.perf_counter() - t0
            row = {k: float(distributed.all_reduce_mean(v.detach())) for k, v in losses._asdict().items() if v is not None}
            report.losses.append(row)
            report.steps, report.samples = step + 1, report.samples + len(batch)
            step += 1
            bar.update(job, advance=1, info=" ".join(f"{k} {v:.3f}" for k, v in row.items()))
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total and main:
                save_checkpoint(out_dir / CKPT_DIR, aligner, opt, step, cfg, report)
    report.samples_per_s = report.samples / max(report.seconds, 1e-9)
    if main:
        write_aligned(out_dir, aligner, ds, cfg, report, console)
    return report


def write_aligned(out_dir: Path, aligner: Aligner, ds: Dataset, cfg: AlignConfig, report: AlignReport,
                  console: Console | None = None) -> Path:
    """``llm/``, ``sr.safetensors``, ``text_embeddings.safetensors`` (every title and comment, encoded
    once by the aligned LLM: mean-pooled features) and ``align.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    aligner.llm.save(out_dir / "llm")
    save_file({k: v.detach().cpu().contiguous() for k, v in aligner.sr.state_dict().items()}, str(out_dir / SR_FILE))
    tcfg = text_config(cfg, aligner.llm.hidden_size)
    if console is not None:
        console.print(f"encoding {ds.n_videos - 1} titles and {ds.n_comments - 1} comments with the aligned LLM ...")
    titles, comments = text.encode_items(ds.titles, ds.comment_texts, tcfg, llm=aligner.llm.eval(), batch_size=cfg.embed_batch_size)
    text.save_text_embeddings(out_dir / text.FILE, titles, comments, ds.fingerprint(), tcfg)
    timings = {k: v for k, v in asdict(report).items() if k in TIMING_FIELDS}
    meta = {"align_config": asdict(cfg), "sr_config": to_dict(aligner.sr.cfg), "text_config": to_dict(tcfg),
            "dataset": {"fingerprint": ds.fingerprint(), "n_videos": ds.n_videos, "n_comments": ds.n_comments},
            "report": {k: v for k, v in asdict(report).items() if k not in TIMING_FIELDS}}
    (out_dir / META_FILE).write_text(dumps(meta))
    (out_dir / "timings.json").write_text(dumps(timings))  # apart: align.json is the same bytes per seed
    shutil.rmtree(out_dir / CKPT_DIR, ignore_errors=True)  # finished: the checkpoint is no longer needed
    return out_dir


def text_config(cfg: AlignConfig, hidden: int) -> TextConfig:
    return TextConfig(encoder=f"aligned:{cfg.llm}", input_dim=hidden, max_tokens=cfg.max_text_tokens)


# ---- stage 2 starts here ---------------------------------------------------------------------------
def read_aligned(aligned_dir: str | Path, ds: Dataset) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(align.json, titles [V, hidden], comments [C, hidden]) of an aligned directory made on ``ds``."""
    aligned_dir = Path(aligned_dir)
    path = aligned_dir / META_FILE
    if not path.is_file():
        raise InputError(f"--init {aligned_dir}: not an aligned directory (no {META_FILE}; run --stage align first)")
    meta = read_json(path)
    if meta["dataset"]["fingerprint"] != ds.fingerprint():
        raise InputError(f"--init {aligned_dir} was aligned on another dataset (ids {meta['dataset']['fingerprint']}, "
                         f"this one {ds.fingerprint()})")
    titles, comments = text.load_text_embeddings(aligned_dir / text.FILE, ds.fingerprint())
    return meta, titles, comments


def stage2_state(aligned_dir: str | Path, model_cfg: LSVCRConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Initial weights for ``LSVCRRecommender`` from an aligned directory: ``project.*`` from the aligned
    text MLP, ``backbone.*`` from the aligned SR weights (no ``video_id``/``gate``: new in stage 2). The
    position tables keep their learned rows; extra rows (stage 2 longer than stage 1) are N(0, init_std)."""
    aligned_dir = Path(aligned_dir)
    sr = load_tensors(aligned_dir / SR_FILE, "aligned SR weights")
    mlp = load_tensors(aligned_dir / "llm" / "text_projector.safetensors", "aligned text MLP")
    g = torch.Generator().manual_seed(seed)
    state = {f"project.{k[len('net.'):]}": v for k, v in mlp.items()}
    for k, v in sr.items():
        if k in ("pos_video.weight", "pos_record.weight") and v.shape[0] != model_cfg.max_len:
            new = torch.randn(model_cfg.max_len, v.shape[1], generator=g) * model_cfg.init_std
            n = min(v.shape[0], model_cfg.max_len)
            new[:n] = v[:n]
            v = new
        state[f"backbone.{k}"] = v
    return state


def aligned_text_config(meta: dict) -> TextConfig:
    return from_dict(meta["text_config"], "align.json text_config")


def main(argv: list[str] | None = None) -> int:
    """``python -m lsvcr.align ...``: the same as ``python -m lsvcr.align_main ...`` (stage 1's entry;
    a package never imports the CLI)."""
    from lsvcr.align_main import main as entry

    return entry(argv)


if __name__ == "__main__":
    raise SystemExit(main())
