"""A/B runs on simulated users: assignment, periods, common random numbers."""
import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import chisquare

from simulator import InputError, SimConfig
from simulator.experiment import assign, buckets, run_experiment
from simulator.run import make_policy


def factory(name):
    return lambda world, comments, config: make_policy(name, world, comments, config)


def test_assignment_is_deterministic_and_balanced():
    users = np.arange(100_000)
    variant, bucket = assign(users, 0.5, "salt")
    again, _ = assign(users, 0.5, "salt")
    np.testing.assert_array_equal(variant, again)
    counts = [(variant == "control").sum(), (variant == "treatment").sum()]
    assert chisquare(counts).pvalue > 0.001
    other, _ = assign(users, 0.5, "pepper")
    assert 0.45 < (other != variant).mean() < 0.55  # a new salt reshuffles
    v20, _ = assign(users, 0.2, "salt")
    assert chisquare([(v20 == "control").sum(), (v20 == "treatment").sum()], [80_000, 20_000]).pvalue > 0.001
    assert buckets(np.array([7]), "salt")[0] == buckets(np.array([7]), "salt")[0]
    with pytest.raises(InputError):
        assign(users, 1.0, "salt")


@pytest.fixture(scope="module")
def ab(tmp_path_factory):
    out = tmp_path_factory.mktemp("ab") / "run"
    config = SimConfig().replace(n_users=300, days=2, pre_days=1, seed=4)
    run_experiment(config, out, factory("popularity"), factory("oracle"), ("popularity", "oracle"))
    return out


def test_periods_and_arms(ab):
    events = pq.read_table(ab / "events.parquet").to_pandas()
    assignment = pq.read_table(ab / "assignment.parquet").to_pandas().set_index("user_id")
    # a user's arm never changes between periods and matches the assignment table
    arms = events.groupby("user_id").variant.nunique()
    assert (arms == 1).all()
    first = events.groupby("user_id").variant.first()
    np.testing.assert_array_equal(first.values, assignment.variant[first.index].values)
    pre = events[events.period == "pre"]
    exp = events[events.period == "experiment"]
    starts = events[events.event == "session_start"]
    assert (starts[starts.period == "pre"].ts < 86400).all() and (starts[starts.period == "experiment"].ts >= 86400).all()
    # everyone is on control in the pre-period: same comment reading rate in both arms there,
    # and the oracle arm reads far more comments once the experiment starts
    def reads(frame, arm):
        users = (assignment.variant == arm).sum()
        return (frame[(frame.event == "comment_read") & (frame.variant == arm)].value.sum()) / users

    assert reads(exp, "treatment") > 3 * reads(exp, "control")
    assert reads(pre, "treatment") < 2 * reads(pre, "control")


def test_pre_period_is_identical_under_any_treatment(ab, tmp_path):
    """Common random numbers: a different treatment policy changes nothing before the split."""
    out = tmp_path / "other"
    config = SimConfig().replace(n_users=300, days=2, pre_days=1, seed=4)
    run_experiment(config, out, factory("popularity"), factory("random"), ("popularity", "random"))
    a = pq.read_table(ab / "events.parquet").to_pandas()
    b = pq.read_table(out / "events.parquet").to_pandas()
    pre_a = a[a.period == "pre"].reset_index(drop=True)
    pre_b = b[b.period == "pre"].reset_index(drop=True)
    assert len(pre_a) > 10_000
    import pandas as pd

    pd.testing.assert_frame_equal(pre_a, pre_b)


def test_aa_uses_the_control_policy_twice(tmp_path):
    config = SimConfig().replace(n_users=50, days=2, pre_days=1)
    out = tmp_path / "aa"
    run_experiment(config, out, factory("popularity"), factory("oracle"), ("popularity", "oracle"), aa=True)
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["experiment"]["policies"] == {"control": "popularity", "treatment": "popularity"}
