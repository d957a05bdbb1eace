"""Examples -> right-padded index tensors, in batches trimmed to their longest history.

Right padding (real items at 0..len-1) plus causal attention and masked pooling make outputs
independent of how much padding a batch carries, so each batch is cut to its own max length.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from lsvcr.data.layout import Examples


@dataclass
class Batch:
    video_hist: torch.Tensor  # [B, Lv] video indices, 0 = pad
    record_videos: torch.Tensor  # [B, Lc]
    record_comments: torch.Tensor  # [B, Lc, K] comment indices, 0 = pad
    target: torch.Tensor  # [B] video index
    pos_comments: torch.Tensor | None  # [B, P] (comment task), 0 = pad
    rows: np.ndarray  # [B] example indices in the split

    def to(self, device) -> "Batch":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in kw.items():
            if isinstance(v, torch.Tensor):
                kw[k] = v.to(device, non_blocking=True)
        return Batch(**kw)


def _pad(seqs: list[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(seqs), width), np.int32)
    for i, s in enumerate(seqs):
        s = s[-width:]
        out[i, : len(s)] = s
    return out


class TaskTensors:
    """One split of one task as padded arrays (int32 to keep memory small)."""

    def __init__(self, ex: Examples, max_len: int, max_comments: int):
        self.n = len(ex)
        self.video_hist = _pad(ex.video_hist, max_len)  # [N, L]
        self.video_len = np.array([min(len(h), max_len) for h in ex.video_hist], np.int64)
        self.record_videos = _pad(ex.record_videos, max_len)  # [N, L]
        self.record_len = np.array([min(len(h), max_len) for h in ex.record_videos], np.int64)
        longest = max((len(cs) for recs in ex.record_comments for cs in recs[-max_len:]), default=1)
        max_comments = max(1, min(max_comments, longest))  # as wide as the longest record, not the cap
        self.record_comments = np.zeros((self.n, max_len, max_comments), np.int32)  # [N, L, K]
        for i, recs in enumerate(ex.record_comments):
            recs = recs[-max_len:]
            for j, cs in enumerate(recs):
                cs = cs[-max_comments:]
                self.record_comments[i, j, : len(cs)] = cs
        self.target = ex.target.astype(np.int64)
        self.pos_comments = None
        if ex.pos_comments is not None:
            self.pos_comments = _pad([p[:256] for p in ex.pos_comments], max((len(p) for p in ex.pos_comments), default=1))

    def __len__(self) -> int:
        return self.n

    def batch(self, rows: np.ndarray) -> Batch:
        lv = max(int(self.video_len[rows].max()), 1)
        lc = max(int(self.record_len[rows].max()), 1)
        rc = self.record_comments[rows, :lc]
        k = max(int((rc > 0).sum(-1).max()), 1)
        pos = None
        if self.pos_comments is not None:
            p = self.pos_comments[rows]
            pos = torch.from_numpy(p[:, : max(int((p > 0).sum(1).max()), 1)].astype(np.int64))
        return Batch(
            video_hist=torch.from_numpy(self.video_hist[rows, :lv].astype(np.int64)),
            record_videos=torch.from_numpy(self.record_videos[rows, :lc].astype(np.int64)),
            record_comments=torch.from_numpy(rc[:, :, :k].astype(np.int64)),
            target=torch.from_numpy(self.target[rows]),
            pos_comments=pos,
            rows=rows,
        )

    def batches(self, batch_size: int, rng: np.random.Generator | None = None):
        """In order, or (with ``rng``) shuffled and bucketed by history length."""
        if rng is None:
            for s in range(0, self.n, batch_size):
                yield self.batch(np.arange(s, min(s + batch_size, self.n)))
            return
        for rows in length_bucketed(np.maximum(self.video_len, self.record_len), batch_size, rng):
            yield self.batch(rows)


def length_bucketed(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, chunk: int = 32) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: shuffle, sort within chunks of ``chunk`` batches, cut,
    shuffle the batches. Padding cannot change outputs, so this only removes wasted work."""
    order = rng.permutation(len(lengths))
    out = []
    for s in range(0, len(order), batch_size * chunk):
        part = order[s: s + batch_size * chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out += [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


# ------------------------------------------------------------------------------------------
# SASRec: whole user sequences trained at every position
# ------------------------------------------------------------------------------------------
def user_sequences(ex: Examples) -> list[np.ndarray]:
    """Each user's training sequence: the first example's history, then every target in order."""
    first: dict[str, int] = {}
    targets: dict[str, list[int]] = {}
    for i, u in enumerate(ex.users):
        first.setdefault(u, i)
        targets.setdefault(u, []).append(int(ex.target[i]))
    return [np.concatenate([ex.video_hist[first[u]], np.array(targets[u], np.int64)]) for u in first]


def sequence_windows(seqs: list[np.ndarray], max_len: int, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cut sequences into windows of max_len + 1 items, one ending every ``stride`` items from the end
    (default ``max_len``: consecutive windows share one item). Each window keeps as targets only its
    last ``stride`` positions (the earliest window: all of them), so every item after the first is a
    target exactly once, and with ``stride`` < ``max_len`` every target sees at least
    ``max_len − stride`` items before it (or all of its history), as at serving time. Returns
    right-padded (inputs [W, L], targets [W, L]) with 0 = padding / no target."""
    stride = max_len if stride is None else stride
    if not 0 < stride <= max_len:
        raise ValueError(f"stride must be in 1..{max_len}, got {stride}")
    inputs, targets = [], []
    for s in seqs:
        end = len(s)
        while end >= 2:
            start = max(0, end - max_len - 1)
            w = s[start: end]
            tgt = np.array(w[1:])
            if start > 0:
                tgt[: max(len(tgt) - stride, 0)] = 0  # earlier positions are the next window's targets
            inputs.append(w[:-1])
            targets.append(tgt)
            if start == 0:
                break
            end -= stride
    return _pad_right(inputs, max_len), _pad_right(targets, max_len)


def _pad_right(seqs, width):
    out = np.zeros((len(seqs), width), np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out
