"""Simulation shards on Ray: one actor per shard, each day's world deltas carried by a Ray actor.

Scenario
--------
The driver starts (or joins) a Ray cluster and creates ``n`` shard actors and one *day board*. Each
shard actor generates the world from the seed, builds its policies once (a trained model loads once
per actor), and simulates the users with ``user_id % n == i``. At every day boundary a shard hands its
:class:`~simulator.engine.DayDelta` to the board and waits until all ``n`` have arrived; the board
answers with the day's merged delta (shard order), so every shard applies the same world update — the
exchange that ``--shard i/n`` runs do through files, here through Ray and no file at all.

The actors send their event arrays back through the object store; the driver merges them by user
(stable), which is exactly the order of a one-process run, and writes the run directory with the same
writer as a one-process run (``run.write_run``) into a temporary sibling of ``OUT`` that is renamed
when complete. So ``events.parquet`` is the one-process file byte for byte, and a failed run leaves
nothing at ``OUT``.

A shard actor whose process dies is restarted (``max_restarts``) and its ``run`` call retried
(``max_task_retries``): it simulates again from day 0, and the board answers the days it has already
seen from memory (deltas are deterministic), so the other shards just wait a little longer.

This module imports ``ray``; nothing else in the simulator does.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import ray

import atomic

from .config import SimConfig
from .engine import CommentStore, DayDelta, Platform
from .errors import InputError
from .eventlog import to_arrays
from .policy import Policy
from .world import World, generate_world

MAX_RESTARTS = 2  # per shard actor: a dead worker process is replaced this many times
FAIL_ONCE_ENV = "SIMULATOR_RAY_FAIL_ONCE"  # test hook: a marker path; the last shard dies once at its last day

# (world, comments, config) -> ({variant: policy}, pre-period policy or None); runs once per actor
PolicyBuild = Callable[[World, CommentStore, SimConfig], tuple[dict[str, Policy], Policy | None]]


@dataclass(frozen=True)
class RayOptions:
    """``address``: None starts a local Ray with this machine's cores; "auto" or HOST:PORT joins a cluster.
    ``shards``: actors (default: the cluster's CPUs, at most one per user)."""

    address: str | None = None
    shards: int | None = None

    def __post_init__(self):
        if self.shards is not None and self.shards < 1:
            raise InputError(f"--ray-shards must be >= 1, got {self.shards}")


class ShardResult(NamedTuple):
    arrays: dict[str, np.ndarray]  # the engine's columns, sorted by user
    next_start: dict[int, float]
    variants: list[str]
    names: dict[str, str]  # variant -> policy name
    slates: list[tuple] | None
    comments: CommentStore | None  # the final comment store (shard 0 only; identical in every shard)
    wall_s: float


def connect(options: RayOptions) -> None:
    """Join ``options.address``, or start a local Ray with the machine's cores (if none is running)."""
    if ray.is_initialized():
        return
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR)  # the CLI's output stays ours
    if options.address is None:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
    else:
        _check_reachable(options.address)
        # Ray retries a GCS that refuses it for 20 s, its C++ client logging each try on stderr: 5 tries
        # (about 5 s), logged to a file
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "5")
        try:
            with _stderr_to(JOIN_LOG):
                ray.init(address=options.address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as e:
            refused = "InvalidAuthToken" in JOIN_LOG.read_text(errors="replace")
            hint = ("; the cluster uses token authentication: run with RAY_AUTH_MODE=token and its token in "
                    "~/.ray/auth_token or RAY_AUTH_TOKEN" if refused else f"; Ray's log: {JOIN_LOG}")
            raise InputError(f"--ray-address {options.address}: cannot join the Ray cluster "
                             f"({str(e).splitlines()[0]}){hint}") from None


JOIN_LOG = Path(tempfile.gettempdir()) / "lsvcr-ray-join.log"


@contextlib.contextmanager
def _stderr_to(path: Path):
    """File descriptor 2 (where Ray's C++ core logs) into ``path``, emptied first, for the block."""
    saved = os.dup(2)
    try:
        with open(path, "wb") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# HTTP/2's client connection preface and an empty SETTINGS frame: a gRPC server (Ray's GCS is one)
# answers with a SETTINGS frame of its own (frame type 4 in byte 3 of its 9-byte header)
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, on a HOST:PORT that is not a Ray cluster's GCS: one that does not answer,
    one that takes the connection and stays silent, or one that answers but does not speak gRPC (Ray
    itself would retry for minutes, logging every try)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as conn:
            conn.sendall(HTTP2_PREFACE)
            reply = b""
            while len(reply) < 9:
                chunk = conn.recv(9 - len(reply))
                if not chunk:
                    break
                reply += chunk
    except socket.timeout:
        raise InputError(f"--ray-address {address}: something takes connections there but does not answer "
                         f"as a Ray cluster within {timeout_s:g} s") from None
    except OSError as e:
        raise InputError(f"--ray-address {address}: no Ray cluster answers there ({e.strerror or e})") from None
    if len(reply) < 9 or reply[3] != 4:
        raise InputError(f"--ray-address {address}: something answers there, but not a Ray cluster (it does not speak gRPC)")


@ray.remote(num_cpus=0)
class DayBoard:
    """Collects every shard's delta of a day and answers each with the day's merged delta."""

    def __init__(self, n: int, timeout_s: float):
        self.n, self.timeout_s = n, timeout_s
        self.deltas: dict[int, dict[int, DayDelta]] = {}  # days still waiting for some shard
        self.merged: dict[int, DayDelta] = {}  # kept for a restarted shard that replays its days
        self.ready: dict[int, asyncio.Event] = {}

    async def exchange(self, day: int, shard: int, delta: DayDelta) -> DayDelta:
        ready = self.ready.setdefault(day, asyncio.Event())
        if day not in self.merged:
            got = self.deltas.setdefault(day, {})
            got.setdefault(shard, delta)  # a retried shard sends the same delta again
            if len(got) == self.n:
                parts = [got[i] for i in range(self.n)]
                del self.deltas[day]
                self.merged[day] = DayDelta(likes=[r for d in parts for r in d.likes],
                                            plays=[v for d in parts for v in d.plays],
                                            posts=[p for d in parts for p in d.posts])
                ready.set()
        try:
            await asyncio.wait_for(ready.wait(), self.timeout_s)
        except asyncio.TimeoutError:
            missing = sorted(set(range(self.n)) - set(self.deltas.get(day, {})))
            raise InputError(f"shard {shard}/{self.n}: gave up waiting for shards {missing} at day {day}") from None
        return self.merged[day]

    def days_done(self) -> int:
        return len(self.merged)


@ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)
class ShardActor:
    """One shard: the world, this shard's users, the policies (built once per actor process).
    ``run`` is called once per actor (the world and the policies' state change as it simulates)."""

    def __init__(self, config: SimConfig, build: PolicyBuild, variant_of: Callable[[int], str] | None,
                 shard: int, n: int, board: str):
        self.config, self.build, self.variant_of = config, build, variant_of
        self.shard, self.n = shard, n
        self.board = ray.get_actor(board)  # by name: an actor handle argument would pin restarts to the object store

    def run(self) -> ShardResult:
        cfg, i, n = self.config, self.shard, self.n
        self.world = generate_world(cfg.world, cfg.seed)
        self.comments = CommentStore(self.world)
        self.policies, self.pre_policy = self.build(self.world, self.comments, cfg)
        variant_of = self.variant_of or (lambda user, arm=next(iter(self.policies)): arm)
        users = np.arange(cfg.world.n_users)
        platform = Platform(self.world, cfg, self.policies, variant_of, users[users % n == i],
                            pre_policy=self.pre_policy, comments=self.comments, exchange=self._exchange,
                            log_slates=cfg.log_slates)
        started = time.perf_counter()
        platform.run()
        wall = time.perf_counter() - started
        return ShardResult(to_arrays(platform.rows), {st.user: st.next_start for st in platform.users},
                           platform.variants, {v: p.name for v, p in self.policies.items()}, platform.slates,
                           self.comments if i == 0 else None, wall)

    def _exchange(self, day: int, delta: DayDelta) -> list[DayDelta]:
        marker = os.environ.get(FAIL_ONCE_ENV)
        if marker and self.shard == self.n - 1 and day == self.config.days - 1 and not os.path.exists(marker):
            Path(marker).touch()
            os._exit(1)  # the worker process dies: Ray restarts the actor and retries run()
        return [ray.get(self.board.exchange.remote(day, self.shard, delta))]


def execute_on_ray(
    config: SimConfig,
    out: Path,
    build: PolicyBuild,
    variant_of: Callable[[int], str] | None,
    manifest_of: Callable[[dict[str, str]], dict],
    options: RayOptions,
    extra_tables: dict | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict:
    """Simulate every user on Ray shards and write the run directory ``out`` (as ``run.execute`` does
    unsharded); return the summary. ``variant_of=None``: one arm, named by the single policy."""
    from .run import write_run

    atomic.check_output(out, overwrite=None)
    connect(options)
    n_cpus = int(ray.cluster_resources().get("CPU", 1))
    n = min(options.shards or max(n_cpus, 1), config.world.n_users)
    env = {FAIL_ONCE_ENV: os.environ[FAIL_ONCE_ENV]} if os.environ.get(FAIL_ONCE_ENV) else {}
    # all shards must run at once (they meet every day): share the CPUs rather than queue
    per_actor = min(1.0, max(n_cpus, 1) / n)
    board_name = f"lsvcr-day-board-{uuid.uuid4().hex}"
    board = DayBoard.options(name=board_name).remote(n, config.shard_wait_s)
    actors = [ShardActor.options(num_cpus=per_actor, runtime_env={"env_vars": env} if env else None)
              .remote(config, build, variant_of, i, n, board_name) for i in range(n)]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(out.parent, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise InputError(f"cannot write to {out}: {e.strerror}") from None
    try:
        with atomic.publishing_dir(out, replace=False) as workdir:  # out appears only when complete
            started = time.perf_counter()
            results = _gather([a.run.remote() for a in actors], board, progress)
            wall = time.perf_counter() - started
            arrays = {k: np.concatenate([r.arrays[k] for r in results]) for k in results[0].arrays}
            order = np.argsort(arrays["user_id"], kind="stable")  # a one-process run's order: by user, then time
            arrays = {k: a[order] for k, a in arrays.items()}
            next_start = {u: t for r in results for u, t in r.next_start.items()}
            slates = None if results[0].slates is None else [row for r in results for row in r.slates]
            world = generate_world(config.world, config.seed)
            summary = write_run(workdir, config, world, results[0].comments, arrays, next_start, results[0].variants,
                                slates, {**manifest_of(results[0].names), "ray": {"shards": n, "cpus": n_cpus}},
                                results[0].names, extra_tables, shards=n)
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
        ray.kill(board)
    summary["wall_s"] = wall
    summary["shard_wall_s"] = [r.wall_s for r in results]
    return summary


def _gather(refs: list, board, progress: Callable[[float], None] | None) -> list[ShardResult]:
    """Every shard's result; the first failure (a shard's InputError as itself) ends the wait."""
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
        for ref in done:
            try:
                ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, InputError):
                    raise e.cause from None
                raise
        if progress is not None:
            progress(float(ray.get(board.days_done.remote())))
    return ray.get(refs)
