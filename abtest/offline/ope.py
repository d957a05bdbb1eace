"""Off-policy evaluation: what a candidate policy would have earned on requests a stochastic logging
policy served, from the logged propensities alone (offline policy comparison before launch).

Single items (the top of each slate, ``a`` the logged item, ``w = π_e(a|x) / π_0(a|x)``):

    IPS    V = mean(w · r)
    SNIPS  V = Σ w·r / Σ w                      (SE by the delta method)
    DM     V = mean(q̂(x, π_e))                  (a reward model's prediction for the target's item)
    DR     V = mean(q̂(x, π_e) + w · (r − q̂(x, a)))

Slates (value = the slate's total reward; ``w_j`` a ratio of probabilities at position j):

    IIPS   independent IPS: w_j = ratio of P(a_j at position j)            (reward at j depends on a_j)
    RIPS   reward-interaction IPS: w_j = ratio of P(prefix a_0..a_j)        (cascade: on a_0..a_j)
    SIPS   standard IPS: one ratio of whole-slate probabilities            (any interaction; high variance)
    DM, DR position-wise: Σ_j q̂(s_j, j) and Σ_j q̂(s_j, j) + w_j (r_j − q̂(a_j, j))

Every estimator is the mean of per-request *terms* (linearised for the self-normalised ones), so its
standard error is the normal approximation on those terms — cluster-robust when ``clusters`` (the
user of each request) is given — and a lift against another estimate on the same requests is the
mean of term differences.

Support: where the logging policy showed its item with probability 1 it could show nothing else, so
the target's probability mass on anything else is *unsupported*: IPS-type estimates silently count
it as zero reward. ``Estimate.support`` is the supported share; results below 1 are flagged.

The DM reward model is deliberately simple and context-free: q̂(a, j) = θ_a · p_j, a position effect
p_j (mean reward at position j over mean reward at the top) times a per-item effect θ_a (mean of
r / p_j over the item's logged impressions, shrunk towards the global mean with ``prior_strength``
pseudo-observations). It ignores the user, so DM is biased wherever rewards are personal; DR fits
it on the other fold of users (two folds, cross-fitting) and corrects it with the weights.

Pure NumPy over arrays; never imports torch, lsvcr or simulator.
"""
from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence

import numpy as np
from scipy.stats import norm

ESTIMATORS = ("ips", "snips", "dm", "dr", "all")
# Which estimators each --estimator choice runs, per level ("item": top of the slate; "slate": whole slate);
# ITEM_FUNCTIONS and SLATE_FUNCTIONS (below) say how each is computed.
ITEM_ESTIMATORS = {"ips": ("ips",), "snips": ("snips",), "dm": ("dm",), "dr": ("dr",)}
SLATE_ESTIMATORS = {"ips": ("iips", "rips", "sips"), "snips": ("sn-iips", "sn-rips"), "dm": ("dm",), "dr": ("dr",)}
_CERTAIN = 1.0 - 1e-12  # a logged probability this close to 1 means the logging policy had no choice


class Estimate(NamedTuple):
    value: float
    se: float
    ci: tuple[float, float]  # normal approximation, 1 − alpha
    ess: float  # effective sample size of the weights (slates: of each request's mean weight; n for DM)
    n: int  # requests
    support: float  # share of the target's probability mass the logging policy could have shown
    flags: tuple[str, ...]  # no_support | low_ess | no_weight
    terms: np.ndarray  # [n] per-request terms: value = mean(terms)

    def as_dict(self) -> dict:
        """JSON-ready (without the terms; NaN → None)."""
        return {"value": _num(self.value), "se": _num(self.se), "ci": [_num(c) for c in self.ci],
                "ess": _num(self.ess), "n": self.n, "support": _num(self.support), "flags": list(self.flags)}


class Lift(NamedTuple):
    """An estimate minus a baseline on the same requests (e.g. the logging policy's on-policy value)."""

    abs_effect: float
    abs_ci: tuple[float, float]
    rel_effect: float  # estimate / baseline − 1
    rel_ci: tuple[float, float]  # delta method on the ratio

    def as_dict(self) -> dict:
        return {"abs_effect": _num(self.abs_effect), "abs_ci": [_num(c) for c in self.abs_ci],
                "rel_effect": _num(self.rel_effect), "rel_ci": [_num(c) for c in self.rel_ci]}


class RewardModel(NamedTuple):
    items: np.ndarray  # [A] sorted ids of the items seen in the fit
    item_effect: np.ndarray  # [A] θ_a
    position_effect: np.ndarray  # [K] p_j, p_0 = 1
    mean: float  # θ of an item never logged (the global mean of r / p_j)


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------
def z_value(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return float(norm.ppf(1.0 - alpha / 2.0))


def standard_error(terms: np.ndarray, clusters: np.ndarray | None = None) -> float:
    """SE of mean(terms): sd / sqrt(n), or cluster-robust (sums of deviations per cluster, G/(G−1))."""
    terms = np.asarray(terms, dtype=np.float64)
    n = len(terms)
    dev = terms - terms.mean() if n else terms
    if clusters is None:
        return float(np.sqrt(np.sum(dev**2) / (n * (n - 1)))) if n > 1 else math.nan
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=dev)
    g = len(sums)
    return float(np.sqrt(g / (g - 1) * np.sum(sums**2)) / n) if g > 1 else math.nan


def effective_sample_size(weights: np.ndarray) -> float:
    """(Σw)² / Σw²: how many on-policy samples the weighted sample is worth."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def unsupported_mass(logging_p: np.ndarray, target_p: np.ndarray) -> np.ndarray:
    """Target mass on what the logging policy could not show: 1 − π_e(a) where π_0(a) = 1, else 0."""
    logging_p, target_p = np.asarray(logging_p, dtype=np.float64), np.asarray(target_p, dtype=np.float64)
    return np.where(logging_p >= _CERTAIN, 1.0 - np.clip(target_p, 0.0, 1.0), 0.0)


def _weights(logging_p, target_p) -> np.ndarray:
    logging_p, target_p = np.asarray(logging_p, dtype=np.float64), np.asarray(target_p, dtype=np.float64)
    if logging_p.shape != target_p.shape:
        raise ValueError(f"logging {logging_p.shape} and target {target_p.shape} probabilities differ in shape")
    if np.any(~(logging_p > 0)):
        raise ValueError("logged propensities must be positive (the logging policy showed these items)")
    return target_p / logging_p


def _finish(terms, weights, unsupported, alpha, clusters, flags=()) -> Estimate:
    terms = np.asarray(terms, dtype=np.float64)
    n = len(terms)
    value = float(terms.mean()) if n else math.nan
    se = standard_error(terms, clusters)
    half = z_value(alpha) * se
    ess = float(n) if weights is None else effective_sample_size(weights)
    support = 1.0 - float(np.mean(unsupported)) if unsupported is not None and np.size(unsupported) else 1.0
    flags = list(flags)
    if support < 1.0 - 1e-9:
        flags.append("no_support")
    if weights is not None and ess < max(10.0, 0.01 * n):
        flags.append("low_ess")
    return Estimate(value, se, (value - half, value + half), ess, n, support, tuple(flags), terms)


# ----------------------------------------------------------------------------------------------
# Single items: r [n], logging_p / target_p [n] = P(logged item) under each policy
# ----------------------------------------------------------------------------------------------
def ips(rewards, logging_p, target_p, *, alpha: float = 0.05, clusters=None) -> Estimate:
    w = _weights(logging_p, target_p)
    return _finish(w * np.asarray(rewards, dtype=np.float64), w, unsupported_mass(logging_p, target_p), alpha, clusters)


def snips(rewards, logging_p, target_p, *, alpha: float = 0.05, clusters=None) -> Estimate:
    """Self-normalised IPS; terms V + w (r − V) / mean(w) (delta method)."""
    w = _weights(logging_p, target_p)
    r = np.asarray(rewards, dtype=np.float64)
    mean_w = w.mean() if len(w) else 0.0
    if mean_w <= 0:
        return _finish(np.full(len(w), math.nan), w, unsupported_mass(logging_p, target_p), alpha, clusters, ("no_weight",))
    value = float(np.mean(w * r) / mean_w)
    return _finish(value + w * (r - value) / mean_w, w, unsupported_mass(logging_p, target_p), alpha, clusters)


def dm(q_target, *, alpha: float = 0.05, clusters=None) -> Estimate:
    """Direct method: q_target [n] is the reward model's prediction for the target's action."""
    return _finish(np.asarray(q_target, dtype=np.float64), None, None, alpha, clusters)


def dr(rewards, logging_p, target_p, q_logged, q_target, *, alpha: float = 0.05, clusters=None) -> Estimate:
    """Doubly robust: unbiased when either the weights or the (independently fitted) model are right."""
    w = _weights(logging_p, target_p)
    r = np.asarray(rewards, dtype=np.float64)
    terms = np.asarray(q_target, dtype=np.float64) + w * (r - np.asarray(q_logged, dtype=np.float64))
    return _finish(terms, w, unsupported_mass(logging_p, target_p), alpha, clusters)


def on_policy(rewards, *, alpha: float = 0.05, clusters=None) -> Estimate:
    """The logging policy's own value: the plain mean of the logged rewards ([n], or [n, K] summed)."""
    r = np.asarray(rewards, dtype=np.float64)
    return _finish(r.sum(axis=1) if r.ndim == 2 else r, None, None, alpha, clusters)


# ----------------------------------------------------------------------------------------------
# Slates: rewards / probabilities [n, K]; mask [n, K] marks the positions each slate has
# ----------------------------------------------------------------------------------------------
def slate_ips(rewards, logging_p, target_p, *, mask=None, self_normalize: bool = False,
              alpha: float = 0.05, clusters=None) -> Estimate:
    """Σ_j w_j r_j per request. Pass marginals for IIPS, prefix probabilities for RIPS.

    ``self_normalize`` divides each position's weighted reward by the mean weight of the slates that
    have that position (SN-IIPS, SN-RIPS), with delta-method terms.
    """
    r = np.asarray(rewards, dtype=np.float64)
    mask = np.ones(r.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    p0 = np.where(mask, logging_p, 1.0)
    w = np.where(mask, _weights(p0, np.where(mask, target_p, 0.0)), 0.0)  # [n, K]
    r = np.where(mask, r, 0.0)
    unsupported = unsupported_mass(p0, np.asarray(target_p, dtype=np.float64))[mask]
    ess_weights = w.sum(axis=1) / np.maximum(mask.sum(axis=1), 1)  # per-request mean weight
    if not self_normalize:
        return _finish((w * r).sum(axis=1), ess_weights, unsupported, alpha, clusters)
    # position j: θ_j = mean_i(w r) / B_j, B_j the mean weight over the slates that have position j
    n_j = mask.sum(axis=0)  # [K]
    b = w * np.where(n_j > 0, len(w) / np.maximum(n_j, 1), 0.0)  # [n, K], mean_i b_ij = B_j
    mean_b = b.mean(axis=0)
    safe = np.where(mean_b > 0, mean_b, 1.0)
    theta = np.where(mean_b > 0, (w * r).mean(axis=0) / safe, 0.0)  # [K]
    flags = ("no_weight",) if np.any((mean_b == 0) & (n_j > 0)) else ()
    terms = theta.sum() + ((w * r - theta * b) / safe).sum(axis=1)
    return _finish(terms, ess_weights, unsupported, alpha, clusters, flags)


def slate_snips(rewards, logging_p, target_p, *, mask=None, alpha: float = 0.05, clusters=None) -> Estimate:
    """Position-wise IPS over the mean weight of the logged impressions: with a_i = Σ_j w_ij r_ij,
    b_i = Σ_j w_ij and m the mean number of impressions per request, V = mean(a) / (mean(b) / m), the
    delta method's terms V + (a_i − V b_i / m) / B. One position per request: Σ w r / Σ w, obp's SNIPS."""
    r = np.asarray(rewards, dtype=np.float64)
    mask = np.ones(r.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    p0 = np.where(mask, logging_p, 1.0)
    w = np.where(mask, _weights(p0, np.where(mask, target_p, 0.0)), 0.0)
    a, b = (w * np.where(mask, r, 0.0)).sum(axis=1), w.sum(axis=1)
    unsupported = unsupported_mass(p0, np.asarray(target_p, dtype=np.float64))[mask]
    ess_weights = b / np.maximum(mask.sum(axis=1), 1)
    m = mask.sum() / max(len(a), 1)
    B = float(b.mean() / m) if len(b) and m > 0 else 0.0
    if B <= 0:
        return _finish(np.full(len(a), math.nan), ess_weights, unsupported, alpha, clusters, ("no_weight",))
    value = float(a.mean() / B)
    return _finish(value + (a - value * b / m) / B, ess_weights, unsupported, alpha, clusters)


def independent_ips(rewards, logging_marginal, target_marginal, **kw) -> Estimate:
    return slate_ips(rewards, logging_marginal, target_marginal, **kw)


def reward_interaction_ips(rewards, logging_prefix, target_prefix, **kw) -> Estimate:
    return slate_ips(rewards, logging_prefix, target_prefix, **kw)


def standard_slate_ips(rewards, logging_slate_p, target_slate_p, *, mask=None, **kw) -> Estimate:
    """One weight per request, the ratio of whole-slate probabilities ([n]); value Σ_j r_j."""
    r = np.asarray(rewards, dtype=np.float64)
    if mask is not None:
        r = np.where(mask, r, 0.0)
    return ips(r.sum(axis=1), logging_slate_p, target_slate_p, **kw)


def slate_dm(q_target, *, mask=None, alpha: float = 0.05, clusters=None) -> Estimate:
    q = np.asarray(q_target, dtype=np.float64)
    if mask is not None:
        q = np.where(mask, q, 0.0)
    return dm(q.sum(axis=1), alpha=alpha, clusters=clusters)


def slate_dr(rewards, logging_p, target_p, q_logged, q_target, *, mask=None, target_mask=None,
             self_normalize: bool = False, alpha: float = 0.05, clusters=None) -> Estimate:
    """Position-wise DR with marginal weights (unbiased where IIPS is, lower variance):
    Σ_j q̂_j(target slate) + Σ_j w_j (r_j − q̂_j(a_j)). ``target_mask``: the target slate's positions
    (default ``mask``). ``self_normalize`` divides each position's weights by their mean over the
    requests with that position (E w_j = 1), as abtest.cascade.cascade_dr does with prefix weights."""
    r = np.asarray(rewards, dtype=np.float64)
    mask = np.ones(r.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    target_mask = mask if target_mask is None else np.asarray(target_mask, dtype=bool)
    p0 = np.where(mask, logging_p, 1.0)
    w = np.where(mask, _weights(p0, np.where(mask, target_p, 0.0)), 0.0)
    w_used = w
    if self_normalize:
        mean_w = w.sum(axis=0) / np.maximum(mask.sum(axis=0), 1)
        w_used = np.where(mask, w / np.where(mean_w > 0, mean_w, 1.0), 0.0)
    terms = (np.where(target_mask, np.asarray(q_target, dtype=np.float64), 0.0).sum(axis=1)
             + np.where(mask, w_used * (r - np.asarray(q_logged, dtype=np.float64)), 0.0).sum(axis=1))
    unsupported = unsupported_mass(p0, np.asarray(target_p, dtype=np.float64))[mask]
    return _finish(terms, w.sum(axis=1) / np.maximum(mask.sum(axis=1), 1), unsupported, alpha, clusters)


def lift(estimate: Estimate, baseline: Estimate, *, alpha: float = 0.05, clusters=None) -> Lift:
    """Absolute and relative difference of two estimates on the same requests, with CIs. The relative
    interval is the delta method's on the log of the ratio (as the A/B report's): it never reaches −100%;
    where either value is not positive, on the ratio itself."""
    z = z_value(alpha)
    d = estimate.terms - baseline.terms
    abs_effect = float(d.mean()) if len(d) else math.nan
    half = z * standard_error(d, clusters)
    b, a = baseline.value, estimate.value
    if not b or not math.isfinite(b):
        return Lift(abs_effect, (abs_effect - half, abs_effect + half), math.nan, (math.nan, math.nan))
    ratio = a / b
    if a > 0 and b > 0:
        log_half = z * standard_error(estimate.terms / a - baseline.terms / b, clusters)
        rel_ci = (math.exp(math.log(ratio) - log_half) - 1.0, math.exp(math.log(ratio) + log_half) - 1.0)
    else:
        rel_half = z * standard_error((estimate.terms - ratio * baseline.terms) / b, clusters)
        rel_ci = (ratio - 1.0 - rel_half, ratio - 1.0 + rel_half)
    return Lift(abs_effect, (abs_effect - half, abs_effect + half), ratio - 1.0, rel_ci)


# ----------------------------------------------------------------------------------------------
# The reward model for DM / DR
# ----------------------------------------------------------------------------------------------
def fit_reward_model(items, positions, rewards, prior_strength: float = 5.0) -> RewardModel:
    """q̂(a, j) = θ_a · p_j from logged (item, position, reward) triples (see the module docstring)."""
    items = np.asarray(items, dtype=np.int64).ravel()
    positions = np.asarray(positions, dtype=np.int64).ravel()
    r = np.asarray(rewards, dtype=np.float64).ravel()
    if len(r) == 0:
        return RewardModel(np.empty(0, np.int64), np.empty(0), np.ones(1), 0.0)
    K = int(positions.max()) + 1
    count = np.bincount(positions, minlength=K)
    pos_mean = np.bincount(positions, weights=r, minlength=K) / np.maximum(count, 1)
    ref = pos_mean[0] if count[0] and pos_mean[0] > 0 else r.mean()
    p = np.where(count > 0, pos_mean, ref) / ref if ref > 0 else np.ones(K)
    factor = p[positions]
    adjusted = np.divide(r, factor, out=np.zeros_like(r), where=factor > 0)
    uniq, inverse = np.unique(items, return_inverse=True)
    sums = np.bincount(inverse, weights=adjusted)
    n_a = np.bincount(inverse)
    mu = float(adjusted.mean())
    theta = (sums + prior_strength * mu) / (n_a + prior_strength)
    return RewardModel(uniq, theta, p, mu)


def predict(model: RewardModel, items, positions) -> np.ndarray:
    items = np.asarray(items, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    if len(model.items) == 0:
        theta = np.full(items.shape, model.mean)
    else:
        idx = np.minimum(np.searchsorted(model.items, items), len(model.items) - 1)
        theta = np.where(model.items[idx] == items, model.item_effect[idx], model.mean)
    return theta * model.position_effect[np.minimum(positions, len(model.position_effect) - 1)]


def cross_fit(items, positions, rewards, folds, queries: Sequence[tuple], prior_strength: float = 5.0) -> list[np.ndarray]:
    """Out-of-fold predictions: each query (items, positions, folds) row is predicted by the model
    fitted on the observations of every other fold (all of them when there is only one fold)."""
    folds = np.asarray(folds).ravel()
    out = [np.zeros(np.shape(q[0]), dtype=np.float64) for q in queries]
    values = np.unique(np.concatenate([folds] + [np.asarray(q[2]).ravel() for q in queries]))
    for f in values:
        train = folds != f if np.any(folds != f) else np.ones_like(folds, dtype=bool)
        model = fit_reward_model(np.ravel(items)[train], np.ravel(positions)[train], np.ravel(rewards)[train], prior_strength)
        for o, (q_items, q_pos, q_folds) in zip(out, queries):
            sel = np.asarray(q_folds) == f
            o[sel] = predict(model, np.asarray(q_items)[sel], np.asarray(q_pos)[sel])
    return out


# ----------------------------------------------------------------------------------------------
# One target policy on one kind of logged request
# ----------------------------------------------------------------------------------------------
class Result(NamedTuple):
    level: str  # item (the top of the slate) | slate (the slate's total)
    estimator: str
    estimate: Estimate
    lift: Lift  # against the logging policy's on-policy value at the same level


class Evaluation(NamedTuple):
    logging: dict[str, Estimate]  # level -> the logging policy's on-policy value
    results: list[Result]


class _Logged(NamedTuple):
    """What every estimator of ``evaluate`` reads: [n, K] arrays of one target on the logged requests."""

    r: np.ndarray  # rewards, 0 past a slate's end
    mask: np.ndarray  # the logged slate's positions
    tmask: np.ndarray  # the target slate's positions
    lm: np.ndarray  # logging marginal, logging prefix, target marginal, target prefix of the logged items
    lp: np.ndarray
    tm: np.ndarray
    tp: np.ndarray
    q: dict  # "dm": q̂ of the target's items; "dr": (q̂ logged, q̂ target), cross-fitted
    kw: dict  # alpha, clusters


def _last(d: _Logged, a: np.ndarray) -> np.ndarray:
    """[n]: each request's value at its slate's last position (a whole-slate probability, for prefixes)."""
    return a[np.arange(len(a)), np.maximum(d.mask.sum(axis=1) - 1, 0)]


# The estimators of ``evaluate``, per level, by name; each reads the logged requests and one target.
ITEM_FUNCTIONS = {
    "ips": lambda d: ips(d.r[:, 0], d.lm[:, 0], d.tm[:, 0], **d.kw),
    "snips": lambda d: snips(d.r[:, 0], d.lm[:, 0], d.tm[:, 0], **d.kw),
    "dm": lambda d: dm(d.q["dm"][:, 0], **d.kw),
    "dr": lambda d: dr(d.r[:, 0], d.lm[:, 0], d.tm[:, 0], d.q["dr"][0][:, 0], d.q["dr"][1][:, 0], **d.kw),
}
SLATE_FUNCTIONS = {
    "iips": lambda d: slate_ips(d.r, d.lm, d.tm, mask=d.mask, **d.kw),
    "rips": lambda d: slate_ips(d.r, d.lp, d.tp, mask=d.mask, **d.kw),
    "sips": lambda d: standard_slate_ips(d.r, _last(d, d.lp), _last(d, d.tp), mask=d.mask, **d.kw),
    "sn-iips": lambda d: slate_ips(d.r, d.lm, d.tm, mask=d.mask, self_normalize=True, **d.kw),
    "sn-rips": lambda d: slate_ips(d.r, d.lp, d.tp, mask=d.mask, self_normalize=True, **d.kw),
    "dm": lambda d: slate_dm(d.q["dm"], mask=d.tmask, **d.kw),
    "dr": lambda d: slate_dr(d.r, d.lm, d.tm, d.q["dr"][0], d.q["dr"][1], mask=d.mask, **d.kw),
}


def evaluate(
    rewards, items, logging_marginal, logging_prefix, target_items, target_marginal, target_prefix, *,
    clusters=None, folds=None, estimator: str = "all", alpha: float = 0.05, prior_strength: float = 5.0,
) -> Evaluation:
    """Every chosen estimator of one target policy, for the top item and for the whole slate.

    All arrays are [n, K]: ``items`` the logged ids (−1 past a slate's end), ``rewards`` per
    position, the logging policy's probabilities of the logged items (marginal at their position,
    prefix through it), ``target_items`` the target's own slate (for DM / DR) and the target's
    probabilities of the *logged* items. ``folds`` (default: ``clusters`` parity) split the reward
    model's cross-fitting.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    items = np.asarray(items, dtype=np.int64)
    target_items = np.asarray(target_items, dtype=np.int64)
    mask = items >= 0
    n, K = items.shape
    r = np.where(mask, np.asarray(rewards, dtype=np.float64), 0.0)
    kw = {"alpha": alpha, "clusters": clusters}
    if folds is None:
        folds = np.zeros(n, dtype=np.int64) if clusters is None else np.asarray(clusters) % 2
    names = tuple(ITEM_ESTIMATORS) if estimator == "all" else (estimator,)

    positions = np.broadcast_to(np.arange(K), (n, K))
    tmask = target_items >= 0
    q = {}
    if "dm" in names:
        model = fit_reward_model(items[mask], positions[mask], r[mask], prior_strength)
        q["dm"] = np.where(tmask, predict(model, target_items, positions), 0.0)
    if "dr" in names:
        fold2 = np.broadcast_to(np.asarray(folds)[:, None], (n, K))
        q_logged, q_target = cross_fit(items[mask], positions[mask], r[mask], fold2[mask],
                                       [(items, positions, fold2), (target_items, positions, fold2)], prior_strength)
        q["dr"] = (np.where(mask, q_logged, 0.0), np.where(tmask, q_target, 0.0))
    logged = _Logged(r, mask, tmask, np.asarray(logging_marginal, np.float64), np.asarray(logging_prefix, np.float64),
                     np.asarray(target_marginal, np.float64), np.asarray(target_prefix, np.float64), q, kw)

    logging = {"item": on_policy(r[:, 0], **kw), "slate": on_policy(r, **kw)}
    results = []
    for level, chosen, functions in (("item", ITEM_ESTIMATORS, ITEM_FUNCTIONS),
                                     ("slate", SLATE_ESTIMATORS, SLATE_FUNCTIONS)):
        for name in (e for choice in names for e in chosen[choice]):
            est = functions[name](logged)
            results.append(Result(level, name, est, lift(est, logging[level], **kw)))
    return Evaluation(logging, results)


def compare(
    logged: Mapping[str, Mapping], targets: Mapping[str, Mapping[str, Mapping]], metrics: Mapping[str, Sequence[str]],
    *, estimator: str = "all", alpha: float = 0.05, prior_strength: float = 5.0,
) -> dict:
    """Every target policy against the logs, per kind of request and metric: a JSON-ready dict.

    ``logged[kind]`` holds ``items``, ``logging_marginal``, ``logging_prefix`` ([n, K]), ``user_id``
    ([n], the clusters of the SEs and the cross-fitting folds) and ``rewards`` (metric → [n, K]);
    ``targets[policy][kind]`` holds ``items``, ``marginal``, ``prefix`` ([n, K]) and ``sampled``
    ([n] bool: propensities that are single-draw indicators). ``metrics[kind]`` names the metrics.
    """
    out = {"logging": [], "results": [], "warnings": []}
    for kind, names in metrics.items():
        log = logged[kind]
        users = np.asarray(log["user_id"])
        if len(users) == 0:
            out["warnings"].append(f"no logged {kind} requests")
            continue
        for metric in names:
            logging_done = False
            for policy, per_kind in targets.items():
                t = per_kind[kind]
                ev = evaluate(log["rewards"][metric], log["items"], log["logging_marginal"], log["logging_prefix"],
                              t["items"], t["marginal"], t["prefix"], clusters=users, estimator=estimator,
                              alpha=alpha, prior_strength=prior_strength)
                if not logging_done:
                    for level, est in ev.logging.items():
                        out["logging"].append({"kind": kind, "metric": metric, "level": level, **est.as_dict()})
                    logging_done = True
                sampled = bool(np.any(t["sampled"]))
                for res in ev.results:
                    flags = list(res.estimate.flags) + (["sampled_target"] if sampled and res.estimator != "dm" else [])
                    out["results"].append({"policy": policy, "kind": kind, "metric": metric, "level": res.level,
                                           "estimator": res.estimator, **res.estimate.as_dict(), "flags": flags,
                                           **res.lift.as_dict()})
    for policy, per_kind in targets.items():
        for kind in metrics:
            if kind not in logged or len(logged[kind]["user_id"]) == 0:
                continue
            t, log = per_kind[kind], logged[kind]
            top = unsupported_mass(np.asarray(log["logging_marginal"])[:, 0], np.asarray(t["marginal"])[:, 0])
            if np.any(top > 1e-9):
                out["warnings"].append(
                    f"{policy}: the logging policy gave no support to {np.mean(top):.1%} of the target's top "
                    f"{kind} choices (it showed its own item with probability 1): IPS, SNIPS and DR count them as "
                    f"zero reward and DM extrapolates; log with exploration (--explore / --temperature)")
            if np.any(t["sampled"]):
                out["warnings"].append(
                    f"{policy}: exposes no probabilities for {kind} slates, so its propensities are single-draw "
                    f"indicators (unbiased, noisier)")
    return out
