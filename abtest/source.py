"""Open the report's INPUT as a relation of units on an engine: an A/B run dir or a per-unit table.

* A run dir (``events.parquet`` or ``events/``, optionally ``assignment.parquet``) becomes one row per
  user with the standard metrics and their ``pre_`` covariates (metrics_sql.py).
* A per-unit table is a Parquet file (or a folder of them), a CSV file with named columns, or a
  table the engine already knows by name (``table=``; on Spark, a catalog or Hive table).

The engine is DuckDB, embedded, by default; ``abtest.spark.SparkEngine`` runs the same SQL on Spark.
Every check that needs the rows happens here, in SQL: missing columns, NULL variants, duplicate
units, users logged under two variants. Errors are one line naming the file, column or value.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from abtest import metrics_sql
from abtest.errors import InputError
from abtest.metrics_sql import DUCKDB, Dialect


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def table_ident(name: str) -> str:
    """A possibly qualified table name (``db.table``), each part quoted."""
    return ".".join(ident(part) for part in str(name).split("."))


class DuckDBEngine:
    """The embedded engine: SQL on a DuckDB connection, Parquet and CSV read by table functions."""

    dialect: Dialect = DUCKDB
    errors = (duckdb.Error,)
    prefix = ""  # of the temporary views (units, per_period, assigned)

    def __init__(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        # One thread: DuckDB's parallel aggregation adds floats in a scheduling-dependent order, so
        # with more threads the report's means and variances change in the last bits run to run.
        self.con = con or duckdb.connect(config={"threads": 1})

    def one(self, sql: str):
        return self.con.execute(sql).fetchone()

    def all(self, sql: str) -> list:
        return self.con.execute(sql).fetchall()

    def view(self, name: str, sql: str, materialize: bool = False) -> None:
        kind = "TABLE" if materialize else "VIEW"
        self.con.execute(f"CREATE OR REPLACE TEMP {kind} {name} AS {sql}")

    def columns(self, name: str) -> dict:
        return dict(self.con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {name})").fetchall())

    def events(self, run_dir: Path) -> str:
        return metrics_sql.events_source(run_dir)

    def assignment(self, run_dir: Path) -> str | None:
        return metrics_sql.assignment_source(run_dir)

    def table_file(self, path: Path) -> str:
        return _table_reader(path)

    def named_table(self, name: str) -> str:
        return table_ident(name)

    def first_line(self, error: Exception) -> str:
        return str(error).splitlines()[0]


@dataclass(frozen=True)
class Source:
    """A relation (``relation``: a view name) with one row per unit, on an engine."""

    engine: object  # DuckDBEngine or abtest.spark.SparkEngine
    relation: str
    label: str  # the path or table name, for messages
    unit_col: str
    variant_col: str
    columns: dict  # name -> SQL type (DuckDB's names on every engine)
    is_run: bool

    @property
    def con(self):
        """The engine's connection (DuckDB) or session (Spark)."""
        return self.engine.con

    @property
    def dialect(self) -> Dialect:
        return self.engine.dialect

    def require(self, column: str, what: str = "column") -> None:
        if column not in self.columns:
            known = ", ".join(c for c in self.columns)
            raise InputError(f"{self.label}: no {what} {column!r} (columns: {known})")

    def one(self, sql: str):
        return self.engine.one(sql)

    def all(self, sql: str) -> list:
        return self.engine.all(sql)


def table_format(path: Path) -> str:
    """``parquet`` (a file, or a folder of them) or ``csv``, from the path; InputError for anything else."""
    if path.is_dir():
        if not any(path.glob("**/*.parquet")):
            raise InputError(f"{path}: not an A/B run dir (no events.parquet or events/) and no Parquet files in it")
        return "parquet"
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv", ".txt") or path.name.lower().endswith((".csv.gz", ".tsv.gz")):
        return "csv"
    raise InputError(f"{path}: unknown file type {suffix!r} (expected .parquet or .csv, or an A/B run dir)")


def _table_reader(path: Path) -> str:
    s = metrics_sql.path_string
    if table_format(path) == "csv":
        return f"read_csv({s(path)}, header = true)"
    if path.is_dir():
        return f"read_parquet({s(path, '**/*.parquet')}, union_by_name = true)"
    return f"read_parquet({s(path)})"


def check_path(path) -> Path:
    """INPUT as a path that exists and is an A/B run dir or a table file (checked before any engine
    starts: a Spark JVM takes seconds to learn a file is missing)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if not _is_run_dir(path):
        table_format(path)
    return path


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "events.parquet").is_file() or (path / "events").is_dir())


def open_source(path=None, unit_col: str = "user_id", variant_col: str = "variant",
                con: duckdb.DuckDBPyConnection | None = None, engine=None, table: str | None = None) -> Source:
    """Open INPUT (a path, or ``table``: a table the engine knows), check units and variants, and
    return it as the view ``units`` (``lsvcr_units`` on Spark, beside the user's own tables)."""
    engine = engine or DuckDBEngine(con)
    if (path is None) == (table is None):
        raise InputError("give INPUT (a run dir or per-unit file) or --table NAME, not both")
    if table is not None:
        label, is_run = str(table), False
    else:
        path = check_path(path)
        label, is_run = str(path), _is_run_dir(path)
    units = engine.prefix + "units"
    try:
        if is_run:
            unit_col, variant_col = "user_id", "variant"
            per_period, assigned = engine.prefix + "per_period", engine.prefix + "assigned"
            engine.view(per_period, metrics_sql.per_period_sql(engine.events(path)), materialize=True)
            twice = engine.one(f"SELECT user_id FROM {per_period} WHERE n_variants > 1 LIMIT 1")
            if twice:
                raise InputError(f"{path}: user_id {twice[0]} is logged under more than one variant")
            engine.view(assigned, metrics_sql.units_sql(engine.assignment(path), per_period))
            engine.view(units, metrics_sql.user_metrics_sql(per_period, assigned))
        else:
            relation = engine.named_table(table) if table is not None else engine.table_file(path)
            engine.view(units, f"SELECT * FROM {relation}")
        columns = engine.columns(units)
    except engine.errors as e:
        raise InputError(f"{label}: cannot read: {engine.first_line(e)}") from None
    source = Source(engine, units, label, unit_col, variant_col, columns, is_run)
    source.require(unit_col, "unit column")
    source.require(variant_col, "variant column")
    _check_units(source)
    return source


INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
BITMAP_MAX_BITS = 1 << 31


def _check_units(source: Source) -> None:
    u, v = ident(source.unit_col), ident(source.variant_col)
    bitmap = source.dialect.bitmap  # DuckDB: distinct ids from a bitmap over [lo, hi], in a second pass
    null_unit, null_variant, n, lo, hi, *distinct = source.one(
        f"SELECT count(*) - count({u}), count(*) - count({v}), count({u}), min({u}), max({u})"
        f"{'' if bitmap else f', count(DISTINCT {u})'} FROM {source.relation}")
    if null_unit:
        raise InputError(f"{source.label}: column {source.unit_col!r} has {null_unit} empty (NULL) values")
    if null_variant:
        raise InputError(f"{source.label}: column {source.variant_col!r} has {null_variant} empty (NULL) values")
    if n == 0:
        raise InputError(f"{source.label}: no units (the table is empty)")
    dense = (bitmap and str(source.columns[source.unit_col]).upper() in INTEGER_TYPES
             and hi - lo + 1 <= min(BITMAP_MAX_BITS, max(64 * n, 1 << 20)))
    if distinct:  # counted in the pass above
        distinct = distinct[0]
    elif dense:  # a bitmap over the id range: one cheap pass instead of a hash of every id
        distinct = source.one(f"SELECT bit_count(bitstring_agg({u}, {lo}, {hi})) FROM {source.relation}")[0]
    else:
        distinct = source.one(f"SELECT count(DISTINCT {u}) FROM {source.relation}")[0]
    if distinct != n:
        unit = source.one(f"SELECT {u} FROM {source.relation} GROUP BY {u} HAVING count(*) > 1 LIMIT 1")[0]
        raise InputError(f"{source.label}: unit {source.unit_col}={unit!r} appears more than once "
                         f"({n - distinct} duplicate rows); one row per unit is required")
