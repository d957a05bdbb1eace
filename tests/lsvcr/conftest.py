"""Fixtures for the recommender tests: a tiny synthetic simulation run dir written with pyarrow
following simulator/schema.py (used until/unless the real simulator is available), and the dataset
built from it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lsvcr.config import FinetuneConfig
from lsvcr.train import train_model
from simulator import schema

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)

TOPICS = ["cats", "football", "cooking", "travel", "gaming"]
WORDS = {
    "cats": "kitten purr whiskers meow paws",
    "football": "goal striker penalty league match",
    "cooking": "recipe pasta oven spicy flavour",
    "travel": "beach mountain flight hotel island",
    "gaming": "level boss console quest speedrun",
}
STYLES = {"funny": "lol hilarious joke laughing", "info": "fact source explains actually", "debate": "disagree wrong argument opinion"}


def write_synthetic_run(out: Path, n_users=60, n_videos=40, per_video=8, plays=24, seed=0) -> Path:
    """A world with topic tastes (video task) and comment-style tastes (comment task)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    styles = list(STYLES)
    v_topic = np.arange(n_videos) % len(TOPICS)
    titles = [f"{TOPICS[t]} {' '.join(rng.choice(WORDS[TOPICS[t]].split(), 2))} #{v}" for v, t in enumerate(v_topic)]
    dur = rng.uniform(10, 60, n_videos)
    videos = pa.table({"video_id": np.arange(n_videos, dtype=np.int64) + 100, "title": titles, "duration_s": dur,
                       "creator_id": np.arange(n_videos, dtype=np.int64) % 7,
                       "n_comments": np.full(n_videos, per_video, np.int64)}, schema=schema.VIDEOS)
    pq.write_table(videos, out / "videos.parquet")
    cid = np.arange(n_videos * per_video, dtype=np.int64) + 5000
    c_video = np.repeat(np.arange(n_videos), per_video)
    c_style = rng.integers(0, len(styles), len(cid))
    c_text = [f"{STYLES[styles[s]].split()[rng.integers(4)]} {WORDS[TOPICS[v_topic[v]]].split()[rng.integers(5)]} {k}"
              for k, (v, s) in enumerate(zip(c_video, c_style))]
    likes = rng.integers(0, 50, len(cid))
    comments = pa.table({"comment_id": cid, "video_id": c_video.astype(np.int64) + 100, "text": c_text,
                         "created_ts": -rng.uniform(0, 1e5, len(cid)), "author_id": pa.nulls(len(cid), pa.int64()),
                         "like_count": likes.astype(np.int64)}, schema=schema.COMMENTS)
    pq.write_table(comments, out / "comments.parquet")
    pq.write_table(pa.table({"user_id": np.arange(n_users, dtype=np.int64),
                             "activity_segment": ["mid"] * n_users}, schema=schema.USERS), out / "users.parquet")
    rows = {k: [] for k in ("ts", "user_id", "session_id", "event", "video_id", "comment_id", "position", "value")}

    def emit(ts, u, ev, v=None, c=None, pos=None, val=0.0):
        for k, x in zip(rows, (ts, u, u << 20, ev, v, c, pos, val)):
            rows[k].append(x)

    for u in range(n_users):
        topic, style = rng.integers(len(TOPICS)), rng.integers(len(styles))
        t = float(u)
        emit(t, u, "session_start")
        liked = rng.permutation(np.flatnonzero(v_topic == topic))
        others = rng.permutation(np.flatnonzero(v_topic != topic))
        seq = list(liked) + list(others[: max(0, plays - len(liked))])
        seq = [seq[i] for i in rng.permutation(len(seq))][:plays]
        for pos, v in enumerate(seq):
            t += 1.0
            emit(t, u, "impression", v + 100, pos=pos)
            good = v_topic[v] == topic
            emit(t + 0.1, u, "play", v + 100, pos=pos, val=float(dur[v] * (0.9 if good else 0.2)))
            if good:
                emit(t + 0.2, u, "comment_open", v + 100, pos=pos, val=10.0)
                for k in range(per_video):
                    c = v * per_video + k
                    emit(t + 0.3 + k * 0.01, u, "comment_impression", v + 100, int(cid[c]), pos=k)
                    match = c_style[c] == style
                    emit(t + 0.3 + k * 0.01, u, "comment_read", v + 100, int(cid[c]), pos=k, val=8.0 if match else 1.0)
                    if match and rng.random() < 0.5:
                        emit(t + 0.305 + k * 0.01, u, "comment_like", v + 100, int(cid[c]), pos=k)
        emit(t + 1, u, "session_end", val=t - u)
    n = len(rows["ts"])
    dict_str = lambda xs: pa.array(xs, pa.string()).dictionary_encode().cast(pa.dictionary(pa.int8(), pa.string()))
    cols = {
        "ts": pa.array(rows["ts"], pa.float64()), "user_id": pa.array(rows["user_id"], pa.int64()),
        "session_id": pa.array(rows["session_id"], pa.int64()), "period": dict_str(["pre"] * n),
        "variant": dict_str(["control"] * n), "event": dict_str(rows["event"]),
        "video_id": pa.array(rows["video_id"], pa.int64()), "comment_id": pa.array(rows["comment_id"], pa.int64()),
        "position": pa.array(rows["position"], pa.int32()), "propensity": pa.array([1.0] * n, pa.float64()),
        "prefix_propensity": pa.array([1.0] * n, pa.float64()), "value": pa.array(rows["value"], pa.float64()),
    }
    for f in schema.EVENTS:  # fields this fixture does not model (nullable ones) stay null
        cols.setdefault(f.name, pa.nulls(n, f.type))
    events = pa.table(cols, schema=schema.EVENTS)
    pq.write_table(events, out / "events.parquet")
    return out


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory, synthetic_run) -> Path:
    from lsvcr.data.build import build_dataset
    from lsvcr.data.layout import write_dataset

    return write_dataset(build_dataset(synthetic_run), tmp_path_factory.mktemp("data") / "data")


@pytest.fixture(scope="session")
def tiny_sim_run(tmp_path_factory) -> Path:
    """A real tiny simulation (the simulator's own code, popularity logging policy)."""
    from simulator import SimConfig, simulate

    out = tmp_path_factory.mktemp("sim") / "run"
    simulate(SimConfig().replace(n_users=150, n_videos=120, days=2, seed=3), out)
    return out


@pytest.fixture(scope="session")
def tiny_sim_data(tmp_path_factory, tiny_sim_run) -> Path:
    from lsvcr.data.build import build_dataset
    from lsvcr.data.layout import write_dataset

    return write_dataset(build_dataset(tiny_sim_run), tmp_path_factory.mktemp("simdata") / "data")


@pytest.fixture(scope="session")
def trained(synthetic_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    out = {}
    out["sasrec"] = root / "sasrec"
    train_model(synthetic_data, out["sasrec"], FinetuneConfig(model="sasrec", epochs=12, sasrec_batch_size=16))
    out["lsvcr"] = root / "lsvcr"
    train_model(synthetic_data, out["lsvcr"], FinetuneConfig(model="lsvcr", task="both", epochs=8, batch_size=64))
    return out
