"""How long users stay and how soon they return, fitted on a logging run: the session half of the
offline prediction.

A per-request estimator (abtest.cascade, abtest.ope) values each logged request under a target
policy but holds the logged request stream fixed: the same number of impressions per session and
the same sessions per day. A policy whose videos users enjoy keeps them longer and brings them back
sooner, and per-user metrics grow with both. This module fits, on the logs alone, the two user
responses that carry that effect, and turns a target's per-impression engagement (estimated by the
per-request estimator) into its sessions' length and their number per day.

Session length: a time budget (the patience model of RecSim's interest-evolution environment). A
session starts with a budget τ ~ LogNormal(μ, σ); the i-th impression costs

    c_i = 1 − β·f_i − γ·g_i        f_i: watch fraction of the impression (0 when skipped)
                                    g_i: seconds read in the comment section opened after it

and the session ends after the first impression at which the spent budget C_n = Σ_{i≤n} c_i reaches
τ (or at the platform's impression cap, a censored session). Given the observed sequence (f_i, g_i)
the length is a first passage of C, so the likelihood of a session that ended after N impressions
is F(C_N) − F(max_{n<N} C_n) and of a censored one 1 − F(max_{n≤N} C_n), F the budget's CDF: (β, γ,
μ, σ) are fitted by maximum likelihood (analytic gradient, then a simplex polish over the kinks). The variation that identifies β and γ is within sessions
(which impressions came when), which the logging policy's randomisation and the users' own noise
supply; the budget is independent of the slates.

Return: the gap from a session's end to the next session's start is min_gap + Exp(mean
exp(α − w·s)), s the session's mean watch fraction per impression (its satisfaction); gaps cut by the
end of the run are censored. (α, w) by maximum likelihood.

Prediction under a policy with per-impression means f̄, ḡ and seconds per impression t̄: expected
length E[min(cap, τ / c̄ + ½)] with c̄ = 1 − β f̄ − γ ḡ (cap when c̄ ≤ 0), session duration length·t̄,
and for each logged user-day the expected number of sessions that start before the day ends, given
the first one's start (a renewal process: session, min_gap, exponential gap). The multiplier a
per-request value is scaled by is the ratio of the model's expected impressions per user-day under
the target to that under the logging policy (computed by the same formulas, so their
approximations cancel).

Held out of the model: fatigue within long sessions (later impressions play a little less), users'
heterogeneity in how often they come (one α for all), and returns within the pre-period.

Known limit, measured: the comment term is a proxy. What a read gives back depends on how much the
comment suited its reader, which the logs show only partly: on a 400-user, one-day popularity@1
logging run of the default world the fitted γ is 0.069 per read second, while the platform gave back
0.101 per read second on average in those logs and 0.136 per read second with the oracle's comments
(better comments are read longer, but give back more still). Fitted with the true refund of each
impression as the regressor (a simulator-only check) the same model recovers it (coefficient 1.02)
and predicts the oracle's mean cost per impression as 0.222 against the true 0.199; with read
seconds it predicts 0.366. Read counts and likes as further regressors (alone or together) leave the
oracle's predicted cost at 0.35–0.43: per opened section the true refund correlates 0.84 with read
seconds, 0.85 with reads and 0.20 with likes, and a first-passage likelihood attenuates a noisy
regressor. So for a target whose comments are far better than the logger's, session length is
under-predicted (the oracle's 82 impressions per session predicted as about 46 there).

Pure NumPy/SciPy over a feedback log (abtest.offline.feedback); never imports torch, lsvcr or simulator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from ..errors import InputError

DAY_S = 86400.0


@dataclass(frozen=True)
class SessionLog:
    """The logged sessions of a run, one row per session (user-major, then time)."""

    user: np.ndarray  # [S]
    start: np.ndarray  # [S] seconds since the run started
    end: np.ndarray  # [S] the last event's time (the session_end row's, where logged)
    ended: np.ndarray  # [S] bool: the budget ran out (False: cut by the run's end or the impression cap)
    n: np.ndarray  # [S] impressions
    frac: np.ndarray  # [S, Nmax] watch fraction per impression, 0 when skipped or past n
    read_s: np.ndarray  # [S, Nmax] comment read seconds after each impression
    run_s: float  # the run's length in seconds
    cap: int  # the platform's impression cap per session
    min_gap_s: float  # the platform's shortest gap between sessions

    def subset(self, rows: np.ndarray) -> "SessionLog":
        return SessionLog(self.user[rows], self.start[rows], self.end[rows], self.ended[rows], self.n[rows],
                          self.frac[rows], self.read_s[rows], self.run_s, self.cap, self.min_gap_s)

    @property
    def day(self) -> np.ndarray:
        return np.floor(self.start / DAY_S).astype(np.int64)


def from_feedback(fb) -> SessionLog:
    """The sessions of a feedback log (``abtest.offline.feedback``): its ``sessions.parquet``, each
    session's reached feed positions in order with their watch fraction (``watch_s`` over the video's
    duration) and the seconds read in the comment section opened after each (summed in position order).
    Raises InputError when the log lacks what the model needs."""
    cfg, feed = fb.meta.get("session") or {}, fb.surfaces.get("feed")
    missing = [what for what, ok in (("sessions.parquet", fb.sessions is not None), ("meta.json session cap and min_gap_s",
               "cap" in cfg and "min_gap_s" in cfg), ("feed requests", feed is not None),
               ("the feed outcomes impressions, plays and watch_s", feed is not None and
                all(r in feed.rewards for r in ("impressions", "plays", "watch_s"))),
               ("video durations (items.parquet duration_s)", "feed" in fb.items)) if not ok]
    if missing:
        raise InputError(f"{fb.path}: the session model needs {missing[0]}; without it, predict with --hold-sessions")
    s = fb.sessions
    order = np.argsort(s.session_id, kind="stable")
    sid = s.session_id[order]
    S = len(sid)
    session_of = np.searchsorted(sid, feed.session)
    if len(feed) and (np.any(session_of >= S) or np.any(sid[np.minimum(session_of, S - 1)] != feed.session)):
        raise InputError(f"{fb.path}: a feed request names a session_id that sessions.parquet does not list")
    videos = fb.items["feed"]
    duration = np.full(int(max(videos.ids.max(initial=0), feed.items.max(initial=0))) + 1, np.nan)
    duration[videos.ids] = videos.duration_s
    reached = (feed.rewards["impressions"] > 0) & (feed.items >= 0)
    counts = np.bincount(session_of, weights=reached.sum(axis=1), minlength=S).astype(np.int64)
    width = max(int(counts.max()) if S else 1, 1)
    frac, read = np.zeros((S, width)), np.zeros((S, width))
    i, j = np.nonzero(reached)  # log order: user, time, position = each session's impressions in order
    slot = np.zeros(feed.items.shape, np.int64)
    done = np.zeros(S, np.int64)
    for a, b in zip(i.tolist(), j.tolist()):
        slot[a, b] = done[session_of[a]]
        done[session_of[a]] += 1
    played = reached & (feed.rewards["plays"] > 0)
    pi, pj = np.nonzero(played)
    frac[session_of[pi], slot[pi, pj]] = feed.rewards["watch_s"][pi, pj] / np.maximum(duration[feed.items[pi, pj]], 1e-9)
    com = fb.surfaces.get("comments")
    if com is not None and "read_s" in com.rewards:  # a section's reads go to the impression whose play opened it
        f_order = np.lexsort((feed.ts, feed.user))
        for c in np.flatnonzero(com.rewards["read_s"].sum(axis=1) > 0):
            lo, hi = np.searchsorted(feed.user[f_order], com.user[c], "left"), np.searchsorted(feed.user[f_order], com.user[c], "right")
            k = lo + np.searchsorted(feed.ts[f_order][lo:hi], com.ts[c], "right") - 1
            p = f_order[k]
            at = np.flatnonzero(feed.items[p] == com.video[c])
            if k < lo or not len(at) or not reached[p, at[0]]:
                raise InputError(f"{fb.path}: comment section {com.request_id[c]} follows no reached feed position of its video")
            for pos in range(com.items.shape[1]):
                if com.rewards["read_s"][c, pos] != 0.0:
                    read[session_of[p], slot[p, at[0]]] += com.rewards["read_s"][c, pos]
    ended = s.ended[order] & (counts < int(cfg["cap"]))
    return SessionLog(s.user[order], s.start[order], s.end[order], ended, counts, np.clip(frac, 0.0, 1.0), read,
                      fb.n_days * DAY_S, int(cfg["cap"]), float(cfg["min_gap_s"]))


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SessionModel:
    beta: float  # budget refunded per unit of watch fraction
    gamma: float  # per comment read second
    mu: float  # log budget: mean
    sigma: float  # and sd
    alpha: float  # log mean gap (seconds, beyond min_gap) at zero satisfaction
    w: float  # log mean gap drop per unit of satisfaction
    cap: int
    min_gap_s: float

    def as_dict(self) -> dict:
        return {k: (float(v) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _budget_terms(log: SessionLog):
    J = np.arange(1, log.frac.shape[1] + 1, dtype=np.float64)
    valid = J[None, :] <= log.n[:, None]
    return J, np.cumsum(log.frac, axis=1), np.cumsum(log.read_s, axis=1), valid


def _budget_nll(theta, J, F, G, valid, n, ended, weights):
    """The negative log-likelihood of the budget model and its gradient in (β, γ, μ, log σ)."""
    beta, gamma, mu, log_sigma = theta
    sigma = math.exp(log_sigma)
    C = np.where(valid, J[None, :] - beta * F - gamma * G, -np.inf)
    rows = np.arange(len(n))
    last = n - 1

    def prefix_argmax(upto):
        """Index of the largest C_j for j <= upto (−1 where upto < 0)."""
        idx = np.where(np.arange(C.shape[1])[None, :] <= upto[:, None], C, -np.inf).argmax(axis=1)
        return np.where(upto >= 0, idx, -1)

    k_prev = prefix_argmax(last - 1)  # the highest point before the last impression
    k_all = np.where(C[rows, last] >= np.where(k_prev >= 0, C[rows, np.maximum(k_prev, 0)], -np.inf), last, k_prev)
    k_b = np.where(ended, k_prev, k_all)  # ended: F(C_N) − F(max before); censored: 1 − F(max through N)

    def at(k):
        k0 = np.maximum(k, 0)
        c = np.where(k >= 0, C[rows, k0], 0.0)
        return c, np.where(k >= 0, F[rows, k0], 0.0), np.where(k >= 0, G[rows, k0], 0.0)

    def cdf_terms(x, fx, gx):
        pos = x > 0
        lx = np.log(np.where(pos, x, 1.0))
        z = (lx - mu) / sigma
        cdf = np.where(pos, special.ndtr(z), 0.0)
        dens = np.where(pos, np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi), 0.0)
        inv = np.where(pos, 1.0 / (sigma * np.where(pos, x, 1.0)), 0.0)
        grad = np.stack([dens * inv * -fx, dens * inv * -gx, dens * -1.0 / sigma, dens * -z], axis=1)
        return cdf, grad

    ca, ga = cdf_terms(*at(last))
    cb, gb = cdf_terms(*at(k_b))
    p = np.where(ended, ca - cb, 1.0 - cb)
    dp = np.where(ended[:, None], ga - gb, -gb)
    ok = p > 1e-12
    p_safe = np.where(ok, p, 1e-12)
    value = -float(np.dot(weights, np.log(p_safe)))
    grad = -((weights * ok / p_safe)[:, None] * dp).sum(axis=0)
    return value, grad


def _gap_data(log: SessionLog):
    """Observed gaps (session end -> next start of the same user) and censored last gaps."""
    same = np.r_[log.user[1:] == log.user[:-1], False]
    gap = np.where(same, np.r_[log.start[1:], 0.0] - log.end - log.min_gap_s, log.run_s - log.end - log.min_gap_s)
    satisfaction = log.frac.sum(axis=1) / np.maximum(log.n, 1)
    keep = (log.n > 0) & (gap > 0)
    return np.maximum(gap, 1e-6), same, satisfaction, keep


def _gap_nll(theta, gap, observed, sat, weights):
    alpha, w = theta
    log_mean = alpha - w * sat
    rate_gap = gap * np.exp(-log_mean)
    return -float(np.dot(weights, np.where(observed, -log_mean - rate_gap, -rate_gap)))


def fit(log: SessionLog, weights: np.ndarray | None = None, start: SessionModel | None = None) -> SessionModel:
    """Maximum-likelihood session model; ``weights`` per session (a bootstrap's multiplicities)."""
    if len(log.n) == 0 or not np.any(log.n > 0):
        raise InputError("the logging run has no sessions with impressions: the session model cannot be fitted")
    weights = np.ones(len(log.n)) if weights is None else np.asarray(weights, np.float64)
    use = (log.n > 0) & (weights > 0)
    J, F, G, valid = _budget_terms(log)
    args = (J, F[use], G[use], valid[use], log.n[use], log.ended[use], weights[use])
    if start is None:
        mean_n = float(np.average(log.n[use], weights=weights[use]))
        x0 = [0.5, 0.0, math.log(mean_n), math.log(0.6)]
    else:
        x0 = [start.beta, start.gamma, start.mu, math.log(start.sigma)]
    # gradient steps, then a Nelder–Mead polish: the likelihood has kinks where the highest point
    # before a session's end changes, at which L-BFGS can stop short
    res = optimize.minimize(_budget_nll, x0, args=args, jac=True, method="L-BFGS-B")
    simplex = res.x + np.vstack([np.zeros(4), np.diag([0.03, 0.01, 0.03, 0.03])])
    res = optimize.minimize(lambda th: _budget_nll(th, *args)[0], res.x, method="Nelder-Mead",
                            options={"initial_simplex": simplex, "xatol": 1e-4, "fatol": 1e-3, "maxiter": 800})
    beta, gamma, mu, log_sigma = res.x
    gap, observed, sat, keep = _gap_data(log)
    keep &= weights > 0
    if start is None:
        mean_gap = float(np.sum(gap[keep] * weights[keep]) / max(np.sum(weights[keep] * observed[keep]), 1.0))
        g0 = [math.log(max(mean_gap, 1.0)), 0.0]
    else:
        g0 = [start.alpha, start.w]
    gres = optimize.minimize(_gap_nll, g0, args=(gap[keep], observed[keep], sat[keep], weights[keep]), method="BFGS")
    alpha, w = gres.x
    return SessionModel(float(beta), float(gamma), float(mu), float(math.exp(log_sigma)), float(alpha), float(w),
                        log.cap, log.min_gap_s)


# ------------------------------------------------------------------------------------------------
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(40)  # E over a standard normal
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def expected_length(model: SessionModel, frac: float, read_s: float) -> float:
    """Expected impressions per session when an impression costs 1 − β·frac − γ·read_s on average."""
    cost = 1.0 - model.beta * frac - model.gamma * read_s
    if cost <= 0:
        return float(model.cap)
    tau = np.exp(model.mu + model.sigma * _NODES)
    return float(np.dot(_WEIGHTS, np.minimum(model.cap, tau / cost + 0.5)))


def expected_sessions(model: SessionModel, first_start: np.ndarray, day_s: float, duration_s: float,
                      satisfaction: float, max_sessions: int = 60) -> np.ndarray:
    """Expected sessions started before ``day_s`` after a first one at ``first_start`` (seconds into the
    day): each lasts ``duration_s``, then min_gap + Exp(mean exp(α − w·satisfaction))."""
    mean_gap = math.exp(model.alpha - model.w * satisfaction)
    k = np.arange(1, max_sessions + 1)[None, :]
    room = (day_s - np.asarray(first_start, np.float64))[:, None] - k * (duration_s + model.min_gap_s)
    p = np.where(room > 0, stats.gamma.cdf(np.maximum(room, 0.0), a=k, scale=mean_gap), 0.0)
    return 1.0 + p.sum(axis=1)


@dataclass(frozen=True)
class Engagement:
    """A policy's per-impression means (from a per-request estimator, or logged)."""

    frac: float  # watch fraction
    read_s: float  # comment read seconds
    seconds: float  # seconds spent per impression (watching, reading, scanning, skipping)


def impressions_per_day(model: SessionModel, log: SessionLog, e: Engagement, weights: np.ndarray | None = None) -> tuple[float, float, float]:
    """(impressions, sessions, length) per user-day with a first session, expected under engagement ``e``."""
    length = expected_length(model, e.frac, e.read_s)
    first = _first_sessions(log)
    starts = log.start[first] - log.day[first] * DAY_S
    sessions = expected_sessions(model, starts, DAY_S, length * e.seconds, e.frac)
    wts = np.ones(len(starts)) if weights is None else np.asarray(weights, np.float64)[first]
    mean_sessions = float(np.dot(wts, sessions) / max(wts.sum(), 1e-12))
    return length * mean_sessions, mean_sessions, length


def _first_sessions(log: SessionLog) -> np.ndarray:
    key = log.user * 100_000 + log.day
    return np.flatnonzero(np.r_[True, key[1:] != key[:-1]])


def logged_engagement(log: SessionLog, weights: np.ndarray | None = None) -> Engagement:
    """The logging policy's per-impression means, straight from its sessions."""
    wts = np.ones(len(log.n)) if weights is None else np.asarray(weights, np.float64)
    imps = float(np.dot(wts, log.n))
    seconds = float(np.dot(wts, log.end - log.start))
    return Engagement(float(np.dot(wts, log.frac.sum(axis=1)) / imps), float(np.dot(wts, log.read_s.sum(axis=1)) / imps),
                      seconds / imps)


@dataclass(frozen=True)
class SessionFits:
    """A run's session model and its refits on cluster-bootstrap replicates (users drawn with
    replacement, ``multiplicity[b, user]`` times), shared by every prediction from that run."""

    log: SessionLog
    model: SessionModel
    multiplicity: np.ndarray  # [B, n_users]
    replicates: tuple[SessionModel, ...]


def fit_with_bootstrap(log: SessionLog, n_users: int, replicates: int, seed: int, progress=None) -> SessionFits:
    """Fit once, then refit (warm-started) on ``replicates`` user-bootstrap samples drawn with ``seed``."""
    model = fit(log)
    rng = np.random.default_rng(seed)
    mult = np.stack([np.bincount(rng.integers(n_users, size=n_users), minlength=n_users) for _ in range(replicates)]) \
        if replicates else np.zeros((0, n_users), np.int64)
    refits = []
    for b in range(replicates):
        refits.append(fit(log, weights=mult[b][log.user], start=model))
        if progress:
            progress(b + 1)
    return SessionFits(log, model, mult, tuple(refits))
