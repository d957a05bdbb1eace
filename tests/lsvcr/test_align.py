"""Stage 1 (lsvcr/align.py): one step with a tiny causal LM and with MiniLM, bit-exact resume, two
gloo ranks equal one process on the global batch, and `lsvcr train --stage all` end to end."""
import json
import math
import os
import re
import socket
from dataclasses import replace

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from typer.testing import CliRunner

from cli import app
from lsvcr import distributed, text
from lsvcr.align import AlignConfig, align, average_gradients, build_aligner, stage2_state, trainable, train_step
from lsvcr.align_data import AlignSamples, rank_slice
from lsvcr.config import LSVCRConfig
from lsvcr.data.layout import read_dataset
from lsvcr.errors import InputError
from lsvcr.policy import ModelPolicy
from lsvcr.evaluate import EvalConfig
from lsvcr.prompts import DEFAULT_TEMPLATES, PromptExample, collate, encode_example, render_prompt
from lsvcr.train import evaluate_model


def build_tiny_lm(directory, ds) -> str:
    """A 2-layer, hidden-32 Llama with a WordLevel tokenizer over the dataset's and templates' words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    split = lambda t: re.findall(r"\w+|[^\w\s]+", t)
    words = set()
    for task, cur in (("video", None), ("comment", "x")):
        for i in (0, 1):
            words |= set(split(render_prompt(PromptExample(task, [("a", "b")], [("a", ["b"])], "r", cur), i)))
    for t in list(ds.titles) + list(ds.comment_texts) + [str(i) for i in range(60)] + ["(none)"]:
        words |= set(split(t))
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "<s>", "</s>", *sorted(words)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                         pad_token_id=0, bos_token_id=2, eos_token_id=3))
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def ds(synthetic_data):
    return read_dataset(synthetic_data)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory, ds):
    return build_tiny_lm(tmp_path_factory.mktemp("tinyllama"), ds)


def tiny_cfg(llm, **kw) -> AlignConfig:
    return AlignConfig(**{"llm": llm, "batch_size": 8, "max_prompt_tokens": 160, "max_steps": 4, **kw})


@pytest.mark.parametrize("which", ["tiny_llama", "minilm"])
def test_one_alignment_step(which, ds, tiny_lm):
    cfg = tiny_cfg(tiny_lm if which == "tiny_llama" else "minilm", max_prompt_tokens=128)
    aligner = build_aligner(ds, cfg)
    decoder = which == "tiny_llama"
    assert aligner.llm.is_decoder == decoder
    assert not aligner.sr.cfg.use_id and aligner.sr.cfg.max_len == 50
    samples = AlignSamples(ds)
    batch = samples.batch(samples.order(0, 0)[: cfg.batch_size], 0, 0)
    assert {"video", "comment"} == set(batch.tasks)  # one batch mixes both tasks
    assert batch.video_hist.shape[1] <= 20 and batch.record_comments.shape[2] <= 3
    vp, real = batch.video_pos, batch.video_hist > 0
    assert int(vp[real].max()) < 50 and bool(((vp[:, 1:] > vp[:, :-1]) | ~real[:, 1:]).all())  # sorted random ids
    # shapes of the LLM call: user [B, 64], item texts [N, 256]
    texts, t_ids, c_ids = aligner._texts(batch)
    encoded = [encode_example(p, aligner.llm.tokenizer, DEFAULT_TEMPLATES, max_length=128, with_response=decoder,
                              template_index=t) for p, t in zip(batch.prompts, batch.templates)]
    out = aligner.llm(**collate(encoded, aligner.llm.tokenizer.pad_token_id))
    assert out.user.shape == (8, 64) and aligner.llm.embed_texts(texts).shape == (len(t_ids) + len(c_ids), 256)
    assert (out.logits is not None) == decoder

    params = list(trainable(aligner).values())
    frozen = {n: p.detach().clone() for n, p in aligner.named_parameters() if not p.requires_grad}
    sr_before = {n: p.detach().clone() for n, p in aligner.sr.named_parameters()}
    assert frozen and all("lora_" not in n for n in frozen)
    opt = torch.optim.AdamW(params, lr=1e-3)
    losses = train_step(aligner, opt, params, batch, 1e-3, seed=0)
    for name, v in losses._asdict().items():
        if name == "lm" and not decoder:
            assert v is None  # an encoder skips L_LM
        else:
            assert v is not None and math.isfinite(float(v)), name
    assert all(torch.equal(p, frozen[n]) for n, p in aligner.named_parameters() if not p.requires_grad)
    assert all(not torch.equal(p, sr_before[n]) for n, p in aligner.sr.named_parameters() if n.startswith(("adapter", "merge")))
    lora_b = [p for n, p in aligner.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # LoRA moved from its zero init


def test_resume_reproduces_the_uninterrupted_run(ds, tiny_lm, tmp_path, monkeypatch):
    cfg = tiny_cfg(tiny_lm, checkpoint_every=2)
    full = align(ds, tmp_path / "full", cfg)
    assert full.steps == 4 and len(full.losses) == 4
    original = AlignSamples.batch

    def crash_at_step_3(self, idx, seed, step):
        if step == 3:
            raise KeyboardInterrupt("simulated crash")
        return original(self, idx, seed, step)

    monkeypatch.setattr(AlignSamples, "batch", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        align(ds, tmp_path / "cut", cfg)
    assert json.loads((tmp_path / "cut" / "checkpoint" / "trainer.json").read_text())["step"] == 2
    assert set(load_file(str(tmp_path / "cut" / "checkpoint" / "optimizer.safetensors")))  # AdamW state as tensors
    monkeypatch.setattr(AlignSamples, "batch", original)
    with pytest.raises(InputError, match="other stage-1 options"):
        align(ds, tmp_path / "cut", replace(cfg, lr=1e-3), resume=True)
    resumed = align(ds, tmp_path / "cut", cfg, resume=True)
    assert resumed.steps == 4 and resumed.losses == full.losses
    for rel in ("sr.safetensors", "llm/text_projector.safetensors", "llm/user_head.safetensors",
                "llm/lora/adapter_model.safetensors", "text_embeddings.safetensors"):
        a, b = load_file(str(tmp_path / "full" / rel)), load_file(str(tmp_path / "cut" / rel))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), rel
    assert not (tmp_path / "cut" / "checkpoint").exists()
    # stage 2 starts from the aligned weights; position tables padded, learned rows copied
    state = stage2_state(tmp_path / "full", LSVCRConfig(max_len=64))
    sr = load_file(str(tmp_path / "full" / "sr.safetensors"))
    assert state["backbone.pos_video.weight"].shape == (64, 64)
    assert torch.equal(state["backbone.pos_video.weight"][:50], sr["pos_video.weight"])
    assert "backbone.video_id.weight" not in state and "project.0.weight" in state


def _ddp_worker(rank, world, port, lm_dir, data_dir, ref):
    torch.set_num_threads(1)
    ds = read_dataset(data_dir)
    cfg = tiny_cfg(lm_dir)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    distributed.init_from_env(backend="gloo")
    try:
        aligner = build_aligner(ds, cfg).eval()  # no dropout: the comparison is exact up to rounding
        samples = AlignSamples(ds)
        batch = samples.batch(samples.order(0, 0)[:8], 0, 0)
        local = batch.slice(*rank_slice(len(batch), rank, world))
        losses = aligner(local)
        losses.total.backward()
        average_gradients(list(trainable(aligner).values()))
        for name, v in losses._asdict().items():
            mean = distributed.all_reduce_mean(v.detach())
            assert torch.allclose(mean.double(), ref[name], atol=1e-5, rtol=1e-5), (name, float(mean), float(ref[name]))
        for n, p in trainable(aligner).items():
            if n in ref["grads"]:
                assert torch.allclose(p.grad, ref["grads"][n], atol=1e-5, rtol=1e-3), n
    finally:
        distributed.shutdown()


def test_two_gloo_ranks_equal_one_process_on_the_global_batch(ds, tiny_lm, synthetic_data):
    assert not distributed.is_distributed()
    aligner = build_aligner(ds, tiny_cfg(tiny_lm)).eval()
    samples = AlignSamples(ds)
    losses = aligner(samples.batch(samples.order(0, 0)[:8], 0, 0))
    losses.total.backward()
    ref = {k: v.detach().double() for k, v in losses._asdict().items()}
    names = [n for n in trainable(aligner) if n.startswith("sr.") or "lora_A" in n or "text_projector" in n or "user_head" in n]
    ref["grads"] = {n: p.grad.clone() for n, p in trainable(aligner).items() if n in names}
    assert ref["lm"] is not None and len(ref["grads"]) > 20
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, tiny_lm, str(synthetic_data), ref), nprocs=2, join=True)


def test_train_stage_all_end_to_end_beats_popularity(synthetic_data, tmp_path):
    run = CliRunner().invoke
    out = tmp_path / "model"
    r = run(app, ["train", "--data", str(synthetic_data), "--out", str(out), "--stage", "all", "--align-steps", "2",
                  "--align-batch-size", "16", "--max-prompt-tokens", "128", "--epochs", "8", "--batch-size", "64", "-q"])
    assert r.exit_code == 0, r.output
    assert "stage 1: 2 steps" in r.output
    aligned = tmp_path / "model-aligned"
    assert {"align.json", "sr.safetensors", "text_embeddings.safetensors", "llm"} <= {p.name for p in aligned.iterdir()}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["tasks"] == ["video", "comment"] and cfg["text_config"]["encoder"] == "aligned:minilm"
    assert json.loads((out / "metrics.json").read_text())["train"]["aligned_from"] == "../model-aligned"  # relative: no absolute paths
    r = run(app, ["evaluate", "--model", str(out), "--data", str(synthetic_data), "--format", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)["tasks"]
    pop = evaluate_model("popularity", synthetic_data, EvalConfig())["tasks"]
    for task in ("video", "comment"):
        assert res[task]["ndcg@10"] > pop[task]["ndcg@10"] + 0.05, (task, res[task], pop[task])
    # serving embeds comments first seen on the platform with the aligned encoder kept in the model dir
    assert (out / "text_encoder" / "llm_config.json").is_file()
    policy = ModelPolicy("lsvcr", out)
    assert policy._encoder_dir == out / "text_encoder"
    ds = read_dataset(synthetic_data)
    titles, comments = text.load_text_embeddings(aligned / text.FILE)
    some = [ds.comment_texts[i] for i in (1, 2, 3)]
    served = text.encode_texts(some, policy.model.text_cfg, llm=text.serving_encoder(policy._encoder_dir))
    torch.testing.assert_close(served, comments[1:4], atol=1e-5, rtol=1e-4)
    assert (text.encode_texts(some, policy.model.text_cfg) - served).abs().max() > 1e-4  # not plain MiniLM
    r = run(app, ["train", "--data", str(synthetic_data), "--out", str(tmp_path / "x"), "--stage", "align", "--no-align"])
    assert r.exit_code == 2


def test_train_defaults_to_both_stages_and_no_align_is_the_ablation(synthetic_data, tmp_path):
    run = CliRunner().invoke
    small = ["--align-steps", "1", "--align-batch-size", "8", "--max-prompt-tokens", "128", "--epochs", "1", "-q"]
    r = run(app, ["train", "--data", str(synthetic_data), "--out", str(tmp_path / "m")] + small)  # no --stage
    assert r.exit_code == 0, r.output
    assert "stage 1: 1 steps" in r.output and (tmp_path / "m-aligned" / "align.json").is_file()
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["tasks"] == ["video", "comment"] and cfg["text_config"]["encoder"] == "aligned:minilm"
    r = run(app, ["train", "--data", str(synthetic_data), "--out", str(tmp_path / "abl"), "--no-align"] + small)
    assert r.exit_code == 0, r.output
    assert "stage 1" not in r.output and not (tmp_path / "abl-aligned").exists()
    assert json.loads((tmp_path / "abl" / "config.json").read_text())["text_config"]["encoder"] != "aligned:minilm"
    r = run(app, ["train", "--data", str(synthetic_data), "--out", str(tmp_path / "s"), "--model", "sasrec", "--epochs", "1", "-q"])
    assert r.exit_code == 0, r.output  # the control has no stage 1: finetune is its default


def test_stage1_position_ids_one_sorted_draw_per_batch_as_official(ds):
    batch = AlignSamples(ds).batch(AlignSamples(ds).order(0, 0)[:32], 0, 0)  # default: "batch"
    for pos, real in ((batch.video_pos, batch.video_hist > 0), (batch.record_pos, batch.record_videos > 0)):
        longest = pos[real.sum(1).argmax()][: int(real.sum(1).max())]
        assert bool((longest[1:] > longest[:-1]).all()) and int(longest.max()) < 50  # sorted, from randperm(50)
        for row, mask in zip(pos, real):
            n = int(mask.sum())
            assert torch.equal(row[:n], longest[:n])  # every row: a prefix of the batch's one draw
        assert int(real.sum(1).max()) > 1 and len({int(m.sum()) for m in real}) > 1  # rows of several lengths
    assert not torch.equal(batch.video_pos, AlignSamples(ds).batch(AlignSamples(ds).order(0, 0)[:32], 0, 1).video_pos)
    per_row = AlignSamples(ds, position_ids="row").batch(AlignSamples(ds).order(0, 0)[:32], 0, 0)
    real = per_row.video_hist > 0
    long_rows = [r[: int(m.sum())] for r, m in zip(per_row.video_pos, real) if int(m.sum()) >= 3]
    assert len({tuple(r[:3].tolist()) for r in long_rows}) > 1  # per row: independent draws
    with pytest.raises(InputError):
        AlignSamples(ds, position_ids="sometimes")


def test_record_augmentation_falls_back_to_the_global_comment_pool(ds):
    import numpy as np

    from lsvcr.contrastive import comment_record_views

    pool = AlignSamples(ds).fallback  # default "global": every comment of the dataset
    assert list(pool) == list(range(1, ds.n_comments))
    assert AlignSamples(ds, record_fallback="none").fallback == ()
    # a record whose video has no comment besides the user's: mixed with as many global comments,
    # dealt alternately to the two views
    llm, sr = comment_record_views([([7, 8], [7, 8])], np.random.default_rng(0), p_sample=1.0, p_record=1.0,
                                   fallback_pool=pool)
    mixed = llm[0] + sr[0]
    assert len(llm[0]) == len(sr[0]) == 2 and {7, 8} <= set(mixed) and len(set(mixed)) == 4
    assert all(1 <= c < ds.n_comments for c in mixed)
    llm, sr = comment_record_views([([7, 8], [7, 8])], np.random.default_rng(0), p_sample=1.0, p_record=1.0)
    assert llm == sr == [[7, 8]]  # without a fallback pool: not augmented
    with pytest.raises(InputError):
        AlignConfig(record_fallback="sometimes")


def test_contrast_pool_accumulates_gradients_over_micro_batches_of_16(ds):
    from lsvcr.align import micro_batches

    cfg = tiny_cfg("minilm", max_prompt_tokens=96)
    assert AlignConfig().contrast_pool == 16 and AlignConfig().batch_size == 128
    samples = AlignSamples(ds)
    batch = samples.batch(samples.order(0, 0)[:32], 0, 0)
    micro = micro_batches(batch, 16)
    assert [len(m) for m in micro] == [16, 16] and torch.equal(micro[1].target, batch.target[16:])
    assert [len(m) for m in micro_batches(batch.slice(0, 17), 16, 0, 2)] == [9]  # a 1-sample tail joins
    assert [len(m) for m in micro_batches(batch, 16, 1, 2)] == [8, 8]  # rank 1 of 2: its half of each pool
    aligner = build_aligner(ds, cfg).eval()  # no dropout: the two ways compare exactly
    params = list(trainable(aligner).values())
    opt = torch.optim.AdamW(params, lr=0.0)
    losses = train_step(aligner, opt, params, micro, 0.0, seed=0)
    got = [p.grad.clone() for p in params]
    opt.zero_grad(set_to_none=True)
    parts = [aligner(m) for m in micro]  # each pool's in-batch losses, gradients averaged
    (0.5 * (parts[0].total + parts[1].total)).backward()
    assert all(torch.allclose(g, p.grad, atol=1e-6, rtol=1e-5) for g, p in zip(got, params))
    assert abs(float(losses.total) - 0.5 * float(parts[0].total + parts[1].total)) < 1e-5
    opt.zero_grad(set_to_none=True)
    aligner(batch).total.backward()  # one pool of 32 is another loss
    assert not all(torch.allclose(g, p.grad, atol=1e-6, rtol=1e-5) for g, p in zip(got, params))


def test_more_ranks_than_the_contrast_pool_are_refused(ds, tmp_path, monkeypatch):
    # each rank keeps a slice of every micro-batch of contrast_pool samples, so 16 (official) caps the
    # data-parallel width at 16 ranks: 10 machines x 8 GPUs need another split (README, Scaling out)
    world = distributed.DistInfo(0, 0, 80, torch.device("cpu"))
    monkeypatch.setattr(distributed, "init_from_env", lambda backend=None: world)
    with pytest.raises(InputError, match=r"the contrast pool \(16\) must hold at least one sample per rank \(80\)"):
        align(ds, tmp_path / "out", AlignConfig())
    assert not (tmp_path / "out").exists()


def test_prompt_budget_is_the_official_one_clamped_to_the_llm(ds, tiny_lm):
    """Defaults: the official 3840 + 256 tokens, clamped to the LLM's position limit (MiniLM 512; the
    tiny Llama 1,024); the response keeps the official 256 unless the budget is small (then half)."""
    from lsvcr.align import prompt_budget

    cfg = AlignConfig()
    assert (cfg.max_prompt_tokens, cfg.max_response_tokens) == (4096, None)
    assert prompt_budget(cfg, None) == (4096, 256)
    assert build_aligner(ds, tiny_cfg("minilm", max_prompt_tokens=4096)).max_tokens == 512
    tiny = build_aligner(ds, tiny_cfg(tiny_lm, max_prompt_tokens=4096))
    assert (tiny.max_tokens, tiny.max_response) == (1024, 256)
    assert prompt_budget(AlignConfig(max_prompt_tokens=160), None) == (160, 80)
    assert prompt_budget(AlignConfig(max_prompt_tokens=160, max_response_tokens=40), 1024) == (160, 40)
    with pytest.raises(InputError, match="must exceed the response budget"):
        AlignConfig(max_prompt_tokens=160, max_response_tokens=200)
    with pytest.raises(InputError, match="leaves no room"):
        prompt_budget(AlignConfig(max_response_tokens=256), 200)


def _losses_and_grads(ds, cfg, batch, threads=1):
    """Stage-1 losses and gradients of one fixed batch, dropout off (eval mode), so ways of computing
    the same step compare exactly."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        aligner = build_aligner(ds, cfg).eval()
        losses = aligner(batch)
        losses.total.backward()
        grads = {n: p.grad.clone() for n, p in trainable(aligner).items()}
    finally:
        torch.set_num_threads(before)
    return {k: float(v) for k, v in losses._asdict().items() if v is not None}, grads


@pytest.mark.parametrize("which", ["tiny_llama", "minilm"])
def test_stage1_speed_levers_leave_the_fixed_batch_losses_unchanged(which, ds, tiny_lm):
    """bench/align_speed.py's levers on one fixed batch against the plain path (one padded group, one
    thread, float32): length groups and two threads to 1e-5 (float rounding of another summation
    order), bf16 autocast to 2e-2 of each loss (bfloat16 keeps 8 significant bits)."""
    llm = tiny_lm if which == "tiny_llama" else "minilm"
    samples = AlignSamples(ds)
    batch = samples.batch(samples.order(0, 0)[:16], 0, 0)
    plain, plain_grads = _losses_and_grads(ds, tiny_cfg(llm, length_buckets=1), batch)
    assert ("lm" in plain) == (which == "tiny_llama")
    for label, cfg, threads, tol in (("4 length groups", tiny_cfg(llm, length_buckets=4), 1, 1e-5),
                                     ("2 threads", tiny_cfg(llm, length_buckets=1), 2, 1e-5),
                                     ("bf16 autocast", tiny_cfg(llm, length_buckets=1, bf16_autocast=True), 1, 2e-2)):
        got, grads = _losses_and_grads(ds, cfg, batch, threads)
        for k, v in plain.items():
            assert got[k] == pytest.approx(v, rel=tol, abs=tol), (label, k)
        if label == "bf16 autocast":  # bfloat16 matmuls did run: the losses moved, within the bound
            assert any(got[k] != v for k, v in plain.items())
        if tol == 1e-5:
            for n, g in plain_grads.items():
                torch.testing.assert_close(grads[n], g, atol=1e-5, rtol=1e-4, msg=f"{label}: {n}")


def test_the_frozen_llm_has_no_dropout_of_its_own_and_lora_keeps_its_own(ds, tiny_lm):
    """As in the paper's ChatGLM3-6B (hidden and attention dropout 0.0): MiniLM's 0.1 is switched off
    (backbone_dropout=False, the default), LoRA's 0.1 stays."""
    from torch import nn

    for llm in ("minilm", tiny_lm):
        model = build_aligner(ds, tiny_cfg(llm)).llm
        base = [m.p for n, m in model.backbone.named_modules() if isinstance(m, nn.Dropout) and "lora_" not in n]
        lora = [m.p for n, m in model.backbone.named_modules() if isinstance(m, nn.Dropout) and "lora_" in n]
        assert lora and set(lora) == {0.1}
        assert all(p == 0.0 for p in base)
        assert all(v == 0.0 for n, m in model.backbone.named_modules() for k, v in vars(m).items()
                   if "dropout" in k and isinstance(v, float))
    on = build_aligner(ds, tiny_cfg("minilm", backbone_dropout=True)).llm
    assert {m.p for n, m in on.backbone.named_modules() if isinstance(m, nn.Dropout) and "lora_" not in n} == {0.1}
