"""`lsvcr data import-obd`: the Open Bandit Dataset sample of obp 0.5.7's source distribution (fetched by
`make test` into .venv/obp-sdist) as logged feedback, checked against its CSVs read with the csv module;
BTS's table against obp's algorithm written as a plain loop; bad folders through the CLI."""
from __future__ import annotations

import csv
import datetime
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from abtest.offline import obd
from abtest.offline.feedback import read_feedback
from cli import app

ROOT = Path(__file__).resolve().parents[2]
SDIST = Path(os.environ.get("OBP_SDIST_DIR") or ROOT / ".venv" / "obp-sdist" / "obp-0.5.7")
OBD = SDIST / "obp" / "dataset" / "obd"
PRIOR = SDIST / "obp" / "policy" / "conf" / "prior_bts.yaml"
FOLDERS = [(p, c) for p in obd.POLICIES for c in obd.CAMPAIGNS]
pytestmark = pytest.mark.skipif(not OBD.is_dir(), reason=f"obp 0.5.7's source distribution is not in {SDIST.parent} "
                                                        "(`make test` fetches it: make obd)")
runner = CliRunner()


def source_rows(policy: str, campaign: str) -> list[dict]:
    with open(OBD / policy / campaign / f"{campaign}.csv", newline="") as f:
        return list(csv.DictReader(f))


def n_items(policy: str, campaign: str) -> int:
    with open(OBD / policy / campaign / "item_context.csv", newline="") as f:
        return len(list(csv.DictReader(f)))


@pytest.mark.parametrize("policy, campaign", FOLDERS)
def test_the_import_round_trips_the_source_csv(tmp_path, policy, campaign):
    """Rows, item ids, positions (the CSV's 1..3 as 0..2), propensities, timestamps, clicks per item and
    position, and the user-item affinities as each candidate's feature."""
    out = obd.import_obd(OBD / policy / campaign, tmp_path / "logs", n_sim=2000).out
    rows = source_rows(policy, campaign)
    n, A = len(rows), n_items(policy, campaign)
    fb = read_feedback(out)
    assert fb.logging_policy == policy and fb.meta["campaign"] == campaign and fb.unit == "request"
    assert fb.n_units == n == 10_000 and list(fb.surfaces) == ["feed"]
    s = fb.surfaces["feed"]
    src = {int(r[""]): r for r in rows}
    assert sorted(s.request_id.tolist()) == sorted(src)
    shown = (s.items >= 0).sum(axis=1)
    assert np.all(shown == 1)  # one shown item per request, at its logged position
    pos = np.argmax(s.items >= 0, axis=1)
    item = s.items[np.arange(len(s)), pos]
    prop = s.marginal[np.arange(len(s)), pos]
    click = s.rewards["click"][np.arange(len(s)), pos]
    for k, rid in enumerate(s.request_id.tolist()):
        r = src[rid]
        assert (item[k], pos[k] + 1, click[k]) == (int(r["item_id"]), int(r["position"]), float(r["click"]))
        assert prop[k] == float(r["propensity_score"])
        when = datetime.datetime.fromisoformat(r["timestamp"]).timestamp()
        assert abs(s.ts[k] - when) < 1e-6
        cands = s.candidates(k)
        assert cands.tolist() == list(range(A))
        affinity = s.features["affinity"][s.cand_off[k]: s.cand_off[k + 1]]
        assert affinity.tolist() == [float(r[f"user-item_affinity_{a}"]) for a in range(A)]
    clicks = Counter((int(r["item_id"]), int(r["position"]) - 1) for r in rows if r["click"] == "1")
    shows = Counter((int(r["item_id"]), int(r["position"]) - 1) for r in rows)
    assert Counter((int(a), int(p)) for a, p, c in zip(item, pos, click) if c == 1) == clicks
    assert Counter(zip(item.tolist(), pos.tolist())) == shows
    assert sum(clicks.values()) == int(s.rewards["click"].sum())
    items = pq.read_table(out / "items.parquet").column("item_id").to_pylist()
    assert items == list(range(A))


def test_the_same_folder_gives_the_same_bytes(tmp_path):
    a = obd.import_obd(OBD / "random" / "men", tmp_path / "a", n_sim=1000).out
    b = obd.import_obd(OBD / "random" / "men", tmp_path / "b", n_sim=1000).out
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 7 and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


@pytest.fixture(scope="module")
def bts_men(tmp_path_factory):
    """bts/men imported through the CLI with the defaults (100,000 draws, seed 12345)."""
    out = tmp_path_factory.mktemp("obd") / "bts-men"
    r = runner.invoke(app, ["data", "import-obd", str(OBD / "bts" / "men"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "10,000 rows, 69 clicks" in r.stdout and "logged by bts" in r.stdout and "policies/bts.parquet" in r.stdout
    return out


def obp_loop(alpha, beta, n_sim: int, seed: int, len_list: int = 3) -> np.ndarray:
    """obp 0.5.7's BernoulliTS.compute_batch_action_dist written out: one beta draw per simulation,
    counts of the argsort's last len_list items."""
    rng = np.random.RandomState(seed)
    count = np.zeros((len(alpha), len_list))
    reward_counts, action_counts = np.zeros(len(alpha)), np.zeros(len(alpha), dtype=int)
    for _ in range(n_sim):
        theta = rng.beta(a=reward_counts + list(alpha), b=(action_counts - reward_counts) + list(beta))
        selected = theta.argsort()[::-1][:len_list]
        for pos in range(len_list):
            count[selected[pos], pos] += 1
    return count / n_sim


def read_table(path: Path) -> np.ndarray:
    t = pq.read_table(path).to_pydict()
    assert list(t) == ["item_id", "position", "probability"]
    dist = np.full((max(t["item_id"]) + 1, 3), np.nan)
    dist[t["item_id"], t["position"]] = t["probability"]
    return dist


def test_the_bts_table_is_obps_algorithm_draw_for_draw(bts_men):
    with open(PRIOR) as f:
        text = f.read()
    assert "men:" in text
    alpha, beta = obd.read_prior(PRIOR, "men", 34)
    dist = read_table(bts_men / "policies" / "bts.parquet")
    np.testing.assert_allclose(dist.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    assert np.array_equal(dist, obp_loop(alpha, beta, obd.N_SIM, obd.SEED))  # bit for bit
    meta = json.loads((bts_men / "meta.json").read_text())
    assert meta["policies"]["bts"] == {"n_sim": obd.N_SIM, "seed": obd.SEED, "prior": "prior_bts.yaml"}
    # the prior decides: BTS's favourite at the top is the item with the highest prior mean
    assert int(np.argmax(dist[:, 0])) == int(np.argmax(alpha / (alpha + beta)))
    rand = read_table(bts_men / "policies" / "random.parquet")
    assert np.all(rand == 1 / 34)


def test_other_seeds_and_campaigns_match_the_loop():
    for campaign, A in (("all", 80), ("women", 46)):
        alpha, beta = obd.read_prior(PRIOR, campaign, A)
        for seed in (0, 7):
            assert np.array_equal(obd.bts_distribution(alpha, beta, n_sim=3000, seed=seed),
                                  obp_loop(alpha, beta, 3000, seed))


def test_ips_on_the_imported_logs_equals_the_formula_on_the_csv(bts_men):
    """The offline comparison on the import: BTS's logs valued under the random policy's table, by IPS
    over the CSV's rows (mean of (1/34) / propensity_score · click), and the logged click rate."""
    rows = source_rows("bts", "men")
    ips = np.mean([(1 / 34) / float(r["propensity_score"]) * float(r["click"]) for r in rows])
    r = runner.invoke(app, ["abtest", "offline", "--logs", str(bts_men), "--control", "logged", "--treatment",
                            f"table:{bts_men / 'policies' / 'random.parquet'}", "--metric", "click",
                            "--estimator", "ips", "--format", "json"])
    assert r.exit_code == 0, r.output
    (m,) = json.loads(r.stdout)["metrics"]
    assert m["treatment_mean"] == pytest.approx(ips, rel=1e-12)
    assert m["control_mean"] == pytest.approx(69 / 10_000, rel=1e-12)


def copy_folder(tmp_path: Path, policy: str = "random", campaign: str = "men") -> Path:
    """A writable copy of one folder, laid out as obp's (so the prior is found beside it)."""
    root = tmp_path / "obp"
    shutil.copytree(OBD / policy / campaign, root / "dataset" / "obd" / policy / campaign)
    (root / "policy" / "conf").mkdir(parents=True)
    shutil.copy(PRIOR, root / "policy" / "conf" / "prior_bts.yaml")
    return root / "dataset" / "obd" / policy / campaign


def rewrite_csv(folder: Path, change) -> None:
    path = folder / f"{folder.name}.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows = change(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def drop_column(name):
    def change(rows):
        k = rows[0].index(name)
        return [r[:k] + r[k + 1:] for r in rows]
    return change


def set_value(name, row, value):
    def change(rows):
        rows[row + 1][rows[0].index(name)] = value
        return rows
    return change


BAD = {
    "missing folder": (lambda d: shutil.rmtree(d), "no such directory"),
    "not an OBD folder": (lambda d: d.rename(d.parent / "elsewhere"), "not an Open Bandit Dataset folder"),  # → the new path
    "no item_context.csv": (lambda d: (d / "item_context.csv").unlink(), "item_context.csv: missing"),
    "a column missing": (lambda d: rewrite_csv(d, drop_column("propensity_score")), "no column 'propensity_score'"),
    "a propensity of 0": (lambda d: rewrite_csv(d, set_value("propensity_score", 5, "0")),
                          "row 5: propensity_score 0.0 is outside (0, 1]"),
    "an empty propensity": (lambda d: rewrite_csv(d, set_value("propensity_score", 3, "")),
                            "column 'propensity_score' has 1 empty values"),
    "an unknown item": (lambda d: rewrite_csv(d, set_value("item_id", 2, "34")), "row 2: item_id 34 is not in item_context.csv"),
    "position 0": (lambda d: rewrite_csv(d, set_value("position", 1, "0")), "row 1: position 0 is not one of 1 .. 3"),
    "a click of 2": (lambda d: rewrite_csv(d, set_value("click", 0, "2")), "row 0: click 2.0 is not 0 or 1"),
    "a bad timestamp": (lambda d: rewrite_csv(d, set_value("timestamp", 0, "yesterday")), "column 'timestamp' must hold times"),
    "no prior": (lambda d: shutil.rmtree(d.parents[3] / "policy"), "pass --prior"),
    "a prior of the wrong length": (lambda d: (d.parents[3] / "policy" / "conf" / "prior_bts.yaml").write_text(
        "men:\n  alpha: [1.0, 2.0]\n  beta: [1.0, 2.0]\n"), "has 2 alphas and 2 betas for 34 items"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_each_bad_folder_is_one_line_and_exit_2(tmp_path, name):
    spoil, message = BAD[name]
    folder = copy_folder(tmp_path)
    moved = spoil(folder)
    folder = moved if isinstance(moved, Path) else folder
    r = runner.invoke(app, ["data", "import-obd", str(folder), "--out", str(tmp_path / "logs")])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and message in r.stderr, r.stderr
    assert not (tmp_path / "logs").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_existing_out_needs_overwrite(tmp_path):
    folder = copy_folder(tmp_path)
    out = tmp_path / "logs"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    args = ["data", "import-obd", str(folder), "--out", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "already exists and is not empty" in r.stderr and (out / "mine.txt").is_file()
    r = runner.invoke(app, args + ["--overwrite"])
    assert r.exit_code == 0, r.output
    assert not (out / "mine.txt").exists() and read_feedback(out).logging_policy == "random"
    r = runner.invoke(app, ["data", "import-obd", str(folder), "--out", str(folder.parent), "--overwrite"])
    assert r.exit_code == 2 and "holds the input" in r.stderr and (folder / "men.csv").is_file()
