"""A property-based pass over the per-unit report's inputs (hypothesis): any column names (quotes,
brackets, markup, unicode), any values (NaN, ±inf, huge), arms of any size including empty ones.
The report either succeeds or says what is wrong in one line with exit code 2: never a traceback."""
from __future__ import annotations

import csv
import math

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import app

runner = CliRunner()

names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12)
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.integers(-10**6, 10**6).map(float))


@st.composite
def unit_tables(draw):
    metric, variant_col = draw(names), draw(names)
    if variant_col in (metric, "user_id") or metric == "user_id":
        variant_col = "variant"
        metric = "m" if metric in ("user_id", "variant") else metric
    arms = draw(st.lists(st.sampled_from(["control", "treatment", "b[/x]", 'q"t']), min_size=0, max_size=30))
    ys = [draw(values) for _ in arms]
    return {"user_id": list(range(len(arms))), variant_col: arms, metric: ys}, metric, variant_col


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=unit_tables(), as_csv=st.booleans())
def test_any_per_unit_table_gives_a_report_or_one_line(tmp_path_factory, table, as_csv):
    columns, metric, variant_col = table
    folder = tmp_path_factory.mktemp("fuzz")
    if as_csv:
        path = folder / "units.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(list(columns))
            w.writerows(zip(*columns.values()))
    else:
        path = folder / "units.parquet"
        pq.write_table(pa.table({k: pa.array(v) for k, v in columns.items()}), path)
    r = runner.invoke(app, ["abtest", "report", str(path), "--metric", metric, "--variant-col", variant_col,
                            "--format", "json"])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in (0, 2), r.output
    if r.exit_code == 2:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    else:
        finite = [y for y in columns[metric] if math.isfinite(y)]
        assert len(finite) == len(columns[metric])  # a NaN or inf is never analysed silently
