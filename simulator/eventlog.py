"""The event log: engine rows → a typed Arrow table (schema ``simulator.schema.EVENTS``).

The engine writes rows through ``session_logger`` (named fields, session columns filled in) and
policy requests as ``SlateRow``; both stay plain tuples, the fastest thing to append and to convert.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import pyarrow as pa

from .schema import EVENT_TYPES, EVENTS, PERIODS

# Row layout written by the engine.
COLUMNS = ("user_id", "ts", "session_id", "period", "variant", "event", "video_id", "comment_id",
           "position", "propensity", "prefix_propensity", "value", "request_id")
NAN = math.nan


def session_logger(rows: list, user: int, session_id: int, period: int, variant: int) -> Callable[..., None]:
    """``log(event, ts, *, video, comment, position, propensity, prefix, value, request)`` appending one
    row of COLUMNS to ``rows`` for this session; omitted fields are null (value: 0)."""
    append = rows.append

    def log(event: int, ts: float, video: int = -1, comment: int = -1, position: int = -1,
            propensity: float = NAN, prefix: float = NAN, value: float = 0.0, request: int = -1) -> None:
        append((user, ts, session_id, period, variant, event, video, comment, position, propensity, prefix,
                value, request))

    return log


class SlateRow(NamedTuple):
    """One policy request as logged for off-policy evaluation (simulator/feedback.py writes them)."""

    request_id: int
    user_id: int
    session_id: int
    ts: float
    kind: int  # index into SLATE_KINDS
    video_id: int  # the video whose comments were ranked; −1 for video requests
    items: np.ndarray  # shown ids, in order
    propensities: np.ndarray
    prefix_propensities: np.ndarray
    candidates: np.ndarray  # the ids the policy ranked (comment requests: the video's comments that day)
    popularity: np.ndarray  # per candidate: the public count the popularity policy ranks by (plays of late, likes)
    oracle: np.ndarray  # per candidate: its latent value to this user now (what the oracle ranks by; truth)


def to_arrays(rows: list[tuple]) -> dict[str, np.ndarray]:
    """Columns of the engine's rows, sorted by user (stable: each user's rows stay in time order)."""
    if not rows:
        return {name: np.empty(0) for name in COLUMNS}
    # Every field is a number exactly representable in float64 (ids < 2**53), so one 2-D array
    # is the fastest way out of Python tuples.
    table = np.array(rows, dtype=np.float64)
    kinds = (np.int64, np.float64, np.int64, np.int8, np.int8, np.int8, np.int64, np.int64, np.int32,
             np.float64, np.float64, np.float64, np.int64)
    arrays = {name: table[:, i].astype(kind) for i, (name, kind) in enumerate(zip(COLUMNS, kinds))}
    order = np.argsort(arrays["user_id"], kind="stable")
    return {name: a[order] for name, a in arrays.items()}


def to_table(arrays: dict[str, np.ndarray], variants: list[str]) -> pa.Table:
    def dictionary(codes: np.ndarray, names) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8)), pa.array(list(names)))

    def nullable(values: np.ndarray, null: np.ndarray, kind) -> pa.Array:
        return pa.array(values, type=kind, mask=null)

    a = arrays
    return pa.table(
        [
            pa.array(a["ts"], pa.float64()),
            pa.array(a["user_id"], pa.int64()),
            pa.array(a["session_id"], pa.int64()),
            dictionary(a["period"], PERIODS),
            dictionary(a["variant"], variants),
            dictionary(a["event"], EVENT_TYPES),
            nullable(a["video_id"], a["video_id"] < 0, pa.int64()),
            nullable(a["comment_id"], a["comment_id"] < 0, pa.int64()),
            nullable(a["position"], a["position"] < 0, pa.int32()),
            nullable(a["propensity"], np.isnan(a["propensity"]), pa.float64()),
            nullable(a["prefix_propensity"], np.isnan(a["prefix_propensity"]), pa.float64()),
            pa.array(a["value"], pa.float64()),
            nullable(a["request_id"], a["request_id"] < 0, pa.int64()),
        ],
        schema=EVENTS,
    )
