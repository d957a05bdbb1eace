"""Stage-1 samples: both tasks' training examples as prompt texts (the LLM view) and text indices
(the SR view), drawn with the two view augmentations.

* The epoch order mixes both tasks (one shuffle over every training example of both).
* History videos: title + one popular comment (random among the top 3); with the augmentation the
  LLM and the SR model may see different ones (``contrastive.popular_comment_views``).
* Records: title + at most 3 sampled user comments, possibly mixed with non-interacted popular
  comments and dealt alternately to the two views (``contrastive.comment_record_views``); a video
  without such comments mixes in comments drawn from the whole dataset, as the official code does
  (``record_fallback="global"``; ``"none"`` leaves that record unaugmented).
* Histories are cut to the last ``history_len`` (20) entries; the SR positions are sorted random ids
  from ``max_positions`` (50) (``contrastive.random_position_ids``): one draw per batch and history,
  shared by its rows (each row takes its first ``len`` ids), as the official code does
  (``position_ids="batch"``); or one draw per row (``"row"``).
* Response / target: the target video's title (video task) or one random positive comment.

Every draw for step ``s`` comes from generators seeded with ``(seed, s)``, so a batch depends only on
the seed and the step: all ranks build the same global batch and keep their slice, and a resumed
run rebuilds exactly the batches it missed.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from lsvcr.contrastive import comment_record_views, popular_comment_views, random_position_ids
from lsvcr.data.layout import Dataset
from lsvcr.errors import InputError
from lsvcr.prompts import PromptExample, choose_template


@dataclass
class AlignBatch:
    """One stage-1 batch. SR-view indices are right-padded (0 = padding / none)."""

    tasks: list[str]  # [B] "video" | "comment"
    prompts: list[PromptExample]  # [B] the LLM view
    templates: list[int]  # [B] prompt template index
    video_hist: torch.Tensor  # [B, Lv] history video indices
    video_comment: torch.Tensor  # [B, Lv] the popular comment the SR view sees (0: none)
    video_pos: torch.Tensor  # [B, Lv] sorted random position ids
    record_videos: torch.Tensor  # [B, Lc]
    record_comments: torch.Tensor  # [B, Lc, K] the user's comments the SR view sees
    record_pos: torch.Tensor  # [B, Lc]
    target: torch.Tensor  # [B] target video (the current video for the comment task)
    target_comment: torch.Tensor  # [B] the positive comment (comment task; 0 for the video task)

    def __len__(self) -> int:
        return len(self.tasks)

    def slice(self, lo: int, hi: int) -> AlignBatch:
        """Rows lo..hi-1 (one rank's share of the global batch)."""
        return AlignBatch(**{f.name: getattr(self, f.name)[lo:hi] for f in fields(self)})

    @property
    def is_video(self) -> torch.Tensor:  # [B] bool
        return torch.tensor([t == "video" for t in self.tasks])


def rank_slice(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous near-equal share of n rows for ``rank`` (the first n % world ranks get one more)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


RECORD_FALLBACKS = ("global", "none")  # record augmentation without other popular comments: global pool | skip
POSITION_IDS = ("batch", "row")  # stage-1 position augmentation: one draw per batch (official) or per row


class AlignSamples:
    """Every training example of both tasks, turned into stage-1 batches on demand."""

    def __init__(self, ds: Dataset, history_len: int = 20, max_positions: int = 50, max_record_comments: int = 3,
                 position_ids: str = "batch", record_fallback: str = "global"):
        if history_len > max_positions:
            raise InputError(f"history_len ({history_len}) cannot exceed max_positions ({max_positions})")
        if position_ids not in POSITION_IDS:
            raise InputError(f"position_ids must be one of {', '.join(POSITION_IDS)}, got {position_ids!r}")
        self.ds, self.history_len, self.max_positions = ds, history_len, max_positions
        self.position_ids = position_ids
        if record_fallback not in RECORD_FALLBACKS:
            raise InputError(f"record_fallback must be one of {', '.join(RECORD_FALLBACKS)}, got {record_fallback!r}")
        # a record whose video has no other popular comment mixes in comments from the whole dataset
        # (official), or is left unaugmented ("none")
        self.fallback = range(1, ds.n_comments) if record_fallback == "global" else ()
        self.max_record_comments = max_record_comments
        self.items = [(t, i) for t in ("video", "comment") for i in range(len(ds.splits[t]["train"]))
                      if t != "comment" or len(ds.splits[t]["train"].pos_comments[i])]
        if not self.items:
            raise InputError("the dataset has no training examples for stage 1")

    def __len__(self) -> int:
        return len(self.items)

    def order(self, seed: int, epoch: int) -> np.ndarray:
        """The shuffled order of all samples in ``epoch`` (both tasks mixed)."""
        return np.random.default_rng([seed, epoch, 0]).permutation(len(self.items))

    def batch(self, idx: np.ndarray, seed: int, step: int) -> AlignBatch:
        rng = np.random.default_rng([seed, step, 1])
        gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, step, 2]).integers(2**62)))
        rows = [self._sample(*self.items[i], rng) for i in idx]
        B, K = len(rows), self.max_record_comments
        lv = max(max(len(r["vh"]) for r in rows), 1)
        lc = max(max(len(r["rv"]) for r in rows), 1)
        vh, vc, vp = (torch.zeros(B, lv, dtype=torch.long) for _ in range(3))
        rv, rp = torch.zeros(B, lc, dtype=torch.long), torch.zeros(B, lc, dtype=torch.long)
        rc = torch.zeros(B, lc, K, dtype=torch.long)
        shared = self.position_ids == "batch"
        if shared:  # one sorted draw per history for the whole batch
            batch_vp = random_position_ids(1, lv, self.max_positions, gen)[0]
            batch_rp = random_position_ids(1, lc, self.max_positions, gen)[0]
        for b, r in enumerate(rows):
            n, m = len(r["vh"]), len(r["rv"])
            vh[b, :n], vc[b, :n] = torch.as_tensor(r["vh"]), torch.as_tensor(r["vc"])
            vp[b, :n] = batch_vp[:n] if shared else random_position_ids(1, n, self.max_positions, gen)[0]
            rv[b, :m] = torch.as_tensor(r["rv"])
            rp[b, :m] = batch_rp[:m] if shared else random_position_ids(1, m, self.max_positions, gen)[0]
            for j, cs in enumerate(r["rc"]):
                rc[b, j, : len(cs)] = torch.as_tensor(cs[:K])
        return AlignBatch(
            tasks=[r["task"] for r in rows], prompts=[r["prompt"] for r in rows],
            templates=[choose_template(rng) for _ in rows], video_hist=vh, video_comment=vc, video_pos=vp,
            record_videos=rv, record_comments=rc, record_pos=rp,
            target=torch.tensor([r["target"] for r in rows]), target_comment=torch.tensor([r["tc"] for r in rows]),
        )

    def _sample(self, task: str, i: int, rng: np.random.Generator) -> dict:
        ds, L = self.ds, self.history_len
        ex = ds.splits[task]["train"]
        vh = [int(v) for v in ex.video_hist[i][-L:]]
        llm_c, sr_c = popular_comment_views([ds.comment_lists[v] for v in vh], rng)
        rv = [int(v) for v in ex.record_videos[i][-L:]]
        recs = ex.record_comments[i][-L:] if rv else []
        llm_r, sr_r = comment_record_views([(list(cs), ds.comment_lists[v]) for v, cs in zip(rv, recs)], rng,
                                           max_comments=self.max_record_comments, fallback_pool=self.fallback)
        target = int(ex.target[i])
        tc = 0
        if task == "comment":
            tc = int(rng.choice(ex.pos_comments[i]))
        text = ds.comment_texts
        prompt = PromptExample(
            task=task,
            video_history=[(ds.titles[v], text[c] if c else "") for v, c in zip(vh, llm_c)],
            comment_history=[(ds.titles[v], [text[c] for c in cs]) for v, cs in zip(rv, llm_r)],
            response=ds.titles[target] if task == "video" else text[tc],
            current_video=ds.titles[target] if task == "comment" else None,
        )
        return {"task": task, "prompt": prompt, "vh": vh, "vc": [c or 0 for c in sr_c], "rv": rv,
                "rc": [[int(c) for c in cs] for cs in sr_r], "target": target, "tc": tc}
