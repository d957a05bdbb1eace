"""`lsvcr simulate` end to end, and its bad-input exits."""
import json

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_simulate_writes_a_run_dir(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["simulate", "--out", str(out), "--users", "40", "--days", "1", "--explore", "0.1", "-q"])
    assert result.exit_code == 0, result.output
    assert "comment_opens_per_impression" in result.output
    for name in ("events.parquet", "videos.parquet", "comments.parquet", "users.parquet", "manifest.json",
                 "summary.json", "truth/user_truth.parquet", "truth/comment_truth.parquet"):
        assert (out / name).exists(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["world"]["n_users"] == 40 and manifest["explore"] == 0.1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial left behind


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "best"], "unknown policy"),
        (["--users", "0"], "n_users"),
        (["--days", "-1"], "days"),
        (["--shard", "2/2"], "--shard"),
        (["--shard", "x"], "--shard"),
        (["--explore", "1.5"], "--explore"),
        (["--explore", "0.1", "--temperature", "1"], "not both"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    result = runner.invoke(app, ["simulate", "--out", str(out), "-q", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_malformed_config_and_unwritable_output(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[world]\nn_users = 'many'\n")
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "r"), "--config", str(bad)])
    assert result.exit_code == 2 and "n_users" in result.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["simulate", "--out", str(blocker / "run"), "-q"])
    assert result.exit_code == 2 and "cannot write" in result.output


def test_existing_run_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["simulate", "--out", str(out), "-q"])
    assert result.exit_code == 2 and "already exists" in result.output
    assert (out / "keep.txt").read_text() == "mine"
