#!/usr/bin/env bash
# Stage-1 (personalised preference alignment) throughput of the supplemental LLM on one GPU.
# Not part of CI and not run by `make bench`; exits 0 with a message where there is no GPU.
#
# The stage-1 trainer (lsvcr/align.py) does not exist yet, so this drives the pieces it will use,
# on synthetic prompts (random token ids, right-padded, response masked as lsvcr.prompts does):
#   lsvcr.llm          causal LM under LoRA + user head (last prompt token) + text projector
#   lsvcr.contrastive  L_LM on the response + L_rec + L_VCC + L_SSC (SR representations stubbed)
# per step: one prompt batch forward/backward, TEXTS_PER_SAMPLE item texts encoded with gradients
# per sample, an AdamW step. The peer, measured interleaved in the same run on the same model:
# the plain Hugging Face LoRA step, model(input_ids, attention_mask, labels).loss.backward().
#
# Usage: bench/align_gpu.sh [LOCAL_HF_CHECKPOINT_DIR]
#   without a checkpoint: a causal LM of realistic size built from a config, random weights
#   (MODEL=qwen2-0.5b (default) | qwen2-1.5b | llama-1b).
# Environment: BATCH=8 PROMPT_LEN=512 RESPONSE_LEN=32 TEXTS_PER_SAMPLE=8 TEXT_LEN=24 STEPS=10
#   DTYPE=bfloat16 MODEL=qwen2-0.5b; ALIGN_BENCH_ALLOW_CPU=1 runs it on the CPU (smoke test only).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

if [[ "${ALIGN_BENCH_ALLOW_CPU:-0}" != "1" ]]; then
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
        echo "align_gpu: no NVIDIA GPU here (nvidia-smi unavailable); nothing to measure."
        exit 0
    fi
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "align_gpu: torch.cuda.is_available() is false (CPU-only torch?); nothing to measure."
        exit 0
    fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

exec "$PY" - "$@" <<'PY'
import os
import statistics
import sys
import time

import torch

from lsvcr.contrastive import lm_loss, stage1_loss
from lsvcr.llm import LLMConfig, build_llm, load_llm

env = lambda name, default: int(os.environ.get(name, default))
B, P, R = env("BATCH", 8), env("PROMPT_LEN", 512), env("RESPONSE_LEN", 32)
T, TL, STEPS = env("TEXTS_PER_SAMPLE", 8), env("TEXT_LEN", 24), env("STEPS", 10)
DTYPE = os.environ.get("DTYPE", "bfloat16")
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)

PRESETS = {  # published shapes; random weights
    "qwen2-0.5b": ("qwen2", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                 num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                                 tie_word_embeddings=True)),
    "qwen2-1.5b": ("qwen2", dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                 num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                                 tie_word_embeddings=True)),
    "llama-1b": ("llama", dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                               num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                               tie_word_embeddings=True)),
    "tiny": ("llama", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, vocab_size=1000)),
}

if len(sys.argv) > 1:
    config = LLMConfig(llm=sys.argv[1], kind="decoder", dtype=DTYPE)
    llm = load_llm(config).to(device)
    what = sys.argv[1]
else:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    name = os.environ.get("MODEL", "qwen2-0.5b")
    arch, sizes = PRESETS[name]
    cfg_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if arch == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    hf_config = cfg_cls(max_position_embeddings=max(4096, P + R), **sizes)
    with torch.device(device):
        model = model_cls(hf_config).to(getattr(torch, DTYPE))
    config = LLMConfig(llm=name, kind="decoder", dtype=DTYPE)
    llm = build_llm(model, None, config).to(device)
    what = f"{name} (random weights)"
llm.train()
vocab = llm.backbone.get_base_model().config.vocab_size
n_params = sum(p.numel() for p in llm.backbone.parameters())
n_train = sum(p.numel() for p in llm.trainable_parameters())
adapter = torch.nn.Linear(config.text_dim, config.user_dim, bias=False, device=device)  # SR stand-in
optimizer = torch.optim.AdamW(llm.trainable_parameters() + list(adapter.parameters()), lr=3e-4)


def synthetic_batch(g):
    prompt_len = torch.randint(P // 2, P + 1, (B,), generator=g)
    length = int(prompt_len.max()) + R
    ids = torch.randint(3, vocab, (B, length), generator=g)
    mask = torch.zeros(B, length, dtype=torch.long)
    labels = torch.full((B, length), -100)
    for i, n in enumerate(prompt_len.tolist()):
        mask[i, : n + R] = 1
        labels[i, n : n + R] = ids[i, n : n + R]
    text_ids = torch.randint(3, vocab, (B * T, TL), generator=g)
    text_mask = (torch.arange(TL) < torch.randint(4, TL + 1, (B * T, 1), generator=g)).long()
    to = lambda x: x.to(device, non_blocking=True)
    return dict(input_ids=to(ids), attention_mask=to(mask), labels=to(labels),
                last_prompt_index=to(prompt_len - 1)), to(text_ids), to(text_mask)


def ours(batch, text_ids, text_mask):
    out = llm(**batch, text_input_ids=text_ids, text_attention_mask=text_mask)
    texts = out.text  # [B*T, 256]
    target = adapter(texts[:B])
    sr_task, sr_cross = adapter(texts[B : 2 * B]), adapter(texts[2 * B : 3 * B])
    losses = stage1_loss(sr_task, sr_cross, out.user, target, lm_loss(out.logits, out.labels))
    losses.total.backward()


def peer(batch, text_ids, text_mask):
    out = llm.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    out.loss.backward()


def timed(step, data):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    step(*data)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    return time.perf_counter() - t0, peak


g = torch.Generator().manual_seed(0)
data = [synthetic_batch(g) for _ in range(3)]
for d in data[:2]:  # warm-up (kernels, allocator)
    timed(ours, d)
    timed(peer, d)
times = {"ours": [], "peer": []}
peaks = {"ours": 0.0, "peer": 0.0}
for i in range(STEPS):  # interleaved
    for name, step in (("ours", ours), ("peer", peer)) if i % 2 == 0 else (("peer", peer), ("ours", ours)):
        dt, peak = timed(step, data[i % len(data)])
        times[name].append(dt)
        peaks[name] = max(peaks[name], peak)

dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
print(f"align_gpu: {what} on {dev_name}, {DTYPE}; {n_params / 1e6:.0f} M parameters, "
      f"{n_train / 1e6:.2f} M trainable (LoRA r {config.lora_r} + heads)")
print(f"  batch {B} prompts of {P // 2}-{P} tokens + {R} response tokens; "
      f"{T} item texts of <= {TL} tokens per sample; {STEPS} interleaved steps each")
med = {k: statistics.median(v) for k, v in times.items()}
print(f"  stage-1 step (LM + user rep + text encoder + L_rec/VCC/SSC): {B / med['ours']:8.1f} samples/s, "
      f"{med['ours'] * 1e3:7.1f} ms/step, peak {peaks['ours']:.1f} GiB (0 on CPU)")
print(f"  peer: plain HF LoRA LM step (labels=...):                    {B / med['peer']:8.1f} samples/s, "
      f"{med['peer'] * 1e3:7.1f} ms/step, peak {peaks['peer']:.1f} GiB")
print(f"  ratio stage-1 / LM-only time: {med['ours'] / med['peer']:.2f}x "
      f"(the stage-1 step also encodes {B * T} item texts)")
PY
