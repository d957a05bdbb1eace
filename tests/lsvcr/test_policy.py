"""Serving a model directory as a simulator policy (lsvcr.policy)."""
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from lsvcr.errors import InputError
from lsvcr.policy import ModelPolicy
from simulator.policy import CommentRequest, History, PopularityPolicy, VideoRequest, WorldView
from simulator.schema import POSTED_COMMENT_BASE


@pytest.fixture(scope="module")
def world(synthetic_run):
    videos = pq.read_table(synthetic_run / "videos.parquet").to_pandas()
    comments = pq.read_table(synthetic_run / "comments.parquet").to_pandas()
    # one brand-new comment, posted on the platform after training, under the first video
    ids = np.append(comments.comment_id.values, POSTED_COMMENT_BASE + 7)
    video = np.append(comments.video_id.values, videos.video_id[0])
    texts = list(comments.text) + ["lol hilarious kitten"]
    n_v = int(videos.video_id.max()) + 1
    rows = [np.flatnonzero(video == v) for v in range(n_v)]
    return WorldView(
        video_recent_plays=np.arange(n_v, dtype=float), video_duration_s=np.full(n_v, 30.0),
        comment_ids=ids, comment_video=video, comment_likes=np.arange(len(ids)), video_comment_rows=rows,
        comment_text=texts,
    )


def requests(world, users=6):
    rng = np.random.default_rng(0)
    vids, creqs = [], []
    for u in range(users):
        played = (100 + rng.choice(40, 8, replace=False)).tolist()
        first = int(played[0])
        comment_rows = world.video_comment_rows[first][:2]
        h = History(played, [0.9] * 8, [(first, world.comment_ids[comment_rows].tolist())])
        cands = 100 + rng.choice(40, 20, replace=False)
        vids.append(VideoRequest(u, 0.0, cands, 5, h, world, rng))
        creqs.append(CommentRequest(u, 0.0, 100, world.video_comment_rows[100], 4, h, world, rng))
    return vids, creqs


@pytest.mark.parametrize("kind", ["sasrec", "lsvcr"])
def test_batched_equals_one_by_one(trained, world, kind):
    policy = ModelPolicy(kind, trained[kind])
    vids, creqs = requests(world)
    for batch, single, reqs in ((policy.rank_videos_batch, policy.rank_videos, vids),
                                (policy.rank_comments_batch, policy.rank_comments, creqs)):
        together = batch(reqs)
        for r, slate in zip(reqs, together):
            alone = single(r)
            np.testing.assert_array_equal(slate.items, alone.items)
            assert set(slate.items) <= set(r.candidates) and len(slate.items) == r.k
            assert (slate.propensities == 1).all()


def test_sasrec_ranks_comments_by_likes_and_lsvcr_does_not(trained, world):
    _, creqs = requests(world)
    likes = PopularityPolicy().rank_comments(creqs[0]).items
    np.testing.assert_array_equal(ModelPolicy("sasrec", trained["sasrec"]).rank_comments(creqs[0]).items, likes)
    lsvcr = ModelPolicy("lsvcr", trained["lsvcr"])
    assert lsvcr.serves_comments
    ranked = [lsvcr.rank_comments(r).items for r in creqs]
    assert any(not np.array_equal(r, likes) for r in ranked)


def test_new_comments_are_embedded_once(trained, world):
    policy = ModelPolicy("lsvcr", trained["lsvcr"])
    _, creqs = requests(world, users=2)
    before = policy.model.comment_text.shape[0]
    slates = policy.rank_comments_batch(creqs)
    assert policy.model.comment_text.shape[0] == before + 1  # the post, encoded from its text
    assert (policy.model.comment_text[-1].abs().sum() > 0).item()
    new_row = len(world.comment_ids) - 1
    assert all(new_row in r.candidates for r in creqs)
    policy.rank_comments_batch(creqs)
    assert policy.model.comment_text.shape[0] == before + 1  # not again
    assert all(len(s.items) == 4 for s in slates)


def test_cold_users_get_popularity(trained, world):
    policy = ModelPolicy("sasrec", trained["sasrec"])
    vids, _ = requests(world, users=1)
    cold = VideoRequest(9, 0.0, vids[0].candidates, 5, History([], [], []), world, vids[0].rng)
    np.testing.assert_array_equal(policy.rank_videos(cold).items, PopularityPolicy().rank_videos(cold).items)


def test_wrong_or_incomplete_model_dirs(trained, tmp_path):
    with pytest.raises(InputError, match="holds a sasrec model"):
        ModelPolicy("lsvcr", trained["sasrec"])
    with pytest.raises(InputError, match="no such model directory"):
        ModelPolicy("lsvcr", tmp_path / "nope")
    copy = tmp_path / "copy"
    shutil.copytree(trained["lsvcr"], copy)
    (copy / "ids.json").unlink()
    with pytest.raises(InputError, match="ids.json"):
        ModelPolicy("lsvcr", copy)
    assert json.loads((trained["lsvcr"] / "ids.json").read_text())["video_ids"][0] == "[PAD]"
