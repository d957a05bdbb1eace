"""Evaluation of any scorer on both tasks, under the paper's sampled protocol or full ranking.

* Video task — ``sampled100``: the target plus 99 uniformly sampled other videos; ``full``: every
  video. Seen videos are not masked (as in RecBole's protocol).
* Comment task — ``sampled100``: all comments of the target video if <= 100, else every positive
  plus random same-video negatives up to 100; ``full``: all comments of the target video.
  Several positives per list.
* Comment task — ``ips``: **exposure-debiased**, on the logged slates themselves (below).

Candidates depend only on the dataset, the split and the seed, so every model sees the same lists.
Metrics: lsvcr/metrics.py (pessimistic ties).

**Why a third protocol.** ``full`` and ``sampled100`` score a model by where it ranks the comments
the user interacted with; but a user can only interact with what the logging policy showed, near the
top, so those positives are largely the logger's own top picks: ranking by likes is rewarded for
agreeing with the ranking-by-likes logger (exposure bias, missing-not-at-random feedback).

**The ``ips`` estimator.** It needs a dataset built from a run logged by a stochastic policy
(``lsvcr simulate --temperature T`` or ``--explore EPS``: ``comm_slates.{split}.json``, see
lsvcr/data/build.py). For every logged comment request of the split's comment examples, the scorer
ranks that request's candidates (the comments the logger ranked), and each logged positive — comment
i read (>= long_read_s) or liked at logged position j — counts with weight 1 / P_log(i at j), the
exact position marginal the simulator logged (Plackett–Luce or ε-greedy):

    M = sum_positives c(rank(i)) / P_log(i at j)  /  sum_positives 1 / P_log(i at j)

with an item-additive gain c (Yang et al.'s form): recall@k c = 1[rank <= k]; dcg@k c = 1[rank <= k] /
log2(rank + 1), which equals NDCG@k for a list with one positive.

*What it estimates, and when.* Assume the position-based model: a comment i shown at position j is a
positive with probability theta_j * rho_ui (examination depends on the position only, relevance on the
user and the comment only), and a logger that gives every candidate a positive probability at every
position j < K (Plackett–Luce and ε-greedy do). Then for every request
E[sum c / P_log] = sum_i sum_{j<K} P_log(i at j) theta_j rho_ui c(rank(i)) / P_log(i at j)
= (sum_{j<K} theta_j) * sum_i rho_ui c(rank(i)): the logged positions sum out and the unknown
examination curve becomes a constant that the self-normalisation cancels. So M estimates
sum_ui rho_ui c(rank_u(i)) / sum_ui rho_ui, the full-ranking metric *as if the relevance of every
candidate were observed*, not only of those the logger happened to put on top. Self-normalised IPS
(SNIPS; Swaminathan & Joachims, NeurIPS 2015) is consistent, with an O(1/n) bias traded for a far
lower variance; the standard error is the delta method's, clustered by example (one user's record).
This is the per-position form of the IPS estimators of Schnabel et al. (ICML 2016, "Recommendations
as treatments: debiasing learning and evaluation") and Yang et al. (RecSys 2018, "Unbiased offline
recommender evaluation for missing-not-at-random implicit feedback"), whose item propensity
P(observed) = sum_j P_log(i at j) theta_j needs theta estimated; weighting by the position marginal
needs no theta (the item-position model of Li et al., KDD 2018, "Offline evaluation of ranking policies
with click models"). The unweighted version of the same average ("naive") is reported beside it: the
gap between them is the exposure bias. For a model, the paired difference against ranking by likes
("minus_popularity") is computed on the same positives with the same weights: one ratio, whose
standard error keeps the pairing and is much smaller than the two separate ones combined.

*Caveats.* The simulator's reading is a cascade (whether position j is examined depends on the comments
above it) and opening the section depends on the top comments, so the position-based model is an
approximation there, not a theorem. The requests are those of the split's examples that have a
positive; conditioning a request on having one rescales its expectation, not the items within it.
Video requests are not evaluated this way: a video slate's earlier long plays are the history (and the
training targets) that later positions condition on, so per-request evaluation would need one history
per position; ``ips`` reports the comment task only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lsvcr.data.layout import Dataset
from lsvcr.data.loader import Batch, TaskTensors, user_sequences
from lsvcr.errors import InputError
from lsvcr.metrics import candidate_ranks, ips_difference, ips_metrics, mean_metrics, per_row_metrics
from lsvcr.recommender import LSVCRRecommender
from lsvcr.sasrec import SASRec

PROTOCOLS = ("sampled100", "full", "ips")
N_SAMPLED = 100


@dataclass(frozen=True)
class EvalConfig:
    protocol: str = "sampled100"
    split: str = "test"
    seed: int = 0
    batch_size: int = 1024
    max_len: int = 50
    max_record_comments: int = 256  # as FinetuneConfig: a record is the mean of (all) its comments

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise InputError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.split not in ("train", "val", "test"):
            raise InputError(f"--split must be train, val or test, got {self.split!r}")


# ------------------------------------------------------------------------------------------
# candidates
# ------------------------------------------------------------------------------------------
def video_candidates(target: np.ndarray, n_videos: int, rng: np.random.Generator) -> np.ndarray:
    """[N, 100] target first, then 99 distinct uniformly drawn other videos (all if fewer)."""
    k = min(N_SAMPLED - 1, n_videos - 2)
    out = np.empty((len(target), k + 1), np.int64)
    out[:, 0] = target
    for i, t in enumerate(target):
        draw = rng.choice(n_videos - 2, size=k, replace=False) + 1  # from 1..V-2, skip the target
        out[i, 1:] = np.where(draw >= t, draw + 1, draw)
    return out


def comment_candidates(ds: Dataset, target: np.ndarray, positives: list[np.ndarray], protocol: str,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(candidates [N, M] 0-padded, relevant [N, M]) from the target video's comment list."""
    lists = []
    for t, pos in zip(target, positives):
        pool = ds.comment_lists[t]
        neg = pool[~np.isin(pool, pos)]
        if protocol == "sampled100" and len(pos) + len(neg) > N_SAMPLED:
            keep = max(N_SAMPLED - len(pos), 0)
            neg = rng.choice(neg, size=keep, replace=False) if keep else neg[:0]
        lists.append((np.unique(pos), neg))
    width = max(len(p) + len(n) for p, n in lists)
    cand = np.zeros((len(lists), width), np.int64)
    rel = np.zeros((len(lists), width), bool)
    for i, (p, n) in enumerate(lists):
        cand[i, : len(p)], cand[i, len(p): len(p) + len(n)] = p, n
        rel[i, : len(p)] = True
    return cand, rel


# ------------------------------------------------------------------------------------------
# scorers
# ------------------------------------------------------------------------------------------
class Popularity:
    """Videos by how many training users engaged with them; comments by their like-count order."""

    name = "popularity"

    def __init__(self, ds: Dataset):
        counts = np.zeros(ds.n_videos)
        for s in user_sequences(ds.splits["video"]["train"]):
            np.add.at(counts, s, 1.0)
        counts[0] = 0.0
        self.video_pop = torch.from_numpy(counts).float()  # [V]
        rank = np.zeros(ds.n_comments)
        for cl in ds.comment_lists:
            rank[cl] = -np.arange(len(cl), dtype=np.float64)  # most liked first
        self.comment_pop = torch.from_numpy(rank).float()  # [C]

    def video(self, b: Batch, cand: torch.Tensor | None) -> torch.Tensor:
        pop = self.video_pop.expand(len(b.target), -1)
        return pop if cand is None else self.video_pop[cand]

    def comment(self, b: Batch, cand: torch.Tensor) -> torch.Tensor:
        return self.comment_pop[cand]


class ModelScorer:
    """A trained LSVCR or SASRec; tasks it was not trained for fall back to ``fallback``."""

    def __init__(self, model: torch.nn.Module, tasks: tuple[str, ...], fallback: Popularity | None = None,
                 device: str = "cpu"):
        self.model, self.tasks, self.fallback, self.device = model.eval(), tasks, fallback, device
        self.name = "lsvcr" if isinstance(model, LSVCRRecommender) else "sasrec"

    @torch.no_grad()
    def video(self, b: Batch, cand: torch.Tensor | None) -> torch.Tensor:
        if "video" not in self.tasks:
            return self.fallback.video(b, cand)
        b, c = b.to(self.device), None if cand is None else cand.to(self.device)
        if isinstance(self.model, SASRec):
            u = self.model.user_repr(b.video_hist)
        else:
            u = self.model.user_repr(b, "video")
        return self.model.video_scores(u, c).float().cpu()

    @torch.no_grad()
    def comment(self, b: Batch, cand: torch.Tensor) -> torch.Tensor:
        if "comment" not in self.tasks:
            return self.fallback.comment(b, cand)
        b = b.to(self.device)
        u = self.model.user_repr(b, "comment")
        return self.model.comment_scores(u, cand.to(self.device)).float().cpu()


# ------------------------------------------------------------------------------------------
# the evaluation loop
# ------------------------------------------------------------------------------------------
def evaluate_task(scorer, ds: Dataset, task: str, cfg: EvalConfig, tensors: TaskTensors | None = None) -> dict:
    ex = ds.splits[task][cfg.split]
    if not len(ex):
        return {"n": 0}
    rng = np.random.default_rng([cfg.seed, 0 if task == "video" else 1])
    tt = tensors or TaskTensors(ex, cfg.max_len, cfg.max_record_comments)
    rows = []
    if task == "video":
        cand = video_candidates(ex.target, ds.n_videos, rng) if cfg.protocol == "sampled100" else None
        for b in tt.batches(cfg.batch_size):
            if cand is None:
                s = scorer.video(b, None)  # [B, V]
                rel = torch.zeros_like(s, dtype=torch.bool)
                rel[torch.arange(len(b.target)), b.target] = True
                valid = torch.ones_like(rel)
                valid[:, 0] = False
            else:
                c = torch.from_numpy(cand[b.rows])
                s, rel, valid = scorer.video(b, c), torch.zeros(c.shape, dtype=torch.bool), None
                rel[:, 0] = True
            rows.append(per_row_metrics(s, rel, valid))
    else:
        cand, rel = comment_candidates(ds, ex.target, ex.pos_comments, cfg.protocol, rng)
        for b in tt.batches(cfg.batch_size):
            c, r = cand[b.rows], rel[b.rows]
            w = max(int((c > 0).sum(1).max()), 1)
            c, r = torch.from_numpy(c[:, :w]), torch.from_numpy(r[:, :w])
            rows.append(per_row_metrics(scorer.comment(b, c), r, c > 0))
    return {"n": len(ex), **mean_metrics(rows)}


def evaluate_logged(scorer, ds: Dataset, cfg: EvalConfig, tensors: TaskTensors | None = None) -> dict:
    """The ``ips`` protocol on the comment task: IPS-weighted metrics on the logged comment slates."""
    lg = ds.logged.get(cfg.split)
    if lg is None and ds.logged:
        raise InputError(f"--protocol ips: no comm_slates.{cfg.split}.json; this dataset has logged slates for "
                         f"--split {' | '.join(sorted(ds.logged))}")
    if lg is None:
        raise InputError(f"--protocol ips: the dataset has no comm_slates.{cfg.split}.json (logged slates with "
                         "propensities); build it (lsvcr data build) from a run logged by a stochastic policy "
                         "(lsvcr simulate --temperature T or --explore EPS)")
    if not len(lg):
        raise InputError(f"--protocol ips: comm_slates.{cfg.split}.json holds no logged comment request")
    ex = ds.splits["comment"][cfg.split]
    tt = tensors or TaskTensors(ex, cfg.max_len, cfg.max_record_comments)
    pop = None if scorer.name == "popularity" else Popularity(ds)
    ranks, base_ranks, props, units = [], [], [], []
    for start in range(0, len(lg), cfg.batch_size):
        req = np.arange(start, min(start + cfg.batch_size, len(lg)))
        width = max(len(lg.candidates[r]) for r in req)
        cand = np.zeros((len(req), width), np.int64)  # [B, M] 0-padded
        rel = np.zeros((len(req), width), bool)
        for i, r in enumerate(req):
            cand[i, : len(lg.candidates[r])] = lg.candidates[r]
            rel[i] = np.isin(cand[i], lg.shown[r][lg.positive[r]]) & (cand[i] > 0)
        c, b = torch.from_numpy(cand), tt.batch(lg.example[req])
        rank = candidate_ranks(scorer.comment(b, c), torch.from_numpy(rel), c > 0).numpy()
        base = rank if pop is None else candidate_ranks(pop.comment(b, c), torch.from_numpy(rel), c > 0).numpy()
        for i, r in enumerate(req):
            col = np.flatnonzero(rel[i])  # the positives' candidate columns
            prop = dict(zip(lg.shown[r].tolist(), lg.propensity[r].tolist()))  # comment -> P_log(at its position)
            ranks.append(rank[i, col])
            base_ranks.append(base[i, col])
            props.append(np.array([prop[int(x)] for x in cand[i, col]]))
            units.append(np.full(len(col), lg.example[r]))
    rank, base, prop, unit = (np.concatenate(x) for x in (ranks, base_ranks, props, units))
    out = {"n": int(len(np.unique(unit))), "requests": len(lg), "positives": int(len(rank)),
           **ips_metrics(rank, prop, unit), "naive": ips_metrics(rank, np.ones_like(prop), unit)}
    if pop is not None:  # the paired difference against ranking by likes, on the same positives
        out["minus_popularity"] = ips_difference(rank, base, prop, unit)
    return out


def evaluate(scorer, ds: Dataset, cfg: EvalConfig, tasks: tuple[str, ...] | None = None) -> dict:
    if cfg.protocol == "ips":
        return {"model": scorer.name, "protocol": cfg.protocol, "split": cfg.split, "seed": cfg.seed,
                "tasks": {"comment": evaluate_logged(scorer, ds, cfg)}}
    tasks = tasks or ds.tasks
    return {"model": scorer.name, "protocol": cfg.protocol, "split": cfg.split, "seed": cfg.seed,
            "tasks": {t: evaluate_task(scorer, ds, t, cfg) for t in tasks}}
