"""The policy protocol and the built-in policies: random, popularity, oracle.

A policy ranks a request's candidates into a ``Slate`` — the items shown, in order, with the
probability that the policy shows each item at its position (``propensities``) and the probability
of showing the whole prefix through each position (``prefix_propensities``). Deterministic policies
report 1 for both. Scores (``score_videos`` / ``score_comments``) let the stochastic wrappers in
``simulator.explore`` turn any scoring policy into a logging policy with known propensities.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .behaviour import comment_relevance, video_utility
from .config import BehaviourConfig


@dataclass(slots=True)
class History:
    """What the platform has observed of one user, in time order (policies must not mutate it)."""

    video_ids: list[int]  # played videos
    watch_fraction: list[float]  # watch seconds / duration of each play
    comment_records: list[tuple[int, list[int]]]  # (video_id, [comment_ids read, liked or posted])


@dataclass(slots=True)
class WorldView:
    """Observable platform state at the last day boundary (read-only for policies)."""

    video_recent_plays: np.ndarray  # [V]
    video_duration_s: np.ndarray  # [V]
    comment_ids: np.ndarray  # [C] public id of each comment row
    comment_video: np.ndarray  # [C]
    comment_likes: np.ndarray  # [C] like counts
    video_comment_rows: list[np.ndarray]  # per video: its comment rows, oldest first
    comment_text: list[str]  # [C] (a model embeds comments it has not seen from their text)


@dataclass(slots=True)
class UserTruth:
    """The latent state of one user, given only to policies with ``needs_truth = True``."""

    taste: np.ndarray
    style_taste: np.ndarray


@dataclass(slots=True)
class VideoRequest:
    user_id: int
    ts: float
    candidates: np.ndarray  # video ids
    k: int
    history: History
    world: WorldView
    rng: np.random.Generator  # the policy's own randomness for this user
    truth: UserTruth | None = None
    # logged per-candidate features (name -> [len(candidates)]) when the request is served from logs
    # (abtest offline): ``popularity`` replaces the world's counts, others rank ``FeaturePolicy``
    features: dict | None = None


@dataclass(slots=True)
class CommentRequest:
    user_id: int
    ts: float
    video_id: int
    candidates: np.ndarray  # comment rows of world.comment_ids (ids: world.comment_ids[candidates])
    k: int
    history: History
    world: WorldView
    rng: np.random.Generator
    truth: UserTruth | None = None
    features: dict | None = None  # as VideoRequest.features


@dataclass(slots=True)
class Slate:
    items: np.ndarray  # entries of the request's candidates, in display order
    propensities: np.ndarray  # P(this item at this position) under the policy
    prefix_propensities: np.ndarray  # P(this exact prefix through this position)

    @staticmethod
    def deterministic(items: np.ndarray) -> "Slate":
        ones = np.ones(len(items))
        return Slate(items, ones, ones)


@runtime_checkable
class Policy(Protocol):
    name: str
    needs_truth: bool

    def rank_videos(self, request: VideoRequest) -> Slate: ...

    def rank_comments(self, request: CommentRequest) -> Slate: ...


def top_k(candidates: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The k best candidates, ties broken by candidate order (deterministic)."""
    return candidates[np.argsort(-scores, kind="stable")[:k]]


class ScoringPolicy:
    """A deterministic policy defined by scores: shows the top-k."""

    name = "scoring"
    needs_truth = False

    def score_videos(self, request: VideoRequest) -> np.ndarray:
        raise NotImplementedError

    def score_comments(self, request: CommentRequest) -> np.ndarray:
        raise NotImplementedError

    def rank_videos(self, request: VideoRequest) -> Slate:
        return Slate.deterministic(top_k(request.candidates, self.score_videos(request), request.k))

    def rank_comments(self, request: CommentRequest) -> Slate:
        return Slate.deterministic(top_k(request.candidates, self.score_comments(request), request.k))


class PopularityPolicy(ScoringPolicy):
    """Videos by recent plays, comments by likes (the crowd's taste; no personalisation).

    Like counts change only at day boundaries, so each video's comment slate is computed once per
    world snapshot.
    """

    name = "popularity"

    def __init__(self) -> None:
        self._snapshot: WorldView | None = None
        self._comment_slates: dict[tuple[int, int], Slate] = {}

    def rank_comments(self, request: CommentRequest) -> Slate:
        if request.candidates is not request.world.video_comment_rows[request.video_id]:
            return super().rank_comments(request)  # a custom candidate set: nothing to reuse
        if request.world is not self._snapshot:
            self._snapshot, self._comment_slates = request.world, {}
        key = (request.video_id, request.k)
        slate = self._comment_slates.get(key)
        if slate is None:
            slate = self._comment_slates[key] = super().rank_comments(request)
        return slate

    def score_videos(self, request: VideoRequest) -> np.ndarray:
        if request.features is not None:  # served from logs: the counts the platform showed then
            return request.features["popularity"]
        return request.world.video_recent_plays[request.candidates]

    def score_comments(self, request: CommentRequest) -> np.ndarray:
        if request.features is not None:
            return request.features["popularity"]
        return request.world.comment_likes[request.candidates].astype(np.float64)


class FeaturePolicy(ScoringPolicy):
    """Ranks by a logged per-candidate feature (``request.features[feature]``): the oracle's latent
    values on a simulator's logs, or a team's own model scores (``scores:FILE``)."""

    def __init__(self, feature: str, name: str | None = None):
        self.feature, self.name = feature, name or feature

    def _scores(self, request) -> np.ndarray:
        if request.features is None or self.feature not in request.features:
            raise KeyError(f"the request carries no {self.feature!r} feature")
        return request.features[self.feature]

    score_videos = score_comments = _scores


class OraclePolicy(ScoringPolicy):
    """Ranks by the latent truth: expected utility of videos, personal relevance of comments."""

    name = "oracle"
    needs_truth = True

    def __init__(self, behaviour: BehaviourConfig, video_topics: np.ndarray, video_quality: np.ndarray, comments: Any):
        self.b = behaviour
        self.video_topics = video_topics
        self.video_quality = video_quality
        self.comments = comments  # has .topic, .style, .quality arrays indexed by comment row

    def score_videos(self, request: VideoRequest) -> np.ndarray:
        c = request.candidates
        return video_utility(self.b, request.truth.taste, self.video_topics[c], self.video_quality[c])

    def score_comments(self, request: CommentRequest) -> np.ndarray:
        c = request.candidates
        cs = self.comments
        return comment_relevance(
            self.b, request.truth.taste, request.truth.style_taste, cs.topic[c], cs.style[c], cs.quality[c]
        )


class RandomPolicy:
    """A uniformly random slate: every candidate equally likely at every position."""

    name = "random"
    needs_truth = False

    def _rank(self, candidates: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        n = len(candidates)
        k = min(k, n)
        items = candidates[rng.permutation(n)[:k]]
        prefix = np.cumprod(1.0 / (n - np.arange(k)))
        return Slate(items, np.full(k, 1.0 / n), prefix)

    def rank_videos(self, request: VideoRequest) -> Slate:
        return self._rank(request.candidates, request.k, request.rng)

    def rank_comments(self, request: CommentRequest) -> Slate:
        return self._rank(request.candidates, request.k, request.rng)

    def slate_probabilities(self, request, items: np.ndarray, marginals: bool = True) -> tuple[np.ndarray, np.ndarray]:
        n, k = len(request.candidates), len(items)
        return np.full(k, 1.0 / n), np.cumprod(1.0 / (n - np.arange(k)))
