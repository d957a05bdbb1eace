"""A/B experiments on simulated users.

A pre-period with everyone on the control policy (its metrics become the CUPED covariates), then the
experiment period with users split by a salted hash of their id. Both arms share the world and
every user's random streams (common random numbers), so the only difference between arms is the
policy. ``aa=True`` runs control against a second copy of itself.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyarrow as pa

from .config import SimConfig
from .engine import CommentStore
from .errors import InputError
from .policy import Policy
from .run import execute
from .world import World, generate_world

if TYPE_CHECKING:
    from .ray import RayOptions

ARMS = ("control", "treatment")
BUCKETS = 10_000

PolicyFactory = Callable[[World, CommentStore, SimConfig], Policy]


def buckets(users: np.ndarray, salt: str) -> np.ndarray:
    """Bucket in [0, 10000) of each user: SHA-256 of "salt:user_id" (stable across runs and periods)."""
    return np.array(
        [int.from_bytes(hashlib.sha256(f"{salt}:{int(u)}".encode()).digest()[:8], "big") % BUCKETS for u in users],
        dtype=np.int64,
    )


def assign(users: np.ndarray, split: float, salt: str) -> tuple[np.ndarray, np.ndarray]:
    """(variant per user, bucket per user): treatment when bucket < split · 10000."""
    if not 0.0 < split < 1.0:
        raise InputError(f"--split must be strictly between 0 and 1, got {split}")
    b = buckets(users, salt)
    return np.where(b < round(split * BUCKETS), ARMS[1], ARMS[0]), b


def world_config(run_dir: Path) -> SimConfig:
    """The configuration a simulation run was made with (its world regenerates exactly from it)."""
    path = Path(run_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        return SimConfig.from_dict(manifest["config"])
    except FileNotFoundError:
        raise InputError(f"not a simulation run directory (no manifest.json): {run_dir}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(f"corrupt manifest {path}: {e}") from None


def check_world(run_dir: Path, world: World) -> None:
    """The regenerated world must be the one in ``run_dir`` (same titles and durations)."""
    import pyarrow.parquet as pq

    path = Path(run_dir) / "videos.parquet"
    try:
        videos = pq.read_table(path, columns=["title", "duration_s"])
    except FileNotFoundError:
        raise InputError(f"not a simulation run directory (no videos.parquet): {run_dir}") from None
    except pa.ArrowException as e:
        raise InputError(f"unreadable {path}: {e}") from None
    if videos.column("title").to_pylist() != world.titles or not np.allclose(
        videos.column("duration_s").to_numpy(), world.duration_s
    ):
        raise InputError(f"{run_dir} was made by another version of the simulator: its world does not regenerate")


def _arms(control: PolicyFactory, treatment: PolicyFactory, aa: bool, world: World, comments: CommentStore,
          config: SimConfig) -> tuple[dict[str, Policy], Policy]:
    """The arms' policies (control also serves the pre-period): the ``PolicyBuild`` of a Ray shard."""
    control_policy = control(world, comments, config)
    return {ARMS[0]: control_policy, ARMS[1]: (control if aa else treatment)(world, comments, config)}, control_policy


def run_experiment(
    config: SimConfig,
    out: Path,
    control: PolicyFactory,
    treatment: PolicyFactory,
    specs: tuple[str, str],
    split: float = 0.5,
    salt: str = "lsvcr-ab",
    aa: bool = False,
    shard: tuple[int, int] | None = None,
    progress: Callable[[float], None] | None = None,
    world_dir: Path | None = None,
    on_ray: "RayOptions | None" = None,
) -> dict:
    """Run the pre-period and the experiment; write events.parquet, assignment.parquet, manifest.json.

    ``config.pre_days`` of ``config.days`` are the pre-period. With ``world_dir`` the regenerated
    world is checked against that simulation run's files. ``on_ray`` (``simulator.ray.RayOptions``)
    runs the users on Ray shards, each building the two policies once (same files as one process).
    """
    if config.pre_days >= config.days:
        raise InputError("the experiment needs at least one day after the pre-period")
    world = generate_world(config.world, config.seed)
    if world_dir is not None:
        check_world(world_dir, world)
    comments = CommentStore(world)
    users = np.arange(config.world.n_users)
    variant, bucket = assign(users, split, salt)
    assignment = pa.table({"user_id": users.astype(np.int64), "variant": variant, "bucket": bucket})
    lookup = dict(zip(users.tolist(), variant.tolist()))
    experiment = {
        "control": specs[0], "treatment": specs[0] if aa else specs[1], "aa": aa, "split": split,
        "salt": salt, "world": str(world_dir) if world_dir else None, "pre_days": config.pre_days,
        "experiment_days": config.days - config.pre_days,
    }
    if on_ray is not None:
        if shard is not None:
            raise InputError("--shard runs one shard in this process: it does not go with --ray")
        from .ray import execute_on_ray

        return execute_on_ray(
            config, Path(out), functools.partial(_arms, control, treatment, aa), lookup.__getitem__,
            lambda names: {"experiment": {**experiment, "policies": {arm: names[arm] for arm in ARMS}}},
            on_ray, extra_tables={"assignment.parquet": assignment}, progress=progress,
        )
    control_policy = control(world, comments, config)
    treatment_policy = (control if aa else treatment)(world, comments, config)
    manifest = {"experiment": {**experiment, "policies": {"control": control_policy.name,
                                                          "treatment": treatment_policy.name}}}
    return execute(
        config, Path(out), world, comments, {ARMS[0]: control_policy, ARMS[1]: treatment_policy},
        lookup.__getitem__, manifest, pre_policy=control_policy,
        extra_tables={"assignment.parquet": assignment}, shard=shard, progress=progress,
    )
