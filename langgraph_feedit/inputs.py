"""Reading prompt files: Arena-Hard question files, ``{"id", "messages"}`` lines, plain text.

Every problem names the file and the line. Reading never stops at the first bad line: it
returns the good prompts and the errors, and the caller decides (``--on-error skip|stop``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langgraph_feedit.errors import InputError

__all__ = ["InputFormat", "Prompt", "read_prompts"]

InputFormat = Literal["auto", "jsonl", "text"]
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt to answer: an id, a conversation, where it came from."""

    id: str
    messages: list[dict[str, Any]]
    line: int
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields of the input line kept for exports (Arena-Hard's ``category``, ...)."""


def _detect(path: Path, raw: list[bytes]) -> Literal["jsonl", "text"]:
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    for line in raw:
        stripped = line.strip()
        if stripped:
            return "jsonl" if stripped.startswith(b"{") else "text"
    return "text"


def _messages(value: Any, path: str, line: int) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise InputError("'messages' must be a non-empty list", path=path, line=line)
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise InputError(
                f"messages[{i}] must be an object with 'role' and 'content'", path=path, line=line
            )
        if m["role"] not in _ROLES:
            raise InputError(f"messages[{i}] has unknown role {m['role']!r}", path=path, line=line)
        out.append({"role": m["role"], "content": m["content"]})
    if not any(_text(m["content"]).strip() for m in out if m["role"] == "user"):
        raise InputError("the conversation has no non-empty user message", path=path, line=line)
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _parse_json_line(text: str, path: str, line: int) -> Prompt:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON: {exc.msg} (column {exc.colno})", path=path, line=line
        ) from None
    if not isinstance(data, dict):
        raise InputError("each line must be a JSON object", path=path, line=line)
    pid = data.get("id", data.get("uid"))
    if "messages" in data:
        messages = _messages(data["messages"], path, line)
        if pid is None:
            pid = str(line)
    elif "prompt" in data:
        if pid is None:
            raise InputError("missing field 'uid' (or 'id')", path=path, line=line)
        prompt = data["prompt"]
        if not isinstance(prompt, str):
            raise InputError("'prompt' must be a string", path=path, line=line)
        if not prompt.strip():
            raise InputError("empty prompt", path=path, line=line)
        messages = [{"role": "user", "content": prompt}]
    else:
        raise InputError(
            "missing field: expected 'prompt' (with 'uid') or 'messages'", path=path, line=line
        )
    if not isinstance(pid, str | int) or str(pid) == "":
        raise InputError("'id'/'uid' must be a non-empty string or number", path=path, line=line)
    extra = {k: v for k, v in data.items() if k not in ("id", "uid", "messages", "prompt")}
    return Prompt(id=str(pid), messages=messages, line=line, extra=extra)


def read_prompts(
    path: str | Path, *, fmt: InputFormat = "auto"
) -> tuple[list[Prompt], list[InputError]]:
    """All prompts of a file, and an error for each bad line.

    Raises:
        InputError: the file cannot be read at all.
    """
    p = Path(path)
    try:
        raw = p.read_bytes().split(b"\n")
    except OSError as exc:
        raise InputError(f"cannot read input: {exc.strerror}", path=str(p)) from None
    kind = _detect(p, raw) if fmt == "auto" else fmt
    prompts: list[Prompt] = []
    errors: list[InputError] = []
    seen: dict[str, int] = {}
    for number, data in enumerate(raw, start=1):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(
                InputError(
                    f"not UTF-8: byte 0x{data[exc.start]:02x} at column {exc.start + 1}",
                    path=str(p),
                    line=number,
                )
            )
            continue
        text = text.rstrip("\r")
        if not text.strip():
            continue
        try:
            if kind == "jsonl":
                prompt = _parse_json_line(text, str(p), number)
            else:
                prompt = Prompt(
                    id=str(number), messages=[{"role": "user", "content": text}], line=number
                )
            if prompt.id in seen:
                raise InputError(
                    f"duplicate id {prompt.id!r} (first on line {seen[prompt.id]})",
                    path=str(p),
                    line=number,
                )
        except InputError as exc:
            errors.append(exc)
            continue
        seen[prompt.id] = number
        prompts.append(prompt)
    return prompts, errors
