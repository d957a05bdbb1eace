"""Atomic publication of files and directories (standard library only; any package may import it).

A reader of a path sees the old version or the new one, never a half-written one: everything is
written under a temporary name in the destination's own directory (``.NAME.XXXXXXXX.tmp``: hidden,
on the same file system, so the final rename is atomic) and renamed into place when complete. If
anything fails before that, the temporary is removed and the destination is left as it was.

    write_bytes(path, data)          write_text(path, text)
    with writing(path) as tmp: ...   for libraries that write to a path themselves (pyarrow, safetensors,
                                     duckdb): ``tmp`` does not exist yet; whatever is at ``tmp`` when the
                                     block ends is renamed to ``path``
    with publishing_dir(path) as d:  an empty temporary directory to fill; renamed to ``path`` when the
                                     block ends, replacing an old directory there only then
    publish_dir(src, dst)            what publishing_dir does at the end: move the finished directory
                                     ``src`` to ``dst``; an old ``dst`` is removed only once ``src`` is in place
                                     (``replace=False``: publish only into a missing or empty ``dst``)

``tmp`` ends in ``.tmp``: name the format explicitly to a library that would infer it from the
extension (DuckDB's ``COPY ... TO`` needs ``(FORMAT parquet)``; ``numpy.save`` would append ``.npy``).

Keywords ``parents`` and ``fsync`` are off by default: ``parents=True`` creates missing parent directories first;
``fsync=True`` also flushes the data and the directory entry to disk (durability across a power cut;
atomicity towards other readers does not need it). Temporaries get the permissions that ``open`` and
``mkdir`` give under the process's umask.
"""
from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["publish_dir", "publishing_dir", "write_bytes", "write_text", "writing"]


def write_bytes(path: str | os.PathLike, data: bytes, *, parents: bool = False, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically."""
    with writing(path, parents=parents, fsync=fsync) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", *, parents: bool = False,
               fsync: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (``encoding``, newlines as given)."""
    write_bytes(path, text.encode(encoding), parents=parents, fsync=fsync)


@contextmanager
def writing(path: str | os.PathLike, *, parents: bool = False, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` (not yet created); on leaving the block without an
    exception, rename what was written there to ``path``; on an exception, remove it."""
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    if fsync:
        _fsync(path.parent)


@contextmanager
def publishing_dir(path: str | os.PathLike, *, replace: bool = True, parents: bool = False,
                   fsync: bool = False) -> Iterator[Path]:
    """Yield a new empty directory beside ``path``; on leaving the block without an exception, publish
    it as ``path`` (``publish_dir``); on an exception, remove it and leave ``path`` as it was."""
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_dir(path)
    try:
        yield tmp
        publish_dir(tmp, path, replace=replace, fsync=fsync)
    except BaseException:
        _remove(tmp)
        raise


def publish_dir(src: str | os.PathLike, dst: str | os.PathLike, *, replace: bool = True,
                fsync: bool = False) -> None:
    """Move the finished directory ``src`` to ``dst`` (same file system). An existing ``dst`` directory
    is first moved aside, and deleted only once ``src`` is in place; if the move fails it is put back.
    With ``replace=False`` an existing ``dst`` must be empty (else FileExistsError, and ``src`` stays).
    Raises NotADirectoryError when ``dst`` exists and is not a directory."""
    src, dst = Path(src), Path(dst)
    if fsync:
        for root, _, files in os.walk(src):
            for name in files:
                _fsync(Path(root) / name)
            _fsync(Path(root))
    if not os.path.lexists(dst):
        os.rename(src, dst)
    else:
        if not dst.is_dir():
            raise NotADirectoryError(f"{dst} exists and is not a directory")
        if not replace and any(dst.iterdir()):
            raise FileExistsError(f"{dst} exists and is not empty")
        aside = _temp_dir(dst)  # a fresh directory to hold the old one, so no name can clash
        os.rename(dst, aside / dst.name)
        try:
            os.rename(src, dst)
        except BaseException:
            os.rename(aside / dst.name, dst)
            aside.rmdir()
            raise
        shutil.rmtree(aside, ignore_errors=True)
    if fsync:
        _fsync(dst.parent)


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")  # unique across processes and hosts


def _temp_dir(path: Path) -> Path:
    while True:
        tmp = _temp_name(path)
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue


def _remove(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
