"""Model directories: ``config.json`` + ``model.safetensors`` (+ ``text_embeddings.safetensors``,
``metrics.json``). No pickle anywhere. A directory is written under a temp name and renamed into
place once complete (atomic.publishing_dir)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

import atomic
from lsvcr import text
from lsvcr.config import dumps, from_dict, to_dict
from lsvcr.data.layout import Dataset
from lsvcr.errors import InputError
from lsvcr.files import load_tensors, read_json
from lsvcr.recommender import LSVCRRecommender, top_comments
from lsvcr.sasrec import SASRec

FORMAT_VERSION = 1
IDS_FILE = "ids.json"
TEXT_ENCODER_DIR = "text_encoder"  # the aligned LLM's adapter (stage 1), to embed texts first seen in serving


def describe(model: torch.nn.Module, dataset: Dataset, finetune_cfg, tasks: tuple[str, ...]) -> dict:
    kind = "lsvcr" if isinstance(model, LSVCRRecommender) else "sasrec"
    out = {"format_version": FORMAT_VERSION, "model": kind, "tasks": list(tasks),
           "model_config": to_dict(model.cfg), "finetune": to_dict(finetune_cfg),
           "dataset": {"fingerprint": dataset.fingerprint(), "n_videos": dataset.n_videos,
                       "n_comments": dataset.n_comments}}
    if kind == "lsvcr":
        out["text_config"] = to_dict(model.text_cfg)
    return out


def save_model_dir(out: str | Path, model: torch.nn.Module, config: dict, metrics: dict | None = None,
                   dataset: Dataset | None = None, text_encoder: str | Path | None = None,
                   timings: dict | None = None, replace: bool = False) -> Path:
    """Write the model directory; with ``dataset``, also its id lists (``ids.json``), which serving
    (lsvcr.policy) needs to map platform ids to the model's rows; with ``text_encoder`` (an aligned
    dir's ``llm/``: LoRA adapter, text MLP, config — not the base weights), a copy of it in
    ``text_encoder/``, so that texts first seen in serving are embedded as in training.
    ``timings`` (wall-clock seconds, throughput) go to ``timings.json``, apart from the results, so
    that every other file is the same bytes in two runs with one seed. An existing non-empty ``out``
    is replaced only with ``replace`` (else ``atomic.OutputError``)."""
    out = Path(out)
    with atomic.publishing_dir(out, replace=replace, parents=True) as tmp:
        if dataset is not None:
            (tmp / IDS_FILE).write_text(json.dumps({"video_ids": dataset.video_ids,
                                                    "comment_ids": dataset.comment_ids,
                                                    "build": dataset.meta.get("build")}))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format_version": str(FORMAT_VERSION)})
        if isinstance(model, LSVCRRecommender):
            text.save_text_embeddings(tmp / text.FILE, model.title_text.cpu(), model.comment_text.cpu(),
                                      config["dataset"]["fingerprint"], model.text_cfg)
        if text_encoder is not None:
            shutil.copytree(text_encoder, tmp / TEXT_ENCODER_DIR)
        (tmp / "config.json").write_text(dumps(config))
        if metrics is not None:
            (tmp / "metrics.json").write_text(dumps(metrics))
        if timings is not None:
            (tmp / "timings.json").write_text(dumps(timings))
    return out


def read_config(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise InputError(f"{model_dir} is not a model directory (no config.json)")
    cfg = read_json(path)
    if not isinstance(cfg, dict) or cfg.get("model") not in ("lsvcr", "sasrec"):
        raise InputError(f"{path}: unknown model {cfg.get('model') if isinstance(cfg, dict) else cfg!r}")
    for key in ("model_config", "dataset", "tasks"):
        if key not in cfg:
            raise InputError(f"{path}: missing field {key!r}")
    d = cfg["dataset"]
    if not (isinstance(d, dict) and all(isinstance(d.get(k), int) and not isinstance(d.get(k), bool)
                                        for k in ("n_videos", "n_comments")) and isinstance(d.get("fingerprint"), str)):
        raise InputError(f"{path}: dataset must hold the integers n_videos, n_comments and the string fingerprint")
    return cfg


def load_model(model_dir: str | Path, dataset: Dataset | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model from its directory; with ``dataset``, check it was trained on these ids."""
    model_dir = Path(model_dir)
    cfg = read_config(model_dir)
    d = cfg["dataset"]
    if dataset is not None and dataset.fingerprint() != d["fingerprint"]:
        raise InputError(f"{model_dir} was trained on another dataset ({d['n_videos'] - 1} videos, "
                         f"{d['n_comments'] - 1} comments, ids {d['fingerprint']}); this one has "
                         f"{dataset.n_videos - 1} videos, {dataset.n_comments - 1} comments, ids {dataset.fingerprint()}")
    mcfg = from_dict(cfg["model_config"], f"{model_dir / 'config.json'} model_config")
    if cfg["model"] == "sasrec":
        model = SASRec(mcfg, d["n_videos"])
    else:
        tcfg = from_dict(cfg["text_config"], f"{model_dir / 'config.json'} text_config")
        popular = torch.zeros(d["n_videos"], 3, dtype=torch.long)
        if dataset is not None:
            popular = top_comments(dataset.comment_lists)
        model = LSVCRRecommender(mcfg, tcfg, d["n_videos"], d["n_comments"], popular)
    wpath = model_dir / "model.safetensors"
    state = load_tensors(wpath, "model weights")
    if isinstance(model, LSVCRRecommender) and any(k.startswith("comment_model.") for k in state):
        model.attach_comment_model(LSVCRRecommender(mcfg, tcfg, d["n_videos"], d["n_comments"], popular.clone()))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise InputError(f"{wpath}: weights do not fit the config ({first})") from None
    if isinstance(model, LSVCRRecommender):
        titles, comments = text.load_text_embeddings(model_dir / text.FILE, d["fingerprint"])
        if titles.shape != model.title_text.shape or comments.shape != model.comment_text.shape:
            raise InputError(f"{model_dir / text.FILE}: shapes {tuple(titles.shape)}, {tuple(comments.shape)} "
                             f"do not fit {d['n_videos']} videos, {d['n_comments']} comments")
        model.set_text(titles, comments)
    return model.eval(), cfg
