"""The LoRA-wrapped LLM: tiny causal LMs built from configs (saved and loaded offline like any local
checkpoint) and the packaged MiniLM encoder."""
import json
import re

import pytest
import torch

from lsvcr.contrastive import lm_loss
from lsvcr.errors import InputError
from lsvcr.llm import LLMConfig, TextProjector, last_prompt_hidden, load_llm, mean_pool, model_path
from lsvcr.prompts import PromptExample, collate, encode_example, render_prompt

EXAMPLES = [
    PromptExample("video", [("cats jump", "so cute"), ("dogs run", "fast dog")], [("cats jump", ["love it"])], "birds fly"),
    PromptExample("comment", [("dogs run", "fast dog")], [], "great video", current_video="cats jump"),
    PromptExample("video", [("birds fly", "wow")] * 5, [("dogs run", ["fast", "dog"])] * 3, "cats jump high"),
]
TEXTS = ["cats jump", "a dog runs fast and far", "", "birds"]


def build_tiny_causal_lm(directory, arch):
    """A 2-layer, hidden-32 causal LM with random weights and a WordLevel tokenizer, saved locally."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    words = set()
    for ex in EXAMPLES:
        for i in (0, 1):
            words |= set(re.findall(r"\w+|[^\w\s]+", render_prompt(ex, i) + " " + ex.response))
    for text in TEXTS:
        words |= set(text.split())
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "<s>", "</s>", *sorted(words)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>", eos_token="</s>"
    )
    sizes = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                 pad_token_id=0, bos_token_id=2, eos_token_id=3)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**sizes)) if arch == "llama" else Qwen2ForCausalLM(Qwen2Config(**sizes))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny_lm(request, tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="module")
def minilm():
    return load_llm(LLMConfig())


def prompt_batch(llm, side, with_response=True):
    encoded = [encode_example(ex, llm.tokenizer, template_index=i % 2, with_response=with_response) for i, ex in enumerate(EXAMPLES)]
    return encoded, collate(encoded, llm.tokenizer.pad_token_id, side)


def test_causal_lm_shapes_and_default_lora_targets(tiny_lm):
    llm = load_llm(LLMConfig(llm=tiny_lm))
    assert llm.is_decoder and llm.hidden_size == 32
    wrapped = {n.split(".")[-1] for n, m in llm.backbone.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    lora = llm.backbone.peft_config["default"]
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (8, 32, 0.1)
    encoded, batch = prompt_batch(llm, "right")
    out = llm(**batch)
    start = int(batch["last_prompt_index"].min())
    assert out.user.shape == (3, 64)
    assert out.logits.shape == (3, batch["input_ids"].shape[1] - start, llm.backbone.config.vocab_size)
    assert out.labels.shape == out.logits.shape[:2]
    assert llm.embed_texts(TEXTS).shape == (4, 256)
    with torch.no_grad():  # texts in length groups: the same embeddings as one padded batch
        llm.eval()
        torch.testing.assert_close(llm.embed_texts(TEXTS, buckets=3), llm.embed_texts(TEXTS), atol=1e-6, rtol=1e-5)
        llm.tokenizer.padding_side = "left"  # as many decoder tokenizers ship: texts are still right-padded
        assert llm.tokenize_texts(TEXTS)["attention_mask"][:, 0].all()
        torch.testing.assert_close(llm.embed_texts(TEXTS, buckets=3), llm.embed_texts(TEXTS), atol=1e-6, rtol=1e-5)
        llm.tokenizer.padding_side = "right"
    emb = llm.encode_texts(TEXTS, batch_size=3)
    assert emb.shape == (4, 256) and emb.dtype == torch.float32 and not emb.requires_grad
    assert llm.encode_texts(TEXTS, pooled=True).shape == (4, 32)


def test_user_representation_and_lm_loss_are_the_same_under_left_and_right_padding(tiny_lm):
    llm = load_llm(LLMConfig(llm=tiny_lm)).eval()
    encoded, right = prompt_batch(llm, "right")
    _, left = prompt_batch(llm, "left")
    assert not torch.equal(right["last_prompt_index"], left["last_prompt_index"])
    with torch.no_grad():
        out_r, out_l = llm(**right), llm(**left)
        alone = torch.cat([llm(**collate([e], 0)).user for e in encoded])
        # the full causal LM's own logits, no slicing: the sliced LM loss must agree
        position_ids = (right["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        full = llm.backbone(input_ids=right["input_ids"], attention_mask=right["attention_mask"], position_ids=position_ids).logits
    torch.testing.assert_close(out_r.user, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out_l.user, alone, atol=1e-5, rtol=1e-4)
    loss = lm_loss(out_r.logits, out_r.labels)
    torch.testing.assert_close(loss, lm_loss(full, right["labels"]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, lm_loss(out_l.logits, out_l.labels), atol=1e-5, rtol=1e-5)


def test_last_prompt_hidden_picks_the_indexed_token():
    hidden = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    picked = last_prompt_hidden(hidden, torch.tensor([1, 4]))
    assert torch.equal(picked, torch.stack([hidden[0, 1], hidden[1, 4]]))
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 1, 1, 1]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.stack([hidden[0, :2].mean(0), hidden[1, 2:].mean(0)]))


def test_lora_step_moves_only_adapters_and_heads(tiny_llama, tmp_path):
    llm = load_llm(LLMConfig(llm=tiny_llama)).train()
    frozen = {n: p.detach().clone() for n, p in llm.named_parameters() if not p.requires_grad}
    assert frozen and all("lora_" not in n for n in frozen)
    trainable = dict((n, p.detach().clone()) for n, p in llm.named_parameters() if p.requires_grad)
    assert all("lora_" in n or n.startswith(("text_projector.", "user_head.")) for n in trainable)
    opt = torch.optim.AdamW(llm.trainable_parameters(), lr=1e-2)
    _, batch = prompt_batch(llm, "right")
    out = llm(**batch)
    loss = lm_loss(out.logits, out.labels) + out.user.pow(2).mean() + llm.embed_texts(TEXTS).pow(2).mean()
    loss.backward()
    with_grad = {n for n, p in llm.named_parameters() if p.grad is not None}
    assert with_grad <= set(trainable)
    assert any("lora_B" in n for n in with_grad) and any(n.startswith("text_projector.") for n in with_grad)
    opt.step()
    for n, p in llm.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert any(not torch.equal(p, trainable[n]) for n, p in llm.named_parameters() if "lora_B" in n)

    # what stage 2 needs survives a save and reload
    llm.save(tmp_path / "llm")
    again = load_llm(LLMConfig(llm=tiny_llama), trained=tmp_path / "llm")
    torch.testing.assert_close(again.encode_texts(TEXTS), llm.encode_texts(TEXTS))
    projector = TextProjector.from_safetensors(tmp_path / "llm" / "text_projector.safetensors")
    pooled = llm.encode_texts(TEXTS, pooled=True)
    torch.testing.assert_close(projector(pooled), llm.encode_texts(TEXTS), atol=1e-6, rtol=1e-5)
    assert LLMConfig.from_dict(json.loads((tmp_path / "llm" / "llm_config.json").read_text())) == llm.llm_config


def test_a_saved_adapter_names_the_configured_model_not_its_install_path(tmp_path):
    """The aligned directory is the same bytes in any checkout: peft's adapter config records the
    base model as the config names it ("minilm"), not where the package was installed."""
    llm = load_llm(LLMConfig())
    llm.save(tmp_path / "llm")
    cfg = json.loads((tmp_path / "llm" / "lora" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == LLMConfig().llm == "minilm"
    for f in (tmp_path / "llm").rglob("*"):
        if f.is_file() and f.suffix in (".json", ".md", ".txt"):
            assert "site-packages" not in f.read_text(), f
    again = load_llm(LLMConfig(), trained=tmp_path / "llm")
    torch.testing.assert_close(again.encode_texts(TEXTS), llm.encode_texts(TEXTS))


def test_minilm_encoder(minilm):
    assert not minilm.is_decoder and minilm.hidden_size == 384
    # every linear layer of the 6 blocks, r 8: 4 of 384x384 (query, key, value, attention output) and the
    # two FFN layers 384x1536 / 1536x384 -> 6 * (4 * 8 * (384 + 384) + 2 * 8 * (384 + 1536)); not the pooler
    wrapped = sorted({n.split(".layer.")[-1].split(".", 1)[-1] for n, m in minilm.backbone.named_modules() if hasattr(m, "lora_A")})
    assert wrapped == ["attention.output.dense", "attention.self.key", "attention.self.query", "attention.self.value",
                       "intermediate.dense", "output.dense"]
    assert sum(p.numel() for n, p in minilm.named_parameters() if "lora_" in n) == 6 * (4 * 8 * 768 + 2 * 8 * 1920) == 331_776
    encoded, batch = prompt_batch(minilm, "right", with_response=False)
    assert all(e.prompt_length == len(e.input_ids) for e in encoded)  # the encoder never sees the response
    with torch.no_grad():
        out = minilm.eval()(**batch)  # labels included: an encoder returns no logits
    assert out.user.shape == (3, 64) and out.logits is None and out.labels is None
    # absolute position embeddings: left padding must not shift the positions of the real tokens
    _, left = prompt_batch(minilm, "left", with_response=False)
    with torch.no_grad():
        torch.testing.assert_close(minilm(**left).user, out.user, atol=1e-5, rtol=1e-4)
    emb = minilm.encode_texts(TEXTS, batch_size=2)
    assert emb.shape == (4, 256) and emb.dtype == torch.float32
    torch.testing.assert_close(emb, minilm.encode_texts(TEXTS, batch_size=1), atol=1e-5, rtol=1e-4)


def test_minilm_pooled_features_are_the_base_models_mean_pool(minilm):
    from transformers import AutoModel, AutoTokenizer

    path = model_path("minilm")
    base, tok = AutoModel.from_pretrained(path, local_files_only=True), AutoTokenizer.from_pretrained(path, local_files_only=True)
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = base(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    expected = (hidden * m).sum(1) / m.sum(1)  # fresh LoRA (B = 0) leaves the base model's output
    torch.testing.assert_close(minilm.encode_texts(TEXTS, pooled=True), expected, atol=1e-5, rtol=1e-4)


def test_loading_errors(tmp_path, tiny_llama):
    with pytest.raises(InputError, match="not found"):
        load_llm(LLMConfig(llm=str(tmp_path / "nope")))
    with pytest.raises(InputError, match="no config.json"):
        load_llm(LLMConfig(llm=str(tmp_path)))
    glm = tmp_path / "glm"
    glm.mkdir()
    (glm / "config.json").write_text(json.dumps({"model_type": "chatglm", "auto_map": {"AutoConfig": "x.Y"}}))
    with pytest.raises(InputError, match="trust_remote_code"):
        load_llm(LLMConfig(llm=str(glm)))
    with pytest.raises(InputError, match="cannot apply LoRA"):
        load_llm(LLMConfig(llm=tiny_llama, target_modules=("no_such_module",)))


@pytest.mark.parametrize(
    "fields", [{"lora_r": 0}, {"lora_dropout": 1.0}, {"kind": "seq2seq"}, {"dtype": "int8"}, {"target_modules": ()}, {"llm": ""}]
)
def test_config_validation(fields):
    with pytest.raises(InputError):
        LLMConfig(**fields)


def test_config_round_trips_through_json():
    config = LLMConfig(llm="/models/qwen", target_modules=["q_proj", "v_proj"], dtype="bfloat16")
    assert config.target_modules == ("q_proj", "v_proj")
    assert LLMConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
