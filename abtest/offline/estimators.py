"""The estimators of the offline prediction: one registered object each (``ESTIMATORS``), valuing every
logged request of one kind under one target policy for one reward.

An estimator reads the logging and target probabilities of the logged items (``weights``: position
marginals, or the probabilities of the shown prefix through each position), and may read a reward
model's predictions (``model``): ``item-position`` is the context-free item x position model, cross-fitted
on two folds of users (abtest.offline.ope); ``response`` is the user-response model fitted on the logs
(abtest.offline.response_model) where it models the reward, the item x position model elsewhere.

    ips       Σ_j w_j r_j with w_j = π_e(a_j at j) / π_0(a_j at j)        (position-wise; one position: IPS)
    snips     the same over the mean weight of the logged impressions     (one position: obp's SNIPS)
    dr        Σ_j q̂_j(π_e) + Σ_j w_j (r_j − q̂_j(a_j)), q̂ item x position (one position: obp's DoublyRobust)
    dm        Σ_j q̂_j(π_e)
    cascade-ips, cascade-dr   prefix weights (abtest.offline.cascade)
    model, model-dr, model-pdr, model-pcm   the response model in dm, cascade-dr, self-normalised dr,
              and on comment sections the cascade click model (open on the preview, read on)

For a target that gives its whole distribution over candidates at each position (``table:``), q̂_j(π_e)
is the exact expectation Σ_a π_e(a at j) q̂(a, j); for one that shows a slate, q̂ of that slate (a sampled
one for a stochastic target: an unbiased draw of the expectation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from . import cascade, ope


class Inputs(NamedTuple):
    """One reward of one kind of request under one target ([n, K] unless noted)."""

    rewards: np.ndarray
    mask: np.ndarray  # logged positions
    target_mask: np.ndarray  # the target's shown positions (its DM term's)
    logging_marginal: np.ndarray
    logging_prefix: np.ndarray
    target_marginal: np.ndarray
    target_prefix: np.ndarray
    q: tuple[np.ndarray, np.ndarray] | None  # (q̂ of the logged items, q̂ of the target's)
    reached: np.ndarray | None  # comment sections: the positions the user reached
    preview: int  # a section's preview (1 on the feed)
    sections: bool  # comment requests
    alpha: float
    clusters: np.ndarray  # [n]


@dataclass(frozen=True)
class Estimator:
    name: str
    summary: str  # one line, for --help
    weights: str | None  # "marginal" | "prefix" | None: the target probabilities it reads
    model: str | None  # None | "item-position" | "response"
    run: Callable[[Inputs], ope.Estimate]


def _ips(x: Inputs) -> ope.Estimate:
    return ope.slate_ips(x.rewards, x.logging_marginal, x.target_marginal, mask=x.mask, alpha=x.alpha, clusters=x.clusters)


def _snips(x: Inputs) -> ope.Estimate:
    return ope.slate_snips(x.rewards, x.logging_marginal, x.target_marginal, mask=x.mask, alpha=x.alpha,
                           clusters=x.clusters)


def _dr(x: Inputs) -> ope.Estimate:  # the model's term at the logged positions (one position: obp's DR)
    return ope.slate_dr(x.rewards, x.logging_marginal, x.target_marginal, x.q[0], x.q[1], mask=x.mask,
                        alpha=x.alpha, clusters=x.clusters)


def _dm(x: Inputs) -> ope.Estimate:
    return ope.slate_dm(x.q[1], mask=x.target_mask, alpha=x.alpha, clusters=x.clusters)


def _cascade_ips(x: Inputs) -> ope.Estimate:
    return cascade.cascade_ips(x.rewards, x.logging_prefix, x.target_prefix, mask=x.mask, preview=x.preview,
                               alpha=x.alpha, clusters=x.clusters)


def _cascade_dr(x: Inputs) -> ope.Estimate:
    return cascade.cascade_dr(x.rewards, x.logging_prefix, x.target_prefix, x.q[0], x.q[1], mask=x.mask,
                              target_mask=x.target_mask, preview=x.preview, alpha=x.alpha, clusters=x.clusters)


def _sn_pdr(x: Inputs) -> ope.Estimate:
    return ope.slate_dr(x.rewards, x.logging_marginal, x.target_marginal, x.q[0], x.q[1], mask=x.mask,
                        target_mask=x.target_mask, self_normalize=True, alpha=x.alpha, clusters=x.clusters)


def _pcm(x: Inputs) -> ope.Estimate:
    if x.sections:  # the cascade click model's factors, on position-wise weights
        return cascade.cascade_model(x.rewards, x.reached, x.logging_marginal, x.target_marginal, mask=x.mask,
                                     preview=x.preview, alpha=x.alpha, clusters=x.clusters)
    return _sn_pdr(x)


ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (
    Estimator("model-pcm", "response model, position-wise weights; comment sections as a cascade click model "
              "(the default)", "marginal", "response", _pcm),
    Estimator("model-pdr", "response model corrected by position-wise weights, self-normalised", "marginal", "response",
              _sn_pdr),
    Estimator("model-dr", "response model corrected by cascade prefix weights", "prefix", "response", _cascade_dr),
    Estimator("model", "the response model alone", None, "response", _dm),
    Estimator("cascade-ips", "cascade prefix weights alone", "prefix", None, _cascade_ips),
    Estimator("cascade-dr", "item x position model corrected by cascade prefix weights", "prefix", "item-position",
              _cascade_dr),
    Estimator("dm", "the item x position model alone", None, "item-position", _dm),
    Estimator("ips", "position-wise importance weights (one position: IPS)", "marginal", None, _ips),
    Estimator("snips", "position-wise weights over their mean (one position: SNIPS)", "marginal", None, _snips),
    Estimator("dr", "item x position model corrected by position-wise weights (one position: DR)", "marginal",
              "item-position", _dr),
)}
DEFAULT = "model-pcm"


def help_text() -> str:
    """The --estimator help: one short line per estimator."""
    return "; ".join(f"{e.name}: {e.summary}" for e in ESTIMATORS.values())
