"""Fixtures: the public reference vector of reference/abtest-stats.md, and a tiny A/B run dir."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# The simulator's event-log schema: these tests build logs of their own that follow it.
from simulator.schema import EVENTS  # noqa: E402


def reference_data():
    rng = np.random.default_rng(20240601)
    n = 4000
    variant = rng.integers(0, 2, size=n)
    pre = rng.gamma(shape=2.0, scale=5.0, size=n)
    metric = np.maximum(2.0 + 0.8 * pre + rng.normal(0, 4.0, size=n) + 0.6 * variant, 0)
    sessions = 1 + rng.poisson(3, size=n)
    pre_sessions = 1 + rng.poisson(3, size=n)
    return pd.DataFrame({"user_id": np.arange(n), "variant": np.where(variant == 1, "treatment", "control"),
                         "metric": metric, "pre": pre, "sessions": sessions, "pre_sessions": pre_sessions})


@pytest.fixture(scope="session")
def ref_df():
    return reference_data()


@pytest.fixture(scope="session")
def ref_parquet(tmp_path_factory, ref_df):
    path = tmp_path_factory.mktemp("ref") / "units.parquet"
    ref_df.to_parquet(path)
    return path


DAY = 86400.0
PRE0, EXP0 = 0.0, 7 * DAY  # the pre-period is week 0, the experiment week 1


def _session(user, k, t0, period, variant, events):
    """Rows of one session: events = [(event, value, video_id, comment_id)], one second apart."""
    sid = user * 2**20 + k
    rows = [(t0, user, sid, period, variant, "session_start", None, None, None, None, None, 0.0, None)]
    for i, (event, value, video, comment) in enumerate(events, start=1):
        rows.append((t0 + i, user, sid, period, variant, event, video, comment, i, 0.5, 0.25, float(value), user * 2**24 + i))
    rows.append((t0 + len(events) + 1, user, sid, period, variant, "session_end", None, None, None, None, None, 60.0, None))
    return rows


def event_rows():
    """A hand-written log: 3 control users (11, 14, 15) and 3 treatment users (12, 13, 16)."""
    imp, play, opn, read, like, post = "impression", "play", "comment_open", "comment_read", "comment_like", "comment_post"
    rows = []
    # user 11, control: one pre session; two experiment sessions on two days
    rows += _session(11, 0, PRE0 + 100, "pre", "control", [(imp, 0, 1, None), (imp, 0, 2, None), (play, 30, 1, None),
                                                           (opn, 12, 1, None), (read, 5, 1, 100), (read, 3, 1, 101),
                                                           (like, 0, 1, 100)])
    rows += _session(11, 1, EXP0 + 50, "experiment", "control", [(imp, 0, 3, None), (imp, 0, 4, None), (imp, 0, 5, None),
                                                                 (play, 10, 3, None), (play, 20, 4, None),
                                                                 (opn, 9, 4, None), (read, 4, 4, 200), (post, 0, 4, None)])
    rows += _session(11, 2, EXP0 + DAY + 10, "experiment", "control", [(imp, 0, 6, None), (play, 5, 6, None),
                                                                       (read, 2, 6, 300)])
    # user 12, treatment: no pre-period at all
    rows += _session(12, 0, EXP0 + 500, "experiment", "treatment", [(imp, 0, 1, None), (imp, 0, 2, None),
                                                                    (play, 7, 2, None), (opn, 3, 2, None),
                                                                    (read, 6, 2, 400), (read, 1, 2, 401), (like, 0, 2, 401)])
    # user 13, treatment: pre and experiment
    rows += _session(13, 0, PRE0 + DAY * 2 + 5, "pre", "treatment", [(imp, 0, 7, None), (play, 40, 7, None)])
    rows += _session(13, 1, EXP0 + 3 * DAY, "experiment", "treatment", [(imp, 0, 8, None), (imp, 0, 9, None),
                                                                        (play, 11, 9, None), (opn, 2, 9, None),
                                                                        (read, 8, 9, 500)])
    # user 14, control: pre only (zeros in the experiment)
    rows += _session(14, 0, PRE0 + 10, "pre", "control", [(imp, 0, 1, None), (play, 15, 1, None), (opn, 1, 1, None),
                                                          (read, 2.5, 1, 100)])
    # user 16, treatment: pre and experiment, two pre sessions on two days
    rows += _session(16, 0, PRE0 + 300, "pre", "treatment", [(imp, 0, 1, None), (play, 4, 1, None)])
    rows += _session(16, 1, PRE0 + DAY + 300, "pre", "treatment", [(imp, 0, 2, None), (imp, 0, 3, None),
                                                                   (play, 9, 3, None), (opn, 1, 3, None),
                                                                   (read, 1.5, 3, 150)])
    rows += _session(16, 2, EXP0 + 700, "experiment", "treatment", [(imp, 0, 4, None), (play, 3, 4, None),
                                                                    (opn, 2, 4, None), (read, 2, 4, 250),
                                                                    (read, 4, 4, 251), (like, 0, 4, 250)])
    # user 15, control: assigned, never seen
    return rows


# hand-computed per-user metrics of event_rows(): experiment period, then pre-period (None: no pre data)
EXPECTED = {
    11: dict(comment_watch_time=6, video_watch_time=35, plays=3, impressions=4, comment_opens=1, comments_read=2,
             comment_likes=0, comment_posts=1, sessions=2, active_days=2),
    12: dict(comment_watch_time=7, video_watch_time=7, plays=1, impressions=2, comment_opens=1, comments_read=2,
             comment_likes=1, comment_posts=0, sessions=1, active_days=1),
    13: dict(comment_watch_time=8, video_watch_time=11, plays=1, impressions=2, comment_opens=1, comments_read=1,
             comment_likes=0, comment_posts=0, sessions=1, active_days=1),
    14: dict.fromkeys(("comment_watch_time", "video_watch_time", "plays", "impressions", "comment_opens",
                       "comments_read", "comment_likes", "comment_posts", "sessions", "active_days"), 0),
    15: dict.fromkeys(("comment_watch_time", "video_watch_time", "plays", "impressions", "comment_opens",
                       "comments_read", "comment_likes", "comment_posts", "sessions", "active_days"), 0),
    16: dict(comment_watch_time=6, video_watch_time=3, plays=1, impressions=1, comment_opens=1, comments_read=2,
             comment_likes=1, comment_posts=0, sessions=1, active_days=1),
}
EXPECTED_PRE = {
    11: dict(comment_watch_time=8, video_watch_time=30, plays=1, impressions=2, comment_opens=1, comments_read=2,
             comment_likes=1, comment_posts=0, sessions=1, active_days=1),
    12: None,
    13: dict(comment_watch_time=0, video_watch_time=40, plays=1, impressions=1, comment_opens=0, comments_read=0,
             comment_likes=0, comment_posts=0, sessions=1, active_days=1),
    14: dict(comment_watch_time=2.5, video_watch_time=15, plays=1, impressions=1, comment_opens=1, comments_read=1,
             comment_likes=0, comment_posts=0, sessions=1, active_days=1),
    15: None,
    16: dict(comment_watch_time=1.5, video_watch_time=13, plays=2, impressions=3, comment_opens=1, comments_read=1,
             comment_likes=0, comment_posts=0, sessions=2, active_days=2),
}
ASSIGNMENT = {11: "control", 12: "treatment", 13: "treatment", 14: "control", 15: "control", 16: "treatment"}


def write_events(path, rows):
    cols = list(zip(*rows))
    arrays = [pa.array(list(c), type=f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
              for c, f in zip(cols, EVENTS)]
    arrays = [a.dictionary_encode().cast(f.type) if pa.types.is_dictionary(f.type) else a for a, f in zip(arrays, EVENTS)]
    pq.write_table(pa.Table.from_arrays(arrays, schema=EVENTS), path)


def write_assignment(path):
    users = sorted(ASSIGNMENT)
    pq.write_table(pa.table({"user_id": pa.array(users, pa.int64()),
                             "variant": pa.array([ASSIGNMENT[u] for u in users]),
                             "bucket": pa.array([u % 100 for u in users], pa.int32())}), path)


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "ab"
    d.mkdir()
    write_events(d / "events.parquet", event_rows())
    write_assignment(d / "assignment.parquet")
    return d
