"""Import RecBole atomic files (``NAME.inter`` + ``NAME.item`` with a title field) as a
video-only dataset in the LSVCR layout (`lsvcr data import-recbole`).

Interactions are ordered by timestamp per user (file order on ties) and split leave-one-out like
RecBole: the last item of each user is the test target, the second last the validation target, every
earlier position a training target; histories keep the ``history_len`` most recent items. There are
no comments: ``comment.json`` is empty and the comment task has no examples.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

import atomic
from lsvcr.data.layout import Dataset, Examples, write_dataset
from lsvcr.errors import InputError


def _read_atomic(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header names without their ``:type`` suffix, and the rows (tab separated)."""
    if not path.is_file():
        raise InputError(f"missing RecBole file {path}")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if not header:
                raise InputError(f"{path}: empty file")
            names = [h.split(":")[0] for h in header]
            rows = [r for r in reader if r]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (a RecBole atomic file is tab-separated text)") from None
    except csv.Error as e:
        raise InputError(f"{path}: not a tab-separated RecBole file ({e})") from None
    return names, rows


def _column(names: list[str], wanted: str, path: Path) -> int:
    if wanted not in names:
        raise InputError(f"{path}: no column {wanted!r} (columns: {', '.join(names)})")
    return names.index(wanted)


def import_recbole(inter: str | Path, item: str | Path | None = None, title_field: str | None = None,
                   history_len: int = 50) -> Dataset:
    """``inter``: the ``.inter`` file or a directory holding ``NAME.inter`` and ``NAME.item``."""
    inter = Path(inter)
    if inter.is_dir():
        found = sorted(inter.glob("*.inter"))
        if len(found) != 1:
            raise InputError(f"{inter}: expected exactly one .inter file, found {len(found)}")
        inter = found[0]
    item = Path(item) if item is not None else inter.with_suffix(".item")
    names, rows = _read_atomic(inter)
    iu, ii = _column(names, "user_id", inter), _column(names, "item_id", inter)
    it = names.index("timestamp") if "timestamp" in names else None
    inames, irows = _read_atomic(item)
    iid = _column(inames, "item_id", item)
    if title_field is None:
        cands = [n for n in inames if "title" in n]
        if not cands:
            raise InputError(f"{item}: no title field (columns: {', '.join(inames)}); pass --title-field")
        title_field = cands[0]
    itl = _column(inames, title_field, item)
    titles = {r[iid]: r[itl] if itl < len(r) else "" for r in irows}
    for r in rows:
        if len(r) <= max(iu, ii) or (it is not None and len(r) <= it):
            raise InputError(f"{inter}: malformed row {r!r}")
    items = sorted(set(titles) | {r[ii] for r in rows}, key=lambda x: (len(x), x))
    video_ids = ["[PAD]"] + items
    index = {x: i + 1 for i, x in enumerate(items)}
    by_user: dict[str, list[tuple[float, int, int]]] = {}
    for k, r in enumerate(rows):
        try:
            ts = float(r[it]) if it is not None and r[it] != "" else 0.0
        except ValueError:
            raise InputError(f"{inter} row {k + 2}: timestamp {r[it]!r} is not a number") from None
        if not math.isfinite(ts):
            raise InputError(f"{inter} row {k + 2}: timestamp {r[it]!r} is not finite")
        by_user.setdefault(r[iu], []).append((ts, k, index[r[ii]]))
    out = {s: Examples.empty(False) for s in ("train", "val", "test")}
    for ex in out.values():
        ex.target = []
    for user in sorted(by_user, key=lambda x: (len(x), x)):
        seq = [v for _, _, v in sorted(by_user[user])]
        n = len(seq)
        for j in range(1, n):
            split = "test" if (j == n - 1 and n >= 3) else "val" if (j == n - 2 and n >= 3) else "train"
            ex = out[split]
            ex.users.append(user)
            ex.target.append(seq[j])
            ex.video_hist.append(np.array(seq[max(0, j - history_len): j], np.int64))
            ex.record_videos.append(np.zeros(0, np.int64))
            ex.record_comments.append([])
    for ex in out.values():
        ex.target = np.array(ex.target, np.int64)
    if not len(out["train"]):
        raise InputError(f"{inter}: no user has two interactions; nothing to train on")
    empty = {s: Examples.empty(True) for s in ("train", "val", "test")}
    meta = {"source": "recbole", "inter": str(inter), "item": str(item), "title_field": title_field,
            "interactions": len(rows)}
    return Dataset(video_ids, ["[PAD]"], [""] + [titles.get(x, "") for x in items], [""],
                   [np.zeros(0, np.int64) for _ in video_ids], {"video": out, "comment": empty}, meta)


def import_and_write(inter: str | Path, out: str | Path, item: str | Path | None = None,
                     title_field: str | None = None, history_len: int = 50, overwrite: bool = False) -> Dataset:
    """`lsvcr data import-recbole`: ``import_recbole`` written (atomically) into ``out``; returned for its
    stats. An existing ``out`` is replaced only with ``overwrite``, and never when it holds an input."""
    atomic.check_output(out, inputs=[inter, item], overwrite=overwrite)
    ds = import_recbole(inter, item, title_field, history_len)
    write_dataset(ds, out, replace=overwrite)
    return ds
