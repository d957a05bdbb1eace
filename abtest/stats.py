"""Sufficient statistics of one experiment arm: unit count, column means and the co-moment matrix.

Everything the engine computes (Welch, ratios, CUPED, regression adjustment, relative lifts) needs
only these, per arm. They add across shards (Chan, Golub & LeVeque's pairwise update), so the same
code serves one Parquet file, a partitioned dataset or a Spark aggregation, and they carry leading
batch dimensions, so a simulation can analyse thousands of replications in one call:

    n         [...]          units
    mean      [..., k]       column means
    comoment  [..., k, k]    sum over units of (z - mean)(z - mean)^T

>>> m = Moments.from_columns(np.array([[1.0, 2.0], [3.0, 5.0], [5.0, 5.0]]))
>>> float(m.n), m.mean.tolist(), m.cov.tolist()
(3.0, [3.0, 4.0], [[4.0, 3.0], [3.0, 3.0]])
>>> (Moments.from_columns(np.array([[1.0, 2.0]])) + Moments.from_columns(np.array([[3.0, 5.0], [5.0, 5.0]]))).cov.tolist()
[[4.0, 3.0], [3.0, 3.0]]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    """Count, means and co-moments of k columns over the units of one arm (optionally batched)."""

    n: np.ndarray
    mean: np.ndarray
    comoment: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", np.asarray(self.n, dtype=float))
        object.__setattr__(self, "mean", np.asarray(self.mean, dtype=float))
        object.__setattr__(self, "comoment", np.asarray(self.comoment, dtype=float))
        k = self.mean.shape[-1]
        if self.comoment.shape[-2:] != (k, k):
            raise ValueError(f"comoment shape {self.comoment.shape} does not match {k} columns")

    @classmethod
    def from_columns(cls, z: np.ndarray) -> Moments:
        """From unit rows: ``z`` is [..., n_units, k] (a leading batch is allowed)."""
        z = np.asarray(z, dtype=float)
        n = z.shape[-2]
        mean = z.mean(axis=-2)
        d = z - mean[..., None, :]
        return cls(np.full(z.shape[:-2], float(n)), mean, np.einsum("...ui,...uj->...ij", d, d))

    @classmethod
    def from_sums(cls, n, sums, cross) -> Moments:
        """From raw sums: n, sum of z [..., k] and sum of z z^T [..., k, k] (what SQL `sum` gives)."""
        n = np.asarray(n, dtype=float)
        mean = np.asarray(sums, dtype=float) / n[..., None]
        comoment = np.asarray(cross, dtype=float) - n[..., None, None] * mean[..., :, None] * mean[..., None, :]
        return cls(n, mean, comoment)

    @classmethod
    def from_covariance(cls, n, mean, cov) -> Moments:
        """From sample means and the sample covariance matrix (ddof = 1), as DuckDB's covar_samp gives."""
        n = np.asarray(n, dtype=float)
        cov = np.asarray(cov, dtype=float)
        single = (n <= 1)[..., None, None] & np.isnan(cov)  # one unit: SQL gives NULL, the co-moment is 0
        return cls(n, mean, np.where(single, 0.0, cov) * (n[..., None, None] - 1))

    def __add__(self, other: Moments) -> Moments:
        """The moments of the two samples concatenated (independent units)."""
        n = self.n + other.n
        w = np.divide(self.n * other.n, n, out=np.zeros_like(n), where=n > 0)
        delta = other.mean - self.mean
        frac = np.divide(other.n, n, out=np.zeros_like(n), where=n > 0)
        mean = self.mean + delta * frac[..., None]
        comoment = self.comoment + other.comoment + w[..., None, None] * delta[..., :, None] * delta[..., None, :]
        return Moments(n, mean, comoment)

    @property
    def k(self) -> int:
        return self.mean.shape[-1]

    @property
    def cov(self) -> np.ndarray:
        """Sample covariance matrix (ddof = 1)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.comoment / (self.n[..., None, None] - 1)

    @property
    def var(self) -> np.ndarray:
        """Sample variances (ddof = 1) of the k columns, [..., k]."""
        return np.diagonal(self.cov, axis1=-2, axis2=-1)

    def take(self, columns) -> Moments:
        """The moments of a subset (or reordering) of the columns."""
        idx = np.asarray(columns, dtype=int)
        return Moments(self.n, self.mean[..., idx], self.comoment[..., idx[:, None], idx[None, :]])

    def __getitem__(self, batch) -> Moments:
        """Index the batch dimensions."""
        return Moments(self.n[batch], self.mean[batch], self.comoment[batch])
