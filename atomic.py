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
    check_output(path, inputs=...)   before a command does its work: refuse (``OutputError``) an output that
                                     is, or holds, one of the command's inputs, and one that exists (a
                                     non-empty directory, or a file) unless the user asked to overwrite it

Temporaries carry their writer's process id and host (``.NAME.PID-HOST-RANDOM.tmp``): a run that was
killed leaves them behind, and the next write to the same ``NAME`` from this host removes those whose
process is gone (a live writer's are never touched).

``tmp`` ends in ``.tmp``: name the format explicitly to a library that would infer it from the
extension (DuckDB's ``COPY ... TO`` needs ``(FORMAT parquet)``; ``numpy.save`` would append ``.npy``).

Keywords ``parents`` and ``fsync`` are off by default: ``parents=True`` creates missing parent directories first;
``fsync=True`` also flushes the data and the directory entry to disk (durability across a power cut;
atomicity towards other readers does not need it). Temporaries get the permissions that ``open`` and
``mkdir`` give under the process's umask.
"""
from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["OutputError", "check_output", "publish_dir", "publishing_dir", "write_bytes", "write_text", "writing"]


class OutputError(FileExistsError):
    """Refused: writing the output would lose something the user has (the message names it)."""


def check_output(path: str | os.PathLike, *, inputs=(), overwrite: bool | None = False, flag: str = "--out") -> None:
    """Refuse to write ``path`` where that would lose data, before any work is done:

    * never when ``path`` is one of ``inputs`` or a folder holding one (even with ``overwrite``);
    * unless ``overwrite``, not when ``path`` is a file or a non-empty directory already
      (``overwrite=None``: the command has no ``--overwrite``, and the message does not offer it).

    ``flag`` names the option in the message. Raises ``OutputError``."""
    path = Path(path)
    where = path.resolve()
    for item in inputs:
        if item is None:
            continue
        source = Path(item).resolve()
        if source == where or where in source.parents:
            what = "is" if source == where else "holds"
            raise OutputError(f"{flag} {path} {what} the input {item}: writing there would destroy it; choose another {flag}")
    if not os.path.lexists(path) or overwrite:
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    remedy = "or remove it" if overwrite is None else "or pass --overwrite to replace it"
    raise OutputError(f"{flag} {path} already exists and is not empty: choose another {flag}, {remedy}")


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
    remove_stale(path)
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
    remove_stale(path)
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
    With ``replace=False`` an existing ``dst`` must be empty (else ``OutputError``, and ``src`` stays).
    Raises NotADirectoryError when ``dst`` exists and is not a directory. Where the file system can
    exchange two names in one step (Linux ``renameat2``), a reader of ``dst`` never finds it missing."""
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
            raise OutputError(f"{dst} already exists and is not empty")
        if _exchange(src, dst):  # src now holds the old directory
            shutil.rmtree(src, ignore_errors=True)
            if fsync:
                _fsync(dst.parent)
            return
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


_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _temp_name(path: Path) -> Path:
    """``.NAME.PID-HOST-RANDOM.tmp``: unique across processes and hosts, and its owner is known."""
    return path.with_name(f".{path.name}.{os.getpid()}-{_HOST}-{secrets.token_hex(4)}.tmp")


def remove_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` left by killed writers on this host; returns what it removed."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        owner = tmp.name[len(path.name) + 2: -len(".tmp")].split("-")
        if len(owner) != 3 or owner[1] != _HOST or not owner[0].isdigit() or _alive(int(owner[0])):
            continue
        _remove(tmp)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


_RENAME_EXCHANGE = 2
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (AttributeError, OSError):  # not Linux with glibc >= 2.28
    _renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one step (Linux); False where the system cannot."""
    if _renameat2 is None:
        return False
    at_fdcwd = -100
    return _renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0


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
