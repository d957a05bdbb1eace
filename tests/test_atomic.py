"""atomic.py: a failure mid-write leaves the old file or directory intact and no temporaries behind."""
from __future__ import annotations

import os

import pytest

import atomic


class Boom(Exception):
    pass


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_bytes_and_text_replace(tmp_path):
    path = tmp_path / "a.bin"
    atomic.write_bytes(path, b"one")
    atomic.write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    atomic.write_text(tmp_path / "b.txt", "héllo\n")
    assert (tmp_path / "b.txt").read_bytes() == "héllo\n".encode()
    assert names(tmp_path) == ["a.bin", "b.txt"]


def test_parents_and_fsync(tmp_path):
    path = tmp_path / "x" / "y" / "f.json"
    with pytest.raises(FileNotFoundError):
        atomic.write_text(path, "{}")
    atomic.write_text(path, "{}", parents=True, fsync=True)
    assert path.read_text() == "{}"
    with atomic.publishing_dir(tmp_path / "p" / "d", parents=True, fsync=True) as d:
        (d / "f").write_text("x")
    assert (tmp_path / "p" / "d" / "f").read_text() == "x"


def test_failure_mid_write_keeps_old_file(tmp_path):
    path = tmp_path / "events.parquet"
    path.write_bytes(b"old")
    with pytest.raises(Boom):
        with atomic.writing(path) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".events.parquet.") and not tmp.exists()
            tmp.write_bytes(b"half")
            raise Boom
    assert path.read_bytes() == b"old"
    assert names(tmp_path) == ["events.parquet"]


def test_writing_renames_what_the_library_wrote(tmp_path):
    path = tmp_path / "t.txt"
    with atomic.writing(path) as tmp:
        with open(tmp, "w") as f:  # a library that opens the path itself
            f.write("new")
        assert not path.exists()
    assert path.read_text() == "new" and names(tmp_path) == ["t.txt"]


def test_writing_cleans_up_a_directory_a_library_left(tmp_path):
    with pytest.raises(Boom):
        with atomic.writing(tmp_path / "ds") as tmp:
            tmp.mkdir()
            (tmp / "part-0").write_text("x")
            raise Boom
    assert names(tmp_path) == []


def test_directory_publish_new_and_replace(tmp_path):
    out = tmp_path / "model"
    with atomic.publishing_dir(out) as d:
        assert d.parent == tmp_path and d.is_dir() and not out.exists()
        (d / "config.json").write_text("1")
    assert names(out) == ["config.json"] and (out / "config.json").read_text() == "1"
    with atomic.publishing_dir(out) as d:
        (d / "model.safetensors").write_text("2")
        assert names(out) == ["config.json"]  # the old one stays readable until the new one is complete
    assert names(out) == ["model.safetensors"]
    assert names(tmp_path) == ["model"]


def test_directory_failure_keeps_old_dir(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "meta.json").write_text("old")
    with pytest.raises(Boom):
        with atomic.publishing_dir(out) as d:
            (d / "meta.json").write_text("half")
            raise Boom
    assert names(out) == ["meta.json"] and (out / "meta.json").read_text() == "old"
    assert names(tmp_path) == ["data"]


def test_publish_dir_puts_the_old_one_back_when_the_rename_fails(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "a").write_text("old")
    real = os.rename

    def rename(src, dst):
        if str(dst) == str(out) and "run." in os.path.basename(str(src)):  # the new directory moving in
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    monkeypatch.setattr(atomic, "_renameat2", None)  # the portable path: old directory aside, new one in
    with pytest.raises(OSError, match="disk full"):
        with atomic.publishing_dir(out) as d:
            (d / "a").write_text("new")
    assert (out / "a").read_text() == "old"
    assert names(tmp_path) == ["run"]


def test_publish_dir_into_empty_or_missing_and_not_onto_a_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    (tmp_path / "empty").mkdir()
    atomic.publish_dir(src, tmp_path / "empty")
    assert names(tmp_path / "empty") == ["f"] and not src.exists()
    (tmp_path / "file").write_text("keep")
    with pytest.raises(NotADirectoryError):
        atomic.publish_dir(tmp_path / "empty", tmp_path / "file")
    assert (tmp_path / "file").read_text() == "keep" and names(tmp_path / "empty") == ["f"]


def test_publish_without_replace_only_into_missing_or_empty(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with atomic.publishing_dir(out, replace=False) as d:  # empty: taken
        (d / "events.parquet").write_text("1")
    with pytest.raises(atomic.OutputError):
        with atomic.publishing_dir(out, replace=False) as d:
            (d / "events.parquet").write_text("2")
    assert (out / "events.parquet").read_text() == "1" and names(tmp_path) == ["run"]


@pytest.mark.skipif(atomic._renameat2 is None, reason="renameat2 is Linux-only")
def test_replacing_a_directory_exchanges_names_in_one_step(tmp_path, monkeypatch):
    """With renameat2(RENAME_EXCHANGE) no moment exists at which the destination is missing: os.rename,
    which the portable path uses to move the old directory aside, is never called."""
    out = tmp_path / "model"
    out.mkdir()
    (out / "old").write_text("1")

    def rename(src, dst):
        raise AssertionError(f"rename {src} -> {dst}")

    monkeypatch.setattr(atomic.os, "rename", rename)
    with atomic.publishing_dir(out) as d:
        (d / "new").write_text("2")
    assert names(out) == ["new"] and names(tmp_path) == ["model"]


def test_temporaries_of_a_dead_writer_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = [tmp_path / f".out.{dead.pid}-{atomic._HOST}-0badc0de.tmp",  # a killed run's file and directory
            tmp_path / f".run.{dead.pid}-{atomic._HOST}-0badc0de.tmp"]
    left[0].write_text("half")
    left[1].mkdir()
    (left[1] / "events.parquet").write_text("half")
    live = tmp_path / f".out.{os.getpid()}-{atomic._HOST}-0badc0de.tmp"  # a writer still running: kept
    other_host = tmp_path / f".out.{dead.pid}-ffffff-0badc0de.tmp"  # another host's process: unknown, kept
    live.write_text("x")
    other_host.write_text("x")
    atomic.write_text(tmp_path / "out", "new")
    with atomic.publishing_dir(tmp_path / "run") as d:
        (d / "events.parquet").write_text("new")
    assert names(tmp_path) == sorted(["out", "run", live.name, other_host.name])


def test_check_output_refuses_what_would_lose_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "rec.train.json").write_text("{}")
    with pytest.raises(atomic.OutputError, match="is the input"):
        atomic.check_output(data, inputs=[data], overwrite=True)
    with pytest.raises(atomic.OutputError, match="holds the input"):
        atomic.check_output(tmp_path, inputs=[data], overwrite=True)
    with pytest.raises(atomic.OutputError, match="pass --overwrite"):
        atomic.check_output(data)
    with pytest.raises(atomic.OutputError, match="or remove it"):
        atomic.check_output(data, overwrite=None)
    atomic.check_output(data, overwrite=True)  # asked for
    atomic.check_output(data / "new", inputs=[tmp_path / "other"])  # missing: fine
    (tmp_path / "empty").mkdir()
    atomic.check_output(tmp_path / "empty")
    (tmp_path / "report.md").write_text("mine")
    with pytest.raises(atomic.OutputError):
        atomic.check_output(tmp_path / "report.md")
