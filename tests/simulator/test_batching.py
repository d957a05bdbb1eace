"""Batched inference: the same outcomes as one call per request, served in batches."""
import numpy as np
import pyarrow.parquet as pq

from simulator import SimConfig
from simulator.batching import Batcher
from simulator.engine import CommentStore
from simulator.policy import PopularityPolicy
from simulator.run import execute
from simulator.world import generate_world


class BatchedPopularity(PopularityPolicy):
    name = "popularity"

    def __init__(self):
        super().__init__()
        self.batch_sizes = []

    def rank_videos_batch(self, requests):
        self.batch_sizes.append(len(requests))
        return [self.rank_videos(r) for r in requests]

    def rank_comments_batch(self, requests):
        self.batch_sizes.append(len(requests))
        return [self.rank_comments(r) for r in requests]


def run(tmp_path, name, policy):
    config = SimConfig().replace(n_users=400, days=1, seed=9, batch_tick_s=30.0)
    world = generate_world(config.world, config.seed)
    comments = CommentStore(world)
    out = tmp_path / name
    execute(config, out, world, comments, {"popularity": policy}, lambda u: "popularity", {})
    return pq.read_table(out / "events.parquet").to_pandas()


def test_batched_policy_gives_the_same_events(tmp_path):
    batched = BatchedPopularity()
    a = run(tmp_path, "plain", PopularityPolicy())
    b = run(tmp_path, "batched", batched)
    cut = 80_000.0  # sessions crossing midnight are cut at a request instead of a slate's end
    a, b = a[a.ts < cut].reset_index(drop=True), b[b.ts < cut].reset_index(drop=True)
    import pandas as pd

    pd.testing.assert_frame_equal(a, b)
    sizes = np.array(batched.batch_sizes)
    assert len(a) > 10_000 and sizes.sum() > 1000
    assert sizes.mean() > 3  # requests from concurrent users really share calls


def test_batcher_answers_in_submission_order():
    import simpy

    class Echo:
        def rank_videos_batch(self, requests):
            return [r * 10 for r in requests]

        def rank_comments_batch(self, requests):
            return [-r for r in requests]

    env = simpy.Environment()
    batcher = Batcher(env, Echo(), tick=1.0)
    got = []

    def user(i, delay):
        yield env.timeout(delay)
        got.append((i, (yield batcher.videos(i)), env.now))

    for i, delay in enumerate([0.2, 0.7, 1.3]):
        env.process(user(i, delay))
    env.run()
    assert got == [(0, 0, 1.0), (1, 10, 1.0), (2, 20, 2.0)]
    assert batcher.batches == 2 and batcher.served == 3
