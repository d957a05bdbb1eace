"""Prompts for the supplemental LLM recommender (stage 1) and their tokenisation.

Two tasks, two templates each, differing only in which history comes first (the paper's code samples
one at random per training example):

* **video task** — recommend the next video;
* **comment task** — write a comment the user would interact with on the video being watched.

Histories are numbered lines, oldest first: a liked video is its title plus one popular comment, a
comment record is the video's title plus the user's comments under it. The response (target title or
one positive comment) follows the prompt; the LM loss sees only the response (labels -100 elsewhere),
and the LLM user representation is read at the last prompt token.

The English defaults can be replaced from a JSON or TOML file (`load_templates`) holding
``video_task = [two templates]`` and ``comment_task = [two templates]`` and, optionally,
``video_line`` / ``record_line``. Placeholders are ``str.format`` fields; write literal braces as
``{{`` and ``}}``.
"""
from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from .errors import InputError

IGNORE_INDEX = -100
TASKS = ("video", "comment")

_VIDEO_HISTORY = (
    "The video history lists the videos this user liked on a short-video platform, in the order "
    "they watched them; each line gives a video's title and one of its popular comments.",
    "Video history:\n{video_history}",
)
_COMMENT_HISTORY = (
    "The comment history lists the videos whose comment sections this user engaged with, in time "
    "order; each line gives a video's title and the comments the user interacted with there.",
    "Comment history:\n{comment_history}",
)
_VIDEO_QUESTION = "Based on both histories, recommend the next video for this user:\n"
_COMMENT_QUESTION = (
    "The user is now watching: {current_video}\n"
    "Based on both histories and this video, write a comment this user would interact with:\n"
)


def _template(first: tuple[str, str], second: tuple[str, str], question: str) -> str:
    return f"{first[0]} {second[0]}\n\n{first[1]}\n\n{second[1]}\n\n{question}"


REQUIRED_FIELDS = {
    "video_task": frozenset({"video_history", "comment_history"}),
    "comment_task": frozenset({"video_history", "comment_history", "current_video"}),
    "video_line": frozenset({"title", "comment"}),
    "record_line": frozenset({"title", "comments"}),
}


@dataclass(frozen=True)
class PromptTemplates:
    """The four prompt templates (index 0: video history first, index 1: comment history first) and
    the two history-line formats. Validated on construction: each template holds exactly its
    placeholders."""

    video_task: tuple[str, str] = (
        _template(_VIDEO_HISTORY, _COMMENT_HISTORY, _VIDEO_QUESTION),
        _template(_COMMENT_HISTORY, _VIDEO_HISTORY, _VIDEO_QUESTION),
    )
    comment_task: tuple[str, str] = (
        _template(_VIDEO_HISTORY, _COMMENT_HISTORY, _COMMENT_QUESTION),
        _template(_COMMENT_HISTORY, _VIDEO_HISTORY, _COMMENT_QUESTION),
    )
    video_line: str = "{title} | popular comment: {comment}"
    record_line: str = "{title} | the user's comments: {comments}"
    source: str = field(default="built-in", compare=False)

    def __post_init__(self) -> None:
        for name in ("video_task", "comment_task"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
                raise InputError(f"{self.source}: '{name}' must be a list of exactly two templates")
            object.__setattr__(self, name, tuple(value))
            for i, text in enumerate(value):
                _check_fields(text, REQUIRED_FIELDS[name], f"{self.source}: {name}[{i}]")
        for name in ("video_line", "record_line"):
            _check_fields(getattr(self, name), REQUIRED_FIELDS[name], f"{self.source}: {name}")

    def for_task(self, task: str) -> tuple[str, str]:
        return self.video_task if task == "video" else self.comment_task


def _check_fields(text: Any, required: frozenset[str], where: str) -> None:
    if not isinstance(text, str):
        raise InputError(f"{where} must be a string, got {type(text).__name__}")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:
        raise InputError(f"{where}: malformed placeholder ({e}); write literal braces as {{{{ and }}}}") from None
    found = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name == "" or spec or conversion:
            raise InputError(f"{where}: placeholder {{{name}}} must be a plain name like {{video_history}}")
        found.add(name)
    unknown, missing = found - required, required - found
    if unknown:
        raise InputError(f"{where}: unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(required)}")
    if missing:
        raise InputError(f"{where}: missing placeholder(s) {sorted(missing)}")


DEFAULT_TEMPLATES = PromptTemplates()


def load_templates(path: str | Path) -> PromptTemplates:
    """Read replacement templates from a ``.json`` or ``.toml`` file (keys: ``video_task``,
    ``comment_task``: two templates each; optional ``video_line``, ``record_line``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompt template file not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix.lower() == ".toml":
            import tomllib  # Python >= 3.11

            data = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            raise InputError(f"{path}: prompt templates must be a .json or .toml file")
    except (json.JSONDecodeError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: cannot parse prompt templates: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a table/object with keys video_task and comment_task")
    allowed = set(REQUIRED_FIELDS)
    unknown = set(data) - allowed
    if unknown:
        raise InputError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    for key in ("video_task", "comment_task"):
        if key not in data:
            raise InputError(f"{path}: missing key '{key}' (a list of two templates)")
    return PromptTemplates(**data, source=str(path))


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptExample:
    """One stage-1 sample in text form. Histories are oldest first."""

    task: str  # "video" | "comment"
    video_history: Sequence[tuple[str, str]]  # (title, popular comment)
    comment_history: Sequence[tuple[str, Sequence[str]]]  # (title, the user's comments there)
    response: str  # target video title, or one positive comment
    current_video: str | None = None  # title of the video being watched (comment task)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task == "comment" and self.current_video is None:
            raise ValueError("the comment task needs current_video")


def video_lines(example: PromptExample, templates: PromptTemplates = DEFAULT_TEMPLATES) -> list[str]:
    return [templates.video_line.format(title=t, comment=c) for t, c in example.video_history]


def record_lines(example: PromptExample, templates: PromptTemplates = DEFAULT_TEMPLATES) -> list[str]:
    return [templates.record_line.format(title=t, comments="; ".join(cs)) for t, cs in example.comment_history]


def _numbered(lines: Sequence[str]) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1)) if lines else "(none)"


def render_prompt(
    example: PromptExample,
    template_index: int,
    templates: PromptTemplates = DEFAULT_TEMPLATES,
    *,
    drop_video: int = 0,
    drop_records: int = 0,
) -> str:
    """The prompt text with the ``drop_*`` oldest lines of each history left out."""
    return templates.for_task(example.task)[template_index].format(
        video_history=_numbered(video_lines(example, templates)[drop_video:]),
        comment_history=_numbered(record_lines(example, templates)[drop_records:]),
        current_video=example.current_video or "",
    )


def choose_template(rng: np.random.Generator) -> int:
    """Which of the two templates a training sample uses."""
    return int(rng.integers(2))


# --------------------------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------------------------


class Tokenizer(Protocol):  # what we use of a Hugging Face tokenizer
    def __call__(self, text: Any, add_special_tokens: bool = ...) -> Any: ...


@dataclass(frozen=True)
class EncodedPrompt:
    """Token ids of prompt (+ response). ``labels`` is -100 over the prompt; the last prompt token
    sits at ``prompt_length - 1``."""

    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    template_index: int
    n_video_lines: int  # history lines kept after truncation
    n_record_lines: int


def _ids(tokenizer: Tokenizer, text: str | list[str], special: bool) -> list:
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def _end_token(tokenizer: Tokenizer) -> int | None:
    for name in ("eos_token_id", "sep_token_id"):
        token = getattr(tokenizer, name, None)
        if token is not None:
            return int(token)
    return None


def encode_example(
    example: PromptExample,
    tokenizer: Tokenizer,
    templates: PromptTemplates = DEFAULT_TEMPLATES,
    *,
    max_length: int = 512,
    max_response_tokens: int = 64,
    with_response: bool = True,
    template_index: int | None = None,
    rng: np.random.Generator | None = None,
) -> EncodedPrompt:
    """Tokenise prompt + response into at most ``max_length`` tokens.

    The response (capped up front at ``max_response_tokens``, then an end token) is never cut by the
    length budget: history lines are dropped instead, oldest first, always from the history that
    currently has more lines (ties: the video history). Only if the prompt is still too long with no
    history left is its head cut. Pass ``with_response=False`` for encoder backbones, which must not
    see the response (bidirectional attention would leak it into the user representation).
    The template is ``template_index`` if given, else drawn with ``rng`` (training).
    """
    if template_index is None:
        if rng is None:
            raise ValueError("pass template_index (evaluation) or rng (training)")
        template_index = choose_template(rng)
    if template_index not in (0, 1):
        raise ValueError(f"template_index must be 0 or 1, got {template_index}")
    if max_response_tokens < 1 or max_length < max_response_tokens + 8:
        raise ValueError(f"max_length ({max_length}) must exceed max_response_tokens ({max_response_tokens}) by 8+")

    response: list[int] = []
    if with_response:
        response = _ids(tokenizer, example.response, False)[:max_response_tokens]
        end = _end_token(tokenizer)
        if end is not None:
            response.append(end)
    budget = max_length - len(response)

    n_video, n_records = len(example.video_history), len(example.comment_history)
    drop_v = drop_r = 0
    prompt = _ids(tokenizer, render_prompt(example, template_index, templates), True)
    if len(prompt) > budget:
        # Estimate how many oldest lines to drop from per-line token counts (one batched call),
        # then render and check; boundary effects rarely need a second step.
        lines_v, lines_r = video_lines(example, templates), record_lines(example, templates)
        numbered = [f"{i}. {line}" for i, line in enumerate(lines_v, 1)] + [f"{i}. {line}" for i, line in enumerate(lines_r, 1)]
        costs = [len(ids) + 1 for ids in _ids(tokenizer, numbered, False)] if numbered else []  # + newline
        cost_v, cost_r = costs[:n_video], costs[n_video:]
        excess = len(prompt) - budget
        while len(prompt) > budget and (drop_v < n_video or drop_r < n_records):
            while excess > 0 and (drop_v < n_video or drop_r < n_records):
                if n_video - drop_v >= n_records - drop_r:
                    excess -= cost_v[drop_v]
                    drop_v += 1
                else:
                    excess -= cost_r[drop_r]
                    drop_r += 1
            prompt = _ids(tokenizer, render_prompt(example, template_index, templates, drop_video=drop_v, drop_records=drop_r), True)
            excess = len(prompt) - budget
        if len(prompt) > budget:  # no history left: keep a leading special token and the tail
            special = set(getattr(tokenizer, "all_special_ids", []) or [])
            head = prompt[:1] if prompt[0] in special else []
            prompt = head + prompt[len(prompt) - (budget - len(head)):]

    return EncodedPrompt(
        input_ids=prompt + response,
        labels=[IGNORE_INDEX] * len(prompt) + response,
        prompt_length=len(prompt),
        template_index=template_index,
        n_video_lines=n_video - drop_v,
        n_record_lines=n_records - drop_r,
    )


def collate(
    batch: Sequence[EncodedPrompt], pad_token_id: int, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pad a batch: ``input_ids``, ``attention_mask``, ``labels`` [B, L] and ``last_prompt_index``
    [B] (the position of each row's last prompt token after padding)."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if not batch:
        raise ValueError("empty batch")
    length = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    last = torch.empty(len(batch), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        start = length - n if padding_side == "left" else 0
        ids[i, start : start + n] = torch.tensor(e.input_ids)
        labels[i, start : start + n] = torch.tensor(e.labels)
        mask[i, start : start + n] = 1
        last[i] = start + e.prompt_length - 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "last_prompt_index": last}
