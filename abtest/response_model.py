"""A user-response model of comment sections, fitted on the logs alone: the model-based route of the
offline A/B prediction, where importance weights cannot reach (deterministic targets on 20-comment
slates leave a handful of matching logged prefixes).

What it sees: the logged comment requests (user, day, the shown comments, which positions the user
reached, read and how long), the comments' text and their like counts on each day. Never the
simulator's truth tables.

The model follows how a section is used — a preview decides the open, then a reading cascade —
with a user-comment affinity learned from text:

    s(u, c)   cosine of comment c's bag of words with the words of the comments u read in *other*
              requests (leave-one-request-out, so no request predicts itself)
    P(open)   = σ(α · [1, logit(u's open rate in other requests), mean s over the preview, mean log1p likes over the preview])
    P(read_j) = σ(β · [1, s_j, log1p likes_j])                      at a reached position
    E[secs_j] = exp(γ · [1, log words_j, s_j, log1p likes_j] + σ²/2) for a read comment (log-normal)
    P(go on)  = σ(κ · [1, read_j, read_j s_j, read_j log1p likes_j])
    q̂_j      = P(open) · Π_{l<j} P(go on after l) · P(read_j) · E[secs_j]

fitted by maximum likelihood (statsmodels Logit / OLS). ``q̂`` of a target's slate on a logged
request is the model's re-simulation of that user's section under the target (in expectation);
it plugs into the DM and cascade-DR estimators (abtest.cascade) as the reward model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import statsmodels.api as sm

_WORD = re.compile(r"[a-z']+")
OUTPUTS = ("read_s", "reads")


def bag_of_words(texts: list[str]) -> sp.csr_matrix:
    """[R, W] unit-norm binary bag of words of each text."""
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, text in enumerate(texts):
        for w in sorted(set(_WORD.findall(text.lower()))):
            rows.append(i)
            cols.append(vocab.setdefault(w, len(vocab)))
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), max(len(vocab), 1)))
    norms = np.sqrt(np.asarray(m.sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1.0)) @ m


@dataclass(frozen=True)
class SectionData:
    """Logged comment requests in the model's terms ([n] or [n, K]; rows: comment rows of ``bow``)."""

    users: np.ndarray  # [n]
    days: np.ndarray  # [n]
    rows: np.ndarray  # [n, K] shown comment rows, −1 past the end
    reached: np.ndarray  # [n, K] bool: the user saw this position in an opened section
    read: np.ndarray  # [n, K] bool
    read_s: np.ndarray  # [n, K]
    bow: sp.csr_matrix  # [R, W]
    words: np.ndarray  # [R] words per comment
    likes: np.ndarray  # [D, R] like counts each day


class Context:
    """Per request: the user's leave-one-request-out profile and open rate."""

    def __init__(self, d: SectionData):
        n_users = int(d.users.max()) + 1 if len(d.users) else 1
        n = len(d.users)
        read_rows = np.where(d.read & (d.rows >= 0), d.rows, -1)
        r_i, r_j = np.nonzero(read_rows >= 0)
        # D_i: the words this request's reads contribute; P_u: all of the user's reads
        own = sp.csr_matrix((np.ones(len(r_i)), (r_i, read_rows[r_i, r_j])), shape=(n, d.bow.shape[0])) @ d.bow
        to_user = sp.csr_matrix((np.ones(n), (d.users, np.arange(n))), shape=(n_users, n))
        self.profile_user = (to_user @ own).tocsr()  # [U, W]
        self.own = own.tocsr()  # [n, W]
        prof = self.profile_user[d.users]
        # ‖P_u − D_i‖² = ‖P_u‖² − 2 P_u·D_i + ‖D_i‖²
        sq = (np.asarray(prof.multiply(prof).sum(axis=1)).ravel() - 2 * np.asarray(prof.multiply(self.own).sum(axis=1)).ravel()
              + np.asarray(self.own.multiply(self.own).sum(axis=1)).ravel())
        self.norm = np.sqrt(np.maximum(sq, 0.0))
        opened = d.reached[:, 0]
        opens_u = np.bincount(d.users, weights=opened, minlength=n_users)
        reqs_u = np.bincount(d.users, minlength=n_users)
        rate = (opens_u[d.users] - opened + 1.0) / (reqs_u[d.users] - 1.0 + 4.0)
        self.open_logit = np.log(rate / (1.0 - rate))
        self.d = d

    def affinity(self, rows: np.ndarray) -> np.ndarray:
        """[n, K] s(u_i, rows_ij) with request i's leave-one-out profile (0 without other reads)."""
        d = self.d
        n, K = rows.shape
        i = np.repeat(np.arange(n), K)
        r = np.maximum(rows.ravel(), 0)
        b = d.bow[r]
        dot = (np.asarray(self.profile_user[d.users[i]].multiply(b).sum(axis=1)).ravel()
               - np.asarray(self.own[i].multiply(b).sum(axis=1)).ravel())
        norm = self.norm[i]
        s = np.divide(dot, norm, out=np.zeros_like(dot), where=norm > 1e-12)
        return np.where(rows.ravel() >= 0, s, 0.0).reshape(n, K)

    def log_likes(self, rows: np.ndarray) -> np.ndarray:
        return np.where(rows >= 0, np.log1p(self.d.likes[self.d.days[:, None], np.maximum(rows, 0)]), 0.0)


@dataclass(frozen=True)
class SectionModel:
    open: np.ndarray
    read: np.ndarray
    secs: np.ndarray
    secs_var: float
    cont: np.ndarray
    preview: int


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _logit(y, X) -> np.ndarray:
    return np.asarray(sm.Logit(y.astype(np.float64), X).fit(disp=0, method="newton", maxiter=50).params)


def fit(d: SectionData, preview: int, ctx: Context | None = None) -> SectionModel:
    ctx = ctx or Context(d)
    mask = d.rows >= 0
    s, L = ctx.affinity(d.rows), ctx.log_likes(d.rows)
    P = preview
    pm = mask[:, :P]
    npv = np.maximum(pm.sum(axis=1), 1)
    X_open = np.column_stack([np.ones(len(s)), ctx.open_logit, (s[:, :P] * pm).sum(1) / npv, (L[:, :P] * pm).sum(1) / npv])
    a = _logit(d.reached[:, 0], X_open)
    at = d.reached & mask
    X_read = np.column_stack([np.ones(at.sum()), s[at], L[at]])
    b = _logit(d.read[at], X_read)
    rd = d.read & mask & (d.read_s > 0)
    words = d.words[np.maximum(d.rows, 0)]
    X_secs = np.column_stack([np.ones(rd.sum()), np.log(np.maximum(words[rd], 1)), s[rd], L[rd]])
    ols = sm.OLS(np.log(d.read_s[rd]), X_secs).fit()
    nxt = np.zeros_like(at)
    nxt[:, :-1] = d.reached[:, 1:] & mask[:, 1:]
    has_next = at.copy()
    has_next[:, :-1] &= mask[:, 1:]
    has_next[:, -1] = False
    r = d.read[has_next].astype(np.float64)
    X_cont = np.column_stack([np.ones(len(r)), r, r * s[has_next], r * L[has_next]])
    k = _logit(nxt[has_next], X_cont)
    return SectionModel(a, b, np.asarray(ols.params), float(ols.scale), k, preview)


def predict(model: SectionModel, ctx: Context, rows: np.ndarray, output: str = "read_s") -> np.ndarray:
    """[n, K] the model's expected reward at each position of the slates ``rows`` on the logged requests."""
    if output not in OUTPUTS:
        raise ValueError(f"the section model predicts {', '.join(OUTPUTS)}, not {output!r}")
    mask = rows >= 0
    s, L = ctx.affinity(rows), ctx.log_likes(rows)
    P = model.preview
    pm = mask[:, :P]
    npv = np.maximum(pm.sum(axis=1), 1)
    p_open = _sigmoid(model.open[0] + model.open[1] * ctx.open_logit + model.open[2] * (s[:, :P] * pm).sum(1) / npv
                      + model.open[3] * (L[:, :P] * pm).sum(1) / npv)
    p_read = _sigmoid(model.read[0] + model.read[1] * s + model.read[2] * L)
    words = ctx.d.words[np.maximum(rows, 0)]
    secs = np.exp(model.secs[0] + model.secs[1] * np.log(np.maximum(words, 1)) + model.secs[2] * s + model.secs[3] * L
                  + model.secs_var / 2)
    k = model.cont
    go_on = p_read * _sigmoid(k[0] + k[1] + k[2] * s + k[3] * L) + (1 - p_read) * _sigmoid(k[0])
    reach = np.concatenate([np.ones((len(rows), 1)), np.cumprod(np.where(mask, go_on, 0.0), axis=1)[:, :-1]], axis=1)
    value = p_read * (secs if output == "read_s" else 1.0)
    return np.where(mask, p_open[:, None] * reach * value, 0.0)


def fit_predict(d: SectionData, preview: int, slates: list[np.ndarray], output: str = "read_s",
                users_subset: np.ndarray | None = None, ctx: Context | None = None) -> list[np.ndarray]:
    """Fit on ``d`` (or on the requests ``users_subset``, with repeats: a bootstrap's resample) and
    predict every slate in ``slates`` ([n, K] rows on d's requests). ``ctx``: a context built once."""
    ctx = ctx or Context(d)
    model = fit(d, preview, ctx) if users_subset is None else _fit_on(d, ctx, users_subset, preview)
    return [predict(model, ctx, rows, output) for rows in slates]


def _fit_on(d: SectionData, ctx: Context, idx: np.ndarray, preview: int) -> SectionModel:
    """Fit on the requests ``idx`` (with repeats), keeping the full-log context (profiles, rates)."""
    sub = SectionData(d.users[idx], d.days[idx], d.rows[idx], d.reached[idx], d.read[idx], d.read_s[idx],
                      d.bow, d.words, d.likes)
    view = Context.__new__(Context)
    view.d, view.profile_user, view.own = sub, ctx.profile_user, ctx.own[idx]
    view.norm, view.open_logit = ctx.norm[idx], ctx.open_logit[idx]
    return fit(sub, preview, view)
