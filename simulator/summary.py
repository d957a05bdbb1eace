"""Calibration: the realised rates of a run next to the public targets of the reference note."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .schema import EVENT_TYPES

DAY_S = 86400.0
TOLERANCE = 0.30  # the default configuration must land within ±30% of every target


class Target(NamedTuple):
    value: float | None
    source: str


TARGETS: dict[str, Target] = {
    "plays_per_impression": Target(None, "no public target (KuaiComt logs plays only)"),
    "comment_opens_per_impression": Target(0.13, "KuaiComt 2023: ≈13% of impressions open comments"),
    "comment_opens_per_play": Target(None, "no public target"),
    "comment_interactions_per_open": Target(0.06, "KuaiComt 2023: ≈6% likes/replies per open"),
    "comment_time_share": Target(0.05, "KuaiComt 2023: ≈5% of app time in comment sections"),
    "mean_session_length": Target(25.0, "sessions of tens of videos (impressions per session)"),
    "next_day_return_rate": Target(0.70, "most active users return within a day"),
}


def summarize(arrays: dict[str, np.ndarray], next_start: dict[int, float], days: int) -> dict:
    """Rates, per-user means and the calibration table from the engine's sorted arrays.

    ``next_start`` is each simulated user's scheduled next session (beyond the horizon for the
    last day), so the next-day return rate is defined on every simulated day.
    """
    ev, value, user = arrays["event"], arrays["value"], arrays["user_id"]
    code = {name: i for i, name in enumerate(EVENT_TYPES)}
    count = {name: int(np.sum(ev == i)) for name, i in code.items()}
    watch = float(value[ev == code["play"]].sum())
    read = float(value[ev == code["comment_read"]].sum())
    n_users = len(next_start)

    def ratio(a: float, b: float) -> float:
        return float(a / b) if b else float("nan")

    # next-day return: over (user, day) pairs with a session on that day
    starts = ev == code["session_start"]
    start_days = (arrays["ts"][starts] // DAY_S).astype(np.int64)
    active = set(zip(user[starts].tolist(), start_days.tolist()))
    for u, t in next_start.items():
        active_next = int(t // DAY_S)
        if active_next == days:  # only the horizon-crossing return adds information
            active.add((u, active_next))
    pairs = [(u, d) for (u, d) in active if d < days]
    returned = sum((u, d + 1) in active for (u, d) in pairs)

    rates = {
        "plays_per_impression": ratio(count["play"], count["impression"]),
        "comment_opens_per_impression": ratio(count["comment_open"], count["impression"]),
        "comment_opens_per_play": ratio(count["comment_open"], count["play"]),
        "comment_interactions_per_open": ratio(count["comment_like"] + count["comment_post"], count["comment_open"]),
        "comment_time_share": ratio(read, read + watch),
        "mean_session_length": ratio(count["impression"], count["session_start"]),
        "next_day_return_rate": ratio(returned, len(pairs)),
    }
    calibration = []
    for name, rate in rates.items():
        target = TARGETS[name]
        within = None if target.value is None else bool(abs(rate - target.value) <= TOLERANCE * target.value)
        calibration.append({"metric": name, "value": rate, "target": target.value, "within_30pct": within,
                            "source": target.source})
    return {
        "users": n_users,
        "events": int(len(ev)),
        "counts": count,
        "video_watch_s_per_user": watch / max(n_users, 1),
        "comment_watch_s_per_user": read / max(n_users, 1),
        "sessions_per_user": count["session_start"] / max(n_users, 1),
        "calibration": calibration,
    }
