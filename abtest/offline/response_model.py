"""A user-response model of comment sections, fitted on the logs alone: the model-based route of the
offline A/B prediction, where importance weights cannot reach (deterministic targets on 20-comment
slates leave a handful of matching logged prefixes).

What it sees: the logged comment requests (user, day, the shown comments, which positions the user
reached, read and how long), the comments' text and their like counts on each day. Never the
simulator's truth tables.

The model follows how a section is used — a preview decides the open, then a reading cascade —
with two user-comment affinities learned from text (comment_text_features: the subject words a
comment shares with the catalogue's titles, and the form words of its template and tone):

    s(u, c), f(u, c)  cosines of comment c's subject / form words with those of the comments u read
              in *other* requests (leave-one-request-out, so no request predicts itself)
    x_j       = [1, s_j, f_j, log1p likes_j]
    P(open)   = σ(α · [1, logit(u's open rate in other requests), means of s, f, log1p likes over the preview])
    P(read_j) = σ(β · x_j)                                            at a reached position
    E[secs_j] = exp(γ · [1, log words_j, s_j, f_j, log1p likes_j] + σ²/2) for a read comment (log-normal)
    P(go on)  = σ(κ · [1, read_j · x_j])
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


def bag_of_words(texts: list[str], max_df: float = 0.05, keep=None, pairs: bool = True) -> sp.csr_matrix:
    """[R, W] unit-norm TF-IDF bag of words (and, with ``pairs``, word pairs) of each text; features in
    more than ``max_df`` of the texts (template words: "who wins", "tips") are dropped, so the cosine of
    two texts measures the subject words they share. ``keep(word)``: only these words count (a pair
    when both do)."""
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, text in enumerate(texts):
        words = _WORD.findall(text.lower())
        if keep is not None:
            kept = [keep(w) for w in words]
            features = {w for w, k in zip(words, kept) if k}
            if pairs:
                features |= {f"{a} {b}" for a, b, ka, kb in zip(words, words[1:], kept, kept[1:]) if ka and kb}
        else:
            features = set(words) | ({f"{a} {b}" for a, b in zip(words, words[1:])} if pairs else set())
        for w in sorted(features):
            rows.append(i)
            cols.append(vocab.setdefault(w, len(vocab)))
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), max(len(vocab), 1)))
    m.data[:] = 1.0  # a feature repeated in one text counts once
    df = np.asarray(m.sum(axis=0)).ravel() / max(len(texts), 1)
    idf = np.where(df <= max_df, -np.log(np.maximum(df, 1e-12)), 0.0)
    m = (m @ sp.diags(idf)).tocsr()
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return (sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ m).tocsr()


def comment_text_features(texts: list[str], titles: list[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(subject, form) bags of words of comments. Subject: the words a comment shares with the
    catalogue's titles (what it is about), frequent ones dropped; form: every other word and word
    pair (how it is written: its template, its tone), none dropped. A reader's taste for subjects and
    for forms are separate things, so the section model reads two affinities: one cosine mixing both
    lets the many subject words drown the few form words (on the default world's logging run the
    split raises the correlation of the affinities with the reader's true topic term from 0.19 to
    0.41 and with the style term from 0.18 to 0.29)."""
    title_words = {w for t in titles for w in _WORD.findall(t.lower())}
    subject = bag_of_words(texts, keep=title_words.__contains__, pairs=False)
    form = bag_of_words(texts, max_df=1.0, keep=lambda w: w not in title_words)
    return subject, form


def per_request(matrix: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """[n, K] entries of ``matrix`` [n, R] at each request's ``items`` (rows ≥ 0)."""
    n, K = items.shape
    i = np.repeat(np.arange(n), K)
    return np.asarray(matrix[i, np.maximum(items.ravel(), 0)], dtype=np.float64).reshape(n, K)


def candidate_matrix(cand_off: np.ndarray, cand_rows: np.ndarray, values: np.ndarray, n_rows: int) -> sp.csr_matrix:
    """[n, R] sparse: each request's candidates (rows) with a per-candidate value (a logged feature)."""
    n = len(cand_off) - 1
    return sp.csr_matrix((np.asarray(values, np.float64), np.asarray(cand_rows, np.int64), np.asarray(cand_off, np.int64)),
                         shape=(n, n_rows))


@dataclass(frozen=True)
class SectionData:
    """Logged comment requests in the model's terms ([n] or [n, K]; rows: comment rows of ``bow``)."""

    users: np.ndarray  # [n]
    days: np.ndarray  # [n]
    rows: np.ndarray  # [n, K] shown comment rows, −1 past the end
    reached: np.ndarray  # [n, K] bool: the user saw this position in an opened section
    read: np.ndarray  # [n, K] bool
    read_s: np.ndarray  # [n, K]
    bow: sp.csr_matrix  # [R, W] subject words (comment_text_features)
    form: sp.csr_matrix  # [R, W'] form words and pairs
    words: np.ndarray  # [R] words per comment
    likes: sp.csr_matrix  # [n, R] the like counts of each request's candidates, as the platform showed them


class LeaveOneOut:
    """Each request's text profile without its own contribution: P_u − D_i, with D_i [n, W] the words
    request i contributes and P_u the sum over the user's requests; ``cosine`` of it with texts."""

    def __init__(self, own: sp.spmatrix, users: np.ndarray, n_users: int):
        n = len(users)
        to_user = sp.csr_matrix((np.ones(n), (users, np.arange(n))), shape=(n_users, n))
        self.users = users
        self.profile_user = (to_user @ own).tocsr()  # [U, W]
        self.own = own.tocsr()  # [n, W]
        prof = self.profile_user[users]
        # ‖P_u − D_i‖² = ‖P_u‖² − 2 P_u·D_i + ‖D_i‖²
        sq = (np.asarray(prof.multiply(prof).sum(axis=1)).ravel() - 2 * np.asarray(prof.multiply(self.own).sum(axis=1)).ravel()
              + np.asarray(self.own.multiply(self.own).sum(axis=1)).ravel())
        self.norm = np.sqrt(np.maximum(sq, 0.0))

    def cosine(self, i: np.ndarray, texts: sp.spmatrix) -> np.ndarray:
        """[m] cos(P_{u_i} − D_i, texts_m) for request indices ``i`` [m] and unit-norm ``texts`` [m, W]
        (0 where the request's user has no other text)."""
        dot = (np.asarray(self.profile_user[self.users[i]].multiply(texts).sum(axis=1)).ravel()
               - np.asarray(self.own[i].multiply(texts).sum(axis=1)).ravel())
        norm = self.norm[i]
        return np.divide(dot, norm, out=np.zeros_like(dot), where=norm > 1e-12)

    def subset(self, idx: np.ndarray) -> "LeaveOneOut":
        """The profiles of requests ``idx`` (with repeats: a bootstrap), the users' totals kept."""
        view = LeaveOneOut.__new__(LeaveOneOut)
        view.users, view.profile_user, view.own, view.norm = self.users[idx], self.profile_user, self.own[idx], self.norm[idx]
        return view


class Context:
    """Per request: the user's leave-one-request-out profiles (subject and form words) and open rate."""

    def __init__(self, d: SectionData):
        n_users = int(d.users.max()) + 1 if len(d.users) else 1
        n = len(d.users)
        read_rows = np.where(d.read & (d.rows >= 0), d.rows, -1)
        r_i, r_j = np.nonzero(read_rows >= 0)
        # D_i: the words this request's reads contribute; P_u: all of the user's reads
        reads = sp.csr_matrix((np.ones(len(r_i)), (r_i, read_rows[r_i, r_j])), shape=(n, d.bow.shape[0]))
        self.profiles = tuple(LeaveOneOut(reads @ bow, d.users, n_users) for bow in (d.bow, d.form))
        opened = d.reached[:, 0]
        opens_u = np.bincount(d.users, weights=opened, minlength=n_users)
        reqs_u = np.bincount(d.users, minlength=n_users)
        rate = (opens_u[d.users] - opened + 1.0) / (reqs_u[d.users] - 1.0 + 4.0)
        self.open_logit = np.log(rate / (1.0 - rate))
        self.d = d

    def affinities(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([n, K] subject, [n, K] form) affinity of request i's user with comment rows_ij, from the
        leave-one-out profiles (0 without other reads)."""
        d = self.d
        n, K = rows.shape
        i = np.repeat(np.arange(n), K)
        r = np.maximum(rows.ravel(), 0)
        return tuple(np.where(rows.ravel() >= 0, prof.cosine(i, bow[r]), 0.0).reshape(n, K)
                     for prof, bow in zip(self.profiles, (d.bow, d.form)))

    def log_likes(self, rows: np.ndarray) -> np.ndarray:
        return np.where(rows >= 0, np.log1p(per_request(self.d.likes, rows)), 0.0)


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


def _features(ctx: Context, rows: np.ndarray, preview: int) -> dict[str, np.ndarray]:
    """The model's regressors for the comment ``rows`` ([n, K]) on the logged requests."""
    mask = rows >= 0
    s, f = ctx.affinities(rows)
    L = ctx.log_likes(rows)
    pm = mask[:, :preview]
    npv = np.maximum(pm.sum(axis=1), 1)
    X_open = np.column_stack([np.ones(len(rows)), ctx.open_logit] + [(x[:, :preview] * pm).sum(1) / npv for x in (s, f, L)])
    words = np.log(np.maximum(ctx.d.words[np.maximum(rows, 0)], 1))
    return {"mask": mask, "open": X_open, "cell": np.stack([np.ones_like(s), s, f, L], axis=-1), "words": words}


def fit(d: SectionData, preview: int, ctx: Context | None = None) -> SectionModel:
    ctx = ctx or Context(d)
    x = _features(ctx, d.rows, preview)
    mask, cell = x["mask"], x["cell"]
    a = _logit(d.reached[:, 0], x["open"])
    at = d.reached & mask
    b = _logit(d.read[at], cell[at])
    rd = d.read & mask & (d.read_s > 0)
    X_secs = np.column_stack([cell[rd][:, :1], x["words"][rd], cell[rd][:, 1:]])
    ols = sm.OLS(np.log(d.read_s[rd]), X_secs).fit()
    nxt = np.zeros_like(at)
    nxt[:, :-1] = d.reached[:, 1:] & mask[:, 1:]
    has_next = at.copy()
    has_next[:, :-1] &= mask[:, 1:]
    has_next[:, -1] = False
    r = d.read[has_next].astype(np.float64)
    X_cont = np.column_stack([np.ones(len(r)), r[:, None] * cell[has_next]])
    k = _logit(nxt[has_next], X_cont)
    return SectionModel(a, b, np.asarray(ols.params), float(ols.scale), k, preview)


def predict(model: SectionModel, ctx: Context, rows: np.ndarray, output: str = "read_s") -> np.ndarray:
    """[n, K] the model's expected reward at each position of the slates ``rows`` on the logged requests."""
    if output not in OUTPUTS:
        raise ValueError(f"the section model predicts {', '.join(OUTPUTS)}, not {output!r}")
    x = _features(ctx, rows, model.preview)
    mask, cell = x["mask"], x["cell"]
    p_open = _sigmoid(x["open"] @ model.open)
    p_read = _sigmoid(cell @ model.read)
    secs = np.exp(model.secs[0] + model.secs[1] * x["words"] + cell[..., 1:] @ model.secs[2:] + model.secs_var / 2)
    k = model.cont
    go_on = p_read * _sigmoid(k[0] + cell @ k[1:]) + (1 - p_read) * _sigmoid(k[0])
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
                      d.bow, d.form, d.words, d.likes[idx])
    view = Context.__new__(Context)
    view.d, view.open_logit = sub, ctx.open_logit[idx]
    view.profiles = tuple(p.subset(idx) for p in ctx.profiles)
    return fit(sub, preview, view)


# ------------------------------------------------------------------------------------------------
# The video feed
VIDEO_OUTPUTS = ("frac", "watch_s", "plays", "comment_read_s")


@dataclass(frozen=True)
class FeedData:
    """Logged video requests in the model's terms ([n] or [n, K]; items: video ids, −1 past the end)."""

    users: np.ndarray  # [n]
    days: np.ndarray  # [n]
    items: np.ndarray  # [n, K]
    shown: np.ndarray  # [n, K] bool: an impression was logged at this position
    frac: np.ndarray  # [n, K] watch fraction (0 when not played)
    downstream: np.ndarray  # [n, K] comment read seconds in the section opened after the play
    bow: sp.csr_matrix  # [V, W] the titles' bag of words
    duration: np.ndarray  # [V]
    popularity: sp.csr_matrix  # [n, V] each request's candidates' public play counts, as the platform showed them


class FeedContext:
    """Per request: the user's leave-one-request-out title profile (weighted by watch fraction),
    and per (request, video): the video's leave-one-request-out play rate and watch fraction."""

    def __init__(self, d: FeedData):
        n, K = d.items.shape
        n_users = int(d.users.max()) + 1 if n else 1
        V = d.bow.shape[0]
        shown = d.shown & (d.items >= 0)
        i, j = np.nonzero(shown)
        v = d.items[i, j]
        played = d.frac[i, j] > 0
        # the titles of the user's plays in other requests, weighted by watch fraction
        self.profile = LeaveOneOut(sp.csr_matrix((d.frac[i, j], (i, v)), shape=(n, V)) @ d.bow, d.users, n_users)
        # per video: impressions, plays, watch fraction over plays (totals; the request's own removed at use)
        self.imp_v = np.bincount(v, minlength=V).astype(np.float64)
        self.play_v = np.bincount(v, weights=played, minlength=V)
        self.frac_v = np.bincount(v, weights=d.frac[i, j], minlength=V)
        self.base_play = float(played.mean()) if len(played) else 0.5
        self.base_frac = float(d.frac[i, j][played].mean()) if played.any() else 0.5
        # per user: downstream seconds per play, leave-one-request-out
        self.down_u = np.bincount(d.users[i], weights=d.downstream[i, j], minlength=n_users)
        self.plays_u = np.bincount(d.users[i], weights=played, minlength=n_users)
        self.own_down = np.bincount(i, weights=d.downstream[i, j], minlength=n)
        self.own_plays = np.bincount(i, weights=played, minlength=n)
        self.own_imp = sp.csr_matrix((np.ones(len(i)), (i, v)), shape=(n, V)).tocsr()
        self.own_play = sp.csr_matrix((played.astype(np.float64), (i, v)), shape=(n, V)).tocsr()
        self.own_frac = sp.csr_matrix((d.frac[i, j], (i, v)), shape=(n, V)).tocsr()
        self.d = d

    def features(self, items: np.ndarray) -> dict[str, np.ndarray]:
        """[n, K] features of the videos ``items`` on the logged requests (each request left out of
        its own profile and of the videos' rates)."""
        d = self.d
        n, K = items.shape
        i = np.repeat(np.arange(n), K)
        v = np.maximum(items.ravel(), 0)
        s = self.profile.cosine(i, d.bow[v])
        own_imp = np.asarray(self.own_imp[i, v]).ravel()
        own_play = np.asarray(self.own_play[i, v]).ravel()
        own_frac = np.asarray(self.own_frac[i, v]).ravel()
        prior = 5.0
        play_rate = (self.play_v[v] - own_play + prior * self.base_play) / (self.imp_v[v] - own_imp + prior)
        plays_left = self.play_v[v] - own_play
        frac_rate = (self.frac_v[v] - own_frac + prior * self.base_frac) / (plays_left + prior)
        u = d.users[i]
        down = (self.down_u[u] - self.own_down[i] + 1.0) / (self.plays_u[u] - self.own_plays[i] + 4.0)
        pop = np.log1p(per_request(d.popularity, np.where(items >= 0, items, 0)).ravel())
        shape = (n, K)
        return {"s": s.reshape(shape), "play": _logit_of(play_rate).reshape(shape), "frac": _logit_of(frac_rate).reshape(shape),
                "down": np.log(down).reshape(shape), "pop": pop.reshape(shape),
                "pos": np.broadcast_to(np.arange(K, dtype=np.float64), shape)}


def _logit_of(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class FeedModel:
    play: np.ndarray
    frac: np.ndarray
    frac_var: float
    down: np.ndarray


def _play_X(f, sel):
    return np.column_stack([np.ones(int(sel.sum())), f["s"][sel], f["play"][sel], f["pop"][sel], f["pos"][sel]])


def _frac_X(f, sel):
    return np.column_stack([np.ones(int(sel.sum())), f["s"][sel], f["frac"][sel]])


def _down_X(f, sel):
    return np.column_stack([np.ones(int(sel.sum())), f["down"][sel], f["s"][sel]])


def fit_feed(d: FeedData, ctx: FeedContext | None = None, rows: np.ndarray | None = None) -> FeedModel:
    """Play: logistic; watch fraction given a play: logit-normal; downstream comment seconds given
    a play: log-linear (Poisson quasi-likelihood). ``rows``: fit on these requests (a bootstrap)."""
    ctx = ctx or FeedContext(d)
    f = ctx.features(d.items)
    sel = d.shown & (d.items >= 0)
    if rows is not None:
        take = np.zeros(len(d.users))
        np.add.at(take, rows, 1.0)
        weight = np.broadcast_to(take[:, None], sel.shape)
    else:
        weight = np.ones(sel.shape)
    played = sel & (d.frac > 0)
    y_play = played[sel].astype(np.float64)
    if not 0 < y_play.sum() < len(y_play):
        raise ValueError("the feed model needs logged impressions both played and skipped")
    a, _ = _fit(lambda X: sm.GLM(y_play, X, family=sm.families.Binomial(), freq_weights=weight[sel]), _play_X(f, sel))
    fr = np.clip(d.frac[played], 1e-3, 1 - 1e-3)
    b, scale = _fit(lambda X: sm.WLS(np.log(fr / (1 - fr)), X, weights=weight[played]), _frac_X(f, played))
    y_down = d.downstream[played]
    X_down = _down_X(f, played)
    if y_down.sum() > 0:
        g, _ = _fit(lambda X: sm.GLM(y_down, X, family=sm.families.Poisson(), freq_weights=weight[played]), X_down)
    else:  # no section was ever read: nothing downstream
        g = np.r_[-50.0, np.zeros(X_down.shape[1] - 1)]
    return FeedModel(a, b, scale, g)


def _fit(model, X: np.ndarray) -> tuple[np.ndarray, float]:
    """Fit on the columns that vary (and the intercept, column 0); the others get coefficient 0."""
    keep = np.r_[True, np.ptp(X[:, 1:], axis=0) > 1e-12] if len(X) else np.ones(X.shape[1], bool)
    res = model(X[:, keep]).fit()
    params = np.zeros(X.shape[1])
    params[keep] = np.asarray(res.params)
    return params, float(res.scale)


def predict_feed(model: FeedModel, ctx: FeedContext, items: np.ndarray, output: str) -> np.ndarray:
    """[n, K] expected ``output`` of showing ``items`` at each position on the logged requests."""
    if output not in VIDEO_OUTPUTS:
        raise ValueError(f"the feed model predicts {', '.join(VIDEO_OUTPUTS)}, not {output!r}")
    mask = items >= 0
    f = ctx.features(items)
    allm = np.ones_like(mask)
    p_play = _sigmoid(_play_X(f, allm) @ model.play).reshape(mask.shape)
    mu = (_frac_X(f, allm) @ model.frac).reshape(mask.shape)
    e_frac = _sigmoid(mu / np.sqrt(1.0 + np.pi * model.frac_var / 8.0))  # E σ(N(mu, var)), probit approximation
    if output == "plays":
        value = p_play
    elif output == "frac":
        value = p_play * e_frac
    elif output == "watch_s":
        value = p_play * e_frac * ctx.d.duration[np.maximum(items, 0)]
    else:
        value = p_play * np.exp(_down_X(f, allm) @ model.down).reshape(mask.shape)
    return np.where(mask, value, 0.0)
