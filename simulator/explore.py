"""Stochastic logging policies with exact propensities: the raw material of off-policy evaluation.

* ``EpsilonGreedy``: with probability ε the whole slate is a uniformly random ordered draw, else the
  base policy's top-k. P(item a at position j) = (1−ε)·[base_j = a] + ε/n.
* ``Softmax``: a Plackett–Luce ranking with weights exp(score/T) (Gumbel-top-k sampling).
  The prefix probability is the product of sequential choice probabilities; the position marginal
  P(item a at position j) has no closed form and is computed as a one-dimensional integral
  (the exponential-race representation of Plackett–Luce: item i finishes at E_i ~ Exp(w_i); a sits at
  position j when exactly j others finish first):
      P = ∫ w_a t e^{−w_a t} · PoissonBinomial_j({1 − e^{−w_i t}}_{i≠a}) d(log t),
  evaluated with the trapezoidal rule in log t, which converges geometrically for this analytic
  integrand (error far below 1e-10 with the step used here; tests check it against enumeration).
"""
from __future__ import annotations

import numpy as np

from .policy import CommentRequest, ScoringPolicy, Slate, VideoRequest

_LOG_T_STEP = 0.2


class _Stochastic:
    """Wraps a scoring policy; subclasses sample a slate from the scores with known probabilities."""

    def __init__(self, base: ScoringPolicy, name: str):
        self.base, self.name, self.needs_truth = base, name, base.needs_truth

    def _rank(self, candidates: np.ndarray, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        raise NotImplementedError

    def rank_videos(self, request: VideoRequest) -> Slate:
        return self._rank(request.candidates, self.base.score_videos(request), request.k, request.rng)

    def rank_comments(self, request: CommentRequest) -> Slate:
        return self._rank(request.candidates, self.base.score_comments(request), request.k, request.rng)


class EpsilonGreedy(_Stochastic):
    def __init__(self, base: ScoringPolicy, epsilon: float):
        if not 0.0 < epsilon <= 1.0:
            raise ValueError(f"epsilon must be in (0, 1], got {epsilon}")
        super().__init__(base, f"{base.name}+explore{epsilon:g}")
        self.epsilon = epsilon

    def _rank(self, candidates: np.ndarray, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        n = len(candidates)
        k = min(k, n)
        order = np.argsort(-scores, kind="stable")[:k]
        # Always consume the same draws, so the stream advances identically whatever happens.
        explore = rng.random() < self.epsilon
        random_order = rng.permutation(n)[:k]
        shown = random_order if explore else order
        eps = self.epsilon
        propensity = (1 - eps) * (shown == order) + eps / n
        prefix_match = np.cumprod(shown == order).astype(bool)
        prefix = (1 - eps) * prefix_match + eps * np.cumprod(1.0 / (n - np.arange(k)))
        return Slate(candidates[shown], propensity, prefix)


def plackett_luce_marginals(weights: np.ndarray, items: np.ndarray) -> np.ndarray:
    """P(items[j] is ranked at position j) under Plackett–Luce with ``weights`` (over all candidates).

    ``items`` are candidate indices shown at positions 0..k-1.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.max()
    k = len(items)
    wa = w[items]  # [k]
    # log-time grid per shown item, relative to its own rate: u = w_a t spans [1e-18, 50]
    grid = np.arange(np.log(1e-18), np.log(50.0) + _LOG_T_STEP, _LOG_T_STEP)  # [Q]
    t = np.exp(grid)[None, :] / wa[:, None]  # [k, Q]
    # Poisson-binomial over all candidates, counts 0..k-1, for every (shown item, node).
    pb = np.zeros((k, t.shape[1], k))
    pb[:, :, 0] = 1.0
    others_mask = np.ones((k, len(w)), dtype=bool)
    others_mask[np.arange(k), items] = False
    for i in range(len(w)):
        p = -np.expm1(-w[i] * t)  # [k, Q] P(item i finished before t)
        p = np.where(others_mask[:, i][:, None], p, 0.0)[:, :, None]
        shifted = np.concatenate([np.zeros_like(pb[:, :, :1]), pb[:, :, :-1]], axis=2)
        pb = pb * (1 - p) + shifted * p
    u = np.exp(grid)[None, :]  # w_a t
    integrand = u * np.exp(-u) * pb[np.arange(k), :, np.arange(k)]  # [k, Q]
    return np.trapezoid(integrand, dx=_LOG_T_STEP, axis=1)


class Softmax(_Stochastic):
    def __init__(self, base: ScoringPolicy, temperature: float):
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        super().__init__(base, f"{base.name}+softmax{temperature:g}")
        self.temperature = temperature

    def _rank(self, candidates: np.ndarray, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        n = len(candidates)
        k = min(k, n)
        logits = np.asarray(scores, dtype=np.float64) / self.temperature
        logits = logits - logits.max()
        gumbel = rng.gumbel(size=n)
        order = np.argsort(-(logits + gumbel), kind="stable")[:k]
        w = np.exp(logits)
        rest = w.copy()
        choice = np.empty(k)
        for j, a in enumerate(order):  # summed afresh: no cancellation when large weights leave
            choice[j] = w[a] / rest.sum()
            rest[a] = 0.0
        prefix = np.cumprod(choice)
        marginal = plackett_luce_marginals(w, order)
        return Slate(candidates[order], np.clip(marginal, 1e-300, 1.0), prefix)
