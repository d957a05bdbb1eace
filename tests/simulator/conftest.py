from pathlib import Path

import pyarrow.parquet as pq
import pytest

from simulator import SimConfig, simulate


def run(tmp: Path, name: str, policy: str = "popularity", **kw) -> tuple[Path, dict]:
    explore = kw.pop("explore", None)
    temperature = kw.pop("temperature", None)
    shard = kw.pop("shard", None)
    out = tmp / name
    summary = simulate(SimConfig().replace(**kw), out, policy, explore, temperature, shard)
    return out, summary


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Shared runs: three policies on the same 500-user world (1 day), and an exploring run."""
    tmp = tmp_path_factory.mktemp("sim")
    out = {}
    for policy in ("random", "popularity", "oracle"):  # each with its feedback log (the session model reads it)
        out[policy] = run(tmp, policy, policy, n_users=500, days=1, seed=3, log_slates=True)
    out["explore"] = run(tmp, "explore", "popularity", n_users=200, days=2, seed=5, explore=0.2)
    return out


def events(path: Path):
    return pq.read_table(path / "events.parquet")
