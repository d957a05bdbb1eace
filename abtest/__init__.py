"""Experiment analysis: per-variant sufficient statistics in, lifts with honest intervals out.

stats.py       Moments: count, means, co-moments per arm (add across shards, batch over replications)
welch.py       Welch t test and interval; relative intervals on the log scale
ratio.py       ratio metrics (delta method linearisation)
cuped.py       CUPED with pooled θ
regression.py  Lin's regression adjustment (has-pre-data indicator for missing pre-period data)
compare.py     one metric, treatment vs control: adjusted means, absolute and relative lifts
srm.py         sample ratio mismatch against the designed split
multiple.py    Holm / Benjamini–Hochberg with a chosen scope
sequential.py  mSPRT and the asymptotic confidence sequence (always-valid)
power.py       power and MDE, CUPED-aware
robust.py      pooled winsorisation thresholds, Mann–Whitney from rank sums
metrics_sql.py per-user metrics from an A/B run's event log (SQL that DuckDB and Spark both run)
source.py      opening INPUT (run dir or per-unit table) and checking its units; the DuckDB engine
spark.py       the same SQL on Spark (--engine spark): Parquet or a catalog table, aggregates out
spec.py        metric specs and the CLI's NAME=NUM/DEN options
aggregate.py   the one SQL pass that yields every metric's Moments per variant
report.py      the report (pure ``analyze`` over aggregates; ``build_report`` for a path)
render.py      table / JSON / Markdown / HTML and the forest plot (computes nothing)
decision.py    ship / don't ship from a report, with the reasons
errors.py      InputError, the one exception for bad user input (the CLI maps it to exit code 2)

offline/       off-policy comparison before launch (`lsvcr abtest offline`), from logged feedback:
               its own map in offline/__init__.py

Configs: a single step's options sit beside that step (ReportConfig in report.py), as in every package.
Never imports torch, lsvcr or simulator.
"""
