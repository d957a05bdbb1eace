"""Per-variant sufficient statistics of every metric, in one SQL pass over the units (DuckDB or Spark).

For each metric the block of columns it needs (outcome, denominator, covariates) gets, per variant,
its count, means and sample covariances (the engines' numerically stable ``covar_samp``), plus non-NULL
counts and ranges for the checks. Aggregates add across shards (``+``), so a partitioned dataset or
a Spark job can produce them piecewise; ``report.analyze`` needs nothing else.

Missing covariates (NULL, NaN or infinite) are counted first in a light pass; those metrics are
aggregated with the covariate filled with 0 and a has-pre-data indicator (regression.py).
Only these aggregates leave the engine: a few numbers per variant, however many units.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from abtest.compare import Layout
from abtest.errors import InputError
from abtest.metrics_sql import DUCKDB, Dialect
from abtest.robust import Cap, choose_cap
from abtest.source import Source, ident
from abtest.spec import MetricSpec
from abtest.stats import Moments


@dataclass(frozen=True)
class Block:
    """One metric's columns in one arm: moments plus per-column non-NULL counts and ranges."""

    moments: Moments
    non_null: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray

    def __add__(self, other: Block) -> Block:
        return Block(self.moments + other.moments, self.non_null + other.non_null,
                     np.fmin(self.minimum, other.minimum), np.fmax(self.maximum, other.maximum))


@dataclass(frozen=True)
class Aggregates:
    """Unit counts and metric blocks per variant: ``blocks[metric][variant]``."""

    counts: dict
    blocks: dict
    missing: dict = field(default_factory=dict)  # metric -> units without pre-period data
    caps: dict = field(default_factory=dict)  # column -> Cap (winsorisation thresholds, pooled)

    def __add__(self, other: Aggregates) -> Aggregates:
        shapes = {m: {b.moments.k for b in arms.values()} for m, arms in self.blocks.items()}
        other_shapes = {m: {b.moments.k for b in arms.values()} for m, arms in other.blocks.items()}
        if shapes != other_shapes:
            raise ValueError("shards were aggregated with different metrics or layouts")
        counts = {v: self.counts.get(v, 0) + other.counts.get(v, 0) for v in {**self.counts, **other.counts}}
        blocks = {}
        for metric, arms in self.blocks.items():
            merged = dict(arms)
            for variant, block in other.blocks[metric].items():
                merged[variant] = merged[variant] + block if variant in merged else block
            blocks[metric] = merged
        missing = {m: self.missing.get(m, 0) + other.missing.get(m, 0) for m in {**self.missing, **other.missing}}
        return Aggregates(counts, blocks, missing, self.caps)


def layout(spec: MetricSpec, with_indicator: bool) -> Layout:
    """Positions of the metric's numbers in its block (see ``block_sql`` for the column order)."""
    den = 1 if spec.is_ratio else None
    if not spec.has_covariate:
        return Layout((0, den))
    first = 2 if spec.is_ratio else 1
    cov = (first, first + 1 if spec.is_ratio else None)
    if with_indicator:
        return Layout((0, den), (cov, (first + (2 if spec.is_ratio else 1), None)))
    return Layout((0, den), (cov,))


def _clean(column: str, dialect: Dialect) -> str:
    """The column as DOUBLE, NULL where NaN or infinite. (DuckDB folds ``isnan`` and ``nullif(x, NaN)``
    to constants from Parquet statistics, which do not record NaN; ``isfinite`` is evaluated.)"""
    x = f"{ident(column)}::DOUBLE"
    return f"(CASE WHEN {dialect.isfinite(x)} THEN {x} END)"


def _value(column: str, caps: dict, dialect: Dialect = DUCKDB) -> str:
    """The column as DOUBLE, capped if winsorised (NaN and ±inf stay as they are: a cap must not turn
    a missing covariate or a broken outcome into the cap's value)."""
    expr = f"{ident(column)}::DOUBLE"
    if column not in caps:
        return expr
    return f"(CASE WHEN {dialect.isfinite(expr)} THEN least({expr}, {caps[column].value!r}) ELSE {expr} END)"


def block_sql(spec: MetricSpec, with_indicator: bool, caps: dict, dialect: Dialect = DUCKDB) -> list[str]:
    """SQL expressions of the block's columns: num, [den], [cov_num, [cov_den], [has_pre]]."""
    cols = [_value(spec.num, caps, dialect)] + ([_value(spec.den, caps, dialect)] if spec.is_ratio else [])
    if not spec.has_covariate:
        return cols
    covs = [c for c in (spec.cov_num, spec.cov_den) if c is not None]
    if not with_indicator:  # NULL shows in the non-NULL count, NaN in the mean: both switch to the layout below
        return cols + [_value(c, caps, dialect) for c in covs]
    present = " AND ".join(f"{_clean(c, dialect)} IS NOT NULL" for c in covs)
    filled = [f"CASE WHEN {present} THEN {_value(c, caps, dialect)} ELSE 0 END" for c in covs]
    return cols + filled + [f"({present})::DOUBLE"]


def _moments_query(source: Source, blocks: dict[str, list[str]], ranged: set[str] = frozenset()):
    """One GROUP BY variant over the units: count, means, non-NULL counts, covariances within each
    block (and min/max of the ``ranged`` expressions)."""
    exprs = list(dict.fromkeys(e for cols in blocks.values() for e in cols))
    index = {e: i for i, e in enumerate(exprs)}
    pairs = sorted({tuple(sorted((index[a], index[b]))) for cols in blocks.values() for a in cols for b in cols})
    select = [f"{ident(source.variant_col)}::STRING AS v", "count(*) AS n"]
    for e in exprs:
        select += [f"{source.dialect.mean}({e})", f"count({e})"] + ([f"min({e})", f"max({e})"] if e in ranged else ["NULL", "NULL"])
    for i, j in pairs:
        select.append(f"var_samp({exprs[i]})" if i == j else f"covar_samp({exprs[i]}, {exprs[j]})")
    rows = source.all(f"SELECT {', '.join(select)} FROM {source.relation} GROUP BY 1 ORDER BY 1")
    k = len(exprs)
    out = {}
    for row in rows:
        values = np.array([np.nan if x is None else float(x) for x in row[2:]])
        stats = values[: 4 * k].reshape(k, 4)
        cov = np.full((k, k), np.nan)
        for (i, j), c in zip(pairs, values[4 * k:]):
            cov[i, j] = cov[j, i] = c
        out[row[0]] = (int(row[1]), stats, cov)
    result = {}
    for metric, cols in blocks.items():
        idx = [index[e] for e in cols]
        result[metric] = {}
        for variant, (n, stats, cov) in out.items():
            s = stats[idx]
            moments = Moments.from_covariance(float(n), s[:, 0], cov[np.ix_(idx, idx)])
            result[metric][variant] = Block(moments, s[:, 1], s[:, 2], s[:, 3])
    return {v: n for v, (n, _, _) in out.items()}, result


def _first_unit(source: Source, condition: str):
    row = source.one(f"SELECT {ident(source.unit_col)} FROM {source.relation} WHERE {condition} LIMIT 1")
    return row[0] if row else None


def _check_outcomes(source: Source, spec: MetricSpec, arms: dict) -> None:
    for pos, column in enumerate(c for c in (spec.num, spec.den) if c is not None):
        for block in arms.values():
            if block.non_null[pos] < block.moments.n:
                unit = _first_unit(source, f"{ident(column)} IS NULL")
                raise InputError(f"{source.label}: column {column!r} is empty (NULL) for {source.unit_col}={unit!r}")
            if not np.isfinite(block.moments.mean[pos]):
                unit = _first_unit(source, f"NOT {source.dialect.isfinite(f'{ident(column)}::DOUBLE')}")
                raise InputError(f"{source.label}: column {column!r} is NaN or infinite for {source.unit_col}={unit!r}")
            if block.moments.n > 1 and not (np.isfinite(block.moments.comoment[pos, pos])
                                            and abs(block.moments.mean[pos]) < 1e150):
                raise InputError(f"{source.label}: column {column!r} has values too large for double-precision "
                                 f"variances (|mean| {abs(block.moments.mean[pos]):.3g}); rescale it")


def pooled_caps(source: Source, columns, q: float) -> dict:
    """Winsorisation thresholds at quantile q over all arms pooled (non-zero values for sparse metrics)."""
    if not 0 < q < 1:
        raise InputError(f"--winsorize must be a quantile in (0, 1), got {q}")
    caps = {}
    for column in dict.fromkeys(columns):
        c = _clean(column, source.dialect)
        quantile = source.dialect.quantile_of(c, q)
        q_all, q_nonzero = source.one(
            f"SELECT {quantile}, {quantile} FILTER (WHERE {c} <> 0) FROM {source.relation}")
        caps[column] = choose_cap(q_all if q_all is not None else np.nan, q_nonzero)
    return caps


def _missing_covariates(source: Source, specs: list[MetricSpec]) -> list[int]:
    """Units whose covariate (either part, for a ratio) is NULL, NaN or infinite, per metric: one light
    pass, so that the heavy one already uses the right layout."""
    if not specs:
        return []
    counts = [" OR ".join(f"{_clean(c, source.dialect)} IS NULL" for c in (s.cov_num, s.cov_den) if c is not None)
              for s in specs]
    row = source.one("SELECT " + ", ".join(f"count(*) FILTER (WHERE {c})" for c in counts) + f" FROM {source.relation}")
    return [int(x) for x in row]


def aggregate(source: Source, specs: list[MetricSpec], caps: dict | None = None,
              indicator: dict | None = None) -> Aggregates:
    """Sufficient statistics of every metric per variant.

    ``indicator`` (metric -> bool) fixes which metrics use the has-pre-data layout; by default it is
    chosen from the data (any NULL/NaN covariate). Shards must share it (and ``caps``).
    """
    caps = caps or {}
    detect = indicator is None
    indicator = dict(indicator or {})
    pending = [s for s in specs if s.has_covariate and not indicator.get(s.name)]
    for spec, absent in zip(pending, _missing_covariates(source, pending)):
        if absent > 0 and not detect:
            raise InputError(f"{source.label}: covariate of {spec.name!r} has missing values but the "
                             "has-pre-data layout was not requested for it")
        if absent > 0:
            indicator[spec.name] = True
    blocks = {s.name: block_sql(s, indicator.get(s.name, False), caps, source.dialect) for s in specs}
    ranged = {blocks[s.name][0] for s in specs}
    counts, result = _moments_query(source, blocks, ranged)
    for spec in specs:
        _check_outcomes(source, spec, result[spec.name])
    missing = {name: int(round(sum(b.moments.n * (1 - b.moments.mean[-1]) for b in result[name].values())))
               for name, on in indicator.items() if on}
    return Aggregates(counts, result, missing, caps)


def rank_sums(source: Source, column: str, control: str, treatment: str) -> tuple[float, float]:
    """(treatment's sum of mid-ranks, tie term Σ t³ - t) in control ∪ treatment, for Mann–Whitney."""
    v, x = ident(source.variant_col), f"{ident(column)}::DOUBLE"
    s = "'" + treatment.replace("'", "''") + "'"
    c = "'" + control.replace("'", "''") + "'"
    rank_sum, ties = source.one(f"""
WITH pair AS (SELECT {v}::STRING AS v, {x} AS x FROM {source.relation} WHERE {v}::STRING IN ({c}, {s})),
groups AS (SELECT x, count(*)::DOUBLE AS t, count(*) FILTER (WHERE v = {s})::DOUBLE AS t_treat FROM pair GROUP BY x),
ranked AS (SELECT t, t_treat, sum(t) OVER (ORDER BY x ROWS UNBOUNDED PRECEDING) - t AS below FROM groups)
SELECT sum(t_treat * (below + (t + 1) / 2)), sum(t * t * t - t) FROM ranked""")
    return float(rank_sum or 0.0), float(ties or 0.0)


def cap_columns(specs: list[MetricSpec]) -> list[str]:
    """Columns that winsorisation caps: the outcome and covariate of mean metrics (not ratios)."""
    return [c for s in specs if not s.is_ratio for c in (s.num, s.cov_num) if c is not None]


__all__ = ["Aggregates", "Block", "Cap", "aggregate", "block_sql", "cap_columns", "layout", "pooled_caps", "rank_sums"]
