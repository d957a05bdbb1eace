"""`lsvcr abtest report` and `lsvcr abtest power` end to end through typer's CliRunner."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()

KEYS = ["name", "variant", "kind", "cuped", "control_mean", "treatment_mean", "abs_effect", "abs_ci", "rel_effect",
        "rel_ci", "p_value", "p_value_adjusted"]


def invoke(*args):
    return runner.invoke(app, ["abtest", *map(str, args)])


def test_report_json_schema(ref_parquet):
    r = invoke("report", ref_parquet, "--metric", "metric", "--ratio", "per_session=metric/sessions",
               "--covariate", "metric=pre", "--covariate", "per_session=pre/pre_sessions", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert list(out)[:5] == ["alpha", "control", "variants", "srm", "metrics"]
    assert out["variants"] == {"control": 1970, "treatment": 2030} and out["control"] == "control"
    assert "p_value" in out["srm"]
    for m in out["metrics"]:
        assert list(m)[: len(KEYS)] == KEYS
        assert m["cuped"] is True and len(m["abs_ci"]) == 2 and len(m["rel_ci"]) == 2
    assert out["metrics"][0]["abs_effect"] == pytest.approx(0.566743, abs=5e-7)


def test_report_table_shows_srm_first(ref_parquet):
    r = invoke("report", ref_parquet, "--metric", "metric")
    assert r.exit_code == 0, r.output
    assert r.stdout.lstrip().startswith("SRM OK")


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_report_files_with_forest_plot(ref_parquet, tmp_path, fmt):
    out = tmp_path / f"report.{'md' if fmt == 'markdown' else 'html'}"
    r = invoke("report", ref_parquet, "--metric", "metric", "--covariate", "metric=pre", "--format", fmt, "--out", out)
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "SRM OK" in text and "Variance reduction by CUPED" in text
    if fmt == "markdown":
        png = tmp_path / "report_forest.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "report_forest.png" in text
    else:
        assert "data:image/png;base64," in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_report_sequential_and_correction(ref_parquet):
    r = invoke("report", ref_parquet, "--metric", "metric", "--metric", "sessions", "--sequential",
               "--correction", "bh", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    m = out["metrics"][0]
    assert m["sequential"]["fixed_p_value"] < m["p_value"]  # always-valid p is larger
    assert out["correction"] == "bh"


def test_run_dir_default_metrics(run_dir):
    r = invoke("report", run_dir, "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["metrics"][0]["name"] == "comment_watch_time" and len(out["metrics"]) == 12


def test_split_and_multi_arm(tmp_path):
    rng = np.random.default_rng(3)
    variants = np.repeat(["control", "a", "b"], [400, 200, 200])
    df = pd.DataFrame({"user_id": np.arange(800), "variant": variants, "y": rng.normal(10, 2, 800)})
    df.to_csv(tmp_path / "u.csv", index=False)
    r = invoke("report", tmp_path / "u.csv", "--metric", "y", "--format", "json")
    out = json.loads(r.stdout)
    assert out["srm"]["mismatch"] is True and [m["variant"] for m in out["metrics"]] == ["a", "b"]
    r = invoke("report", tmp_path / "u.csv", "--metric", "y", "--split", "control=2,a=1,b=1", "--format", "json")
    assert json.loads(r.stdout)["srm"]["mismatch"] is False


def test_power_cli_json():
    r = invoke("power", "--mean", 30, "--sd", 60, "--rho", 0.7, "--mde", 0.02, "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["mde_abs"] == pytest.approx(0.6) and out["n_per_arm"] == 80059
    r = invoke("power", "--mean", 30, "--sd", 60, "--rho", 0.7, "--n", 80059)
    assert r.exit_code == 0 and "2.000%" in r.stdout


def bad_tables(tmp_path):
    base = pd.DataFrame({"user_id": range(6), "variant": ["control"] * 3 + ["treatment"] * 3, "y": [1.0, 2, 3, 4, 5, 6],
                         "pre": [1.0, 2, 3, 4, 5, 6]})
    cases = {}
    for name, df in {
        "dupes": base.assign(user_id=[0, 1, 2, 3, 4, 4]),
        "null": base.assign(y=[1.0, np.nan, 3, 4, 5, 6]),
        "single": base.assign(variant=["control"] * 5 + ["treatment"]),
        "one_variant": base.assign(variant=["control"] * 6),
        "text": base.assign(y=list("abcdef")),
    }.items():
        cases[name] = tmp_path / f"{name}.parquet"
        df.to_parquet(cases[name])
    cases["nan"] = tmp_path / "nan_values.parquet"  # a real NaN (pandas would write NULL)
    pq.write_table(pa.table({"user_id": range(6), "variant": ["control"] * 3 + ["treatment"] * 3,
                             "y": pa.array([1.0, float("nan"), 3, 4, 5, 6])}), cases["nan"])
    cases["ok"] = tmp_path / "ok.parquet"
    base.to_parquet(cases["ok"])
    return cases


@pytest.mark.parametrize("case, args, message", [
    ("ok", ["--metric", "nope"], "no metric 'nope'"),
    ("ok", ["--metric", "y", "--control", "ctrl"], "control variant 'ctrl' not found"),
    ("ok", ["--metric", "y", "--unit-col", "uid"], "no unit column 'uid'"),
    ("ok", ["--metric", "y", "--ratio", "r=y"], "expected NAME=NUM_COL/DEN_COL"),
    ("ok", ["--metric", "y", "--covariate", "z=pre"], "'z' is not one of the metrics"),
    ("ok", ["--metric", "y", "--alpha", "2"], "--alpha must be in (0, 1)"),
    ("ok", ["--metric", "y", "--format", "pdf"], "'pdf' is not one of"),  # typer's own usage error
    ("ok", ["--metric", "y", "--split", "control=1,x=1"], "--split names variant 'x'"),
    ("ok", [], "name at least one --metric"),
    ("dupes", ["--metric", "y"], "unit user_id=4 appears more than once"),
    ("nan", ["--metric", "y"], "column 'y' is NaN or infinite for user_id=1"),
    ("null", ["--metric", "y"], "column 'y' is empty (NULL) for user_id=1"),
    ("single", ["--metric", "y"], "variant 'treatment' has 1 unit"),
    ("one_variant", ["--metric", "y"], "only one variant"),
    ("text", ["--metric", "y"], "column 'y' is VARCHAR, not numeric"),
    ("missing", ["--metric", "y"], "no such file or directory"),
])
def test_bad_input_exits_2(tmp_path, case, args, message):
    cases = bad_tables(tmp_path)
    path = cases.get(case, tmp_path / "missing.parquet")
    r = invoke("report", path, *args)
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split())


@pytest.mark.parametrize("args, message", [
    (["--mean", 1, "--sd", 1], "give exactly one of --mde and --n"),
    (["--mean", 1, "--sd", -1, "--n", 100], "--sd must be positive"),
    (["--mean", 1, "--sd", 1, "--rho", 1, "--n", 100], "--rho must be in (-1, 1)"),
    (["--mean", 0, "--sd", 1, "--mde", 0.1], "--mean must be a non-zero"),
])
def test_power_bad_input_exits_2(args, message):
    r = invoke("power", *args)
    assert r.exit_code == 2 and message in " ".join(r.output.split())
