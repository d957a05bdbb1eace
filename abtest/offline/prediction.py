"""The offline A/B prediction: treatment against control per user, from one logging run.

The online A/B reports, per metric, the relative lift of treatment over control in the mean over
users of what each user did in the experiment (comment watch time per user first). The offline
prediction estimates the same quantity from the logs of a stochastic logging policy: for every
logged user-day u and target policy π,

    V_u(π) = Σ_{requests i of u} V̂_i(π)          (the unit is the user-day, as in a one-day A/B)

where V̂_i is a slate estimator's term for request i (comment requests for comment metrics, video
requests for video metrics; see abtest.cascade and abtest.ope). The prediction is

    lift = Σ_u V_u(treatment) / Σ_u V_u(control) − 1

with one interval for the *difference* of the two targets: both are estimated on the same
requests, so the paired per-unit terms carry their correlation (delta method on the ratio,
clustered by user over the user's days). Units with no request count as zeros, as an assigned user
with no events does online.

Comment watch time depends on both rankings: the feed decides which sections a user opens, the
comment ranking what a section yields. It is predicted as a product of a video factor (each video
position's downstream section seconds, valued on video requests) and a comment factor (on comment
requests); see ``_composed``. Other metrics are valued on their own kind of request.

A per-request estimator holds the logged request stream fixed: a target's effect on how long users
stay and how soon they return is outside it. With ``sessions`` (abtest.sessions: a time-budget and
return-gap model fitted on the same logs) every metric is scaled by the model's ratio of
impressions per user-day under the target to that under the logging policy, the target's
per-impression engagement coming from the per-request estimator; ``sessions`` itself is then
predicted, and every interval is a cluster bootstrap over users with the session model refitted.
Without it ``sessions`` is reported as not identified.

Pure NumPy; never imports torch, lsvcr or simulator.
"""
from __future__ import annotations

import functools
import math
from typing import Mapping, NamedTuple

import numpy as np
from scipy.stats import norm

from . import ope
from . import sessions as session_model
from ..errors import InputError
from ..metrics_sql import CATALOGUE
from .estimators import DEFAULT as DEFAULT_ESTIMATOR
from .estimators import ESTIMATORS, Inputs

# metric of the A/B report -> (kind of request, logged reward); None: no per-request reward (the catalogue's)
METRICS: dict[str, tuple[str, str] | None] = {m.name: m.offline for m in CATALOGUE if m.offline or m.session_model}
DEFAULT_METRICS = ("comment_watch_time", "video_watch_time", "sessions")


class Units(NamedTuple):
    """How requests sum into units: with users, user-days (``n_days`` per user, clustered by user);
    without, each request is its own unit."""

    n_users: int  # 0: no users
    n_days: int
    n_requests: dict  # kind -> requests (the units without users)

    def of(self, kind: str, users: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
        """(each request's unit, how many units, each unit's cluster)."""
        if self.n_users:
            n = self.n_users * self.n_days
            return users * self.n_days + days, n, np.arange(n) // self.n_days
        n = self.n_requests[kind]
        return np.arange(n), n, np.arange(n)


def resolve_metric(name: str, logged: Mapping) -> tuple[str, str] | None:
    """A metric NAME as (kind of request, reward): the catalogue's A/B metrics, else a reward column of
    the logs (``feed.NAME`` / ``comments.NAME`` where both surfaces have it); None: ``sessions``."""
    if name in METRICS and (METRICS[name] is None or METRICS[name][1] in logged.get(METRICS[name][0], {}).get("rewards", {})):
        return METRICS[name]
    surface, dot, reward = name.rpartition(".")
    kinds = {"feed": "video", "comments": "comment"}
    if dot and surface in kinds and reward in logged.get(kinds[surface], {}).get("rewards", {}):
        return kinds[surface], reward
    found = [kind for kind, lg in logged.items() if name in lg["rewards"]]
    if len(found) == 1:
        return found[0], name
    rewards = sorted({f"{'feed' if k == 'video' else 'comments'}.{r}" for k, lg in logged.items() for r in lg["rewards"]})
    if len(found) > 1:
        raise InputError(f"--metric {name!r}: both surfaces log it; name one: feed.{name} or comments.{name}")
    raise InputError(f"--metric {name!r}: not a metric of these logs (their rewards: {', '.join(rewards)})")


class Arm(NamedTuple):
    """One target policy's per-request estimate, summed per unit."""

    value: float  # mean per unit
    ci: tuple[float, float]
    ess: float  # of the request weights (n requests for dm)
    support: float
    flags: tuple[str, ...]


class Prediction(NamedTuple):
    name: str
    estimator: str
    control: Arm | None
    treatment: Arm | None
    abs_effect: float
    abs_ci: tuple[float, float]
    rel_effect: float
    rel_ci: tuple[float, float]
    p_value: float
    n_units: int
    n_requests: int
    flags: tuple[str, ...]
    sessions: dict | None = None  # the session model's figures per arm (see abtest.sessions)

    def as_dict(self) -> dict:
        num = ope._num
        arm = (lambda a: None if a is None else {"value": num(a.value), "ci": [num(c) for c in a.ci],
                                                  "ess": num(a.ess), "support": num(a.support), "flags": list(a.flags)})
        return {"name": self.name, "variant": "treatment", "kind": "mean", "estimator": self.estimator,
                "control_mean": num(self.control.value) if self.control else None,
                "treatment_mean": num(self.treatment.value) if self.treatment else None,
                "abs_effect": num(self.abs_effect), "abs_ci": [num(c) for c in self.abs_ci],
                "rel_effect": num(self.rel_effect), "rel_ci": [num(c) for c in self.rel_ci],
                "p_value": num(self.p_value), "n_units": self.n_units, "n_requests": self.n_requests,
                "control": arm(self.control), "treatment": arm(self.treatment), "flags": list(self.flags),
                **({"sessions": self.sessions} if self.sessions is not None else {})}


def request_terms(estimator: str, log: Mapping, target: Mapping, reward: np.ndarray, *, preview: int,
                  q: tuple[np.ndarray, np.ndarray] | None, alpha: float, sections: bool = False) -> ope.Estimate:
    """One target's per-request estimate of one reward ([n, K]) on one kind of logged request
    (``sections``: comment requests, whose ``rewards["impressions"]`` mark the reached positions)."""
    items = np.asarray(log["items"], np.int64)
    mask = items >= 0
    r = np.where(mask, np.asarray(reward, np.float64), 0.0)
    reached = np.asarray(log["rewards"]["impressions"]) > 0 if sections and "impressions" in log["rewards"] else None
    x = Inputs(r, mask, np.asarray(target["items"], np.int64) >= 0, log["logging_marginal"], log["logging_prefix"],
               target["marginal"], target["prefix"], q, reached, preview, sections, alpha, np.asarray(log["user_id"]))
    return ESTIMATORS[estimator].run(x)


def reward_model_predictions(log: Mapping, targets: list[Mapping], reward: np.ndarray,
                             prior_strength: float = 5.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-fitted (two folds of users) q̂ for the logged items and for each target's slate."""
    items = np.asarray(log["items"], np.int64)
    mask = items >= 0
    n, K = items.shape
    positions = np.broadcast_to(np.arange(K), (n, K))
    folds = np.broadcast_to((np.asarray(log["user_id"]) % 2)[:, None], (n, K))
    r = np.where(mask, np.asarray(reward, np.float64), 0.0)
    queries = [(items, positions, folds)]
    for t in targets:
        if "distribution" in t:  # every candidate at every position: q̂ of all, weighted by the target's probabilities
            cands, probs = t["distribution"]  # [n, C] item ids (−1 padding), [n, K, C]
            C = cands.shape[1]
            queries.append((np.repeat(cands[:, None, :], K, axis=1).reshape(n, K * C),
                            np.repeat(np.arange(K), C)[None, :].repeat(n, axis=0), np.repeat(folds[:, :1], K * C, axis=1)))
        else:
            queries.append((np.asarray(t["items"], np.int64), positions, folds))
    q = ope.cross_fit(items[mask], positions[mask], r[mask], folds[mask], queries, prior_strength)
    q_logged = np.where(mask, q[0], 0.0)
    out = []
    for t, qt in zip(targets, q[1:]):
        if "distribution" in t:
            cands, probs = t["distribution"]
            qt = (np.where(cands[:, None, :] >= 0, qt.reshape(n, K, -1), 0.0) * probs).sum(axis=2)
            out.append((q_logged, np.where(mask, qt, 0.0)))
        else:
            out.append((q_logged, np.where(np.asarray(t["items"]) >= 0, qt, 0.0)))
    return out


def _per_unit(est: ope.Estimate, units: np.ndarray, n_units: int, unit_user: np.ndarray, alpha: float) -> ope.Estimate:
    terms = np.bincount(units, weights=est.terms, minlength=n_units)
    return ope._finish(terms, None, None, alpha, unit_user)


def _arm(est: ope.Estimate, unit_est: ope.Estimate) -> Arm:
    return Arm(unit_est.value, unit_est.ci, est.ess, est.support, est.flags)


def predict(
    logged: Mapping[str, Mapping], control: Mapping[str, Mapping], treatment: Mapping[str, Mapping], *,
    units: Units, preview: int, metrics=DEFAULT_METRICS, estimator: str = DEFAULT_ESTIMATOR,
    alpha: float = 0.05, response_model=None, bootstrap: int = 0, seed: int = 0,
    sessions: "session_model.SessionFits | None" = None,
) -> list[Prediction]:
    """The predicted lift of treatment over control per unit (user-day, or request), for each metric.

    ``logged[kind]``: ``items``, ``logging_marginal``, ``logging_prefix`` ([n, K]), ``user_id``, ``day``
    ([n]) and ``rewards`` (reward → [n, K]); ``control[kind]`` / ``treatment[kind]``: the target's
    ``items``, ``marginal``, ``prefix`` (and ``distribution``: (candidates [n, C], probabilities [n, K, C])
    for a target that gives its whole distribution). ``metrics``: catalogue names or reward columns
    (``resolve_metric``). ``preview``: the comment section's preview size (video feeds are plain
    cascades). ``response_model(kind, reward, [logged, control, treatment items])`` returns the fitted
    user-response model's [n, K] predictions for the three slates, or None where it does not model that
    reward (the "model" estimators then use the item x position model); called with ``subset=``
    (request indices, with repeats) it refits on those requests. ``bootstrap`` > 0: the model
    estimators' relative interval is the percentile interval of that many cluster-bootstrap replicates
    (users resampled, the response model refitted on each); the generator is seeded with ``seed``.
    ``sessions``: the fitted session model (abtest.offline.sessions.fit_with_bootstrap); needs users, the
    video rewards ``frac`` and ``watch_s`` and, for comment metrics, the composed rewards. Every metric
    is then session-adjusted (see the module docstring), ``bootstrap`` is replaced by the fits'
    replicates, and ``sessions`` is predicted.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    est = ESTIMATORS[estimator]
    specs = {name: resolve_metric(name, logged) for name in metrics}
    if sessions is not None and not units.n_users:
        raise InputError("the session model needs users in the logs: predict with --hold-sessions")

    def unit_terms(kind: str, reward_name: str, subset=None):
        """Per-request estimates of both arms on one kind of request, and their per-unit sums
        (``subset``: refit the response model on these requests, a bootstrap replicate)."""
        log = logged[kind]
        reward = log["rewards"][reward_name]
        users, days = np.asarray(log["user_id"], np.int64), np.asarray(log["day"], np.int64)
        if units.n_users and len(users) and (users.max() >= units.n_users or days.max() >= units.n_days
                                             or users.min() < 0 or days.min() < 0):
            raise InputError("logged requests name users or days outside the log's population")
        unit, n_units, unit_cluster = units.of(kind, users, days)
        mask = np.asarray(log["items"]) >= 0
        if est.weights == "prefix" and any(np.isnan(np.asarray(p)[mask]).any() for p in
                                           (log["logging_prefix"], control[kind]["prefix"], treatment[kind]["prefix"])):
            raise InputError(f"--estimator {estimator} weighs whole prefixes, whose probabilities the logs or a target do "
                             f"not give (a table: target gives positions only); use ips, snips, dr or model-pdr")
        q = [None, None]
        learned = None
        block = preview if kind == "comment" else 1
        if est.model == "response" and response_model is not None and not (estimator == "model-pcm" and kind == "comment"):
            slates = [log["items"], control[kind]["items"], treatment[kind]["items"]]
            learned = (response_model(kind, reward_name, slates) if subset is None
                       else response_model(kind, reward_name, slates, subset=subset(users)))
        if learned is not None:
            q = [(learned[0], learned[1]), (learned[0], learned[2])]
        elif est.model is not None and not (estimator == "model-pcm" and kind == "comment"):
            q = reward_model_predictions(log, [control[kind], treatment[kind]], reward)
        per_request = [request_terms(estimator, log, t, reward, preview=block, q=qt, alpha=alpha,
                                     sections=kind == "comment") for t, qt in zip((control[kind], treatment[kind]), q)]
        per_unit = [_per_unit(e, unit, n_units, unit_cluster, alpha) for e in per_request]
        logged_unit = np.bincount(unit, weights=np.where(mask, reward, 0.0).sum(axis=1), minlength=n_units)
        return per_request, per_unit, logged_unit, len(users), learned is not None

    if sessions is not None:
        memo = functools.lru_cache(maxsize=None)(lambda kind, reward: unit_terms(kind, reward))
        return [_session_adjusted(name, specs[name], estimator, memo, logged, sessions, units.n_users, units.n_days,
                                  alpha) for name in metrics]
    out = []
    for name in metrics:
        spec = specs[name]
        if spec is None:
            nan2 = (math.nan, math.nan)
            n_units = units.n_users * units.n_days
            out.append(Prediction(name, estimator, None, None, math.nan, nan2, math.nan, nan2, math.nan, n_units, 0,
                                  ("not_identified",)))
            continue
        kind, reward_name = spec
        per_request, (c_unit, t_unit), _, n_req, learned = unit_terms(kind, reward_name)
        n_units, unit_cluster = len(c_unit.terms), units.of(kind, np.zeros(0, np.int64), np.zeros(0, np.int64))[2]
        downstream = f"comment_{reward_name}"
        composed = kind == "comment" and units.n_users and downstream in logged.get("video", {}).get("rewards", {})
        video = unit_terms("video", downstream) if composed else None
        boot_ci = None
        if bootstrap > 0 and learned:
            boot_ci = _bootstrap_ci(lambda sub: unit_terms(kind, reward_name, sub)[1], video, units.n_users,
                                    units.n_days, bootstrap, seed, alpha)
        if composed:
            pred = _composed(name, estimator, per_request, (c_unit, t_unit), video, unit_cluster, n_units, n_req, alpha)
            out.append(pred if boot_ci is None else _with_interval(pred, boot_ci))
            continue
        diff = ope.lift(t_unit, c_unit, alpha=alpha, clusters=unit_cluster)
        se = (diff.abs_ci[1] - diff.abs_effect) / ope.z_value(alpha) if math.isfinite(diff.abs_ci[1]) else math.nan
        p = float(2 * norm.sf(abs(diff.abs_effect) / se)) if se > 0 else math.nan
        flags = tuple(sorted({f for e in per_request for f in e.flags}))
        pred = Prediction(name, estimator, _arm(per_request[0], c_unit), _arm(per_request[1], t_unit),
                          diff.abs_effect, diff.abs_ci, diff.rel_effect, diff.rel_ci, p, n_units, n_req, flags)
        out.append(pred if boot_ci is None else _with_interval(pred, boot_ci))
    return out


def _bootstrap_ci(refit, video, n_users: int, n_days: int, replicates: int, seed: int, alpha: float):
    """Percentile interval of the relative lift over cluster-bootstrap replicates: users drawn with
    replacement, the response model refitted on their requests, each unit weighted by its user's
    multiplicity. ``refit(subset)`` returns the replicate's per-unit estimates of both arms."""
    rng = np.random.default_rng(seed)
    lifts = []
    for _ in range(replicates):
        mult = np.bincount(rng.integers(n_users, size=n_users), minlength=n_users)
        weight = np.repeat(mult, n_days)  # units are user-major

        def subset(request_users, mult=mult):
            return np.repeat(np.arange(len(request_users)), mult[request_users])

        c, t = refit(subset)
        ratio = np.dot(weight, t.terms) / np.dot(weight, c.terms)
        if video is not None:
            bc, bt = video[1]
            ratio *= np.dot(weight, bt.terms) / np.dot(weight, bc.terms)
        lifts.append(ratio - 1.0)
    lo, hi = np.quantile(np.asarray(lifts), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _with_interval(pred: Prediction, rel_ci: tuple[float, float]) -> Prediction:
    """The prediction with a bootstrap relative interval (the absolute one scaled to match)."""
    base = pred.control.value if pred.control is not None else math.nan
    return pred._replace(rel_ci=rel_ci, abs_ci=(base * rel_ci[0], base * rel_ci[1]),
                         flags=tuple(sorted(set(pred.flags) | {"bootstrap_ci"})))


def _composed(name, estimator, comment_requests, comment_units, video, unit_user, n_units, n_requests, alpha) -> Prediction:
    """Comment metrics under a policy that ranks videos *and* comments: the feed decides which sections
    a user opens (the video factor: each video position's downstream section reward, weighted on
    video requests), the comment ranking how much each section yields (the comment factor, on
    comment requests). With B, A and L the per-unit means of the video factor, the comment factor
    and the logged value, a policy's value is predicted as B · A / L (effects multiply), so

        log(V_t / V_c) = log(B_t / B_c) + log(A_t / A_c)

    with the influence terms of the four means added per unit (one clustered SE; both arms on the
    same logs)."""
    video_requests, (bc, bt), *_ = video
    ac, at = comment_units
    means = [e.value for e in (bc, bt, ac, at)]
    flags = tuple(sorted({f for e in (*comment_requests, *video_requests) for f in e.flags}))
    logged_mean = float(video[2].mean())
    nan2 = (math.nan, math.nan)
    if not all(math.isfinite(m) and m > 0 for m in means) or logged_mean <= 0:
        return Prediction(name, estimator, None, None, math.nan, nan2, math.nan, nan2, math.nan, n_units, n_requests,
                          tuple(sorted(set(flags) | {"no_estimate"})))
    B_c, B_t, A_c, A_t = means
    log_ratio = math.log(B_t / B_c) + math.log(A_t / A_c)
    phi = (bt.terms / B_t - bc.terms / B_c) + (at.terms / A_t - ac.terms / A_c)
    se = ope.standard_error(phi, unit_user)
    z = ope.z_value(alpha)
    rel = math.exp(log_ratio) - 1.0
    rel_ci = (math.exp(log_ratio - z * se) - 1.0, math.exp(log_ratio + z * se) - 1.0)
    v_c, v_t = B_c * A_c / logged_mean, B_t * A_t / logged_mean
    logged_terms = video[2]

    def arm(b, a, ess_from, B, A):
        phi_arm = b.terms / B + a.terms / A - logged_terms / logged_mean
        half = z * ope.standard_error(phi_arm, unit_user)
        v = B * A / logged_mean
        return Arm(v, (v * math.exp(-half), v * math.exp(half)), min(e.ess for e in ess_from),
                   min(e.support for e in ess_from), tuple(sorted({f for e in ess_from for f in e.flags})))

    c_arm = arm(bc, ac, (video_requests[0], comment_requests[0]), B_c, A_c)
    t_arm = arm(bt, at, (video_requests[1], comment_requests[1]), B_t, A_t)
    p = float(2 * norm.sf(abs(log_ratio) / se)) if se > 0 else math.nan
    return Prediction(name, estimator, c_arm, t_arm, v_t - v_c, (v_c * rel_ci[0], v_c * rel_ci[1]), rel, rel_ci, p,
                      n_units, n_requests, flags)


# ------------------------------------------------------------------------------------------------
def _session_adjusted(name, spec, estimator, unit_terms, logged, fits, n_users: int, n_days: int, alpha: float) -> Prediction:
    """One metric's prediction with the session model: value per user-day = per-request value ×
    (model impressions per user-day under the arm) / (under the logging policy). The arms'
    per-impression engagement (watch fraction, comment read seconds, seconds) is the per-request
    estimator's per-unit value over the logged impressions. Intervals: percentile over the fits'
    bootstrap replicates (users resampled; per-unit terms reweighted, the session model refitted; the
    response models are not refitted: on the validation worlds refitting them moved the interval's
    ends by under 1%, at 30 times the cost)."""
    slog = fits.log
    if "frac" not in logged["video"]["rewards"]:
        raise InputError("the session-adjusted prediction needs the video reward 'frac' (watch fraction per impression)")
    has_reads = "comment_read_s" in logged["video"]["rewards"] and "read_s" in logged.get("comment", {}).get("rewards", {})
    composed = spec is not None and spec[0] == "comment" and f"comment_{spec[1]}" in logged["video"]["rewards"]
    needed = {"frac": ("video", "frac"), "watch": ("video", "watch_s")}
    if has_reads:
        needed |= {"reads_video": ("video", "comment_read_s"), "reads_comment": ("comment", "read_s")}
    if spec is not None:
        needed["own"] = spec
    if composed:
        needed["own_video"] = ("video", f"comment_{spec[1]}")

    def gather(get):
        return {key: get(*what) for key, what in needed.items()}

    point = gather(unit_terms)
    flags = set()
    for key in ("frac", "watch", "own", "own_video"):
        if key in point:
            flags |= {f for e in point[key][0] for f in e.flags}

    def mean(x, wu):
        return float(np.dot(wu, x) / wu.sum())

    def composed_value(video_t, comment_t, arm, wu):
        """B·A/L: the video factor times the comment factor over the logged value."""
        B, A, L = mean(video_t[1][arm].terms, wu), mean(comment_t[1][arm].terms, wu), mean(video_t[2], wu)
        return B * A / L if L > 0 else math.nan

    def evaluate(model, wu, ws, T):
        imps = float(np.dot(ws, slog.n)) / wu.sum()  # logged impressions per unit
        logged_e = session_model.logged_engagement(slog, ws)
        logged_watch = mean(T["watch"][2], wu) / imps
        base = session_model.impressions_per_day(model, slog, logged_e, ws)
        values, figures = [], []
        for arm in (0, 1):
            read = (composed_value(T["reads_video"], T["reads_comment"], arm, wu) / imps if has_reads
                    else logged_e.read_s)
            e = session_model.Engagement(mean(T["frac"][1][arm].terms, wu) / imps, read,
                                         logged_e.seconds + (mean(T["watch"][1][arm].terms, wu) / imps - logged_watch)
                                         + (read - logged_e.read_s))
            per_day, per_day_sessions, length = session_model.impressions_per_day(model, slog, e, ws)
            if spec is None:
                values.append(per_day_sessions * _share_with_session(slog, wu, ws))
            else:
                v = composed_value(T["own_video"], T["own"], arm, wu) if composed else mean(T["own"][1][arm].terms, wu)
                values.append(v * per_day / base[0])
            figures.append({"watch_fraction": e.frac, "comment_read_s": e.read_s, "seconds": e.seconds,
                            "length": length, "sessions_per_active_day": per_day_sessions,
                            "impression_multiplier": per_day / base[0]})
        return values, figures, base

    ones_u, ones_s = np.ones(n_users * n_days), np.ones(len(slog.n))
    (v_c, v_t), figures, base = evaluate(fits.model, ones_u, ones_s, point)
    reps = []
    for mult, model in zip(fits.multiplicity, fits.replicates):
        wu = np.repeat(mult, n_days).astype(np.float64)
        reps.append(evaluate(model, wu, mult[slog.user].astype(np.float64), point)[0])
    reps = np.asarray(reps, dtype=np.float64).reshape(-1, 2)
    n_req = len(logged[spec[0]]["user_id"]) if spec is not None else 0
    nan2 = (math.nan, math.nan)
    ok = np.all(np.isfinite(reps), axis=1) & np.all(reps > 0, axis=1)
    extra = {"model": fits.model.as_dict(), "replicates": int(len(fits.replicates)),
             "logging": {"length": base[2], "sessions_per_active_day": base[1]},
             "control": figures[0], "treatment": figures[1]}
    if not (math.isfinite(v_c) and math.isfinite(v_t) and v_c > 0 and v_t > 0) or ok.sum() < 2:
        return Prediction(name, estimator, None, None, math.nan, nan2, math.nan, nan2, math.nan, n_users * n_days, n_req,
                          tuple(sorted(flags | {"no_estimate", "session_model"})), extra)
    q = [alpha / 2, 1 - alpha / 2]
    lo_hi = lambda x: tuple(float(v) for v in np.quantile(x, q))  # noqa: E731
    rel = v_t / v_c - 1.0
    log_ratios = np.log(reps[ok, 1] / reps[ok, 0])
    se = float(np.std(log_ratios, ddof=1))
    p = float(2 * norm.sf(abs(math.log(v_t / v_c)) / se)) if se > 0 else math.nan
    per_arm = [[point[key][0][a] for key in ("frac", "own", "own_video") if key in point] for a in (0, 1)]
    arms = [Arm(v, lo_hi(reps[ok, a]), min(e.ess for e in per_arm[a]), min(e.support for e in per_arm[a]),
                tuple(sorted({f for e in per_arm[a] for f in e.flags}))) for a, v in enumerate((v_c, v_t))]
    return Prediction(name, estimator, arms[0], arms[1], v_t - v_c, lo_hi(reps[ok, 1] - reps[ok, 0]), rel,
                      lo_hi(np.exp(log_ratios) - 1.0), p, n_users * n_days, n_req,
                      tuple(sorted(flags | {"session_model", "bootstrap_ci"})), extra)


def _share_with_session(slog, wu, ws) -> float:
    """The share of user-days with a logged session (sessions per user-day = this × sessions per active day)."""
    first = session_model._first_sessions(slog)
    return float(np.sum(ws[first]) / wu.sum())
