"""`simulate()`: generate a world, run the platform under a policy, write the run directory.

Unsharded runs are assembled in a sibling temporary directory and renamed into place when
complete (``atomic.publishing_dir``). Sharded runs (``shard=(i, n)``) write into one shared directory:
each shard writes ``events/shard-i-of-n.parquet`` atomically, the (identical) world files atomically,
and exchanges the day's world deltas with the other shards through ``_exchange/`` at every day
boundary. Runs on Ray (``on_ray``) put every shard in a Ray actor and exchange the deltas through Ray
(``simulator/ray.py``, imported only then); they write what an unsharded run writes.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import platform as _platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import atomic

from .config import SimConfig
from .engine import CommentStore, DayDelta, Platform, Post
from .errors import InputError
from .eventlog import to_arrays, to_table
from .feedback import FEEDBACK_DIR, write_feedback
from .explore import EpsilonGreedy, Softmax
from .policy import OraclePolicy, Policy, PopularityPolicy, RandomPolicy
from .schema import COMMENTS
from .summary import summarize
from .world import World, generate_world, write_tables

if TYPE_CHECKING:
    from .ray import RayOptions

BUILTIN_POLICIES = ("random", "popularity", "oracle")


def make_policy(
    name: str, world: World, comments: CommentStore, config: SimConfig,
    explore: float | None = None, temperature: float | None = None,
) -> Policy:
    """A built-in policy, optionally wrapped for exploration (ε) or softmax sampling (temperature)."""
    check_policy_options(name, explore, temperature)
    if name == "random":
        base = RandomPolicy()
    elif name == "popularity":
        base = PopularityPolicy()
    else:
        base = OraclePolicy(config.behaviour, world.video_topics, world.video_quality, comments)
    if explore is not None:
        return EpsilonGreedy(base, explore)
    if temperature is not None:
        return Softmax(base, temperature)
    return base


def check_policy_options(name: str, explore: float | None, temperature: float | None) -> None:
    """Raise InputError unless ``name`` is a built-in policy and ``explore``/``temperature`` apply to it."""
    if name not in BUILTIN_POLICIES:
        raise InputError(f"unknown policy {name!r}: choose one of {', '.join(BUILTIN_POLICIES)}")
    if explore is not None and temperature is not None:
        raise InputError("give --explore or --temperature, not both")
    if explore is not None:
        if not 0.0 < explore <= 1.0:
            raise InputError(f"--explore must be in (0, 1], got {explore}")
        if name == "random":
            raise InputError("the random policy is already uniform: --explore adds nothing")
    if temperature is not None:
        if not temperature > 0:
            raise InputError(f"--temperature must be positive, got {temperature}")
        if name == "random":
            raise InputError("the random policy has no scores: --temperature does not apply")


def _single_policy(name, explore, temperature, world, comments, config):
    """The ``simulator.ray.PolicyBuild`` of ``simulate``: one built-in policy, no pre-period policy."""
    pol = make_policy(name, world, comments, config, explore, temperature)
    return {pol.name: pol}, None


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {text}: index must be in [0, {n - 1}] and n ≥ 1")
    return i, n


def versions() -> dict[str, str]:
    import simpy

    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("lsvcr")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        own = "source"
    return {"lsvcr": own, "python": _platform.python_version(), "numpy": np.__version__,
            "simpy": simpy.__version__, "pyarrow": pa.__version__}


def simulate(
    config: SimConfig,
    out: Path,
    policy: str = "popularity",
    explore: float | None = None,
    temperature: float | None = None,
    shard: tuple[int, int] | None = None,
    progress: Callable[[float], None] | None = None,
    on_ray: "RayOptions | None" = None,
) -> dict:
    """Run one simulation into ``out`` and return its summary (also written to summary.json).

    ``progress`` receives the simulated time reached, in days, about every simulated hour (with
    ``on_ray``: every finished day). ``on_ray`` (a ``simulator.ray.RayOptions``) runs every user on Ray
    shards; the run directory is the one-process run's (``events.parquet`` byte for byte).
    """
    if explore is not None or temperature is not None or policy == "random":
        config = config.replace(log_slates=True)  # a logging policy: keep what OPE needs
    if on_ray is not None:
        if shard is not None:
            raise InputError("--shard runs one shard in this process: it does not go with --ray")
        from .ray import execute_on_ray

        check_policy_options(policy, explore, temperature)
        return execute_on_ray(
            config, Path(out), functools.partial(_single_policy, policy, explore, temperature), None,
            lambda names: {"policy": next(iter(names.values())), "explore": explore, "temperature": temperature},
            on_ray, progress=progress,
        )
    world = generate_world(config.world, config.seed)
    comments = CommentStore(world)
    pol = make_policy(policy, world, comments, config, explore, temperature)
    manifest = {"policy": pol.name, "explore": explore, "temperature": temperature}
    return execute(config, Path(out), world, comments, {pol.name: pol}, lambda user: pol.name,
                   manifest=manifest, shard=shard, progress=progress)


def execute(
    config: SimConfig,
    out: Path,
    world: World,
    comments: CommentStore,
    policies: dict[str, Policy],
    variant_of: Callable[[int], str],
    manifest: dict,
    pre_policy: Policy | None = None,
    extra_tables: dict[str, pa.Table] | None = None,
    shard: tuple[int, int] | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict:
    """Simulate ``world`` under ``policies`` (by variant) and write the run directory ``out``.

    ``extra_tables`` (e.g. the A/B assignment) are written beside the event log.
    """
    if shard is None:
        atomic.check_output(out, overwrite=None)
    users = np.arange(config.world.n_users)
    if shard is not None:
        users = users[users % shard[1] == shard[0]]
    with contextlib.ExitStack() as stack:
        workdir, exchange = _prepare(out, shard, config, stack)
        platform = Platform(world, config, policies, variant_of, users, pre_policy=pre_policy,
                            comments=comments, exchange=exchange, log_slates=config.log_slates)
        started = time.perf_counter()
        platform.run(progress=progress)
        wall = time.perf_counter() - started

        arrays = to_arrays(platform.rows)
        next_start = {st.user: st.next_start for st in platform.users}
        names = {v: p.name for v, p in policies.items()}
        if shard is None:
            summary = write_run(workdir, config, world, platform.comments, arrays, next_start, platform.variants,
                                platform.slates, manifest, names, extra_tables)  # published as out on leaving
        else:
            summary = summarize(arrays, next_start, config.days)
            summary["policy"] = manifest.get("policy", _label(names))
            events = to_table(arrays, platform.variants)
            manifest = {"config": config.to_dict(), "seed": config.seed, **manifest, "shards": shard[1],
                        "versions": versions()}
            comments_table = _comments_table(platform.comments)
            i, n = shard
            with atomic.writing(out / "events" / f"shard-{i}-of-{n}.parquet", parents=True) as p:
                pq.write_table(events, p)
            if platform.slates is not None:  # this shard's users' feedback, beside the other shards'
                write_feedback(out / FEEDBACK_DIR, out / "truth", config, world, platform.comments, arrays,
                               platform.slates, summary["policy"], shard=shard)
            atomic.write_text(out / "summary" / f"shard-{i}-of-{n}.json", json.dumps(summary, indent=1), parents=True)
            atomic.write_text(out / "manifest.json", json.dumps(manifest, indent=1))
            with tempfile.TemporaryDirectory(prefix=f".world-{i}-", dir=out) as tmp:
                staging = Path(tmp)  # every shard writes the same world files: each is renamed into place
                write_tables(world, staging, comments_table, platform.comments)
                for name, table in (extra_tables or {}).items():
                    pq.write_table(table, staging / name)
                for path in sorted(staging.rglob("*")):
                    if path.is_file():
                        target = out / path.relative_to(staging)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(path, target)
    summary["wall_s"] = wall
    return summary


def write_run(
    workdir: Path, config: SimConfig, world: World, comments: CommentStore, arrays: dict[str, np.ndarray],
    next_start: dict[int, float], variants: list[str], slates: list[tuple] | None, manifest: dict,
    names: dict[str, str], extra_tables: dict[str, pa.Table] | None = None, shards: int = 1,
) -> dict:
    """Write a whole run (world, events.parquet, slates, extra tables, manifest.json, summary.json) into
    ``workdir`` from the engine's user-sorted ``arrays``; return the summary. ``names``: variant → policy name."""
    summary = summarize(arrays, next_start, config.days)
    summary["policy"] = manifest.get("policy", _label(names))
    manifest = {"config": config.to_dict(), "seed": config.seed, **manifest, "shards": shards, "versions": versions()}
    tables = {"events.parquet": to_table(arrays, variants), **(extra_tables or {})}
    write_tables(world, workdir, _comments_table(comments), comments)
    for name, table in tables.items():
        pq.write_table(table, workdir / name)
    if slates is not None:  # a logging run: its feedback, in the format the offline comparison reads
        write_feedback(workdir / FEEDBACK_DIR, workdir / "truth", config, world, comments, arrays, slates,
                       summary["policy"])
    (workdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (workdir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _label(names: dict[str, str]) -> str:
    return ", ".join(f"{v}={name}" for v, name in names.items())


def _comments_table(c: CommentStore) -> pa.Table:
    return pa.table(
        {
            "comment_id": c.ids,
            "video_id": c.video,
            "text": c.text,
            "created_ts": c.created_ts.astype(np.float64),
            "author_id": pa.array(c.author, pa.int64(), mask=c.author < 0),
            "like_count": c.likes.astype(np.int64),
        },
        schema=COMMENTS,
    )


def _prepare(out: Path, shard, config: SimConfig, stack: contextlib.ExitStack):
    """The directory to assemble files in, and the day-delta exchange. Unsharded: a temporary sibling
    of ``out``, published as ``out`` when ``stack`` closes without an exception, removed otherwise."""
    try:
        if shard is None:
            return stack.enter_context(atomic.publishing_dir(out, replace=False, parents=True)), None
        out.mkdir(parents=True, exist_ok=True)
        (out / "_exchange").mkdir(exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot write to {out}: {e.strerror}") from None
    i, n = shard
    if n == 1:
        return out, None

    def exchange(day: int, delta: DayDelta) -> list[DayDelta]:
        folder = out / "_exchange" / f"day-{day}"
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_text(folder / f"shard-{i}-of-{n}.json", json.dumps(_delta_to_json(delta)))
        deadline = time.monotonic() + config.shard_wait_s
        paths = [folder / f"shard-{j}-of-{n}.json" for j in range(n)]
        while not all(p.exists() for p in paths):
            if time.monotonic() > deadline:
                missing = [p.name for p in paths if not p.exists()]
                raise InputError(f"shard {i}/{n}: gave up waiting for {', '.join(missing)} in {folder}")
            time.sleep(0.05)
        return [_delta_from_json(json.loads(p.read_text())) for p in paths]

    return out, exchange


def _delta_to_json(d: DayDelta) -> dict:
    return {"likes": d.likes, "plays": d.plays, "posts": [asdict(p) for p in d.posts]}


def _delta_from_json(d: dict) -> DayDelta:
    return DayDelta(likes=d["likes"], plays=d["plays"], posts=[Post(**p) for p in d["posts"]])

