"""The experiment report: SRM, then every metric of every treatment arm against control.

``build_report(INPUT, config)`` opens the input (source.py), aggregates sufficient statistics in SQL
(aggregate.py; on DuckDB, or on Spark with ``engine="spark"``) and calls ``analyze``, which is pure:
it needs only the per-variant Aggregates, so aggregates of shards added together give the same
report as the whole table, and the engine that computed them does not matter.

A result is never a silent number: a test that cannot be computed (zero variance, a zero ratio
denominator, a non-positive baseline for a relative lift) has None in its place and says why in
``flags``; bad input raises InputError. A flag is a typed value (a ``FlagKind`` and the text derived
from it); what a result withholds is decided on the kinds, and ``MetricResult.flags`` carries the texts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import NamedTuple

import numpy as np

from abtest import multiple
from abtest import sequential as seq_tests
from abtest.aggregate import Aggregates, aggregate, cap_columns, layout, pooled_caps, rank_sums
from abtest.compare import Layout, compare
from abtest.errors import InputError
from abtest.robust import mann_whitney
from abtest.source import check_path, open_source
from abtest.spec import MetricSpec, metric_specs
from abtest.srm import SRM_ALPHA, SRMResult, srm

ENGINES = ("duckdb", "spark")
IMBALANCE_ALPHA = 0.001  # CUPED health check: pre-period means that differ this much between arms


class FlagKind(Enum):
    """What went wrong with one comparison; the value is the template of the flag's text."""

    NO_RATIO = "denominator {den!r} is 0 in the {arm} arm: no ratio"
    ZERO_VARIANCE = "zero variance: no test"
    CONTROL_NOT_POSITIVE = "control mean <= 0: no relative lift"
    TREATMENT_NOT_POSITIVE = "treatment mean <= 0: no relative interval"
    PRE_IMBALANCE = "pre-period imbalance between arms (p={p:.2g}): check the assignment"
    SLOPE_SIGNS = "covariate slope has opposite signs in the two arms"
    TOO_FEW_FOR_ADJUSTMENT = "too few units for covariate adjustment: unadjusted"


# What each kind withholds: no test at all; no relative lift; no relative interval.
NO_TEST = frozenset({FlagKind.NO_RATIO, FlagKind.ZERO_VARIANCE})
NO_REL = NO_TEST | {FlagKind.CONTROL_NOT_POSITIVE}
NO_REL_CI = NO_REL | {FlagKind.TREATMENT_NOT_POSITIVE}


class Flag(NamedTuple):
    kind: FlagKind
    text: str  # as the report's JSON writes it

    @classmethod
    def of(cls, kind: FlagKind, **detail) -> "Flag":
        return cls(kind, kind.value.format(**detail))


@dataclass(frozen=True)
class ReportConfig:
    unit_col: str = "user_id"
    variant_col: str = "variant"
    control: str = "control"
    metrics: tuple = ()  # column names (or standard metric names for a run dir)
    ratios: tuple = ()  # (name, num_col, den_col)
    covariates: tuple = ()  # (metric, pre_num_col, pre_den_col or None)
    alpha: float = 0.05
    correction: str = "holm"
    scope: str = "global"
    sequential: bool = False
    split: tuple = ()  # (variant, weight); empty: equal split
    srm_alpha: float = SRM_ALPHA
    winsorize: float | None = None  # cap mean metrics at this pooled quantile
    mann_whitney: bool = False
    tau_rel: float = seq_tests.TAU_REL
    n_star: float = seq_tests.N_STAR
    engine: str = "duckdb"  # where the SQL runs: duckdb (embedded) | spark
    spark_master: str | None = None  # Spark master URL (default: the active session, else local[*])

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        for name in ("alpha", "srm_alpha"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be in (0, 1), got {value}")
        if self.correction not in multiple.METHODS:
            raise InputError(f"--correction must be one of {', '.join(multiple.METHODS)}, got {self.correction!r}")
        if self.scope not in multiple.SCOPES:
            raise InputError(f"--scope must be one of {', '.join(multiple.SCOPES)}, got {self.scope!r}")
        if self.winsorize is not None and not 0 < self.winsorize < 1:
            raise InputError(f"--winsorize must be a quantile in (0, 1), got {self.winsorize}")
        if not (self.tau_rel > 0 and self.n_star > 0):
            raise InputError("sequential tuning (tau_rel, n_star) must be positive")


@dataclass(frozen=True)
class MetricResult:
    name: str
    variant: str
    kind: str  # mean | proportion | ratio
    cuped: bool  # adjusted with a pre-period covariate (CUPED or, with missing pre data, Lin)
    control_mean: float | None  # adjusted arm estimates when cuped
    treatment_mean: float | None
    abs_effect: float | None
    abs_ci: tuple | None
    rel_effect: float | None
    rel_ci: tuple | None
    p_value: float | None  # Welch t test of the absolute effect (always-valid mSPRT if sequential)
    p_value_adjusted: float | None = None
    adjustment: str = "none"  # none | cuped | lin-has-pre
    n_control: int = 0
    n_treatment: int = 0
    control_mean_raw: float | None = None
    treatment_mean_raw: float | None = None
    abs_se: float | None = None
    df: float | None = None
    rel_se_log: float | None = None
    theta: tuple | None = None  # CUPED θ (one per covariate); Lin: control's slopes
    theta_treatment: tuple | None = None
    variance_reduction: float | None = None
    flags: tuple = ()  # the texts of the comparison's Flags
    sequential: dict | None = None
    mann_whitney_p_value: float | None = None


@dataclass(frozen=True)
class Report:
    alpha: float
    control: str
    variants: dict
    srm: SRMResult
    metrics: list
    correction: str
    scope: str
    sequential: bool
    warnings: list = field(default_factory=list)
    source: str = ""


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _pair(lo, hi):
    lo, hi = _num(lo), _num(hi)
    return None if lo is None or hi is None else (lo, hi)


def _kind(spec: MetricSpec, arms) -> str:
    if spec.is_ratio:
        return "ratio"
    for block in arms:
        m = block.moments
        second = m.comoment[0, 0] / m.n + m.mean[0] ** 2
        if not (block.minimum[0] >= 0 and block.maximum[0] <= 1 and math.isclose(second, m.mean[0], rel_tol=1e-9, abs_tol=1e-12)):
            return "mean"
    return "proportion"


def _flags(spec: MetricSpec, cmp, c_block, t_block, lay: Layout, adjustment: str, alpha: float) -> list[Flag]:
    flags = []
    if spec.is_ratio:
        for name, block in (("control", c_block), ("treatment", t_block)):
            if block.moments.mean[1] == 0:
                flags.append(Flag.of(FlagKind.NO_RATIO, den=spec.den, arm=name))
    if not flags and not (float(cmp.abs.se) > 0):
        flags.append(Flag.of(FlagKind.ZERO_VARIANCE))
    if float(cmp.control_mean) <= 0:
        flags.append(Flag.of(FlagKind.CONTROL_NOT_POSITIVE))
    elif float(cmp.treatment_mean) <= 0:
        flags.append(Flag.of(FlagKind.TREATMENT_NOT_POSITIVE))
    if lay.covariates:
        cov_layout = Layout(lay.covariates[0])
        check = compare(c_block.moments, t_block.moments, cov_layout, "none", alpha)
        if float(check.abs.p_value) < IMBALANCE_ALPHA:
            flags.append(Flag.of(FlagKind.PRE_IMBALANCE, p=float(check.abs.p_value)))
        if adjustment == "lin" and float(cmp.coef_control[0]) * float(cmp.coef_treatment[0]) < 0:
            flags.append(Flag.of(FlagKind.SLOPE_SIGNS))
    return flags


def _result(spec, variant, cmp, c_block, t_block, lay, adjustment, config: ReportConfig,
            notes: tuple[Flag, ...] = ()) -> MetricResult:
    flags = [*notes, *_flags(spec, cmp, c_block, t_block, lay, adjustment, config.alpha)]
    kinds = {f.kind for f in flags}
    broken = not kinds.isdisjoint(NO_TEST)
    no_rel = not kinds.isdisjoint(NO_REL)
    no_rel_ci = not kinds.isdisjoint(NO_REL_CI)
    seq = None
    p_value = None if broken else _num(cmp.abs.p_value)
    abs_ci = None if broken else _pair(cmp.abs.ci_low, cmp.abs.ci_high)
    rel_ci = None if no_rel_ci else _pair(cmp.rel.ci_low, cmp.rel.ci_high)
    if config.sequential and not broken:
        v_abs = float(cmp.abs.se) ** 2
        tau_abs = config.tau_rel * abs(float(cmp.control_mean))
        ms = seq_tests.msprt(cmp.abs.estimate, v_abs, tau_abs**2 if tau_abs > 0 else v_abs, config.alpha)
        cs = seq_tests.asymptotic_cs(cmp.abs.estimate, v_abs, cmp.n_control + cmp.n_treatment, config.alpha, config.n_star)
        seq = {"method": "msprt", "tau_rel": config.tau_rel, "fixed_p_value": p_value, "fixed_abs_ci": abs_ci,
               "fixed_rel_ci": rel_ci, "cs_p_value": _num(cs.p_value), "cs_abs_ci": _pair(cs.ci_low, cs.ci_high),
               "cs_n_star": config.n_star}
        p_value, abs_ci = _num(ms.p_value), _pair(ms.ci_low, ms.ci_high)
        if not no_rel_ci:
            log_ratio = math.log1p(float(cmp.rel.estimate))
            rel = seq_tests.msprt(log_ratio, float(cmp.rel.se) ** 2, config.tau_rel**2, config.alpha)
            rel_ci = _pair(np.expm1(rel.ci_low), np.expm1(rel.ci_high))
    cuped = adjustment != "none"
    return MetricResult(
        name=spec.name, variant=variant, kind=_kind(spec, (c_block, t_block)), cuped=cuped,
        control_mean=None if broken and spec.is_ratio else _num(cmp.control_mean),
        treatment_mean=None if broken and spec.is_ratio else _num(cmp.treatment_mean),
        abs_effect=None if broken and spec.is_ratio else _num(cmp.abs.estimate), abs_ci=abs_ci,
        rel_effect=None if no_rel else _num(cmp.rel.estimate), rel_ci=rel_ci, p_value=p_value,
        adjustment={"none": "none", "cuped": "cuped", "lin": "lin-has-pre"}[adjustment],
        n_control=int(cmp.n_control), n_treatment=int(cmp.n_treatment),
        control_mean_raw=_num(cmp.control_raw), treatment_mean_raw=_num(cmp.treatment_raw),
        abs_se=None if broken else _num(cmp.abs.se), df=None if broken else _num(cmp.abs.df),
        rel_se_log=None if no_rel_ci else _num(cmp.rel.se),
        theta=tuple(float(x) for x in cmp.coef_control) if cuped else None,
        theta_treatment=tuple(float(x) for x in cmp.coef_treatment) if adjustment == "lin" else None,
        variance_reduction=_num(cmp.variance_reduction) if cuped and not broken else None,
        flags=tuple(f.text for f in flags), sequential=seq)


def _variants(agg: Aggregates, config: ReportConfig) -> dict:
    counts = agg.counts
    if config.control not in counts:
        raise InputError(f"control variant {config.control!r} not found; variants are {sorted(counts)} (use --control)")
    for name, _weight in config.split:
        if name not in counts:
            raise InputError(f"--split names variant {name!r}, which has no units; variants are {sorted(counts)}")
    if len(counts) < 2:
        raise InputError(f"only one variant ({config.control!r}) in the data: nothing to compare")
    for name, n in counts.items():
        if n < 2:
            raise InputError(f"variant {name!r} has {n} unit{'s' if n != 1 else ''}; every arm needs at least 2")
    return {config.control: counts[config.control], **{v: counts[v] for v in sorted(counts) if v != config.control}}


def analyze(agg: Aggregates, specs: list[MetricSpec], config: ReportConfig, source: str = "",
            mann_whitney_p: dict | None = None) -> Report:
    """The report from per-variant sufficient statistics alone."""
    variants = _variants(agg, config)
    split = dict(config.split) if config.split else None
    if split is not None:
        split = {v: split.get(v, 0.0) for v in variants}
        zero = [v for v, w in split.items() if w <= 0]
        if zero:
            raise InputError(f"--split gives no weight to variant {zero[0]!r}, which has units")
    srm_result = srm(variants, split, config.srm_alpha)
    warnings = []
    if srm_result.mismatch:
        warnings.append(f"sample ratio mismatch (p={srm_result.p_value:.3g} < {config.srm_alpha}): "
                        "the assignment or logging is broken; do not trust the lifts")
    n_units = sum(variants.values())
    results = []
    missing_groups: dict[int, list[str]] = {}
    for spec in specs:
        with_indicator = spec.name in agg.missing
        lay = layout(spec, with_indicator)
        adjustment = "lin" if with_indicator else ("cuped" if spec.has_covariate else "none")
        if with_indicator:
            missing_groups.setdefault(agg.missing[spec.name], []).append(spec.name)
        arms = agg.blocks[spec.name]
        for variant in list(variants)[1:]:
            pair_layout, pair_adjustment, notes = lay, adjustment, ()
            if adjustment != "none" and min(variants[config.control], variants[variant]) < len(lay.covariates) + 3:
                pair_layout, pair_adjustment = Layout(lay.outcome), "none"
                notes = (Flag.of(FlagKind.TOO_FEW_FOR_ADJUSTMENT),)
            cmp = compare(arms[config.control].moments, arms[variant].moments, pair_layout, pair_adjustment, config.alpha)
            result = _result(spec, variant, cmp, arms[config.control], arms[variant], pair_layout, pair_adjustment,
                             config, notes)
            if mann_whitney_p and (spec.name, variant) in mann_whitney_p:
                result = replace(result, mann_whitney_p_value=mann_whitney_p[(spec.name, variant)])
            results.append(result)
    for count, names in missing_groups.items():
        what = names[0] if len(names) == 1 else f"{len(names)} metrics ({', '.join(names)})"
        warnings.append(f"{what}: {count} of {n_units} units ({count / n_units:.1%}) have no pre-period value; "
                        "filled with 0 and adjusted with a has-pre-data indicator (Lin regression)")
    p = [np.nan if r.p_value is None else r.p_value for r in results]
    adjusted = multiple.adjust_scoped(p, [r.variant for r in results], [r.name for r in results],
                                      config.correction, config.scope)
    results = [replace(r, p_value_adjusted=_num(a)) for r, a in zip(results, adjusted)]
    return Report(config.alpha, config.control, variants, srm_result, results, config.correction,
                  config.scope, config.sequential, warnings, source)


def build_report(path, config: ReportConfig, table: str | None = None) -> Report:
    """Open INPUT (an A/B run dir or a per-unit table; or ``table``, a table the engine knows by name),
    aggregate on the configured engine (DuckDB or Spark), analyse."""
    engine = None
    if config.engine == "spark":
        from abtest.spark import SparkEngine, spark_session

        if path is not None:
            check_path(path)  # before the JVM starts
        engine = SparkEngine(spark_session(config.spark_master))
    source = open_source(path, config.unit_col, config.variant_col, engine=engine, table=table)
    specs = metric_specs(source.columns, source.label, source.is_run, config.metrics, config.ratios, config.covariates)
    caps = pooled_caps(source, cap_columns(specs), config.winsorize) if config.winsorize else None
    agg = aggregate(source, specs, caps)
    warnings = []
    if caps:
        for column, cap in caps.items():
            if cap.on_nonzero:
                warnings.append(f"{column}: the pooled {config.winsorize:g} quantile is 0 (sparse metric); "
                                f"capped at the non-zero values' quantile {cap.value:g}")
    mw = None
    if config.mann_whitney:
        variants = _variants(agg, config)
        mw = {}
        for spec in (s for s in specs if not s.is_ratio):
            for variant in list(variants)[1:]:
                rs, ties = rank_sums(source, spec.num, config.control, variant)
                mw[(spec.name, variant)] = _num(mann_whitney(rs, variants[config.control], variants[variant], ties).p_value)
    report = analyze(agg, specs, config, source.label, mw)
    return replace(report, warnings=warnings + report.warnings)
