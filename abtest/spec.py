"""What to analyse: metric specs, and the parsing of the CLI's NAME=NUM/DEN style options.

A metric is a column (a mean or a proportion per unit) or a ratio of two columns (a ratio of sums per
arm), optionally with a pre-period covariate of the same shape (a column, or PRE_NUM/PRE_DEN).
For an A/B run dir with no --metric, the standard metrics are analysed, each with its pre-period
covariate, comment watch time per user first.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from abtest import metrics_sql
from abtest.errors import InputError

NUMERIC = re.compile(r"^(BOOLEAN|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|"
                     r"UHUGEINT|FLOAT|DOUBLE|REAL|DECIMAL.*)$")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    num: str
    den: str | None = None
    cov_num: str | None = None
    cov_den: str | None = None

    def __post_init__(self) -> None:
        if self.cov_num is not None and (self.den is None) != (self.cov_den is None):
            shape = "NAME=PRE_NUM/PRE_DEN" if self.den else "NAME=PRE_COL"
            raise InputError(f"covariate of {'ratio' if self.den else 'mean'} metric {self.name!r} must be {shape}")

    @property
    def is_ratio(self) -> bool:
        return self.den is not None

    @property
    def has_covariate(self) -> bool:
        return self.cov_num is not None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.num, self.den, self.cov_num, self.cov_den) if c is not None)


def _split_eq(text: str, option: str) -> tuple[str, str]:
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise InputError(f"{option} {text!r}: expected NAME=...")
    return name.strip(), rest.strip()


def parse_ratio(text: str) -> tuple[str, str, str]:
    """``NAME=NUM_COL/DEN_COL`` -> (name, num, den)."""
    name, rest = _split_eq(text, "--ratio")
    num, sep, den = rest.partition("/")
    if not sep or not num.strip() or not den.strip():
        raise InputError(f"--ratio {text!r}: expected NAME=NUM_COL/DEN_COL")
    return name, num.strip(), den.strip()


def parse_covariate(text: str) -> tuple[str, str, str | None]:
    """``METRIC=PRE_COL`` or ``METRIC=PRE_NUM/PRE_DEN`` -> (metric, pre_num, pre_den or None)."""
    name, rest = _split_eq(text, "--covariate")
    num, sep, den = rest.partition("/")
    if sep and (not num.strip() or not den.strip()):
        raise InputError(f"--covariate {text!r}: expected METRIC=PRE_COL or METRIC=PRE_NUM/PRE_DEN")
    return name, num.strip(), (den.strip() if sep else None)


def parse_split(text: str | None) -> tuple[tuple[str, float], ...]:
    """``control=50,treatment=50`` -> designed weights per variant (normalised later)."""
    if not text:
        return ()
    out = []
    for part in text.split(","):
        name, value = _split_eq(part, "--split")
        try:
            weight = float(value)
        except ValueError:
            raise InputError(f"--split {text!r}: weight {value!r} of {name!r} is not a number") from None
        if not weight > 0:
            raise InputError(f"--split {text!r}: weight of {name!r} must be positive")
        out.append((name, weight))
    return tuple(out)


def metric_specs(columns: dict, label: str, is_run: bool, metrics=(), ratios=(), covariates=()) -> list[MetricSpec]:
    """Resolve the requested metrics against the input's columns (``columns``: name -> SQL type)."""
    ratios = {name: (num, den) for name, num, den in ratios}
    if is_run:
        ratios = {**metrics_sql.STANDARD_RATIOS, **ratios}
        if not metrics and len(ratios) == len(metrics_sql.STANDARD_RATIOS):
            metrics = metrics_sql.STANDARD_ORDER
        else:
            metrics = tuple(metrics) + tuple(n for n in ratios if n not in metrics_sql.STANDARD_RATIOS and n not in metrics)
    else:
        metrics = tuple(metrics) + tuple(n for n in ratios if n not in metrics)
    if not metrics:
        raise InputError(f"{label}: name at least one --metric COL or --ratio NAME=NUM/DEN")
    if len(set(metrics)) != len(metrics):
        raise InputError(f"metric {next(m for m in metrics if metrics.count(m) > 1)!r} is given twice")
    cov = {}
    for metric, num, den in covariates:
        if metric not in metrics:
            raise InputError(f"--covariate {metric}=...: {metric!r} is not one of the metrics {list(metrics)}")
        cov[metric] = (num, den)
    specs = []
    for name in metrics:
        num, den = ratios.get(name, (name, None))
        if name in cov:
            cov_num, cov_den = cov[name]
        elif is_run:
            pre = metrics_sql.PRE_PREFIX
            cov_num, cov_den = pre + num, (pre + den if den else None)
        else:
            cov_num = cov_den = None
        spec = MetricSpec(name, num, den, cov_num, cov_den)
        for column in spec.columns:
            if column not in columns:
                what = "metric" if column == name else "column"
                raise InputError(f"{label}: no {what} {column!r} (columns: {', '.join(columns)})")
            if not NUMERIC.match(str(columns[column]).upper()):
                raise InputError(f"{label}: column {column!r} is {columns[column]}, not numeric")
        specs.append(spec)
    return specs
