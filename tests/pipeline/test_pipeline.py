"""pipeline.py, the wiring behind the commands: it never imports typer, its functions return dataclasses
(what the CLI prints is their ``as_dict()``), bad input is an ``InputError``; and every --format is a
choice typer validates itself (exit 2)."""
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import pipeline
from abtest.decision import Decision
from cli import app
from simulator import SimConfig
from simulator.errors import InputError as SimulatorInputError
from simulator.run import simulate

runner = CliRunner()


def test_pipeline_imports_neither_typer_nor_torch():
    code = ("import sys, pipeline; bad = {'typer', 'torch', 'click'} & set(sys.modules); "
            "assert not bad, sorted(bad)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", [
    ["abtest", "power", "--mean", "1", "--sd", "1", "--n", "100"],
    ["abtest", "report", "missing.parquet"],
    ["abtest", "offline", "--logs", "missing", "--control", "random", "--treatment", "oracle"],
    ["evaluate", "--model", "popularity", "--data", "missing"],
])
def test_a_bad_format_is_typers_usage_error(command):
    r = runner.invoke(app, [*command, "--format", "xml"])
    assert r.exit_code == 2 and "'xml' is not one of" in r.output, r.output


@pytest.mark.parametrize("spec, message", [
    ("bestest", "unknown policy spec 'bestest'"),
    ("oracle@hot", "the temperature after @ must be a number"),
    ("random@1", "unknown policy spec"),
    ("lsvcr:/no/such/dir", "no model directory /no/such/dir"),
])
def test_bad_policy_specs_raise_input_error(spec, message):
    with pytest.raises(SimulatorInputError, match=message):
        pipeline.check_policy_spec(spec)
    if "model directory" not in message:  # resolve_policy leaves a missing model dir to lsvcr.policy
        with pytest.raises(SimulatorInputError, match=message):
            pipeline.resolve_policy(spec, None, None, None)


def test_good_policy_specs_pass_the_check():
    for spec in ("random", "popularity", "oracle", "popularity@0.5", "oracle@2"):
        pipeline.check_policy_spec(spec)


@pytest.mark.parametrize("kwargs, message", [
    ({"estimator": "magic"}, "--estimator 'magic'"),
    ({"alpha": 1.5}, r"--alpha must be in \(0, 1\)"),
    ({"bootstrap": -1}, "--bootstrap must be >= 0"),
    ({"bootstrap": 1}, "needs at least 2 replicates"),
    ({"bootstrap": 0}, "needs --hold-sessions"),  # the session model's interval is a bootstrap
])
def test_offline_options_are_checked_before_the_logs_are_read(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):  # abtest's InputError, a ValueError
        pipeline.offline_prediction(tmp_path / "missing", "random", "oracle", **kwargs)


def test_run_ab_checks_its_days_before_the_world(tmp_path):
    with pytest.raises(SimulatorInputError, match="--pre-days must be >= 0"):
        pipeline.run_ab(tmp_path / "missing", tmp_path / "ab", "random", "oracle", pre_days=-1)
    r = runner.invoke(app, ["abtest", "run", "--world", str(tmp_path), "--control", "random", "--treatment", "oracle",
                            "--out", str(tmp_path / "ab"), "--days", "0", "-q"])
    assert r.exit_code == 2 and "--days >= 1" in r.output and len(r.output.strip().splitlines()) == 1, r.output


@pytest.fixture(scope="module")
def tempered_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "tempered"
    simulate(SimConfig().replace(n_users=40, n_videos=200, days=1, seed=3), out, "popularity", temperature=1.0)
    return out


def test_offline_prediction_is_a_dataclass_and_the_cli_prints_its_dict(tempered_run):
    prediction = pipeline.offline_prediction(tempered_run, "popularity@1", "oracle", estimator="cascade-ips")
    assert isinstance(prediction, pipeline.OfflinePrediction)
    d = prediction.as_dict()
    assert list(d) == ["logs", "logging_policy", "alpha", "estimator", "unit", "n_units", "control", "treatment",
                       "requests", "metrics", "warnings"]  # no detail unless asked for
    assert d["n_units"] == 40 and [m["name"] for m in d["metrics"]] == ["comment_watch_time", "video_watch_time",
                                                                          "sessions"]
    r = runner.invoke(app, ["abtest", "offline", "--logs", str(tempered_run), "--control", "popularity@1",
                            "--treatment", "oracle", "--estimator", "cascade-ips", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert r.stdout == json.dumps(d, indent=2, allow_nan=False) + "\n"


def test_bootstrap_0_is_the_normal_approximation_with_held_sessions(tempered_run):
    """`--bootstrap 0 --hold-sessions` (documented: normal approximation) predicts every identified metric,
    with an interval around its point; sessions stay unidentified when the request stream is held."""
    d = pipeline.offline_prediction(tempered_run, "popularity", "oracle", bootstrap=0, hold_sessions=True).as_dict()
    by_name = {m["name"]: m for m in d["metrics"]}
    for name in ("comment_watch_time", "video_watch_time"):
        m = by_name[name]
        assert m["rel_effect"] is not None and m["rel_ci"][0] < m["rel_effect"] < m["rel_ci"][1], m
        assert "bootstrap_ci" not in m["flags"]
    assert by_name["sessions"]["rel_effect"] is None and "not_identified" in by_name["sessions"]["flags"]


@pytest.mark.parametrize("width", [60, 80, 160])
def test_offline_table_shows_whole_names_and_numbers_at_any_width(tempered_run, width):
    import io

    from rich.console import Console

    from cli import render_offline

    result = pipeline.offline_prediction(tempered_run, "popularity", "oracle@1").as_dict()
    out = Console(file=io.StringIO(), width=width, record=True)
    render_offline(result, out)
    text = out.export_text()
    assert "…" not in text and all(len(line) <= width for line in text.splitlines())
    for m in result["metrics"]:
        assert m["name"] in text
        lo, hi = (f"{100 * x:+.1f}%" for x in m["rel_ci"])
        assert f"[{lo}, {hi}]" in text  # each interval whole, on one line


def test_offline_prediction_detail_comes_last(tempered_run):
    d = pipeline.offline_prediction(tempered_run, "popularity", "oracle@1", metrics=["comment_watch_time"],
                                    estimator="cascade-ips", detail=True).as_dict()
    assert list(d)[-2:] == ["warnings", "detail"] and "warnings" not in d["detail"]


def online_metric(name, rel, lo, hi, p, cuped=True):
    return {"name": name, "variant": "treatment", "cuped": cuped, "rel_effect": rel, "rel_ci": [lo, hi], "p_value": p}


def test_demo_summary_sets_offline_beside_online():
    offline = {"metrics": [
        {"name": "comment_watch_time", "rel_effect": 0.10, "rel_ci": [0.02, 0.20], "flags": []},
        {"name": "video_watch_time", "rel_effect": -0.05, "rel_ci": [-0.08, -0.01], "flags": []},
        {"name": "sessions", "rel_effect": None, "rel_ci": [None, None], "flags": ["not_identified"]},
    ]}
    online = {"alpha": 0.05, "metrics": [
        online_metric("comment_watch_time", 0.5, 0.0, 1.0, 0.9, cuped=False),  # the CUPED entry wins
        online_metric("comment_watch_time", 0.05, 0.01, 0.09, 0.01),
        online_metric("video_watch_time", 0.03, 0.01, 0.05, 0.001),
        online_metric("sessions", 0.0, -0.01, 0.01, 0.5),
    ]}
    lines = pipeline.demo_summary(Decision("ship", ["comment watch time up"]), offline, online)
    assert lines[:3] == ["# LSVCR demo — verdict: **SHIP**", "", "* comment watch time up"]
    assert lines[-1] == "Paper (Kuaishou online A/B): +4.13% comment watch time."
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| metric")]
    assert rows == [
        "| comment_watch_time | +10.0% [+2.0%, +20.0%] | +5.0% [+1.0%, +9.0%], p = 0.01 | yes (sign agrees, CI covers "
        "the online point) |",
        "| video_watch_time | -5.0% [-8.0%, -1.0%] | +3.0% [+1.0%, +5.0%], p = 0.001 | no (sign differs, CI misses "
        "the online point) |",
        "| sessions | not identified (not_identified) | +0.0% [-1.0%, +1.0%], p = 0.5 | – |",
    ]


def test_demo_summary_says_how_much_of_a_stage_1_epoch_the_treatment_saw():
    lines = pipeline.demo_summary(Decision("ship", []), {"metrics": []}, {"alpha": 0.05, "metrics": []},
                                  {"steps": 10, "samples": 160, "epoch_samples": 6400})
    assert any("ran 10 steps: 160 of an epoch's 6,400 samples (2.5% of an epoch)" in line for line in lines)


def test_silent_display_is_a_display():
    display: pipeline.Display = pipeline.Silent()
    with display.progress("x", 1) as update:
        update(0.5)
    with display.status("y"):
        display.stage("z")
    assert display.console is None


def test_the_report_format_choices_are_abtests():
    from abtest.render import FORMATS
    from cli import ReportFormat

    assert tuple(f.value for f in ReportFormat) == FORMATS
