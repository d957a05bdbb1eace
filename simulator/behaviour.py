"""The user response model as pure functions (the engine draws the noise and keeps the clock).

Video utility  x(u, v) = match_weight · (sqrt(T · taste_u · topics_v) − 1) + quality_weight · q_v
Comment relevance r(u, c) = quality_w · q_c + topic_w · (sqrt(T · taste_u[topic_c]) − 1)
                            + style_w · (sqrt(S · style_u[style_c]) − 1)

A user's comment relevance depends on *personal* topic and style tastes, so a policy that learns from
comment histories can beat ranking by likes (which reflect the crowd's average taste), and one that
does not, cannot.
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
