"""Dataset build from a simulation, the official layout's validation, pickle opt-in, RecBole import."""
import json
import pickle
import shutil

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import app
from lsvcr.data.build import build_and_write, build_dataset
from lsvcr.data.layout import read_dataset, write_dataset
from lsvcr.data.recbole import import_and_write, import_recbole
from lsvcr.errors import InputError


def test_build_ids_and_splits(tiny_sim_run, tiny_sim_data):
    ds = read_dataset(tiny_sim_data)
    videos = pq.read_table(tiny_sim_run / "videos.parquet").column("video_id").to_pylist()
    comments = pq.read_table(tiny_sim_run / "comments.parquet")
    assert ds.video_ids[0] == "[PAD]" and sorted(ds.video_ids[1:], key=int) == [str(v) for v in sorted(videos)]
    assert ds.n_comments - 1 == comments.num_rows
    # comment_list: every comment under its own video, most liked first
    likes = dict(zip(map(str, comments.column("comment_id").to_pylist()), comments.column("like_count").to_pylist()))
    owner = dict(zip(map(str, comments.column("comment_id").to_pylist()), map(str, comments.column("video_id").to_pylist())))
    for v, cl in enumerate(ds.comment_lists[1:], 1):
        ids = [ds.comment_ids[c] for c in cl]
        assert all(owner[c] == ds.video_ids[v] for c in ids)
        assert [likes[c] for c in ids] == sorted((likes[c] for c in ids), reverse=True)
    assert set(ds.tasks) == {"video", "comment"}
    for task in ("video", "comment"):
        val, test = ds.splits[task]["val"], ds.splits[task]["test"]
        assert len(test) > 0 and len(set(test.users)) == len(test.users)  # one test target per user
        assert set(val.users) == set(test.users)
    # leave-last-out: the validation target is the last item of the test history
    rv, rt = ds.splits["video"]["val"], ds.splits["video"]["test"]
    for u, t in zip(rv.users, rv.target):
        i = rt.users.index(u)
        assert rt.video_hist[i][-1] == t


def test_no_test_or_val_target_inside_any_training_history(tiny_sim_data):
    ds = read_dataset(tiny_sim_data)
    held_videos, held_records = {}, {}
    for split in ("val", "test"):
        ex = ds.splits["video"][split]
        for u, t in zip(ex.users, ex.target):
            held_videos.setdefault(u, set()).add(int(t))
        ex = ds.splits["comment"][split]
        for u, t in zip(ex.users, ex.target):
            held_records.setdefault(u, set()).add(int(t))
    checked = 0
    for task in ("video", "comment"):
        tr = ds.splits[task]["train"]
        for n, u in enumerate(tr.users):
            assert not set(tr.video_hist[n].tolist()) & held_videos.get(u, set())
            assert not set(tr.record_videos[n].tolist()) & held_records.get(u, set())
            checked += 1
    assert checked > 100
    # and a training target is never a held-out target of the same user
    tr = ds.splits["video"]["train"]
    assert not any(int(t) in held_videos.get(u, set()) for u, t in zip(tr.users, tr.target))


def test_video_history_holds_long_plays_only(tiny_sim_run, tiny_sim_data):
    """The paper's video history is the user's positively engaged videos: long plays. A video whose
    comments the user read or liked after a short play is a comment record, not a video positive."""
    import duckdb

    ds = read_dataset(tiny_sim_data)
    long_plays = set(duckdb.sql(
        f"SELECT DISTINCT CAST(e.user_id AS VARCHAR), CAST(e.video_id AS VARCHAR) FROM '{tiny_sim_run}/events.parquet' e "
        f"JOIN '{tiny_sim_run}/videos.parquet' v USING (video_id) "
        f"WHERE CAST(e.event AS VARCHAR) = 'play' AND e.value >= 0.8 * v.duration_s").fetchall())
    seen, records_without_long_play = 0, 0
    for split in ("train", "val", "test"):
        ex = ds.splits["video"][split]
        for n, u in enumerate(ex.users):
            for v in [*ex.video_hist[n].tolist(), int(ex.target[n])]:
                assert (str(u), ds.video_ids[v]) in long_plays
                seen += 1
        ex = ds.splits["comment"][split]
        for n, u in enumerate(ex.users):
            records_without_long_play += sum((str(u), ds.video_ids[v]) not in long_plays for v in ex.record_videos[n].tolist())
    assert seen > 100
    assert records_without_long_play > 0  # the definition matters on this run


def test_build_is_deterministic_and_round_trips(tiny_sim_run, tiny_sim_data, tmp_path):
    again = write_dataset(build_dataset(tiny_sim_run), tmp_path / "again")
    for name in ("rec.train.json", "comm_rank.test.json", "photo.json", "all_comments.json"):
        assert (again / name).read_bytes() == (tiny_sim_data / name).read_bytes()
    assert read_dataset(again).stats() == read_dataset(tiny_sim_data).stats()
    ds = build_and_write(tiny_sim_run, tmp_path / "cmd")  # what `lsvcr data build` calls: built, written, returned
    assert (tmp_path / "cmd" / "rec.train.json").read_bytes() == (tiny_sim_data / "rec.train.json").read_bytes()
    assert ds.fingerprint() == read_dataset(tmp_path / "cmd").fingerprint()


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _rewrite_first_line(path, fn):
    lines = path.read_text().splitlines()
    lines[0] = json.dumps(fn(json.loads(lines[0])))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case, message", [
    ("missing", "missing dataset file"),
    ("unknown_video", "unknown video id '999999999'"),
    ("unknown_comment", "unknown comment id 'nope'"),
    ("empty_history", "empty history"),
    ("bad_json", "not valid JSON"),
    ("no_pad", "index 0 of the id list"),
])
def test_validation_errors(synthetic_data, tmp_path, case, message):
    d = _copy(synthetic_data, tmp_path / "d")
    if case == "missing":
        (d / "comm_rank.val.json").unlink()
    elif case == "unknown_video":
        _rewrite_first_line(d / "rec.test.json", lambda r: {**r, "target_photo": 999999999})
    elif case == "unknown_comment":
        _rewrite_first_line(d / "comm_rank.train.json", lambda r: {**r, "pos_comments": ["nope"]})
    elif case == "empty_history":
        _rewrite_first_line(d / "rec.train.json", lambda r: {**r, "photo_inter_his": [], "comment_inter_his": [[], []]})
    elif case == "bad_json":
        (d / "rec.val.json").write_text("{not json\n")
    elif case == "no_pad":
        (d / "all_photos.json").write_text(json.dumps(json.loads((d / "all_photos.json").read_text())[1:]))
    with pytest.raises(InputError, match=message):
        read_dataset(d)
    r = CliRunner().invoke(app, ["evaluate", "--model", "popularity", "--data", str(d)])
    assert r.exit_code == 2, r.output
    assert message.split("'")[0] in r.output


def test_pickled_id_lists_need_the_opt_in(synthetic_data, tmp_path):
    d = _copy(synthetic_data, tmp_path / "d")
    for stem in ("all_photos", "all_comments"):
        ids = json.loads((d / f"{stem}.json").read_text())
        (d / f"{stem}.json").unlink()
        (d / f"{stem}.pkl").write_bytes(pickle.dumps(ids))
    with pytest.raises(InputError, match="--allow-pickle"):
        read_dataset(d)
    assert read_dataset(d, allow_pickle=True).fingerprint() == read_dataset(synthetic_data).fingerprint()
    r = CliRunner().invoke(app, ["evaluate", "--model", "popularity", "--data", str(d)])
    assert r.exit_code == 2 and "--allow-pickle" in r.output
    r = CliRunner().invoke(app, ["evaluate", "--model", "popularity", "--data", str(d), "--allow-pickle", "--format", "json"])
    assert r.exit_code == 0, r.output


def test_build_cli_errors_exit_2(tmp_path):
    r = CliRunner().invoke(app, ["data", "build", str(tmp_path / "nope"), "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and "does not exist" in r.output
    (tmp_path / "run").mkdir()
    r = CliRunner().invoke(app, ["data", "build", str(tmp_path / "run"), "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and "missing" in r.output


def test_recbole_import(tmp_path):
    (tmp_path / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t5\t{t}\n" for u in (1, 2) for t, i in enumerate([10, 11, 12, 13][: 2 + 2 * (u == 1)][::-1]))
        + "3\t10\t4\t5\n")
    (tmp_path / "toy.item").write_text("item_id:token\tmovie_title:token_seq\n10\tAlien\n11\tHeat\n12\tFargo\n13\tBrazil\n14\tUnseen\n")
    ds = import_recbole(tmp_path)
    assert ds.n_videos == 6 and ds.titles[ds.video_ids.index("12")] == "Fargo" and ds.tasks == ("video",)
    title = lambda ex, n: [ds.video_ids[i] for i in ex.video_hist[n]] + ["->", ds.video_ids[ex.target[n]]]
    # user 1 saw 13, 12, 11, 10 in time order: train 13->12, val ..->11, test ..->10; user 2: 11->10 train only
    assert title(ds.splits["video"]["test"], 0) == ["13", "12", "11", "->", "10"]
    assert title(ds.splits["video"]["val"], 0) == ["13", "12", "->", "11"]
    assert sorted(ds.splits["video"]["train"].users) == ["1", "2"]
    d = write_dataset(ds, tmp_path / "data")
    assert read_dataset(d).tasks == ("video",)
    assert import_and_write(tmp_path, tmp_path / "d1").fingerprint() == read_dataset(tmp_path / "d1").fingerprint() == ds.fingerprint()
    r = CliRunner().invoke(app, ["data", "import-recbole", str(tmp_path / "toy.inter"), "--out", str(tmp_path / "d2")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["data", "import-recbole", str(tmp_path / "missing.inter"), "--out", str(tmp_path / "d3")])
    assert r.exit_code == 2 and "missing RecBole file" in r.output
