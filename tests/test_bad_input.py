"""Every command meets bad input the same way: exit code 2, one line on stderr naming the problem, and
every input file byte-identical afterwards (nothing the user had is lost). One row per command × kind of
bad input: missing, empty, truncated, corrupt, wrong type, wrong encoding, names with markup, glob or
quote characters, an --out that exists or that is (or holds) an input. Names with markup, glob or quote
characters that are *valid* input must simply work (`test_odd_names_are_read_as_they_are`).

Runs in process through typer's CliRunner; stderr is captured apart from stdout."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import app

os.environ.setdefault("HF_HUB_OFFLINE", "1")
runner = CliRunner()


# ------------------------------------------------------------------------------------------------
# inputs: one small world, its dataset, a SASRec model, an A/B run, a per-unit table, RecBole files
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    quiet = ["-q"]
    run = lambda *args: runner.invoke(app, [str(a) for a in args])  # noqa: E731
    assert run("simulate", "--out", root / "world", "--users", "40", "--videos", "40", "--days", "1",
               "--temperature", "1", *quiet).exit_code == 0
    assert run("data", "build", root / "world", "--out", root / "data").exit_code == 0
    r = run("train", "--model", "sasrec", "--data", root / "data", "--out", root / "model", "--epochs", "1", *quiet)
    assert r.exit_code == 0, r.output
    r = run("abtest", "run", "--world", root / "world", "--control", "popularity", "--treatment", "random",
            "--out", root / "ab", *quiet)
    assert r.exit_code == 0, r.output
    lines = ["user_id,variant,y,pre"] + [f"{i},{'control' if i % 2 else 'treatment'},{i % 7},{i % 5}" for i in range(40)]
    (root / "units.csv").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.table({"user_id": list(range(40)), "variant": ["control", "treatment"] * 20,
                             "y": [float(i % 7) for i in range(40)]}), root / "units.parquet")
    rb = root / "recbole"
    rb.mkdir()
    (rb / "ml.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                 + "".join(f"{u}\t{i}\t{10 * u + i}\n" for u in range(5) for i in range(4)))
    (rb / "ml.item").write_text("item_id:token\tmovie_title:token_seq\n" + "".join(f"{i}\tfilm {i}\n" for i in range(4)))
    (root / "sim.toml").write_text("[world]\nn_users = 20\n")
    return root


class Case(NamedTuple):
    args: Callable[[Path], list]  # the command line, from the case's folder (a copy of the inputs)
    message: str  # a piece of the one line
    spoil: Callable[[Path], None] = lambda d: None  # what makes the input bad


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)


def empty(path: Path) -> None:
    path.write_bytes(b"")


def latin1(path: Path) -> None:  # a byte sequence that is not UTF-8
    path.write_bytes(path.read_bytes() + "\ncafé".encode("latin-1"))


def set_config(path: Path, section: str, key: str, value) -> None:
    import json

    cfg = json.loads(path.read_text())
    cfg[section][key] = value
    path.write_text(json.dumps(cfg))


def events_with_text_video_id(path: Path) -> None:
    t = pq.read_table(path)
    i = t.schema.get_field_index("video_id")
    pq.write_table(t.set_column(i, "video_id", pa.array([f"v{x}" for x in t.column(i).to_pylist()])), path)


def fill(path: Path) -> None:
    path.mkdir(exist_ok=True)
    (path / "keep.txt").write_text("the user's own file")


CASES = {
    # simulate
    "simulate/config-missing": Case(lambda d: ["simulate", "--out", d / "o", "--config", d / "none.toml"], "config file not found"),
    "simulate/config-corrupt": Case(lambda d: ["simulate", "--out", d / "o", "--config", d / "sim.toml"], "malformed config",
                                    lambda d: garbage(d / "sim.toml")),
    "simulate/config-encoding": Case(lambda d: ["simulate", "--out", d / "o", "--config", d / "sim.toml"], "malformed config",
                                     lambda d: latin1(d / "sim.toml")),
    "simulate/config-wrong-type": Case(lambda d: ["simulate", "--out", d / "o", "--config", d / "sim.toml"], "must be a number",
                                       lambda d: (d / "sim.toml").write_text('[world]\nn_users = "many"\n')),
    "simulate/config-markup": Case(lambda d: ["simulate", "--out", d / "o", "--config", d / "sim.toml"], "in [world]: colour",
                                   lambda d: (d / "sim.toml").write_text("[world]\ncolour = 1\n")),
    "simulate/wrong-type-option": Case(lambda d: ["simulate", "--out", d / "o", "--users", "many"], "Invalid value for '--users'"),
    "simulate/out-exists": Case(lambda d: ["simulate", "--out", d / "mine"], "already exists", lambda d: fill(d / "mine")),
    # data build
    "data-build/missing": Case(lambda d: ["data", "build", d / "none", "--out", d / "o"], "does not exist"),
    "data-build/empty-run": Case(lambda d: ["data", "build", d / "world", "--out", d / "o"], "missing",
                                 lambda d: (d / "world" / "events.parquet").unlink()),
    "data-build/truncated": Case(lambda d: ["data", "build", d / "world", "--out", d / "o"], "events.parquet",
                                 lambda d: truncate(d / "world" / "events.parquet")),
    "data-build/corrupt": Case(lambda d: ["data", "build", d / "world", "--out", d / "o"], "events.parquet",
                               lambda d: garbage(d / "world" / "events.parquet")),
    "data-build/wrong-type": Case(lambda d: ["data", "build", d / "world", "--out", d / "o"], "video_id",
                                  lambda d: events_with_text_video_id(d / "world" / "events.parquet")),
    "data-build/out-exists": Case(lambda d: ["data", "build", d / "world", "--out", d / "mine"], "already exists",
                                  lambda d: fill(d / "mine")),
    "data-build/out-is-input": Case(lambda d: ["data", "build", d / "world", "--out", d / "world", "--overwrite"], "is the input"),
    "data-build/out-holds-input": Case(lambda d: ["data", "build", d / "world", "--out", d, "--overwrite"], "holds the input"),
    # data import-recbole
    "import-recbole/missing": Case(lambda d: ["data", "import-recbole", d / "none.inter", "--out", d / "o"], "missing RecBole file"),
    "import-recbole/empty": Case(lambda d: ["data", "import-recbole", d / "recbole", "--out", d / "o"], "empty file",
                                 lambda d: empty(d / "recbole" / "ml.inter")),
    "import-recbole/binary": Case(lambda d: ["data", "import-recbole", d / "recbole", "--out", d / "o"], "not UTF-8",
                                  lambda d: garbage(d / "recbole" / "ml.inter")),
    "import-recbole/wrong-type": Case(lambda d: ["data", "import-recbole", d / "recbole", "--out", d / "o"], "is not a number",
                                      lambda d: (d / "recbole" / "ml.inter").write_text(
                                          "user_id:token\titem_id:token\ttimestamp:float\n1\t0\tnoon\n1\t1\t5\n")),
    "import-recbole/encoding": Case(lambda d: ["data", "import-recbole", d / "recbole", "--out", d / "o"], "not UTF-8",
                                    lambda d: latin1(d / "recbole" / "ml.item")),
    "import-recbole/out-is-input": Case(lambda d: ["data", "import-recbole", d / "recbole", "--out", d / "recbole", "--overwrite"],
                                        "is the input"),
    # train
    "train/missing": Case(lambda d: ["train", "--model", "sasrec", "--data", d / "none", "--out", d / "o"], "does not exist"),
    "train/truncated": Case(lambda d: ["train", "--model", "sasrec", "--data", d / "data", "--out", d / "o"], "not valid JSON",
                            lambda d: truncate(d / "data" / "photo.json")),
    "train/encoding": Case(lambda d: ["train", "--model", "sasrec", "--data", d / "data", "--out", d / "o"], "not UTF-8",
                           lambda d: latin1(d / "data" / "rec.train.json")),
    "train/wrong-type": Case(lambda d: ["train", "--model", "sasrec", "--data", d / "data", "--out", d / "o"], "expected a JSON object",
                             lambda d: (d / "data" / "photo.json").write_text("[1, 2]")),
    "train/out-is-input": Case(lambda d: ["train", "--model", "sasrec", "--data", d / "data", "--out", d / "data", "--overwrite"],
                               "is the input"),
    "train/out-exists": Case(lambda d: ["train", "--model", "sasrec", "--data", d / "data", "--out", d / "model"], "already exists"),
    # evaluate
    "evaluate/empty-weights": Case(lambda d: ["evaluate", "--model", d / "model", "--data", d / "data"], "not a readable safetensors",
                                   lambda d: empty(d / "model" / "model.safetensors")),
    "evaluate/truncated-weights": Case(lambda d: ["evaluate", "--model", d / "model", "--data", d / "data"],
                                       "not a readable safetensors", lambda d: truncate(d / "model" / "model.safetensors")),
    "evaluate/corrupt-weights": Case(lambda d: ["evaluate", "--model", d / "model", "--data", d / "data"],
                                     "not a readable safetensors", lambda d: garbage(d / "model" / "model.safetensors")),
    "evaluate/wrong-type-config": Case(lambda d: ["evaluate", "--model", d / "model", "--data", d / "data"], "must be an integer",
                                       lambda d: set_config(d / "model" / "config.json", "model_config", "hidden", "64")),
    "evaluate/corrupt-config": Case(lambda d: ["evaluate", "--model", d / "model", "--data", d / "data"], "not valid JSON",
                                    lambda d: truncate(d / "model" / "config.json")),
    "evaluate/encoding": Case(lambda d: ["evaluate", "--model", d / "model", "--data", d / "data"], "not UTF-8",
                              lambda d: latin1(d / "data" / "comment.json")),
    # abtest report
    "report/missing": Case(lambda d: ["abtest", "report", d / "none.csv", "--metric", "y"], "no such file"),
    "report/empty": Case(lambda d: ["abtest", "report", d / "units.csv", "--metric", "y"], "units.csv",
                         lambda d: empty(d / "units.csv")),
    "report/truncated": Case(lambda d: ["abtest", "report", d / "units.parquet", "--metric", "y"], "cannot read",
                             lambda d: truncate(d / "units.parquet")),
    "report/corrupt": Case(lambda d: ["abtest", "report", d / "units.parquet", "--metric", "y"], "cannot read",
                           lambda d: garbage(d / "units.parquet")),
    "report/wrong-type": Case(lambda d: ["abtest", "report", d / "units.csv", "--metric", "variant"], "not numeric"),
    "report/encoding": Case(lambda d: ["abtest", "report", d / "units.csv", "--metric", "y"], "units.csv",
                            lambda d: latin1(d / "units.csv")),
    "report/markup-name": Case(lambda d: ["abtest", "report", d / "units.csv", "--metric", "[/bold]"], "no metric '[/bold]'"),
    "report/glob-name": Case(lambda d: ["abtest", "report", d / "unit[s].csv", "--metric", "y"], "unit[s].csv: no such file"),
    "report/quote-name": Case(lambda d: ["abtest", "report", d / "units.csv", "--metric", "y\"); DROP TABLE x; --"],
                              "no metric 'y\"); DROP TABLE x; --'"),
    "report/out-exists": Case(lambda d: ["abtest", "report", d / "units.csv", "--metric", "y", "--out", d / "r.md",
                                         "--format", "markdown"], "already exists", lambda d: (d / "r.md").write_text("mine")),
    "report/out-is-input": Case(lambda d: ["abtest", "report", d / "units.csv", "--metric", "y", "--out", d / "units.csv",
                                           "--overwrite"], "is the input"),
    "report/unknown-variant": Case(lambda d: ["abtest", "report", d / "units.csv", "--metric", "y", "--control", "ctl"],
                                   "control variant 'ctl' not found"),
    # abtest power
    "power/wrong-value": Case(lambda d: ["abtest", "power", "--mean", "1", "--sd", "-1", "--mde", "0.1"], "sd"),
    "power/nan": Case(lambda d: ["abtest", "power", "--mean", "nan", "--sd", "1", "--mde", "0.1"], "mean"),
    # abtest run
    "run/missing-world": Case(lambda d: ["abtest", "run", "--world", d / "none", "--control", "popularity", "--treatment",
                                         "random", "--out", d / "o"], "none"),
    "run/not-a-world": Case(lambda d: ["abtest", "run", "--world", d / "data", "--control", "popularity", "--treatment",
                                       "random", "--out", d / "o"], "data"),
    "run/out-exists": Case(lambda d: ["abtest", "run", "--world", d / "world", "--control", "popularity", "--treatment",
                                      "random", "--out", d / "mine"], "already exists", lambda d: fill(d / "mine")),
    "run/out-holds-input": Case(lambda d: ["abtest", "run", "--world", d / "world", "--control", "popularity",
                                           "--treatment", "random", "--out", d], "holds the input"),
    "run/unknown-policy": Case(lambda d: ["abtest", "run", "--world", d / "world", "--control", "popularity",
                                          "--treatment", "best", "--out", d / "o"], "unknown policy spec 'best'"),
    "run/corrupt-model": Case(lambda d: ["abtest", "run", "--world", d / "world", "--control", "popularity",
                                         "--treatment", f"sasrec:{d / 'model'}", "--out", d / "o"],
                              "not a readable safetensors", lambda d: truncate(d / "model" / "model.safetensors")),
    # abtest offline
    "offline/missing": Case(lambda d: ["abtest", "offline", "--logs", d / "none", "--control", "popularity",
                                       "--treatment", "random"], "none"),
    "offline/corrupt": Case(lambda d: ["abtest", "offline", "--logs", d / "world", "--control", "popularity",
                                       "--treatment", "random"], "requests.parquet: cannot read",
                              lambda d: garbage(d / "world" / "feedback" / "requests.parquet")),
    "offline/one-replicate": Case(lambda d: ["abtest", "offline", "--logs", d / "world", "--control", "popularity",
                                             "--treatment", "random", "--bootstrap", "1"], "at least 2 replicates"),
    "offline/corrupt-model": Case(lambda d: ["abtest", "offline", "--logs", d / "world", "--control", "popularity",
                                             "--treatment", f"sasrec:{d / 'model'}"], "not a readable safetensors",
                                  lambda d: garbage(d / "model" / "model.safetensors")),
    "offline/out-exists": Case(lambda d: ["abtest", "offline", "--logs", d / "world", "--control", "popularity",
                                          "--treatment", "random", "--out", d / "p.json"], "already exists",
                               lambda d: (d / "p.json").write_text("mine")),
    # demo
    "demo/out-exists": Case(lambda d: ["demo", "--quick", "--out", d / "mine"], "already exists", lambda d: fill(d / "mine")),
}

INPUTS = ("world", "data", "model", "ab", "units.csv", "units.parquet", "recbole", "sim.toml")


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_exit_2_and_loses_nothing(base, tmp_path, name):
    case = CASES[name]
    for item in INPUTS:
        src = base / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / item)
    case.spoil(tmp_path)
    before = snapshot(tmp_path)
    result = runner.invoke(app, [str(a) for a in case.args(tmp_path)])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.message in lines[0], lines[0]
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before  # every input byte-identical
    assert not [p for p in tmp_path.rglob(".*.tmp")]  # and no litter


def test_odd_names_are_read_as_they_are(base, tmp_path):
    """Brackets, globs and quotes in names the user gives are part of the name: the run is written where
    it was asked, the file named is the one read (not what a glob would match), columns keep their names."""
    out = tmp_path / "w[/x]"
    r = runner.invoke(app, ["simulate", "--out", str(out), "--users", "20", "--videos", "20", "--days", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert (out / "events.parquet").is_file() and f"wrote {out}" in " ".join(r.stdout.split())
    (tmp_path / "ga.csv").write_text("user_id,variant,y\n1,control,100\n2,treatment,100\n3,control,100\n4,treatment,100\n")
    (tmp_path / "g[ab].csv").write_text('user_id,variant,"a""b [/bold]"\n1,control,1\n2,treatment,2\n3,control,3\n4,treatment,5\n')
    r = runner.invoke(app, ["abtest", "report", str(tmp_path / "g[ab].csv"), "--metric", 'a"b [/bold]', "--format", "json",
                            "--out", str(tmp_path / "rep[red].json")])
    assert r.exit_code == 0, r.output
    import json

    report = json.loads((tmp_path / "rep[red].json").read_text())
    assert report["metrics"][0]["name"] == 'a"b [/bold]' and report["metrics"][0]["control_mean"] == 2.0  # not ga.csv's 100
    assert f"wrote {tmp_path / 'rep[red].json'}" in " ".join(r.stderr.split())


def test_help_keeps_bracketed_text_and_defaults():
    r = runner.invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for text in ("(default 2000)", "(default 1000)", "(default 2)", "world, behaviour and run tables"):
        assert text in r.stdout, text


def test_a_run_killed_at_any_moment_leaves_the_old_or_the_new_output(tmp_path):
    """`lsvcr data build --overwrite` killed (SIGKILL) at random moments, half of them while the new
    dataset is being written: the destination is always the old dataset or the complete new one, never
    a mix; the next run into the same place cleans what the killed ones left and completes."""
    import random
    import subprocess
    import sys
    import time

    world = tmp_path / "world"  # large enough that writing its dataset takes tens of milliseconds
    assert runner.invoke(app, ["simulate", "--out", str(world), "--users", "400", "--videos", "300", "--days", "2",
                               "-q"]).exit_code == 0
    out = tmp_path / "data"
    build = [sys.executable, "-m", "cli", "data", "build", str(world), "--out", str(out), "--overwrite"]
    cwd = Path(__file__).resolve().parents[1]
    subprocess.run([*build, "--history-len", "3"], cwd=cwd, check=True, capture_output=True)
    old = snapshot(out)
    started = time.perf_counter()
    subprocess.run(build, cwd=cwd, check=True, capture_output=True)
    new, duration = snapshot(out), time.perf_counter() - started
    assert new != old
    subprocess.run([*build, "--history-len", "3"], cwd=cwd, check=True, capture_output=True)  # back to the old one
    rng = random.Random(29)
    litter = 0
    for attempt in range(8):
        proc = subprocess.Popen(build, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if attempt % 2:  # anywhere in the run
            time.sleep(rng.uniform(0.3, 1.05) * duration)
        else:  # while the new dataset is being written: once its temporary directory appears
            while proc.poll() is None and not list(tmp_path.glob(".data.*.tmp")):
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.02))
        proc.kill()
        proc.wait()
        state = snapshot(out) if out.exists() else None
        assert state in (None, old, new)
        litter += len(list(tmp_path.glob(".data.*.tmp")))
        if state == new:  # start each try from the old one
            subprocess.run([*build, "--history-len", "3"], cwd=cwd, check=True, capture_output=True)
    assert litter  # some kills did land mid-write
    subprocess.run(build, cwd=cwd, check=True, capture_output=True)
    assert snapshot(out) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "world"]  # the killed runs' temporaries are gone


def test_the_losing_side_of_two_runs_into_one_new_out_gets_one_line(tmp_path, monkeypatch):
    """Two `simulate` runs into the same new --out: both pass the early check, the first to finish publishes,
    the second is refused at its publish (one line, exit 2) and the winner's run is intact."""
    import simulator.run

    size = ["--users", "20", "--videos", "20", "--days", "1", "-q"]
    out = tmp_path / "run"
    assert runner.invoke(app, ["simulate", "--out", str(out), *size]).exit_code == 0
    winner = snapshot(out)
    monkeypatch.setattr(simulator.run.atomic, "check_output", lambda *a, **k: None)  # it started before the winner ended
    r = runner.invoke(app, ["simulate", "--out", str(out), "--seed", "1", *size])
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [f"error: {out} already exists and is not empty"], r.output
    assert snapshot(out) == winner and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
