"""A team's own target policies, given as files, on a feedback log (``lsvcr abtest offline --treatment``):

``table:FILE``  the target's own probabilities of each item at each position, as obp's action
    distribution: Parquet (or CSV) with columns ``item_id``, ``position`` (numbered as in the logs),
    ``probability``, and an optional ``request_id`` where they differ per request (without it, one
    distribution serves every request). A missing (item, position) has probability 0; the
    probabilities of one position must not sum past 1. It gives position marginals only, so it goes
    with the position-wise estimators (ips, snips, dr); dr takes the model's expectation under it.
``scores:FILE``  the target's score of every logged candidate: columns ``request_id``, ``item_id``,
    ``score``. Ranked best first (ties in candidate order); ``scores:FILE@T`` samples a Plackett–Luce
    ranking from the scores standardised per request at temperature T (the simulator's tempered
    policies). It runs on the log's requests like any policy (simulator.counterfactual).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError

TABLE_COLUMNS = ("item_id", "position", "probability")
SCORE_COLUMNS = ("request_id", "item_id", "score")


def _read(path: Path, columns, what: str) -> pa.Table:
    if not path.is_file():
        raise InputError(f"{what}:{path}: no such file")
    try:
        if path.suffix.lower() in (".csv", ".tsv"):
            from pyarrow import csv

            table = csv.read_csv(path, parse_options=csv.ParseOptions(delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as e:
        raise InputError(f"{what}:{path}: cannot read ({str(e).splitlines()[0]})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(f"{what}:{path}: no column {missing[0]!r} (columns: {', '.join(table.column_names)})")
    return table


def _column(table: pa.Table, name: str, what: str, path: Path, integer: bool) -> np.ndarray:
    col = table.column(name)
    ok = pa.types.is_integer(col.type) if integer else (pa.types.is_integer(col.type) or pa.types.is_floating(col.type))
    if not ok:
        raise InputError(f"{what}:{path}: column {name!r} must hold {'integers' if integer else 'numbers'}, not {col.type}")
    if col.null_count:
        raise InputError(f"{what}:{path}: column {name!r} has {col.null_count} empty (null) values")
    x = pc.cast(col, pa.int64() if integer else pa.float64()).to_numpy(zero_copy_only=False)
    if not integer and not np.all(np.isfinite(x)):
        raise InputError(f"{what}:{path}: column {name!r} is not finite ({x[~np.isfinite(x)][0]!r})")
    return x


def table_targets(fb, path: Path) -> dict:
    """{surface: target} of a ``table:`` file on the log: per request, the probability of the logged item
    at its position (``marginal``), no prefix probabilities (NaN), and the whole distribution
    (``distribution``: candidates [n, C] and probabilities [n, K, C]) for the model's expectation."""
    table = _read(path, TABLE_COLUMNS, "table")
    item = _column(table, "item_id", "table", path, True)
    pos = _column(table, "position", "table", path, True)
    prob = _column(table, "probability", "table", path, False)
    rid = _column(table, "request_id", "table", path, True) if "request_id" in table.column_names else None
    if np.any((prob < 0) | (prob > 1)):
        raise InputError(f"table:{path}: probability {prob[(prob < 0) | (prob > 1)][0]!r} is outside [0, 1]")
    if np.any(pos < 0):
        raise InputError(f"table:{path}: position {pos[pos < 0][0]} is negative (positions are numbered as in the logs, from 0)")
    group = rid if rid is not None else np.zeros(len(item), np.int64)
    keys = np.stack([group, pos, item], axis=1)
    if len(np.unique(keys, axis=0)) != len(keys):
        raise InputError(f"table:{path}: an (item, position{', request' if rid is not None else ''}) is listed twice")
    sums: dict[tuple[int, int], float] = {}
    for g, p, q in zip(group.tolist(), pos.tolist(), prob.tolist()):
        sums[(g, p)] = sums.get((g, p), 0.0) + q
    over = [(g, p, v) for (g, p), v in sums.items() if v > 1 + 1e-9]
    if over:
        g, p, v = over[0]
        where = f" of request {g}" if rid is not None else ""
        raise InputError(f"table:{path}: the probabilities of position {p}{where} sum to {v:.6g}, past 1")
    lookup = {(int(g), int(p), int(i)): float(q) for g, p, i, q in zip(group, pos, item, prob)}
    out = {}
    for name, s in fb.surfaces.items():
        n, K = s.items.shape
        if rid is not None and not np.isin(s.request_id, rid).all():
            missing = s.request_id[~np.isin(s.request_id, rid)][0]
            raise InputError(f"table:{path}: no probabilities for request {missing}")
        C = int(np.diff(s.cand_off).max()) if n else 0
        cands = np.full((n, C), -1, np.int64)
        probs = np.zeros((n, K, C))
        marginal = np.zeros((n, K))
        for i in range(n):
            g = int(s.request_id[i]) if rid is not None else 0
            c = s.cand_flat[s.cand_off[i]: s.cand_off[i + 1]]
            cands[i, : len(c)] = c
            for k in range(K):
                row = [lookup.get((g, k, int(a)), 0.0) for a in c.tolist()]
                probs[i, k, : len(c)] = row
                if s.items[i, k] >= 0:
                    marginal[i, k] = lookup.get((g, k, int(s.items[i, k])), 0.0)
        out[name] = {"items": s.items, "marginal": marginal, "prefix": np.full((n, K), math.nan),
                     "sampled": np.zeros(n, bool), "distribution": (cands, probs)}
    return out


def score_features(fb, path: Path) -> dict:
    """{surface: {"score": values aligned with its candidates}} of a ``scores:`` file (every logged
    candidate must have its score)."""
    table = _read(path, SCORE_COLUMNS, "scores")
    rid = _column(table, "request_id", "scores", path, True)
    item = _column(table, "item_id", "scores", path, True)
    score = _column(table, "score", "scores", path, False)
    lookup = {(int(r), int(i)): float(v) for r, i, v in zip(rid.tolist(), item.tolist(), score.tolist())}
    if len(lookup) != len(rid):
        raise InputError(f"scores:{path}: a (request_id, item_id) is listed twice")
    out = {}
    for name, s in fb.surfaces.items():
        values = np.empty(len(s.cand_flat))
        request = np.repeat(s.request_id, np.diff(s.cand_off))
        for k, (r, i) in enumerate(zip(request.tolist(), s.cand_flat.tolist())):
            v = lookup.get((r, i))
            if v is None:
                raise InputError(f"scores:{path}: no score for item {i} of request {r} (one per logged candidate)")
            values[k] = v
        out[name] = {"score": values}
    return out
