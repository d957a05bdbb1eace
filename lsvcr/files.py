"""Reading the files a user hands us (dataset JSON, model and aligned directories): a missing, empty,
truncated, corrupt or wrongly encoded file raises ``InputError`` naming it, never a decoder's traceback."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from lsvcr.errors import InputError


def read_json(path: str | Path, what: str = "file") -> Any:
    """The JSON document in ``path`` (UTF-8)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing {what} {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def json_lines(path: str | Path) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for every non-blank line of a JSON-lines file; ``where`` names the line in errors."""
    path = Path(path)
    lineno = 0
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    where = f"{path.name} line {lineno}"
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise InputError(f"{where}: not valid JSON ({e.msg})") from None
                    yield where, row
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (after line {lineno})") from None


def load_tensors(path: str | Path, what: str = "weights") -> dict:
    """Every tensor of the safetensors file ``path`` (``safetensors.torch.load_file``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing {what} {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a readable safetensors file ({reason})") from None
