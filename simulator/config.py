"""Simulation configuration: frozen dataclasses, the single source of defaults.

Every number of the behaviour model is a field here. A TOML file may override any field
(sections ``[world]``, ``[behaviour]`` and ``[run]``); the CLI sets the common ones.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .lexicon import STYLE_NAMES, TOPIC_NAMES


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
            raise InputError(f"{name} must be a positive number, got {value!r}")


def _probability(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise InputError(f"{name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True)
class WorldConfig:
    """The catalogue, the comment sections and the user population."""

    n_users: int = 2000
    n_videos: int = 1000
    n_topics: int = len(TOPIC_NAMES)
    topic_popularity_concentration: float = 4.0  # Dirichlet over topics' share of videos
    secondary_topic_prob: float = 0.4
    duration_median_s: float = 22.0
    duration_sigma: float = 0.6  # log-normal
    duration_min_s: float = 5.0
    duration_max_s: float = 300.0
    n_creators_per_video: float = 0.2
    comments_median: float = 18.0  # per video, log-normal (heavy tail)
    comments_sigma: float = 0.8
    comments_min: int = 3
    comments_max: int = 300
    comment_on_topic_prob: float = 0.7
    # What the words carry: each title topic word and each comment's topic and style words follow the
    # latent truth with this probability, else a uniformly drawn topic / style (a wording only: the
    # truth, and so every response, is unchanged). 1 = the calibrated world; 0 = text says nothing.
    text_fidelity: float = 1.0
    style_popularity: tuple[float, ...] = (0.30, 0.22, 0.16, 0.18, 0.14)  # humour, info, debate, emotional, question
    like_base: float = 1.5  # log-scale intercept of initial like counts
    like_quality: float = 0.8  # log-scale slope on comment quality
    like_style: float = 1.0  # log-scale slope on the style's population appeal
    like_sigma: float = 1.0
    taste_concentration: float = 0.25  # Dirichlet over topics per user: a few strong topics
    style_concentration: float = 2.0  # Dirichlet over styles per user, around style_popularity
    comment_affinity_a: float = 2.0  # Beta(a, b) of how much a user enjoys comment sections
    comment_affinity_b: float = 3.0
    activity_median: float = 2.0  # sessions per day, log-normal
    activity_sigma: float = 0.5
    patience_shape: float = 4.0  # temper budget at session start, Gamma(shape, scale)
    patience_scale: float = 4.5

    def __post_init__(self) -> None:
        _positive(self, "n_users", "n_videos", "n_topics", "duration_median_s", "comments_median")
        for name in ("n_users", "n_videos", "n_topics", "comments_min", "comments_max"):
            if not isinstance(getattr(self, name), int):
                raise InputError(f"{name} must be an integer, got {getattr(self, name)!r}")
        if self.n_topics > len(TOPIC_NAMES):
            raise InputError(f"n_topics must be at most {len(TOPIC_NAMES)} (the lexicon's topics)")
        if len(self.style_popularity) != len(STYLE_NAMES):
            raise InputError(f"style_popularity needs {len(STYLE_NAMES)} values ({', '.join(STYLE_NAMES)})")
        if not 0 < self.comments_min <= self.comments_max:
            raise InputError("comments_min must be positive and at most comments_max")
        _probability(self, "secondary_topic_prob", "comment_on_topic_prob", "text_fidelity")


@dataclass(frozen=True)
class BehaviourConfig:
    """How a user responds. Logits are in natural-log odds; times in seconds."""

    # Video utility x = match_weight * (sqrt(T * taste·topics) - 1) + quality_weight * quality.
    match_weight: float = 1.4
    quality_weight: float = 0.5
    play_intercept: float = 0.0
    play_fatigue: float = 0.01  # logit drop per video already seen in the session
    play_position: float = 0.05  # logit drop per slate position
    watch_intercept: float = -0.1  # watch fraction = sigmoid(intercept + slope * x + sd * z)
    watch_slope: float = 0.9
    watch_sd: float = 0.6
    skip_seconds: float = 1.5  # time spent on an impression that is not played
    # Comment relevance r = quality + topic + style terms; P(open) and the reading cascade use it.
    comment_quality_weight: float = 0.5
    comment_topic_weight: float = 0.6
    comment_style_weight: float = 1.2
    open_intercept: float = -2.2
    open_affinity: float = 3.0  # times (affinity - 0.4)
    open_match: float = 0.35
    open_slate: float = 1.0  # times the mean relevance of the top comment_preview comments
    comment_preview: int = 3
    read_intercept: float = -0.3
    read_slope: float = 1.1
    read_seconds: float = 1.5  # mean seconds per read comment of 10 words, scaled by exp(0.3 r)
    scan_seconds: float = 0.4  # per comment impression
    like_intercept: float = -4.8
    like_slope: float = 0.8
    post_intercept: float = -6.2
    post_slope: float = 0.5
    continue_intercept: float = 1.5
    continue_slope: float = 0.8
    # Temper (session leave): start at patience; an impression costs base - enjoy * enjoyment.
    temper_base: float = 1.0
    temper_enjoy: float = 0.9
    temper_comment: float = 0.15  # temper refunded per read comment, times its relevance > 0
    max_impressions: int = 400
    # Return gap: Exp(mean = 24h / activity * exp(-satisfaction_weight * (satisfaction - satisfaction_ref))).
    satisfaction_weight: float = 3.0
    satisfaction_ref: float = 0.35
    min_gap_s: float = 600.0
    taste_drift_sd: float = 0.03  # per session, log-scale noise on topic tastes

    def __post_init__(self) -> None:
        _positive(self, "read_seconds", "temper_base", "skip_seconds", "max_impressions", "comment_preview")
        if self.watch_sd < 0 or self.taste_drift_sd < 0:
            raise InputError("standard deviations must be non-negative")


@dataclass(frozen=True)
class SimConfig:
    """One simulation run."""

    world: WorldConfig = field(default_factory=WorldConfig)
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    days: int = 2
    pre_days: int = 0  # days logged as period "pre" (the CUPED covariates of an A/B test)
    seed: int = 0  # the world (catalogue, comments, users' latent truth)
    noise_seed: int | None = None  # users' behavioural noise; None: the world's seed
    video_slate_size: int = 8
    comment_slate_size: int = 20
    n_candidates: int = 100  # retrieval stage: candidates drawn per video request (0 = whole catalogue)
    popularity_decay: float = 0.5  # recent plays = decay * recent + plays of the day
    shard_wait_s: float = 3600.0  # how long a shard waits for the others at a day boundary
    batch_tick_s: float = 30.0  # batching policies are served every tick (no simulated latency: see engine)
    log_slates: bool = False  # write feedback/ (every request's slate, propensities, candidates, outcomes)

    def __post_init__(self) -> None:
        for name in ("days", "video_slate_size", "comment_slate_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.pre_days, int) or not 0 <= self.pre_days <= self.days:
            raise InputError(f"pre_days must be an integer in [0, days], got {self.pre_days!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.noise_seed is not None and (not isinstance(self.noise_seed, int) or self.noise_seed < 0):
            raise InputError(f"noise_seed must be a non-negative integer, got {self.noise_seed!r}")
        if not isinstance(self.n_candidates, int) or self.n_candidates < 0:
            raise InputError(f"n_candidates must be a non-negative integer, got {self.n_candidates!r}")
        if 0 < self.n_candidates < self.video_slate_size:
            raise InputError("n_candidates must be at least video_slate_size (or 0 for the whole catalogue)")
        _probability(self, "popularity_decay")

    @property
    def behaviour_seed(self) -> int:
        return self.seed if self.noise_seed is None else self.noise_seed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "SimConfig":
        """A copy with run-level fields and ``world`` / ``behaviour`` fields (by their own names) changed."""
        world = {k: v for k, v in changes.items() if k in _fields(WorldConfig)}
        behaviour = {k: v for k, v in changes.items() if k in _fields(BehaviourConfig)}
        run = {k: v for k, v in changes.items() if k in _fields(SimConfig)}
        unknown = set(changes) - set(world) - set(behaviour) - set(run)
        if unknown:
            raise InputError(f"unknown configuration field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(
            self,
            world=dataclasses.replace(self.world, **world),
            behaviour=dataclasses.replace(self.behaviour, **behaviour),
            **run,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SimConfig":
        data = dict(data)
        world = _build(WorldConfig, data.pop("world", {}), "world")
        behaviour = _build(BehaviourConfig, data.pop("behaviour", {}), "behaviour")
        return _build(cls, data, "run", world=world, behaviour=behaviour)

    @classmethod
    def from_toml(cls, path: Path) -> "SimConfig":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"config file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"malformed config {path}: {str(e).strip()}") from None
        run = data.pop("run", {})
        if not isinstance(run, dict):
            raise InputError(f"malformed config {path}: [run] must be a table")
        unknown = set(data) - {"world", "behaviour"}
        if unknown:
            raise InputError(f"malformed config {path}: unknown section(s) {', '.join(sorted(unknown))}")
        return cls.from_dict({**run, **data})


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - {"world", "behaviour"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _field_type(hint: Any) -> Any:
    """The type a TOML value must have: ``X | None`` is X (TOML has no null)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _value(hint: Any, value: Any, where: str) -> Any:
    """``value`` (from TOML) as a field of type ``hint``; anything else is left to ``__post_init__``."""
    kind = _field_type(hint)
    if value is None and kind is not hint:  # an optional field written out unset (a manifest's null)
        return None
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
            raise InputError(f"{where} must be a list of numbers")
        return tuple(float(v) for v in value)
    if kind is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where} must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        if not _is_number(value):
            raise InputError(f"{where} must be a number, got {value!r}")
        return float(value) if kind is float else value
    return value


def _build(cls: type, values: Any, section: str, **extra: Any) -> Any:
    if not isinstance(values, dict):
        raise InputError(f"config section [{section}] must be a table")
    unknown = set(values) - _fields(cls)
    if unknown:
        raise InputError(f"unknown field(s) in [{section}]: {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(cls)
    clean = {name: _value(hints[name], value, f"[{section}] {name}") for name, value in values.items()}
    try:
        return cls(**clean, **extra)
    except TypeError as e:
        raise InputError(f"config section [{section}]: {e}") from None
