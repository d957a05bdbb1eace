"""Shards on Ray: the same run directory as one process, deltas through Ray, policies built once per
actor, a dead worker retried, nothing at OUT when a run fails."""
import json
import subprocess
import sys

import pytest

ray = pytest.importorskip("ray")

from simulator import SimConfig, simulate  # noqa: E402
from simulator.errors import InputError  # noqa: E402
from simulator.experiment import run_experiment  # noqa: E402
from simulator.ray import FAIL_ONCE_ENV, RayOptions  # noqa: E402
from simulator.run import make_policy  # noqa: E402

KW = dict(n_users=90, n_videos=120, days=2, seed=7)
SAME = ("events.parquet", "comments.parquet", "videos.parquet", "users.parquet", "truth/comment_truth.parquet")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    simulate(SimConfig().replace(**KW), out, "popularity", explore=0.2)
    return out


def same_files(a, b, names=SAME):
    return {name: (a / name).read_bytes() == (b / name).read_bytes() for name in names}


@pytest.mark.parametrize("shards", [2, 3])
def test_ray_run_writes_the_one_process_files_byte_for_byte(tmp_path, whole, shards):
    out = tmp_path / "ray"
    summary = simulate(SimConfig().replace(**KW), out, "popularity", explore=0.2, on_ray=RayOptions(shards=shards))
    feedback = tuple(f"feedback/{name}" for name in ("requests.parquet", "impressions.parquet", "outcomes.parquet",
                                                       "items.parquet", "sessions.parquet", "meta.json"))
    assert all(same_files(whole, out, SAME + feedback + ("truth/oracle_scores.parquet",)).values())
    assert not (out / "_exchange").exists() and not list(tmp_path.glob(".ray.partial-*"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"] == shards and manifest["ray"]["shards"] == shards
    one = json.loads((whole / "manifest.json").read_text())
    assert manifest["policy"] == one["policy"] and manifest["config"] == one["config"]
    assert summary["events"] == json.loads((whole / "summary.json").read_text())["events"] > 1000


def test_a_dead_worker_is_restarted_and_the_run_completes(tmp_path, whole, monkeypatch):
    marker = tmp_path / "died"
    monkeypatch.setenv(FAIL_ONCE_ENV, str(marker))
    out = tmp_path / "ray"
    simulate(SimConfig().replace(**KW), out, "popularity", explore=0.2, on_ray=RayOptions(shards=2))
    assert marker.exists()  # the last shard's process exited at its last day
    assert all(same_files(whole, out).values())


def counting_factory(log):
    def factory(world, comments, config):
        with open(log, "a") as f:
            f.write("built\n")
        return make_policy("popularity", world, comments, config)
    return factory


def oracle(world, comments, config):
    return make_policy("oracle", world, comments, config)


def test_abtest_on_ray_builds_each_policy_once_per_actor_and_matches_one_process(tmp_path):
    cfg = SimConfig().replace(**KW, pre_days=1)
    log = tmp_path / "factory.log"
    one, on_ray = tmp_path / "one", tmp_path / "ray"
    run_experiment(cfg, one, counting_factory(log), oracle, ("popularity", "oracle"))
    assert log.read_text().count("built") == 1
    log.unlink()
    run_experiment(cfg, on_ray, counting_factory(log), oracle, ("popularity", "oracle"), on_ray=RayOptions(shards=3))
    assert log.read_text().count("built") == 3  # once per shard actor
    assert all(same_files(one, on_ray, SAME + ("assignment.parquet",)).values())
    assert json.loads((on_ray / "manifest.json").read_text())["experiment"] == json.loads(
        (one / "manifest.json").read_text())["experiment"]


def test_a_failing_run_leaves_nothing_at_out(tmp_path):
    def broken(world, comments, config):
        raise InputError("no such model")

    out = tmp_path / "ray"
    with pytest.raises(InputError, match="no such model"):
        run_experiment(SimConfig().replace(**KW, pre_days=1), out, broken, oracle, ("x", "oracle"),
                       on_ray=RayOptions(shards=2))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_the_default_run_never_imports_ray(tmp_path):
    code = ("import sys; from simulator import SimConfig, simulate; "
            f"simulate(SimConfig().replace(n_users=20, n_videos=30, days=1), {str(tmp_path / 'r')!r}); "
            "assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_simulate_and_abtest_run_on_ray(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    size = ["--users", "60", "--videos", "80", "--days", "1", "-q"]
    one = runner.invoke(app, ["simulate", "--out", str(tmp_path / "one"), *size])
    on_ray = runner.invoke(app, ["simulate", "--out", str(tmp_path / "ray"), "--ray", "--ray-shards", "2", *size])
    assert one.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    assert all(same_files(tmp_path / "one", tmp_path / "ray").values())
    ab = ["abtest", "run", "--world", str(tmp_path / "one"), "--control", "popularity", "--treatment", "oracle", "-q"]
    assert runner.invoke(app, [*ab, "--out", str(tmp_path / "ab1")]).exit_code == 0
    result = runner.invoke(app, [*ab, "--out", str(tmp_path / "ab2"), "--ray-shards", "3"])
    assert result.exit_code == 0, result.output
    assert all(same_files(tmp_path / "ab1", tmp_path / "ab2", SAME + ("assignment.parquet",)).values())
    bad = runner.invoke(app, [*ab[:-3], "--treatment", "lsvcr:/no/such/dir", "--out", str(tmp_path / "ab3"), "--ray"])
    assert bad.exit_code == 2 and "no model directory" in bad.output and not (tmp_path / "ab3").exists()


def test_an_unreachable_cluster_address_fails_fast_with_one_line():
    from simulator.ray import _check_reachable

    with pytest.raises(InputError, match="no Ray cluster answers"):
        _check_reachable("127.0.0.1:1", timeout_s=2)
    _check_reachable("auto")  # resolved by Ray itself


def test_an_address_that_answers_but_is_not_ray_fails_fast_with_one_line():
    """A port that takes connections and stays silent, and an HTTP/1.1 server: both refused within the
    probe's deadline (Ray itself hung past 150 s on the first and logged 20 lines on the second)."""
    import http.server
    import socket
    import threading
    import time

    from simulator.ray import _check_reachable

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    http_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(InputError, match="does not answer as a Ray cluster within 2 s"):
            _check_reachable(f"127.0.0.1:{silent.getsockname()[1]}", timeout_s=2)
        with pytest.raises(InputError, match="not a Ray cluster \\(it does not speak gRPC\\)"):
            _check_reachable(f"127.0.0.1:{http_server.server_address[1]}", timeout_s=2)
        assert time.monotonic() - started < 6
    finally:
        http_server.shutdown()
        silent.close()
