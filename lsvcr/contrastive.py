"""Stage-1 losses (personalised preference alignment) and the view augmentations they train on.

Pure functions. Every representation is L2-normalised inside the loss, scores are cosine / τ with
τ = 0.07, and in-batch negatives are gathered across ranks (`lsvcr.distributed`), as in the
paper's code:

    L = L_LM + 1.0·L_rec + 0.5·(L_VCC + L_SSC)

* ``L_rec``  InfoNCE between the SR task representation and the target's text representation;
* ``L_VCC``  2-way softmax of the LLM representation against [matching SR rep, cross SR rep], label 0;
* ``L_SSC``  ½·InfoNCE(SR→LLM) + ½·InfoNCE(LLM→SR);
* ``L_LM``   next-token cross-entropy on the response only (skipped for encoder backbones).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from .distributed import gather_with_grad

TEMPERATURE = 0.07
IGNORE_INDEX = -100
T = TypeVar("T")


@dataclass(frozen=True)
class Stage1Weights:
    """Loss weights and temperature of stage 1 (the paper's defaults)."""

    lm: float = 1.0
    rec: float = 1.0
    contrast: float = 0.5  # applied to L_VCC + L_SSC
    temperature: float = TEMPERATURE

    def __post_init__(self) -> None:
        if min(self.lm, self.rec, self.contrast) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")


class Stage1Losses(NamedTuple):
    total: torch.Tensor
    lm: torch.Tensor | None  # None for encoder backbones
    rec: torch.Tensor
    vcc: torch.Tensor
    ssc: torch.Tensor


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (bf16/fp16 training) are scored in float32."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def info_nce(
    query: torch.Tensor, keys: torch.Tensor, temperature: float = TEMPERATURE, *, gather: bool = True
) -> torch.Tensor:
    """In-batch InfoNCE: query i's positive is key i, every other key (on every rank when ``gather``)
    is a negative. query, keys: [B, D]. Mean over this rank's queries."""
    query = F.normalize(_upcast(query), dim=-1)
    keys = F.normalize(_upcast(keys), dim=-1)
    offset = 0
    if gather:
        keys, offset = gather_with_grad(keys)  # [B_global, D]
    logits = query @ keys.T / temperature  # [B, B_global]
    labels = torch.arange(query.shape[0], device=query.device) + offset
    return F.cross_entropy(logits, labels)


def l_rec(sr_repr: torch.Tensor, target_repr: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Recommendation loss: SR task representation vs the target item's text representation."""
    return info_nce(sr_repr, target_repr, temperature)


def l_vcc(
    llm_repr: torch.Tensor, matching_sr: torch.Tensor, cross_sr: torch.Tensor, temperature: float = TEMPERATURE
) -> torch.Tensor:
    """Video–comment preference contrast: per sample, softmax over [⟨llm, matching⟩, ⟨llm, cross⟩]/τ
    with label 0. Video task: matching = F_v(Ĥ^v), cross = F_v(Ĥ^c); comment task: F_c(Ĥ^c), F_c(Ĥ^v)."""
    llm = F.normalize(_upcast(llm_repr), dim=-1)  # [B, D]
    both = F.normalize(_upcast(torch.stack([matching_sr, cross_sr], dim=1)), dim=-1)  # [B, 2, D]
    logits = torch.einsum("bd,bkd->bk", llm, both) / temperature  # [B, 2]
    return F.cross_entropy(logits, torch.zeros(llm.shape[0], dtype=torch.long, device=llm.device))


def l_ssc(sr_repr: torch.Tensor, llm_repr: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Sequential–supplemental preference contrast: ½·InfoNCE(SR→LLM) + ½·InfoNCE(LLM→SR)."""
    return 0.5 * info_nce(sr_repr, llm_repr, temperature) + 0.5 * info_nce(llm_repr, sr_repr, temperature)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: logits[:, t] predicts labels[:, t+1]; -100 (prompt, padding) is
    ignored; mean over response tokens in the batch (0 when there are none). logits [B, L, V]."""
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    keep = shift_labels != IGNORE_INDEX
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(_upcast(shift_logits[keep]), shift_labels[keep])


def stage1_loss(
    sr_task: torch.Tensor,
    sr_cross: torch.Tensor,
    llm_user: torch.Tensor,
    target_text: torch.Tensor,
    lm: torch.Tensor | None = None,
    weights: Stage1Weights = Stage1Weights(),
) -> Stage1Losses:
    """The stage-1 objective for one (mixed-task) batch.

    sr_task: SR representation of each sample's own task (F_v(Ĥ^v) or F_c(Ĥ^c)) [B, D];
    sr_cross: the same head on the other history (F_v(Ĥ^c) or F_c(Ĥ^v)) [B, D];
    llm_user: LLM user representation [B, D]; target_text: adapter(text embedding of the target) [B, D];
    lm: the LM loss, or None for encoder backbones (skipped).
    """
    tau = weights.temperature
    rec = l_rec(sr_task, target_text, tau)
    vcc = l_vcc(llm_user, sr_task, sr_cross, tau)
    ssc = l_ssc(sr_task, llm_user, tau)
    total = weights.rec * rec + weights.contrast * (vcc + ssc)
    if lm is not None:
        total = total + weights.lm * lm
    return Stage1Losses(total, lm, rec, vcc, ssc)


# --------------------------------------------------------------------------------------------
# View augmentations (the LLM and the SR model see different views of the same history)
# --------------------------------------------------------------------------------------------


def popular_comment_views(
    popular: Sequence[Sequence[T]],
    rng: np.random.Generator,
    p_sample: float = 0.5,
    p_interaction: float = 0.3,
    top: int = 3,
) -> tuple[list[T | None], list[T | None]]:
    """One popular comment per history video for the LLM view and one for the SR view.

    ``popular[i]`` is video i's comments by popularity. Normally both views get the same comment,
    drawn from the top ``top``; with probability ``p_sample`` a sample is augmented, and then each
    video with probability ``p_interaction`` gives the two views two different top comments (the same
    one twice if it has only one). A video without comments gives None.
    """
    augment = rng.random() < p_sample
    llm_view: list[T | None] = []
    sr_view: list[T | None] = []
    for comments in popular:
        pool = list(comments[:top])
        if not pool:
            llm_view.append(None)
            sr_view.append(None)
        elif augment and rng.random() < p_interaction:
            a, b = rng.choice(len(pool), 2, replace=len(pool) < 2)
            llm_view.append(pool[a])
            sr_view.append(pool[b])
        else:
            c = pool[rng.integers(len(pool))]
            llm_view.append(c)
            sr_view.append(c)
    return llm_view, sr_view


def comment_record_views(
    records: Sequence[tuple[Sequence[T], Sequence[T]]],
    rng: np.random.Generator,
    p_sample: float = 0.5,
    p_record: float = 0.3,
    max_comments: int = 3,
    popular_top: int = 10,
    fallback_pool: Sequence[T] = (),
) -> tuple[list[list[T]], list[list[T]]]:
    """The user's comments of each comment record, for the LLM view and the SR view.

    ``records[i] = (user_comments, video_popular_comments)``. Normally at most ``max_comments`` of the
    user's comments are drawn and both views get them. With probability ``p_sample`` a sample is
    augmented; then each record with probability ``p_record`` mixes the drawn comments with as many
    of the video's top-``popular_top`` comments the user did *not* interact with (cycled if too few;
    drawn from ``fallback_pool`` if there are none), shuffles, and deals them alternately: even
    positions to the LLM view, odd positions to the SR view.
    """
    augment = rng.random() < p_sample
    llm_view: list[list[T]] = []
    sr_view: list[list[T]] = []
    for user_comments, popular in records:
        own = list(user_comments)
        if len(own) > max_comments:
            own = [own[i] for i in rng.choice(len(own), max_comments, replace=False)]
        if not (augment and own and rng.random() < p_record):
            llm_view.append(list(own))
            sr_view.append(list(own))
            continue
        others = [c for c in popular[:popular_top] if c not in own]
        if others:
            picks: list[T] = []
            while len(picks) < len(own):
                picks += [others[i] for i in rng.permutation(len(others))]
            extra = picks[: len(own)]
        elif len(fallback_pool) >= len(own):
            extra = [fallback_pool[i] for i in rng.choice(len(fallback_pool), len(own), replace=False)]
        else:  # nothing to mix with
            llm_view.append(list(own))
            sr_view.append(list(own))
            continue
        mixed = own + extra
        mixed = [mixed[i] for i in rng.permutation(len(mixed))]
        llm_view.append(mixed[0::2])
        sr_view.append(mixed[1::2])
    return llm_view, sr_view


def random_position_ids(
    batch_size: int, length: int, max_positions: int = 50, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sorted random position ids per row, ``sorted(randperm(max_positions)[:length])`` — the stage-1
    position augmentation. Returns [batch_size, length] int64."""
    if not 0 <= length <= max_positions:
        raise ValueError(f"length {length} must be between 0 and max_positions {max_positions}")
    keys = torch.rand(batch_size, max_positions, generator=generator)
    return keys.argsort(dim=1)[:, :length].sort(dim=1).values
