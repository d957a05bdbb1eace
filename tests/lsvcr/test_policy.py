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


def reference_histories(h: History, long_play: float) -> tuple[list[int], list[int]]:
    """The dataset's definitions applied to the whole history at once (lsvcr.data.build)."""
    engaged = {v for v, _ in h.comment_records}
    seen, videos = set(), []
    for v, f in zip(h.video_ids, h.watch_fraction):
        if (f >= long_play or v in engaged) and v not in seen:
            seen.add(v)
            videos.append(v)
    return videos, list(dict.fromkeys(v for v, _ in h.comment_records))


def test_incremental_histories_follow_the_definitions(trained, world):
    policy = ModelPolicy("lsvcr", trained["lsvcr"])
    rng = np.random.default_rng(3)
    h = History([], [], [])
    for step in range(300):
        v = int(100 + rng.integers(40))
        if rng.random() < 0.7:
            h.video_ids.append(v)
            h.watch_fraction.append(float(rng.random()))
        else:  # records also for videos played earlier, later, or (rarely) never
            rows = world.video_comment_rows[v][: 1 + rng.integers(3)]
            h.comment_records.append((v, world.comment_ids[rows].tolist()))
        if step % 7 == 0 or step == 299:
            u = policy._user(0, h)
            videos, records = reference_histories(h, policy.long_play)
            assert [v for _, v in u.order] == videos
            assert list(u.merged) == records
    merged = {}
    for v, cs in h.comment_records:
        merged.setdefault(v, []).extend(policy.comment_index[c] for c in cs)
    assert u.merged == merged
    # another History object (a replayed request) rebuilds from scratch, with the same result
    copy = History(list(h.video_ids), list(h.watch_fraction), list(h.comment_records))
    assert policy._user(0, copy).order == u.order


def test_comment_requests_rank_with_their_feed_page(trained, world):
    """A comment request uses the user's histories as encoded at the page's video request: the same
    slate as a fresh policy gets from the page-time history, whatever was appended since."""
    vids, creqs = requests(world, users=3)
    served = ModelPolicy("lsvcr", trained["lsvcr"])
    at_page = [History(list(r.history.video_ids), list(r.history.watch_fraction), list(r.history.comment_records))
               for r in vids]
    served.rank_videos_batch(vids)
    later = []
    for r, c in zip(vids, creqs):  # the user plays two more videos and reads comments under one
        r.history.video_ids += [120, 121]
        r.history.watch_fraction += [0.95, 0.99]
        r.history.comment_records.append((120, world.comment_ids[world.video_comment_rows[120][:3]].tolist()))
        later.append(c)
    fresh = ModelPolicy("lsvcr", trained["lsvcr"])
    expected = fresh.rank_comments_batch([CommentRequest(c.user_id, c.ts, c.video_id, c.candidates, c.k, h, world, c.rng)
                                          for c, h in zip(later, at_page)])
    got = served.rank_comments_batch(later)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g.items, e.items)
    # without a page, a policy encodes the current history: here that ranks differently
    current = ModelPolicy("lsvcr", trained["lsvcr"]).rank_comments_batch(later)
    assert any(not np.array_equal(c.items, g.items) for c, g in zip(current, got))
