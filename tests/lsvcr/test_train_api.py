"""lsvcr.train.run_training, the whole of `lsvcr train`: option combinations, stage selection, what is
written where and in which order (the trainers replaced by recorders: no training here)."""
from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from cli import app
from lsvcr import train
from lsvcr.errors import InputError
from lsvcr.train import Stage1Result, TrainRequest, TrainResult, run_training

D, O = Path("data"), Path("runs/model")

METRICS = {"train": {"best_epoch": 3, "best_val_ndcg5": 0.5, "train_seconds": 1.0, "targets_per_s": 10.0},
           "test_sampled100": {"model": "lsvcr", "protocol": "sampled100", "split": "test",
                               "tasks": {"video": {"n": 1, **{m: 0.5 for m in
                                                              ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr@5", "mrr@10")}}}}}


@pytest.fixture
def calls(monkeypatch):
    """The calls run_training makes to the two stages, in order."""
    log = []

    def align_model(data, out, cfg, console=None, allow_pickle=False, resume=False, overwrite=False):
        log.append(("align", Path(out), cfg))
        return {"steps": 2, "samples_per_s": 4.0, "losses": [{"total": 1.5}]}

    def train_model(data, out, cfg, console=None, allow_pickle=False, init=None, overwrite=False):
        log.append(("finetune", Path(out), cfg, init))
        return METRICS

    monkeypatch.setattr(train, "align_model", align_model)
    monkeypatch.setattr(train, "train_model", train_model)
    return log


@pytest.mark.parametrize("options, message", [
    ({"stage": "both"}, "--stage must be finetune, align or all, got 'both'"),
    ({"model": "sasrec", "stage": "all"}, "--stage all applies to --model lsvcr only (the control has no stage 1)"),
    ({"model": "sasrec", "stage": "align"}, "--stage align applies to --model lsvcr only"),
    ({"init": Path("aligned"), "stage": "all"}, "--init goes with --stage finetune (--stage all aligns itself)"),
    ({"no_align": True, "stage": "align"}, "--no-align goes with --stage all"),
    ({"no_align": True, "init": Path("aligned")}, "--no-align goes with --stage all"),  # --init: finetune by default
    ({"model": "sasrec", "task": "comment"}, "video task only"),
])
def test_bad_combinations_raise_input_error(calls, options, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_training(TrainRequest(D, O, **options))
    assert calls == []  # checked before anything runs


def test_stage_all_aligns_beside_out_then_finetunes_from_it(calls):
    seen = []
    result = run_training(TrainRequest(D, O, align_steps=2), stage1_done=lambda s: seen.append((s, len(calls))))
    aligned = Path("runs/model-aligned")
    assert [c[:2] for c in calls] == [("align", aligned), ("finetune", O)]
    assert calls[0][2].max_steps == 2 and calls[0][2].checkpoint_every == 50  # the command's default, not AlignConfig's
    assert calls[1][2].task == "both" and calls[1][3] == aligned
    assert seen == [(Stage1Result(aligned, {"steps": 2, "samples_per_s": 4.0, "losses": [{"total": 1.5}]}), 1)]  # before stage 2
    assert result == TrainResult("all", O, seen[0][0], METRICS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.out = Path("elsewhere")


def test_stage_selection(calls):
    run_training(TrainRequest(D, O, aligned_out=Path("al")))
    assert calls[0][1] == Path("al") and calls[1][3] == Path("al")
    calls.clear()
    r = run_training(TrainRequest(D, O, stage="align"))  # --out is the aligned dir; no stage 2
    assert [c[:2] for c in calls] == [("align", O)] and r.metrics is None and r.stage1.aligned == O
    calls.clear()
    r = run_training(TrainRequest(D, O, no_align=True))  # the ablation: stage 2 on MiniLM features
    assert [c[0] for c in calls] == ["finetune"] and calls[0][3] is None and calls[0][2].task == "both"
    assert r.stage == "all" and r.stage1 is None
    calls.clear()
    r = run_training(TrainRequest(D, O, init=Path("al")))  # --init: finetune by default, video task
    assert r.stage == "finetune" and calls[0][3] == Path("al") and calls[0][2].task == "video"
    calls.clear()
    run_training(TrainRequest(D, O, model="sasrec", batch_size=32))
    assert calls[0][2].model == "sasrec" and calls[0][2].batch_size == calls[0][2].sasrec_batch_size == 32


def test_ddp_launches_torchrun_and_a_failure_is_an_input_error(calls, monkeypatch):
    launched = []
    monkeypatch.setattr(subprocess, "run", lambda args: launched.append(args) or subprocess.CompletedProcess(args, 1))
    with pytest.raises(InputError, match=r"stage 1 under --ddp 2 failed \(see the output above\)"):
        run_training(TrainRequest(D, O, stage="align", ddp=2, quiet=True))
    args = launched[0]
    assert args[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m"]
    assert args[6:11] == ["lsvcr.align_main", "--data", "data", "--out", str(O)] and args[-1] == "-q"
    assert "--checkpoint-every" in args and calls == []
    monkeypatch.setattr(subprocess, "run", lambda args: subprocess.CompletedProcess(args, 0))
    seen = []
    r = run_training(TrainRequest(D, O, ddp=2), stage1_done=seen.append)
    assert seen == [Stage1Result(Path("runs/model-aligned"), None)] and r.metrics is METRICS  # its processes print stage 1


def test_request_defaults_are_the_commands():
    command = typer.main.get_command(app).commands["train"]
    defaults = {p.name: p.default for p in command.params}
    for f in dataclasses.fields(TrainRequest):
        if f.default is not dataclasses.MISSING:
            assert defaults[f.name] == f.default, f.name
    assert set(defaults) == {f.name for f in dataclasses.fields(TrainRequest)}


def test_command_renders_stage1_before_stage2_and_bad_combinations_exit_2(calls, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # short paths: rich wraps at 80 columns
    r = CliRunner().invoke(app, ["train", "--data", "d", "--out", "m", "-q"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "stage 1: 2 steps, 4.00 samples/s, last loss total 1.5000; wrote m-aligned"
    assert lines[1].startswith("best epoch 3 (val NDCG@5 0.5000)") and lines[-1] == "wrote m"
    r = CliRunner().invoke(app, ["train", "--data", "d", "--out", "a", "--stage", "align"])
    assert r.exit_code == 0 and r.output.splitlines() == ["stage 1: 2 steps, 4.00 samples/s, last loss total 1.5000; wrote a"]
    r = CliRunner().invoke(app, ["train", "--data", "d", "--out", "x", "--stage", "align", "--no-align"])
    assert r.exit_code == 2 and "--no-align goes with --stage all" in r.output
