"""`abtest report --engine spark`: the same SQL on Spark local[2] gives the DuckDB engine's report.

Every number of the JSON report must agree to 1e-9 (only the summation order differs), on a small
simulated A/B run dir and on a per-unit table with ratio metrics, CUPED covariates with missing
values and three arms; bad input fails with the same one line and exit code 2 on both engines.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("Spark needs a Java runtime", allow_module_level=True)

from abtest.metrics_sql import PRE_PREFIX, STANDARD_MEANS  # noqa: E402
from abtest.source import open_source  # noqa: E402
from abtest.spark import SparkEngine  # noqa: E402
from cli import app  # noqa: E402
from simulator import SimConfig  # noqa: E402
from simulator.experiment import run_experiment  # noqa: E402
from simulator.run import make_policy  # noqa: E402
from tests.abtest.conftest import EXPECTED, EXPECTED_PRE, event_rows, write_assignment, write_events  # noqa: E402

runner = CliRunner()
TOL = 1e-9


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("lsvcr-test-spark")
               .config("spark.sql.shuffle.partitions", "2").config("spark.default.parallelism", "2")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("warehouse")))
               # a short-lived JVM on few cores: quick C1 compiles beat C2's peak speed for this data
               .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def report(args, engine):
    extra = ["--engine", "spark"] if engine == "spark" else []
    result = runner.invoke(app, ["abtest", "report", *args, "--format", "json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def max_difference(a, b, where="report") -> float:
    """Largest absolute difference between two JSON values of the same shape (strings must match)."""
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), where
        return max([max_difference(a[k], b[k], f"{where}.{k}") for k in a], default=0.0)
    if isinstance(a, list):
        assert len(a) == len(b), where
        return max([max_difference(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b))], default=0.0)
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        assert isinstance(b, (int, float)) and not isinstance(b, bool), where
        return abs(a - b)
    assert a == b, (where, a, b)
    return 0.0


def same_report(args):
    duck, spark_ = report(args, "duckdb"), report(args, "spark")
    diff = max_difference(duck, spark_)
    print(f"max |spark - duckdb| over the JSON report of {args[0]}: {diff:.1e}")  # shown with -s
    assert diff <= TOL, diff
    return duck, diff


@pytest.fixture(scope="module")
def simulated_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ab") / "run"
    config = SimConfig().replace(n_users=300, days=2, pre_days=1, seed=4)

    def factory(name):
        return lambda world, comments, cfg: make_policy(name, world, comments, cfg)

    run_experiment(config, out, factory("popularity"), factory("oracle"), ("popularity", "oracle"))
    return out


# one metric of each SQL shape (sum, count, count of distinct sessions and days, two ratios): the
# per-user values of all of them are checked below; the full 12-metric report only costs time here
RUN_METRICS = ("comment_watch_time", "comment_watch_time_per_session", "plays", "ctr", "sessions", "active_days")


def test_simulated_run_dir_report_matches_duckdb(spark, simulated_run):
    duck, _ = same_report([str(simulated_run), *(a for m in RUN_METRICS for a in ("--metric", m))])
    assert sum(duck["variants"].values()) == 300 and [m["name"] for m in duck["metrics"]] == list(RUN_METRICS)
    assert all(m["cuped"] for m in duck["metrics"]) and duck["metrics"][0]["abs_effect"] > 0


def test_partitioned_event_log_per_user_metrics(spark, tmp_path):
    rows = event_rows()
    for shard in (0, 1):
        part = tmp_path / "ab" / "events" / f"shard={shard}"
        part.mkdir(parents=True)
        write_events(part / "part-0.parquet", [r for r in rows if r[1] % 2 == shard])
    write_assignment(tmp_path / "ab" / "assignment.parquet")
    source = open_source(tmp_path / "ab", engine=SparkEngine(spark))
    table = {row["user_id"]: row.asDict() for row in spark.table(source.relation).collect()}
    assert source.is_run and sorted(table) == sorted(EXPECTED)
    for user, row in table.items():
        for metric in STANDARD_MEANS:
            assert row[metric] == pytest.approx(EXPECTED[user][metric]), (user, metric)
            pre = EXPECTED_PRE[user]
            assert row[PRE_PREFIX + metric] == (None if pre is None else pytest.approx(pre[metric])), (user, metric)


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    """Three arms, a ratio metric, CUPED covariates with NULL and NaN gaps."""
    rng = np.random.default_rng(13)
    n = 3000
    arm = rng.choice(["control", "treatment", "bold"], size=n, p=[0.4, 0.3, 0.3])
    pre = rng.gamma(2.0, 5.0, size=n)
    lift = np.select([arm == "treatment", arm == "bold"], [0.5, 1.2], 0.0)
    sessions = 1 + rng.poisson(3, size=n)
    pre_sessions = (1 + rng.poisson(3, size=n)).astype(float)
    pre_time = pre_sessions * rng.gamma(2.0, 2.0, size=n)
    columns = {
        "user_id": rng.permutation(10 * n)[:n],
        "variant": arm,
        "watch": np.maximum(2 + 0.8 * pre + rng.normal(0, 4, size=n) + lift, 0),
        "pre_watch": np.where(rng.random(n) < 0.15, np.nan, pre),  # NaN gaps
        "converted": (rng.random(n) < 0.2 + 0.02 * (arm != "control")).astype(np.int64),
        "time": sessions * rng.gamma(2.0, 2.0, size=n) * (1 + 0.05 * lift),
        "sessions": sessions,
        "pre_time": pre_time,
        "pre_sessions": pre_sessions,
        "label": np.full(n, "x"),
    }
    table = pa.table({k: pa.array(v) for k, v in columns.items()})  # NaN stays NaN (not NULL)
    table = table.set_column(table.schema.get_field_index("pre_time"), "pre_time",
                             pa.array(pre_time, mask=rng.random(n) < 0.1))  # NULL gaps
    path = tmp_path_factory.mktemp("units") / "units.parquet"
    pq.write_table(table, path)
    return path


UNIT_ARGS = ["--metric", "watch", "--metric", "converted", "--ratio", "time_per_session=time/sessions",
             "--covariate", "watch=pre_watch", "--covariate", "time_per_session=pre_time/pre_sessions"]


def test_per_unit_table_three_arms_matches_duckdb(spark, units):
    duck, _ = same_report([str(units), *UNIT_ARGS, "--mann-whitney", "--winsorize", "0.99"])
    assert duck["variants"].keys() == {"control", "treatment", "bold"}
    kinds = {m["name"]: (m["kind"], m["adjustment"]) for m in duck["metrics"]}
    assert kinds == {"watch": ("mean", "lin-has-pre"), "converted": ("proportion", "none"),
                     "time_per_session": ("ratio", "lin-has-pre")}
    assert len(duck["metrics"]) == 6 and all(m["mann_whitney_p_value"] is not None
                                            for m in duck["metrics"] if m["kind"] != "ratio")


def test_table_by_name(spark, units):
    frame = spark.read.parquet(str(units))
    frame.write.mode("overwrite").saveAsTable("units_catalog")
    frame.createOrReplaceTempView("units")  # the name the engine's own views must not take over
    duck = report([str(units), *UNIT_ARGS], "duckdb")
    for name in ("default.units_catalog", "units", "units"):
        by_name = report(["--table", name, *UNIT_ARGS], "spark")
        assert max_difference({**duck, "source": None}, {**by_name, "source": None}) <= TOL, name


def fails(args):
    result = runner.invoke(app, ["abtest", "report", *args, "--format", "json"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("args", [
    ["--metric", "nope"],
    ["--metric", "label"],
    ["--ratio", "r=time/missing"],
    ["--unit-col", "uid"],
    ["--control", "baseline", "--metric", "watch"],
])
def test_bad_column_same_error_on_both_engines(spark, units, args):
    duck = fails([str(units), *args])
    assert fails([str(units), *args, "--engine", "spark"]) == duck


def test_bad_input_exits_2_with_one_line(spark, units, tmp_path):
    missing = str(tmp_path / "missing.parquet")
    assert fails([missing, "--engine", "spark"]) == fails([missing])
    assert "no_such_table" in fails(["--table", "no_such_table", "--engine", "spark"])
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    assert fails([str(garbage), "--engine", "spark"]).startswith(f"error: {garbage}: cannot read:")
    assert "--table" in fails(["--engine", "spark"])
    assert "--engine must be one of duckdb, spark" in fails([str(units), "--engine", "hadoop"])
    table = pq.read_table(units)
    twice = tmp_path / "twice.parquet"
    pq.write_table(pa.concat_tables([table, table.slice(7, 1)]), twice)  # one unit twice
    no_variant = tmp_path / "no_variant.parquet"
    variants = pa.array(table["variant"].to_pylist()[:-1] + [None])
    pq.write_table(table.set_column(table.schema.get_field_index("variant"), "variant", variants), no_variant)
    for path in (twice, no_variant):
        args = [str(path), "--metric", "watch"]
        assert fails([*args, "--engine", "spark"]) == fails(args), path


def test_spark_cli_one_line_literal_paths_and_quoted_headers(tmp_path):
    """In a fresh process (its own JVM): the file named is read (not what its name matches as a glob), an
    RFC 4180 quoted header ("a""b") is read as a"b, a bad metric is exactly one line on stderr (the JVM's
    start-up notices go to its log), and a missing file is refused before any JVM starts."""
    import subprocess
    import sys
    from pathlib import Path

    rows = "".join(f"{i},{'control' if i % 2 else 'treatment'},{i}\n" for i in range(40))
    (tmp_path / "g[ab].csv").write_text('user_id,variant,"a""b"\n' + rows)
    (tmp_path / "ga.csv").write_text('user_id,variant,"a""b"\n' + rows.replace(",", ",1", 2))  # what a glob would read
    cli = [sys.executable, "-m", "cli", "abtest", "report", "--engine", "spark", "--spark-master", "local[1]"]
    cwd = Path(__file__).resolve().parents[2]
    ok = subprocess.run([*cli, str(tmp_path / "g[ab].csv"), "--metric", 'a"b', "--format", "json"], cwd=cwd,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["variants"] == {"control": 20, "treatment": 20} and report["metrics"][0]["control_mean"] == 20.0
    assert ok.stderr.strip() == ""
    bad = subprocess.run([*cli, str(tmp_path / "g[ab].csv"), "--metric", "nope"], cwd=cwd, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [f"error: {tmp_path / 'g[ab].csv'}: no metric 'nope' "
                                                                       f"(columns: user_id, variant, a\"b)"]
    code = ("from typer.testing import CliRunner; from cli import app; from pyspark import SparkContext; "
            f"r = CliRunner().invoke(app, ['abtest', 'report', {str(tmp_path / 'none.csv')!r}, '--engine', 'spark']); "
            "print(r.exit_code, SparkContext._active_spark_context is None, r.stderr.strip())")
    missing = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
    assert missing.stdout.strip() == f"2 True error: {tmp_path / 'none.csv'}: no such file or directory", missing.stderr
