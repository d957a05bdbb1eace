"""Open the report's INPUT as a DuckDB relation of units: an A/B run dir or a per-unit table.

* A run dir (``events.parquet`` or ``events/``, optionally ``assignment.parquet``) becomes one row per
  user with the standard metrics and their ``pre_`` covariates (metrics_sql.py).
* A per-unit table is a Parquet file (or a folder of them) or a CSV file with named columns.

Every check that needs the rows happens here, in SQL: missing columns, NULL variants, duplicate
units, users logged under two variants. Errors are one line naming the file, column or value.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from abtest import metrics_sql
from abtest.errors import InputError


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


@dataclass(frozen=True)
class Source:
    """A DuckDB relation (``relation``: a view name) with one row per unit."""

    con: duckdb.DuckDBPyConnection
    relation: str
    label: str  # the path, for messages
    unit_col: str
    variant_col: str
    columns: dict  # name -> DuckDB type
    is_run: bool

    def require(self, column: str, what: str = "column") -> None:
        if column not in self.columns:
            known = ", ".join(c for c in self.columns)
            raise InputError(f"{self.label}: no {what} {column!r} (columns: {known})")

    def one(self, sql: str):
        return self.con.execute(sql).fetchone()


def _table_reader(path: Path) -> str:
    s = metrics_sql.sql_string
    if path.is_dir():
        files = sorted(path.glob("**/*.parquet"))
        if not files:
            raise InputError(f"{path}: not an A/B run dir (no events.parquet or events/) and no Parquet files in it")
        return f"read_parquet({s(str(path / '**' / '*.parquet'))}, union_by_name = true)"
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return f"read_parquet({s(path)})"
    if suffix in (".csv", ".tsv", ".txt") or path.name.lower().endswith((".csv.gz", ".tsv.gz")):
        return f"read_csv({s(path)}, header = true)"
    raise InputError(f"{path}: unknown file type {suffix!r} (expected .parquet or .csv, or an A/B run dir)")


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "events.parquet").is_file() or (path / "events").is_dir())


def open_source(path, unit_col: str = "user_id", variant_col: str = "variant",
                con: duckdb.DuckDBPyConnection | None = None) -> Source:
    """Open INPUT, check units and variants, and return it as the view ``units``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    con = con or duckdb.connect()
    try:
        if _is_run_dir(path):
            unit_col, variant_col = "user_id", "variant"
            con.execute(f"CREATE OR REPLACE TEMP TABLE per_period AS {metrics_sql.per_period_sql(path)}")
            twice = con.execute("SELECT user_id FROM per_period WHERE n_variants > 1 LIMIT 1").fetchone()
            if twice:
                raise InputError(f"{path}: user_id {twice[0]} is logged under more than one variant")
            con.execute(f"CREATE OR REPLACE TEMP VIEW assigned AS {metrics_sql.units_sql(path)}")
            con.execute(f"CREATE OR REPLACE TEMP VIEW units AS {metrics_sql.user_metrics_sql('per_period', 'assigned')}")
        else:
            con.execute(f"CREATE OR REPLACE TEMP VIEW units AS SELECT * FROM {_table_reader(path)}")
        columns = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE units)").fetchall())
    except duckdb.Error as e:
        raise InputError(f"{path}: cannot read: {str(e).splitlines()[0]}") from None
    source = Source(con, "units", str(path), unit_col, variant_col, columns, _is_run_dir(path))
    source.require(unit_col, "unit column")
    source.require(variant_col, "variant column")
    _check_units(source)
    return source


INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
BITMAP_MAX_BITS = 1 << 31


def _check_units(source: Source) -> None:
    u, v = ident(source.unit_col), ident(source.variant_col)
    null_unit, null_variant, n, lo, hi = source.one(
        f"SELECT count(*) - count({u}), count(*) - count({v}), count({u}), min({u}), max({u}) FROM {source.relation}")
    if null_unit:
        raise InputError(f"{source.label}: column {source.unit_col!r} has {null_unit} empty (NULL) values")
    if null_variant:
        raise InputError(f"{source.label}: column {source.variant_col!r} has {null_variant} empty (NULL) values")
    if n == 0:
        raise InputError(f"{source.label}: no units (the table is empty)")
    dense = (str(source.columns[source.unit_col]).upper() in INTEGER_TYPES
             and hi - lo + 1 <= min(BITMAP_MAX_BITS, max(64 * n, 1 << 20)))
    if dense:  # a bitmap over the id range: one cheap pass instead of a hash of every id
        distinct = source.one(f"SELECT bit_count(bitstring_agg({u}, {lo}, {hi})) FROM {source.relation}")[0]
    else:
        distinct = source.one(f"SELECT count(DISTINCT {u}) FROM {source.relation}")[0]
    if distinct != n:
        unit = source.one(f"SELECT {u} FROM {source.relation} GROUP BY {u} HAVING count(*) > 1 LIMIT 1")[0]
        raise InputError(f"{source.label}: unit {source.unit_col}={unit!r} appears more than once "
                         f"({n - distinct} duplicate rows); one row per unit is required")
