"""Training beats popularity; model directories round-trip bit-exactly and refuse the wrong data;
the CLI end to end on a real tiny simulation."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cli import app
from lsvcr.checkpoint import load_model
from lsvcr.data.layout import read_dataset
from lsvcr.errors import InputError
from lsvcr.evaluate import EvalConfig, ModelScorer, Popularity, evaluate
from lsvcr.train import evaluate_model


@pytest.mark.parametrize("protocol", ["sampled100", "full"])
def test_tiny_training_beats_popularity_on_both_tasks(synthetic_data, trained, protocol):
    cfg = EvalConfig(protocol=protocol)
    pop = evaluate_model("popularity", synthetic_data, cfg)["tasks"]
    lsvcr = evaluate_model(str(trained["lsvcr"]), synthetic_data, cfg)["tasks"]
    sasrec = evaluate_model(str(trained["sasrec"]), synthetic_data, cfg)
    for task in ("video", "comment"):
        assert lsvcr[task]["ndcg@10"] > pop[task]["ndcg@10"] + 0.05, (task, lsvcr[task], pop[task])
    assert sasrec["tasks"]["video"]["ndcg@10"] > pop["video"]["ndcg@10"] + 0.05
    assert sasrec["fallback"] == {"comment": "popularity"}  # the control ranks comments by popularity
    assert sasrec["tasks"]["comment"] == pop["comment"]


@pytest.mark.parametrize("kind", ["sasrec", "lsvcr"])
def test_save_load_round_trip_is_bit_exact(synthetic_data, trained, kind, tmp_path):
    ds = read_dataset(synthetic_data)
    model, cfg = load_model(trained[kind], ds)
    saved = load_file(str(trained[kind] / "model.safetensors"))
    state = model.state_dict()
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) for k in saved)
    # a second save of the loaded model writes identical bytes, and scores are identical
    from lsvcr.checkpoint import save_model_dir

    save_model_dir(tmp_path / "again", model, cfg)
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (trained[kind] / "model.safetensors").read_bytes()
    again, _ = load_model(tmp_path / "again", ds)
    e = EvalConfig(protocol="full")
    a = evaluate(ModelScorer(model, tuple(cfg["tasks"]), Popularity(ds)), ds, e)
    b = evaluate(ModelScorer(again, tuple(cfg["tasks"]), Popularity(ds)), ds, e)
    assert a == b
    assert json.loads((trained[kind] / "config.json").read_text())["model"] == kind
    assert not list(trained[kind].parent.glob("*.tmp"))


def test_wrong_dataset_or_shapes_fail_clearly(trained, tiny_sim_data, synthetic_data, tmp_path):
    with pytest.raises(InputError, match="trained on another dataset"):
        load_model(trained["lsvcr"], read_dataset(tiny_sim_data))
    r = CliRunner().invoke(app, ["evaluate", "--model", str(trained["sasrec"]), "--data", str(tiny_sim_data)])
    assert r.exit_code == 2 and "another dataset" in r.output
    bad = shutil.copytree(trained["sasrec"], tmp_path / "bad")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_config"]["hidden"] = 32
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="weights do not fit the config"):
        load_model(bad)
    r = CliRunner().invoke(app, ["evaluate", "--model", str(tmp_path / "nope"), "--data", str(synthetic_data)])
    assert r.exit_code == 2


def test_cli_end_to_end_on_a_tiny_simulation(tiny_sim_run, tmp_path):
    run = CliRunner().invoke
    r = run(app, ["data", "build", str(tiny_sim_run), "--out", str(tmp_path / "data")])
    assert r.exit_code == 0, r.output
    assert "rec.train" in r.output and "comm_rank.test" in r.output
    for model, task in (("sasrec", "video"), ("lsvcr", "comment")):
        r = run(app, ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / model), "--model", model,
                      "--task", task, "--epochs", "2", "--batch-size", "128", "-q"] + (["--no-align"] if model == "lsvcr" else []))
        assert r.exit_code == 0, r.output
        assert {"config.json", "model.safetensors", "metrics.json"} <= {p.name for p in (tmp_path / model).iterdir()}
        for protocol in ("sampled100", "full"):
            r = run(app, ["evaluate", "--model", str(tmp_path / model), "--data", str(tmp_path / "data"),
                          "--protocol", protocol, "--format", "json"])
            assert r.exit_code == 0, r.output
            res = json.loads(r.output)
            assert set(res["tasks"]) == {"video", "comment"}
            assert all(0.0 <= v <= 1.0 for t in res["tasks"].values() for k, v in t.items() if k != "n")
    assert (tmp_path / "lsvcr" / "text_embeddings.safetensors").is_file()
    r = run(app, ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "x"), "--model", "sasrec", "--task", "comment"])
    assert r.exit_code == 2 and "video task only" in r.output
