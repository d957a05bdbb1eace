"""Per-user metrics from an event log (DuckDB over Parquet) against hand-computed values."""
from __future__ import annotations


import pyarrow.parquet as pq
import pytest

from abtest.metrics_sql import PRE_PREFIX, STANDARD_MEANS, STANDARD_ORDER
from abtest.report import ReportConfig, build_report
from abtest.source import open_source
from tests.abtest.conftest import ASSIGNMENT, EXPECTED, EXPECTED_PRE, event_rows, write_events


def user_table(run_dir):
    source = open_source(run_dir)
    cur = source.con.execute("SELECT * FROM units ORDER BY user_id")
    names = [d[0] for d in cur.description]
    return {row[0]: dict(zip(names, row)) for row in cur.fetchall()}


def check(table):
    assert sorted(table) == sorted(ASSIGNMENT)
    for user, row in table.items():
        assert row["variant"] == ASSIGNMENT[user]
        for metric in STANDARD_MEANS:
            assert row[metric] == pytest.approx(EXPECTED[user][metric]), (user, metric)
            pre = EXPECTED_PRE[user]
            if pre is None:
                assert row[PRE_PREFIX + metric] is None, (user, metric)
            else:
                assert row[PRE_PREFIX + metric] == pytest.approx(pre[metric]), (user, metric)


def test_user_metrics_match_hand_computation(run_dir):
    check(user_table(run_dir))


def test_partitioned_event_dataset(run_dir):
    rows = event_rows()
    (run_dir / "events.parquet").unlink()
    for shard in (0, 1):
        part = run_dir / "events" / f"shard={shard}"
        part.mkdir(parents=True)
        write_events(part / "part-0.parquet", [r for r in rows if r[1] % 2 == shard])
    check(user_table(run_dir))


def test_without_assignment_units_are_experiment_users(run_dir):
    (run_dir / "assignment.parquet").unlink()
    table = user_table(run_dir)
    assert sorted(table) == [11, 12, 13, 16]  # 14 (pre only) and 15 (never seen) are unknown without it


def test_run_dir_report_standard_metrics(run_dir):
    report = build_report(run_dir, ReportConfig())
    names = [m.name for m in report.metrics]
    assert names == list(STANDARD_ORDER) and names[0] == "comment_watch_time"
    assert report.variants == {"control": 3, "treatment": 3}
    cwt = report.metrics[0]
    assert cwt.control_mean_raw == pytest.approx((6 + 0 + 0) / 3)
    assert cwt.treatment_mean_raw == pytest.approx((7 + 8 + 6) / 3)
    # 3 units per arm cannot carry a covariate and a has-pre indicator: reported unadjusted, and flagged
    assert not cwt.cuped and cwt.flags[0].startswith("too few units for covariate adjustment")
    ctr = next(m for m in report.metrics if m.name == "ctr")
    assert ctr.kind == "ratio" and ctr.control_mean_raw == pytest.approx(3 / 4)
    assert ctr.treatment_mean_raw == pytest.approx((1 + 1 + 1) / (2 + 2 + 1))
    per_session = next(m for m in report.metrics if m.name == "comment_watch_time_per_session")
    assert per_session.control_mean_raw == pytest.approx(6 / 2)
    likes = next(m for m in report.metrics if m.name == "comment_likes")
    assert likes.rel_effect is None and any("control mean <= 0" in f for f in likes.flags)


def test_run_dir_report_with_missing_pre_period(tmp_path):
    """Ten copies of the fixture's users (ids + 100k, values scaled): 30 units per arm, a third without pre data."""
    rows, assignment = [], {}
    for k in range(10):
        for r in event_rows():
            rows.append((r[0], r[1] + 100 * k, r[2] + 100 * k * 2**20, *r[3:11], r[11] * (1 + 0.1 * k + 0.01 * r[1]), r[12]))
        assignment.update({u + 100 * k: v for u, v in ASSIGNMENT.items()})
    (tmp_path / "ab").mkdir()
    write_events(tmp_path / "ab" / "events.parquet", rows)
    import pyarrow as pa
    users = sorted(assignment)
    pq.write_table(pa.table({"user_id": pa.array(users, pa.int64()), "variant": [assignment[u] for u in users]}),
                   tmp_path / "ab" / "assignment.parquet")
    report = build_report(tmp_path / "ab", ReportConfig(metrics=("comment_watch_time", "ctr")))
    cwt, ctr = report.metrics
    assert report.variants == {"control": 30, "treatment": 30}
    assert cwt.cuped and cwt.adjustment == "lin-has-pre" and len(cwt.theta) == 2
    assert ctr.cuped and ctr.adjustment == "lin-has-pre"
    assert any("20 of 60 units (33.3%) have no pre-period value" in w for w in report.warnings)


def test_user_in_two_variants_is_an_input_error(run_dir):
    from abtest.errors import InputError

    rows = event_rows()
    rows.append((7 * 86400.0 + 9, 11, 11 * 2**20 + 9, "experiment", "treatment", "impression", 1, None, 1, 0.5, 0.5, 0.0, 11 * 2**24 + 9))
    write_events(run_dir / "events.parquet", rows)
    with pytest.raises(InputError, match="user_id 11 is logged under more than one variant"):
        open_source(run_dir)
