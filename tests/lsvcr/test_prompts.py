"""Prompt templates, rendering, truncation and padding (a whitespace tokenizer keeps counts exact)."""
import json

import numpy as np
import pytest

from lsvcr.errors import InputError
from lsvcr.prompts import (
    DEFAULT_TEMPLATES,
    IGNORE_INDEX,
    PromptExample,
    PromptTemplates,
    collate,
    encode_example,
    load_templates,
    render_prompt,
)

BOS, EOS = 1, 2


class WordTokenizer:
    """One id per whitespace-separated word; BOS in front when special tokens are asked for."""

    eos_token_id = EOS
    all_special_ids = [0, BOS, EOS]

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def _encode(self, text, special):
        ids = [self.vocab.setdefault(w, len(self.vocab) + 3) for w in text.split()]
        return [BOS] + ids if special else ids

    def __call__(self, text, add_special_tokens=True):
        if isinstance(text, list):
            return {"input_ids": [self._encode(t, add_special_tokens) for t in text]}
        return {"input_ids": self._encode(text, add_special_tokens)}

    def decode(self, ids):
        inverse = {i: w for w, i in self.vocab.items()}
        return " ".join(inverse.get(i, f"<{i}>") for i in ids)


def example(task="video", n_videos=3, n_records=2, response="target title words"):
    return PromptExample(
        task=task,
        video_history=[(f"v{i}", f"pc{i}") for i in range(n_videos)],
        comment_history=[(f"r{i}", [f"uc{i}a", f"uc{i}b"]) for i in range(n_records)],
        response=response,
        current_video="now watching" if task == "comment" else None,
    )


def test_two_templates_per_task_differ_only_in_which_history_comes_first():
    for task in ("video", "comment"):
        first, second = DEFAULT_TEMPLATES.for_task(task)
        assert first.index("{video_history}") < first.index("{comment_history}")
        assert second.index("{comment_history}") < second.index("{video_history}")
        question = "Based on both histories"
        assert first[first.index(question):] == second[second.index(question):]
    assert "{current_video}" in DEFAULT_TEMPLATES.comment_task[0]


def test_render_numbers_history_lines_oldest_first():
    text = render_prompt(example("comment"), 0)
    assert "1. v0 | popular comment: pc0\n2. v1 | popular comment: pc1\n3. v2" in text
    assert "1. r0 | the user's comments: uc0a; uc0b\n2. r1" in text
    assert "now watching" in text
    assert "(none)" in render_prompt(example(n_records=0), 1)


def test_templates_from_json_and_toml(tmp_path):
    video = ["V {video_history} C {comment_history} next?", "C {comment_history} V {video_history} next?"]
    comment = [t.replace("next?", "on {current_video}?") for t in video]
    (tmp_path / "t.json").write_text(json.dumps({"video_task": video, "comment_task": comment}))
    loaded = load_templates(tmp_path / "t.json")
    assert loaded.video_task == tuple(video) and loaded.video_line == DEFAULT_TEMPLATES.video_line
    (tmp_path / "t.toml").write_text(
        f"video_task = {json.dumps(video)}\ncomment_task = {json.dumps(comment)}\n"
        'record_line = "{title}: {comments} {{literal}}"\n'
    )
    loaded = load_templates(tmp_path / "t.toml")
    assert loaded.comment_task == tuple(comment)
    ex = PromptExample("video", [("a", "b")], [("t", ["x"])], "r")
    assert "t: x {literal}" in render_prompt(ex, 0, loaded)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"video_task": ["{video_history}"] * 2, "comment_task": ["x"] * 2}, "missing placeholder"),
        ({"video_task": ["{video_history} {comment_history} {oops}"] * 2, "comment_task": ["x"] * 2}, "unknown placeholder"),
        ({"video_task": ["{video_history} {comment_history}"], "comment_task": ["x"] * 2}, "exactly two"),
        ({"comment_task": ["{video_history}"] * 2}, "missing key 'video_task'"),
        ({"video_task": ["{video_history} {comment_history} {"] * 2, "comment_task": ["x"] * 2}, "malformed"),
        ({"video_task": ["{video_history!r} {comment_history}"] * 2, "comment_task": ["x"] * 2}, "plain name"),
        ({"video_task": [], "comment_task": [], "extra": 1}, "unknown key"),
    ],
)
def test_bad_template_files_raise_input_error(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message):
        load_templates(path)


def test_template_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_templates(tmp_path / "missing.json")
    (tmp_path / "t.yaml").write_text("x: 1")
    with pytest.raises(InputError, match=".json or .toml"):
        load_templates(tmp_path / "t.yaml")
    (tmp_path / "t.toml").write_text("video_task = [")
    with pytest.raises(InputError, match="cannot parse"):
        load_templates(tmp_path / "t.toml")
    with pytest.raises(InputError):
        PromptTemplates(video_line="{title}")


def test_labels_mask_the_prompt_and_keep_response_with_end_token():
    tok = WordTokenizer()
    enc = encode_example(example(), tok, template_index=0)
    response = tok("target title words", add_special_tokens=False)["input_ids"] + [EOS]
    assert enc.input_ids[enc.prompt_length:] == response
    assert enc.labels == [IGNORE_INDEX] * enc.prompt_length + response
    assert enc.input_ids[0] == BOS
    assert tok.decode(enc.input_ids[enc.prompt_length - 1 : enc.prompt_length]) == "user:"


def test_without_response_for_encoders():
    enc = encode_example(example(), WordTokenizer(), template_index=0, with_response=False)
    assert enc.prompt_length == len(enc.input_ids) and set(enc.labels) == {IGNORE_INDEX}


def test_truncation_drops_oldest_lines_first_and_never_the_response():
    tok = WordTokenizer()
    ex = example(n_videos=12, n_records=4, response="the whole response must survive intact")
    full = encode_example(ex, tok, template_index=0)
    enc = encode_example(ex, tok, template_index=0, max_length=len(full.input_ids) - 20, max_response_tokens=16)
    assert len(enc.input_ids) <= len(full.input_ids) - 20
    assert enc.input_ids[enc.prompt_length:] == full.input_ids[full.prompt_length:]  # response untouched
    text = tok.decode(enc.input_ids[: enc.prompt_length])
    kept_v, kept_r = enc.n_video_lines, enc.n_record_lines
    assert kept_v < 12 and kept_r <= 4
    dropped_v = 12 - kept_v
    # the newest lines survive, renumbered from 1; the oldest are gone
    assert all(f"v{i} " not in text for i in range(dropped_v))
    assert all(f"v{i} " in text for i in range(dropped_v, 12))
    assert f"1. v{dropped_v} " in text
    assert all(f"r{i} " in text for i in range(4 - kept_r, 4))
    # the instruction's question is still there
    assert "recommend the next video for this user:" in text
    # nothing is dropped when everything fits
    assert encode_example(ex, tok, template_index=0, max_length=len(full.input_ids)) == full


def test_truncation_with_no_history_left_keeps_the_question_tail():
    tok = WordTokenizer()
    ex = example(n_videos=2, n_records=1, response="r")
    enc = encode_example(ex, tok, template_index=0, max_length=20, max_response_tokens=4)
    assert len(enc.input_ids) == 20 and enc.n_video_lines == 0 and enc.n_record_lines == 0
    assert enc.input_ids[0] == BOS
    assert tok.decode(enc.input_ids[: enc.prompt_length]).endswith("video for this user:")


def test_response_is_capped_up_front():
    tok = WordTokenizer()
    enc = encode_example(example(response=" ".join(f"w{i}" for i in range(30))), tok, template_index=1, max_response_tokens=5)
    assert len(enc.input_ids) - enc.prompt_length == 6  # 5 tokens + end token


def test_template_choice_comes_from_the_generator():
    tok = WordTokenizer()
    picks = [encode_example(example(), tok, rng=np.random.default_rng(s)).template_index for s in range(20)]
    again = [encode_example(example(), tok, rng=np.random.default_rng(s)).template_index for s in range(20)]
    assert picks == again and set(picks) == {0, 1}
    with pytest.raises(ValueError, match="template_index"):
        encode_example(example(), tok)


@pytest.mark.parametrize("side", ["left", "right"])
def test_collate_marks_the_last_prompt_token_under_both_paddings(side):
    tok = WordTokenizer()
    batch = [encode_example(example(n_videos=n), tok, template_index=0) for n in (1, 4, 2)]
    out = collate(batch, pad_token_id=0, padding_side=side)
    length = max(len(e.input_ids) for e in batch)
    assert out["input_ids"].shape == out["labels"].shape == out["attention_mask"].shape == (3, length)
    for i, e in enumerate(batch):
        last = int(out["last_prompt_index"][i])
        assert int(out["input_ids"][i, last]) == e.input_ids[e.prompt_length - 1]
        assert int(out["labels"][i, last]) == IGNORE_INDEX and int(out["labels"][i, last + 1]) != IGNORE_INDEX
        assert int(out["attention_mask"][i].sum()) == len(e.input_ids)
        pads = (out["attention_mask"][i] == 0).nonzero().flatten().tolist()
        if pads:
            assert (pads[0] == 0) == (side == "left")
