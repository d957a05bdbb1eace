"""Per-user metrics of an A/B run, straight from its Parquet event log with DuckDB SQL.

Each standard metric is one aggregate over a user's events of one period (schema: simulator/schema.py
EVENTS). Experiment-period values are the outcomes; the same aggregates over the pre-period are the
CUPED covariates (``pre_<metric>``, NULL for a user with no pre-period events: missing, not zero).
Every assigned user is a unit: users with no experiment events count with zeros.

The query never loads the log into Python; DuckDB streams it, and the same SQL runs on Spark.
Every query of the package is written once, in the subset of SQL that DuckDB and Spark SQL 4 both
parse the same way (``x::DOUBLE``, ``count(*) FILTER (WHERE ...)``, ``USING`` joins, double-quoted
identifiers); the three functions that subset lacks are spelled by the engine's ``Dialect``.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from abtest.errors import InputError


@dataclass(frozen=True)
class Dialect:
    """How one engine spells what the common SQL lacks (``{x}``: an expression, ``{q}``: a quantile)."""

    name: str
    mean: str  # a mean aggregate
    finite: str  # TRUE for a finite number, FALSE for NaN or ±inf, NULL for NULL
    quantile: str  # exact quantile with linear interpolation
    bitmap: bool  # bitstring_agg for dense integer ids

    def isfinite(self, x: str) -> str:
        return self.finite.format(x=x)

    def quantile_of(self, x: str, q: float) -> str:
        return self.quantile.format(x=x, q=repr(float(q)))


# DuckDB: the compensated (Kahan) mean; Spark: avg over a double sum per partition, merged
DUCKDB = Dialect("duckdb", "favg", "isfinite({x})", "quantile_cont({x}, {q})", True)
SPARK = Dialect("spark", "avg", "(NOT isnan({x}) AND abs({x}) < CAST('Infinity' AS DOUBLE))",
                "percentile({x}, {q})", False)

@dataclass(frozen=True)
class Metric:
    """One standard metric: its aggregate over one user's events of one period (the online report), and
    what values it offline from a feedback log: a reward of one kind of logged request (``video``: feed
    pages, ``comment``: comment sections), or the session model (``sessions``)."""

    name: str
    sql: str
    offline: tuple[str, str] | None = None
    session_model: bool = False


# the catalogue, comment watch time first (the headline)
CATALOGUE: tuple[Metric, ...] = (
    Metric("comment_watch_time", "coalesce(sum(value) FILTER (WHERE event = 'comment_read'), 0)", ("comment", "read_s")),
    Metric("video_watch_time", "coalesce(sum(value) FILTER (WHERE event = 'play'), 0)", ("video", "watch_s")),
    Metric("plays", "count(*) FILTER (WHERE event = 'play')", ("video", "plays")),
    Metric("impressions", "count(*) FILTER (WHERE event = 'impression')"),
    Metric("comment_opens", "count(*) FILTER (WHERE event = 'comment_open')"),
    Metric("comments_read", "count(*) FILTER (WHERE event = 'comment_read')", ("comment", "reads")),
    Metric("comment_likes", "count(*) FILTER (WHERE event = 'comment_like')", ("comment", "likes")),
    Metric("comment_posts", "count(*) FILTER (WHERE event = 'comment_post')"),
    Metric("sessions", "count(DISTINCT session_id)", session_model=True),
    Metric("active_days", "count(DISTINCT floor(ts / 86400))"),
)
STANDARD_MEANS: dict[str, str] = {m.name: m.sql for m in CATALOGUE}
# name -> (numerator metric, denominator metric): a ratio of sums over each arm's users
STANDARD_RATIOS: dict[str, tuple[str, str]] = {
    "ctr": ("plays", "impressions"),
    "comment_watch_time_per_session": ("comment_watch_time", "sessions"),
}
# the report's order: comment watch time per user first
STANDARD_ORDER = ("comment_watch_time", "comment_watch_time_per_session", "video_watch_time", "plays",
                  "impressions", "ctr", "comment_opens", "comments_read", "comment_likes",
                  "comment_posts", "sessions", "active_days")
PRE_PREFIX = "pre_"


def sql_string(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def path_string(path: Path, pattern: str = "") -> str:
    """A path as a DuckDB string literal that names that path and nothing else: DuckDB expands
    ``*``, ``?`` and ``[...]`` in file names, so they are escaped (``[[]``); ``pattern`` (e.g.
    ``**/*.parquet``) is appended unescaped, for a folder."""
    literal = glob.escape(str(path))
    return sql_string(f"{literal}/{pattern}" if pattern else literal)


def events_source(run_dir: Path) -> str:
    """DuckDB table function reading the run's event log (a file or a partitioned dataset)."""
    file, folder = run_dir / "events.parquet", run_dir / "events"
    if file.is_file():
        return f"read_parquet({path_string(file)})"
    if folder.is_dir():
        return f"read_parquet({path_string(folder, '**/*.parquet')}, hive_partitioning = true, union_by_name = true)"
    raise InputError(f"{run_dir}: no events.parquet or events/ in this run directory")


def assignment_source(run_dir: Path) -> str | None:
    """DuckDB table function reading the run's assignment table, None if the run has none."""
    assignment = run_dir / "assignment.parquet"
    return f"read_parquet({path_string(assignment)})" if assignment.is_file() else None


def per_period_sql(events: str) -> str:
    """One row per (user, period) of the ``events`` relation: the standard metrics and how many
    variants the user was logged in."""
    aggs = ",\n           ".join(f"{expr} AS {name}" for name, expr in STANDARD_MEANS.items())
    return f"""
SELECT user_id, period::STRING AS period, min(variant::STRING) AS variant,
       count(DISTINCT variant::STRING) AS n_variants,
       {aggs}
FROM {events}
GROUP BY user_id, period::STRING"""


def units_sql(assignment: str | None, per_period: str = "per_period") -> str:
    """The experiment's units: the assignment relation, else the users active in the experiment period."""
    if assignment is not None:
        return f"SELECT user_id, variant::STRING AS variant FROM {assignment}"
    return f"SELECT user_id, variant FROM {per_period} WHERE period = 'experiment'"


def user_metrics_sql(per_period: str = "per_period", units: str = "units") -> str:
    """SELECT user_id, variant, <metric>..., pre_<metric>...: one row per unit (zeros if inactive)."""
    outcomes = ",\n       ".join(f"coalesce(e.{name}, 0)::DOUBLE AS {name}" for name in STANDARD_MEANS)
    covariates = ",\n       ".join(f"p.{name}::DOUBLE AS {PRE_PREFIX}{name}" for name in STANDARD_MEANS)
    return f"""
SELECT u.user_id, u.variant,
       {outcomes},
       {covariates}
FROM {units} u
LEFT JOIN (SELECT * FROM {per_period} WHERE period = 'experiment') e USING (user_id)
LEFT JOIN (SELECT * FROM {per_period} WHERE period = 'pre') p USING (user_id)"""
