"""Per-user random streams: common random numbers across policies and across populations.

Each (seed, user, stream) pair owns an independent ``numpy.random.Generator`` derived with
``SeedSequence(seed, spawn_key=(user, stream))``. A stream is consumed in fixed-size steps (every
impression takes the same draws whatever happens), so the k-th impression of a user gets the same
noise under any policy, and adding users never changes another user's draws.
"""
from __future__ import annotations

import numpy as np

# Stream ids: never renumber (that would change every simulation).
WORLD = 0
SESSION = 1
VIDEO = 2
COMMENT = 3
CANDIDATES = 4
POLICY_VIDEO = 5
POLICY_COMMENT = 6
POST = 7
TRUTH = 8

_BLOCK = 256


def generator(seed: int, *key: int) -> np.random.Generator:
    """The generator of one stream: ``key`` is e.g. (user_id, stream) or (WORLD, part)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=tuple(key))))


class Draws:
    """Buffered uniform and standard-normal draws from one stream, consumed a step at a time.

    Buffers are refilled in blocks from the stream's generator; because every step consumes a fixed
    number of each kind, refills happen at the same steps whatever the trajectory.
    """

    __slots__ = ("_gen", "_u", "_ui", "_z", "_zi")

    def __init__(self, gen: np.random.Generator):
        self._gen = gen
        self._u: list[float] = []
        self._ui = 0
        self._z: list[float] = []
        self._zi = 0

    def uniforms(self, k: int) -> list[float]:
        if self._ui + k > len(self._u):
            self._u = self._u[self._ui :] + self._gen.random(_BLOCK).tolist()
            self._ui = 0
        out = self._u[self._ui : self._ui + k]
        self._ui += k
        return out

    def normals(self, k: int) -> list[float]:
        if self._zi + k > len(self._z):
            self._z = self._z[self._zi :] + self._gen.standard_normal(_BLOCK).tolist()
            self._zi = 0
        out = self._z[self._zi : self._zi + k]
        self._zi += k
        return out


class LazyGenerator:
    """A stream's generator, created on first use (most policies never draw): behaves like it."""

    __slots__ = ("_key", "_gen")

    def __init__(self, seed: int, *key: int):
        self._key = (seed, *key)
        self._gen: np.random.Generator | None = None

    def __getattr__(self, name: str):
        if self._gen is None:
            self._gen = generator(*self._key)
        return getattr(self._gen, name)
