"""Arrow schemas of every file a simulation writes (the contract with `lsvcr data`, `abtest`).

A run directory holds:

* ``videos.parquet``   — VIDEOS     (observable catalogue)
* ``comments.parquet`` — COMMENTS   (every comment at the end of the run, posted ones included)
* ``users.parquet``    — USERS      (observable user features)
* ``events.parquet``   — EVENTS     (one row per event; ``events/`` partitions for sharded runs)
* ``feedback/``        — logging runs only: every policy request with its candidates, propensities and
  outcomes, in the toolkit's logged-feedback format (simulator/feedback.py writes it)
* ``truth/``           — latent state no model may read: ``topics.json``, ``video_truth.parquet``,
  ``comment_truth.parquet``, ``user_truth.parquet``
* ``manifest.json``, ``summary.json``

Ids are int64. Comments posted during a run get ``comment_id = POSTED_COMMENT_BASE +
user_id * POSTS_PER_USER + k`` (k-th post of that user), so ids never depend on sharding.
"""
from __future__ import annotations

from enum import IntEnum

import pyarrow as pa

POSTED_COMMENT_BASE = 1 << 40
POSTS_PER_USER = 1 << 16


class Event(IntEnum):
    """The ``event`` column's values; the codes are its dictionary indices (never renumber)."""

    session_start = 0
    impression = 1
    play = 2
    comment_open = 3
    comment_impression = 4
    comment_read = 5
    comment_like = 6
    comment_post = 7
    session_end = 8


EVENT_TYPES = tuple(e.name for e in Event)
PERIODS = ("pre", "experiment")
SLATE_KINDS = ("video", "comment")  # SlateRow.kind's values, in code order

EVENTS = pa.schema(
    [
        pa.field("ts", pa.float64(), nullable=False),  # simulated seconds since run start
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("session_id", pa.int64(), nullable=False),  # user_id * 2**20 + k-th session
        pa.field("period", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("variant", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("event", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("video_id", pa.int64()),  # null on session rows
        pa.field("comment_id", pa.int64()),  # null where no comment
        pa.field("position", pa.int32()),  # slot in the video slate / comment slate; null on session rows
        # P(logging policy shows this item at this position); copied from the impression to the
        # play / comment rows of the same item; null on session rows.
        pa.field("propensity", pa.float64()),
        # P(logging policy shows exactly this prefix of the slate, through this position).
        pa.field("prefix_propensity", pa.float64()),
        # play: watch seconds; comment_read: read seconds; comment_open: seconds in the section;
        # session_end: session seconds; otherwise 0.
        pa.field("value", pa.float64(), nullable=False),
        # the policy request whose slate showed this item: user_id * 2**24 + k (null on session rows);
        # comment rows and comment_open point at the comment request made after the play
        pa.field("request_id", pa.int64()),
    ]
)

VIDEOS = pa.schema(
    [
        pa.field("video_id", pa.int64(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("creator_id", pa.int64(), nullable=False),
        pa.field("n_comments", pa.int64(), nullable=False),  # at world creation
    ]
)

COMMENTS = pa.schema(
    [
        pa.field("comment_id", pa.int64(), nullable=False),
        pa.field("video_id", pa.int64(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("created_ts", pa.float64(), nullable=False),  # < 0: before the run
        pa.field("author_id", pa.int64()),  # null for comments that predate the run
        pa.field("like_count", pa.int64(), nullable=False),  # at the end of the run
    ]
)

USERS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("activity_segment", pa.string(), nullable=False),  # low | mid | high (observable)
    ]
)
