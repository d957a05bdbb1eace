"""Same commit, same seed, same thread count ⇒ the same bytes: `lsvcr demo --quick` twice, into two
different --out dirs, in two processes with different hash seeds (so set/dict-order dependence
shows), and every artifact compared byte for byte.

Exceptions, and only these: ``timings.json`` files (wall-clock seconds and throughput, kept apart
from the results for this reason), and the two output directories' own paths where a file records
them as provenance (the A/B manifest's policy specs and world dir, the off-policy comparison's log
dir, the report's source): those are compared with each run's --out replaced by one placeholder.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMINGS = "timings.json"


def _demo(out: Path, hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "from cli import app; app()", "demo", "--quick", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_quick_is_byte_reproducible(tmp_path):
    a, b = tmp_path / "run-a", tmp_path / "other-dir-b"
    _demo(a, "1")
    _demo(b, "2")
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    for must in ("models/sasrec/model.safetensors", "models/lsvcr/model.safetensors", "models/lsvcr-aligned/sr.safetensors",
                 "models/lsvcr/text_embeddings.safetensors", "ab/events.parquet", "offline_eval.json",
                 "offline_ab.json", "report.json", "summary.md"):
        assert must in fa, must
    assert TIMINGS in fa and "models/sasrec/" + TIMINGS in fa  # the timings did move out
    differ, compared = [], 0
    for name, pa_ in fa.items():
        if Path(name).name == TIMINGS:
            continue
        x, y = pa_.read_bytes(), fb[name].read_bytes()
        if x != y:
            x, y = x.replace(str(a).encode(), b"<out>"), y.replace(str(b).encode(), b"<out>")
        compared += 1
        if x != y:
            differ.append(name)
    assert not differ, f"{len(differ)} of {compared} artifacts differ between two runs: {differ}"
    assert compared >= 40
    assert "seconds" not in (a / "summary.md").read_text()
