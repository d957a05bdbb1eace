"""The Open Bandit Dataset as logged feedback (``lsvcr data import-obd``).

The Open Bandit Dataset (Saito, Aihara, Matsutani and Narita, 2021) logs ZOZOTOWN's fashion
recommendations: three positions on a page, filled by a uniform-random policy or by Bernoulli Thompson
sampling (BTS), in three campaigns (all, men, women). One folder per policy and campaign
(``{random,bts}/{all,men,women}/``) holds ``CAMPAIGN.csv``, one row per shown item — its first, unnamed
column a row index, then ``timestamp``, ``item_id``, ``position`` (1, 2, 3), ``click`` and
``propensity_score`` (the logging policy's probability of that item at that position), hashed user
features and one ``user-item_affinity_K`` per item — and ``item_context.csv``, the campaign's items
(``item_id`` 0 .. n − 1 and their features). obp 0.5.7's source distribution carries a 10,000-row
sample of each folder under ``obp/dataset/obd/``, and BTS's production prior in
``obp/policy/conf/prior_bts.yaml``.

One folder becomes one feedback directory (abtest.offline.feedback):

* ``requests.parquet``: one request per CSV row (the rows do not say which of them shared a page):
  ``request_id`` the CSV's row index, ``ts`` its timestamp in seconds since the epoch, surface ``feed``,
  no ``user_id`` (the unit is the request), ``candidates`` every item of the campaign, and the row's
  user-item affinities as the candidate feature ``affinity``
* ``impressions.parquet``: the row's ``item_id`` at ``position`` − 1 (the format numbers positions from 0;
  obp's own loader maps the CSVs' 1, 2, 3 to 0, 1, 2 the same way, by dense rank), ``propensity`` the
  row's ``propensity_score``
* ``outcomes.parquet``: ``click``; ``items.parquet``: the campaign's item ids
* ``meta.json``: ``logging_policy`` (random | bts), ``campaign``, ``source`` and the BTS table's ``n_sim``
  and ``seed``
* ``policies/random.parquet`` and ``policies/bts.parquet``: the two ZOZOTOWN policies as ``table:`` targets
  (``item_id``, ``position``, ``probability``): random's 1 / n at every position, and BTS's per-position
  probabilities under its production prior, computed as obp 0.5.7's ``BernoulliTS(n_actions,
  len_list=3, is_zozotown_prior=True, campaign=..., random_state=seed).compute_batch_action_dist(n_sim=...)``
  does, draw for draw (``bts_distribution``), so the same seed gives obp's numbers bit for bit.

The user features are not carried over. NumPy and pyarrow only; obp is never imported.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import atomic

from ..errors import InputError
from .feedback import write_feedback_into

POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")
SLATE = 3  # ZOZOTOWN's positions
N_SIM = 100_000  # Monte Carlo draws of BTS's table (obp's compute_batch_action_dist default)
SEED = 12345  # obp's examples' random_state
SOURCE = "Open Bandit Dataset (obp 0.5.7 sample)"
PRIOR = Path("policy") / "conf" / "prior_bts.yaml"  # in obp's package, beside dataset/obd/
_CHUNK = 10_000  # BTS draws per block (memory)


class ObdLog(NamedTuple):
    """One OBD folder, read and checked: [n] per CSV row (CSV order)."""

    logging_policy: str
    campaign: str
    request_id: np.ndarray
    ts: np.ndarray  # seconds since the epoch
    item: np.ndarray
    position: np.ndarray  # from 0 (the CSV's − 1)
    click: np.ndarray
    propensity: np.ndarray
    n_items: int
    affinity: np.ndarray | None  # [n, n_items] the row's user-item affinities (None: not in the CSV)


class Imported(NamedTuple):
    """What ``import_obd`` wrote."""

    out: Path
    rows: int
    clicks: int
    n_items: int
    logging_policy: str
    campaign: str
    tables: dict  # policy name -> its table: file

    @property
    def click_rate(self) -> float:
        return self.clicks / self.rows if self.rows else math.nan


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def _csv(path: Path) -> pa.Table:
    from pyarrow import csv

    if not path.is_file():
        raise InputError(f"{path}: missing (an Open Bandit Dataset folder holds CAMPAIGN.csv and item_context.csv)")
    try:
        return csv.read_csv(path)
    except (OSError, pa.ArrowException, ValueError) as e:
        raise InputError(f"{path}: cannot read as CSV ({str(e).splitlines()[0]})") from None


def _numbers(table: pa.Table, path: Path, column: str, integer: bool) -> np.ndarray:
    col = table.column(column)
    ok = pa.types.is_integer(col.type) or (not integer and pa.types.is_floating(col.type))
    if not ok:
        raise InputError(f"{path}: column {column!r} must hold {'integers' if integer else 'numbers'}, not {col.type}")
    if col.null_count:
        raise InputError(f"{path}: column {column!r} has {col.null_count} empty values")
    x = col.to_numpy().astype(np.int64 if integer else np.float64)
    if not integer and not np.all(np.isfinite(x)):
        raise InputError(f"{path}: column {column!r} is not finite in row {int(np.flatnonzero(~np.isfinite(x))[0])}")
    return x


def locate(folder) -> tuple[str, str, Path]:
    """(logging policy, campaign, the CSV) of an OBD folder laid out as obp's: ``.../POLICY/CAMPAIGN/CAMPAIGN.csv``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such directory (give one Open Bandit Dataset folder, e.g. obd/random/all)")
    policy, campaign = folder.resolve().parent.name, folder.resolve().name
    if policy not in POLICIES or campaign not in CAMPAIGNS:
        raise InputError(f"{folder}: not an Open Bandit Dataset folder (expected .../{{{','.join(POLICIES)}}}/"
                         f"{{{','.join(CAMPAIGNS)}}}/, as obp lays it out)")
    return policy, campaign, folder / f"{campaign}.csv"


def read_obd(folder) -> ObdLog:
    """One OBD folder (``.../random/all`` and the like), checked: every bad value is an ``InputError`` of
    one line naming the file, column and row."""
    policy, campaign, path = locate(folder)
    items_path = Path(folder) / "item_context.csv"
    data, items = _csv(path), _csv(items_path)
    missing = [c for c in COLUMNS if c not in data.column_names]
    if missing:
        raise InputError(f"{path}: no column {missing[0]!r} (an Open Bandit Dataset log has {', '.join(COLUMNS)})")
    if "item_id" not in items.column_names:
        raise InputError(f"{items_path}: no column 'item_id'")
    ids = _numbers(items, items_path, "item_id", True)
    n_items = len(ids)
    if not np.array_equal(np.sort(ids), np.arange(n_items)):
        raise InputError(f"{items_path}: item ids must be 0 .. {n_items - 1}, each once")
    n = data.num_rows
    if n == 0:
        raise InputError(f"{path}: no rows")
    ts_col = data.column("timestamp")
    if not pa.types.is_timestamp(ts_col.type) or ts_col.null_count:
        raise InputError(f"{path}: column 'timestamp' must hold times (e.g. 2019-11-24 00:00:34.762830+00:00)"
                         + (f", not {ts_col.type}" if not pa.types.is_timestamp(ts_col.type) else " in every row"))
    ts = pc.cast(pc.cast(ts_col, pa.timestamp("ns", tz="UTC")), pa.int64()).to_numpy() / 1e9
    item = _numbers(data, path, "item_id", True)
    position = _numbers(data, path, "position", True)
    click = _numbers(data, path, "click", False)
    propensity = _numbers(data, path, "propensity_score", False)
    checks = ((item, (item < 0) | (item >= n_items), f"item_id {{}} is not in {items_path.name} (0 .. {n_items - 1})"),
              (position, (position < 1) | (position > SLATE), f"position {{}} is not one of 1 .. {SLATE}"),
              (click, (click != 0) & (click != 1), "click {} is not 0 or 1"),
              (propensity, ~((propensity > 0) & (propensity <= 1)), "propensity_score {} is outside (0, 1]"))
    for values, bad, what in checks:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{path}: row {row}: " + what.format(values[row]))
    request_id = np.arange(n, dtype=np.int64)
    first = data.column_names[0]
    if first not in COLUMNS and pa.types.is_integer(data.column(first).type) and not data.column(first).null_count:
        index = data.column(first).to_numpy().astype(np.int64)
        if len(np.unique(index)) == n:
            request_id = index  # the CSV's own row index
    names = [f"user-item_affinity_{k}" for k in range(n_items)]
    affinity = (np.stack([_numbers(data, path, c, False) for c in names], axis=1)
                if all(c in data.column_names for c in names) else None)
    return ObdLog(policy, campaign, request_id, ts, item, position - 1, click, propensity, n_items, affinity)


def find_prior(folder) -> Path | None:
    """obp's ``policy/conf/prior_bts.yaml`` above an OBD folder of its package (``obp/dataset/obd/P/C``)."""
    for parent in Path(folder).resolve().parents:
        if (parent / PRIOR).is_file():
            return parent / PRIOR
    return None


def read_prior(path, campaign: str, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """BTS's production prior (alpha, beta) of one campaign, from obp's ``prior_bts.yaml``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file (BTS's prior: obp's obp/policy/conf/prior_bts.yaml)")
    try:
        prior = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    entry = prior.get(campaign) if isinstance(prior, dict) else None
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), list) for k in ("alpha", "beta")):
        raise InputError(f"{path}: no alpha and beta lists for campaign {campaign!r}")
    try:
        alpha, beta = (np.asarray(entry[k], dtype=np.float64) for k in ("alpha", "beta"))
    except (TypeError, ValueError):
        raise InputError(f"{path}: campaign {campaign!r}: alpha and beta must be numbers") from None
    if len(alpha) != n_items or len(beta) != n_items:
        raise InputError(f"{path}: campaign {campaign!r} has {len(alpha)} alphas and {len(beta)} betas for "
                         f"{n_items} items")
    if not (np.all(alpha > 0) and np.all(beta > 0)):
        raise InputError(f"{path}: campaign {campaign!r}: alpha and beta must be positive")
    return alpha, beta


# ------------------------------------------------------------------------------------------------
# the two ZOZOTOWN policies
# ------------------------------------------------------------------------------------------------
def bts_distribution(alpha, beta, len_list: int = SLATE, n_sim: int = N_SIM, seed: int = SEED) -> np.ndarray:
    """[n_items, len_list] P(item at position) of Bernoulli Thompson sampling with no observed rewards:
    each of ``n_sim`` draws samples θ_a ~ Beta(alpha_a, beta_a) and shows the ``len_list`` largest, best
    first. This is obp 0.5.7's ``BernoulliTS.compute_batch_action_dist`` draw for draw: obp calls
    ``RandomState(seed).beta(alpha, beta)`` once per draw (sklearn's ``check_random_state``) and ranks by
    ``argsort()[::-1]``; one ``beta`` call of ``size=(m, n_items)`` yields the same numbers in the same
    order as m such calls, and the rows sort the same way."""
    a, b = np.asarray(alpha, np.float64), np.asarray(beta, np.float64)
    rng = np.random.RandomState(seed)
    counts = np.zeros((len(a), len_list), np.int64)
    for start in range(0, n_sim, _CHUNK):
        draws = rng.beta(a, b, size=(min(_CHUNK, n_sim - start), len(a)))  # [m, n_items]
        top = np.argsort(draws, axis=1)[:, ::-1][:, :len_list]  # [m, len_list] best first
        for pos in range(len_list):
            counts[:, pos] += np.bincount(top[:, pos], minlength=len(a))
    return counts / n_sim


def random_distribution(n_items: int, len_list: int = SLATE) -> np.ndarray:
    """[n_items, len_list] the uniform-random policy's 1 / n_items (obp's ``Random.compute_batch_action_dist``)."""
    return np.ones((n_items, len_list)) * (1 / n_items)


def policy_table(dist: np.ndarray) -> pa.Table:
    """A ``table:`` target (abtest.offline.policies) of an [n_items, positions] distribution."""
    n, K = dist.shape
    return pa.table({"item_id": pa.array(np.repeat(np.arange(n), K), pa.int64()),
                     "position": pa.array(np.tile(np.arange(K), n), pa.int64()),
                     "probability": pa.array(dist.ravel(), pa.float64())})


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def feedback_tables(log: ObdLog) -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
    """(requests, impressions, outcomes, items) of the feedback format."""
    n, rid = len(log.request_id), pa.array(log.request_id, pa.int64())
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * log.n_items, pa.int32())
    candidates = pa.ListArray.from_arrays(offsets, pa.array(np.tile(np.arange(log.n_items, dtype=np.int64), n)))
    requests = {"request_id": rid, "ts": pa.array(log.ts, pa.float64()), "surface": pa.array(["feed"] * n, pa.string()),
                "candidates": candidates}
    if log.affinity is not None:
        requests["affinity"] = pa.ListArray.from_arrays(offsets, pa.array(log.affinity.ravel(), pa.float64()))
    impressions = pa.table({"request_id": rid, "position": pa.array(log.position, pa.int64()),
                            "item_id": pa.array(log.item, pa.int64()), "propensity": pa.array(log.propensity, pa.float64())})
    outcomes = pa.table({"request_id": rid, "item_id": pa.array(log.item, pa.int64()),
                         "click": pa.array(log.click, pa.float64())})
    items = pa.table({"item_id": pa.array(np.arange(log.n_items), pa.int64()),
                      "surface": pa.array(["feed"] * log.n_items, pa.string())})
    return pa.table(requests), impressions, outcomes, items


def import_obd(folder, out, *, prior=None, n_sim: int = N_SIM, seed: int = SEED, overwrite: bool = False) -> Imported:
    """``lsvcr data import-obd``: one OBD folder written (atomically) as a feedback directory ``out``, with
    the random and BTS policies as ``table:`` files in ``out/policies/``. ``prior``: BTS's
    ``prior_bts.yaml`` (default: the one of the obp package the folder is in). An existing non-empty
    ``out`` is replaced only with ``overwrite``, and never when it holds the input."""
    atomic.check_output(out, inputs=[folder], overwrite=overwrite)
    log = read_obd(folder)
    prior = prior if prior is not None else find_prior(folder)
    if prior is None:
        raise InputError(f"{folder}: no obp/policy/conf/prior_bts.yaml above it: pass --prior (BTS's production "
                         f"prior, from obp's source distribution)")
    alpha, beta = read_prior(prior, log.campaign, log.n_items)
    dists = {"random": random_distribution(log.n_items), "bts": bts_distribution(alpha, beta, SLATE, n_sim, seed)}
    meta = {"logging_policy": log.logging_policy, "campaign": log.campaign, "source": SOURCE,
            "slate_sizes": {"feed": SLATE}, "policies": {"bts": {"n_sim": n_sim, "seed": seed, "prior": "prior_bts.yaml"}}}
    out = Path(out)
    with atomic.publishing_dir(out, replace=overwrite, parents=True) as tmp:
        requests, impressions, outcomes, items = feedback_tables(log)
        write_feedback_into(tmp, requests, impressions, outcomes, meta, items=items)
        (tmp / "policies").mkdir()
        for name, dist in dists.items():
            pq.write_table(policy_table(dist), tmp / "policies" / f"{name}.parquet")
    return Imported(out, len(log.click), int(log.click.sum()), log.n_items, log.logging_policy, log.campaign,
                    {name: out / "policies" / f"{name}.parquet" for name in dists})
