"""The user response model as pure functions (the engine draws the noise and keeps the clock).

Video utility  x(u, v) = match_weight · (sqrt(T · taste_u · topics_v) − 1) + quality_weight · q_v
Comment relevance r(u, c) = quality_w · q_c + topic_w · (sqrt(T · taste_u[topic_c]) − 1)
                            + style_w · (sqrt(S · style_u[style_c]) − 1)

A user's comment relevance depends on *personal* topic and style tastes, so a policy that learns from
comment histories can beat ranking by likes (which reflect the crowd's average taste), and one that
does not, cannot.

The vectorised functions serve oracles and tests; the scalar ones below them are what the engine
calls per impression and per comment, with the noise it drew (uniforms ``u``, normals ``z``). Each is
the one definition of its formula: the engine writes none out again.
"""
from __future__ import annotations

import math

import numpy as np

from .config import BehaviourConfig


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def video_utility(b: BehaviourConfig, taste: np.ndarray, topics: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """x for one user (taste [T]) and videos (topics [N, T], quality [N]) → [N]."""
    T = taste.shape[0]
    match = topics @ taste  # [N]
    return b.match_weight * (np.sqrt(T * match) - 1.0) + b.quality_weight * quality


def comment_relevance(
    b: BehaviourConfig,
    taste: np.ndarray,
    style_taste: np.ndarray,
    topic: np.ndarray,
    style: np.ndarray,
    quality: np.ndarray,
) -> np.ndarray:
    """r for one user and comments (topic, style, quality: [N]) → [N]."""
    T, S = taste.shape[0], style_taste.shape[0]
    return (
        b.comment_quality_weight * quality
        + b.comment_topic_weight * (np.sqrt(T * taste[topic]) - 1.0)
        + b.comment_style_weight * (np.sqrt(S * style_taste[style]) - 1.0)
    )


def open_logit(b: BehaviourConfig, affinity: float, x: float, slate_appeal: float) -> float:
    """Log-odds of opening the comment section; slate_appeal = mean r of the previewed top comments."""
    return b.open_intercept + b.open_affinity * (affinity - 0.4) + b.open_match * x + b.open_slate * slate_appeal


def return_gap_mean_s(b: BehaviourConfig, activity: float, satisfaction: float) -> float:
    """Mean seconds until the next session: shorter after a satisfying session."""
    return 86400.0 / activity * math.exp(-b.satisfaction_weight * (satisfaction - b.satisfaction_ref))


# ----------------------------------------------------------------------------------------------
# Scalar pieces of a session, in the order the engine uses them
# ----------------------------------------------------------------------------------------------
def drift_taste(b: BehaviourConfig, taste: np.ndarray, z) -> None:
    """A session's slow taste drift, in place: log-normal noise ``z`` [T], renormalised (none at sd 0)."""
    if b.taste_drift_sd > 0:
        taste *= np.exp(b.taste_drift_sd * np.asarray(z))
        taste /= taste.sum()


def initial_temper(patience: float, z: float) -> float:
    """A session's starting temper: the user's patience times log-normal noise (mean ≈ 1)."""
    return patience * math.exp(0.3 * z - 0.045)


def relevance_terms(b: BehaviourConfig, taste: np.ndarray, style_taste: np.ndarray) -> tuple[list[float], list[float]]:
    """The topic and style terms of r for one user (per topic [T], per style [S]), as lists."""
    T, S = taste.shape[0], style_taste.shape[0]
    return (
        (b.comment_topic_weight * (np.sqrt(T * taste) - 1.0)).tolist(),
        (b.comment_style_weight * (np.sqrt(S * style_taste) - 1.0)).tolist(),
    )


def relevances(b: BehaviourConfig, terms: tuple[list[float], list[float]], rows, topic, style, quality) -> list[float]:
    """r of comment ``rows`` (per-row lists ``topic``, ``style``, ``quality``) with one user's ``terms``:
    ``comment_relevance`` for one slate, in scalar Python."""
    topic_term, style_term = terms
    wq = b.comment_quality_weight
    return [wq * quality[r] + topic_term[topic[r]] + style_term[style[r]] for r in rows]


def p_play(b: BehaviourConfig, x: float, seen: int, position: int) -> float:
    """P(play) of an impression: utility x, minus fatigue (videos seen this session) and slate position."""
    return sigmoid(b.play_intercept + x - b.play_fatigue * seen - b.play_position * position)


def watch_fraction(b: BehaviourConfig, x: float, z: float) -> float:
    """Share of the video watched after a play (logit-normal around the utility)."""
    return sigmoid(b.watch_intercept + b.watch_slope * x + b.watch_sd * z)


def temper_after_skip(b: BehaviourConfig, temper: float) -> float:
    return temper - b.temper_base


def temper_after_play(b: BehaviourConfig, temper: float, fraction: float) -> float:
    """An impression costs temper_base; enjoyment (the watch fraction) refunds part of it."""
    return temper - (b.temper_base - b.temper_enjoy * fraction)


def slate_appeal(b: BehaviourConfig, rel: list[float]) -> float:
    """Mean r of the previewed top comments (what ``open_logit`` weighs)."""
    preview = rel[: b.comment_preview]
    return sum(preview) / len(preview)


def p_read(b: BehaviourConfig, r: float) -> float:
    return sigmoid(b.read_intercept + b.read_slope * r)


def read_seconds(b: BehaviourConfig, words: int, r: float, u1: float, u2: float) -> float:
    """Gamma(2) seconds (from two uniforms) with mean read_seconds · (words / 10) · exp(0.3 r)."""
    return b.read_seconds * (words / 10.0) * math.exp(0.3 * r) * 0.5 * (-math.log(1.0 - u1) - math.log(1.0 - u2))


def temper_refund(b: BehaviourConfig, r: float) -> float:
    """Temper a read comment gives back: more when it suits the user, nothing when it does not."""
    return b.temper_comment * max(r, 0.0)


def p_like(b: BehaviourConfig, r: float) -> float:
    return sigmoid(b.like_intercept + b.like_slope * r)


def p_post(b: BehaviourConfig, r: float) -> float:
    return sigmoid(b.post_intercept + b.post_slope * r)


def p_continue(b: BehaviourConfig, r: float, read: bool) -> float:
    """P(reading on past this comment); an unread one counts as r = −1."""
    return sigmoid(b.continue_intercept + b.continue_slope * (r if read else -1.0))


def return_gap_s(b: BehaviourConfig, activity: float, satisfaction: float, u: float) -> float:
    """Exponential gap (from uniform ``u``) before the next session, after ``min_gap_s``."""
    return -math.log(1.0 - u) * return_gap_mean_s(b, activity, satisfaction)
