"""Stage 1 under HF accelerate: `accelerate launch --multi_gpu --num_processes 2 -m lsvcr.align_main`
on the CPU (two gloo ranks) gives the losses of one process on the same global batches.

Dropout masks are drawn per rank, so two ranks cannot draw one process's masks: both runs switch
dropout off (a ``sitecustomize`` on PYTHONPATH), as test_align's gloo test runs in eval mode. Then
every step's losses — and so every update — must agree up to float rounding.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")

from lsvcr.data.layout import read_dataset  # noqa: E402

from .test_align import build_tiny_lm  # noqa: E402

NO_DROPOUT = """
import torch.nn.functional as F

_sdpa = F.scaled_dot_product_attention
F.dropout = lambda input, p=0.5, training=True, inplace=False: input
F.scaled_dot_product_attention = lambda *a, dropout_p=0.0, **k: _sdpa(*a, dropout_p=0.0, **k)
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(aligned: Path) -> list[dict]:
    return json.loads((aligned / "align.json").read_text())["report"]["losses"]


def test_accelerate_launch_on_two_cpu_processes_equals_one_process(synthetic_data, tmp_path):
    lm = build_tiny_lm(tmp_path / "lm", read_dataset(synthetic_data))
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_DROPOUT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = ["--data", str(synthetic_data), "--llm", lm, "--align-batch-size", "8", "--max-prompt-tokens", "160",
            "--align-steps", "3", "-q"]
    one = subprocess.run([sys.executable, "-m", "lsvcr.align_main", *args, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    two = subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
                          "-m", "lsvcr.align_main", *args, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "stage 1: 3 steps on 2 processes" in two.stdout and "on 1 process," in one.stdout
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(a) == len(b) == 3 and set(a[0]) == {"total", "lm", "rec", "vcc", "ssc"}
    for step, (x, y) in enumerate(zip(a, b)):
        for k in x:
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-5), (step, k, x[k], y[k])
    assert a[0] != a[2]  # the updates changed the losses: equal losses at step 2 mean equal updates


def test_the_entry_reads_back_the_command_line_it_writes():
    from lsvcr.align import AlignConfig
    from lsvcr.align_main import argv, parse

    cfg = AlignConfig(llm="some/dir", batch_size=16, lr=1e-3, max_steps=3, trust_remote_code=True,
                      prompt_templates="t.json", checkpoint_every=50, history_len=10, seed=4)
    line = argv(cfg, Path("data"), Path("out"), resume=True, quiet=True)
    assert "--align-batch-size" in line and "--align-steps" in line  # `lsvcr train`'s names
    opts, back = parse(line)
    assert back == cfg and opts.resume and opts.quiet and not opts.allow_pickle
    assert opts.data == Path("data") and opts.out == Path("out")
    assert parse(["--data", "d", "--out", "o"])[1] == AlignConfig()


def test_the_entry_never_imports_the_cli():
    code = ("import sys; from lsvcr.align_main import parse; parse(['--data', 'd', '--out', 'o']); "
            "assert 'cli' not in sys.modules and 'typer' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
