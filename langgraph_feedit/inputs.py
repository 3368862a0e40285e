"""Reading prompt files: Arena-Hard question files, ``{"id", "messages"}`` lines, plain text.

Every problem names the file and the line, worded as every input file's are
(:mod:`langgraph_feedit.jsonl` reads the lines). Reading never stops at the first bad line: it
returns the good prompts and the errors, and the caller decides (``--on-error skip|stop``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langgraph_feedit.errors import InputError
from langgraph_feedit.jsonl import BOM, UTF16_BOMS, parse_object, read_lines

__all__ = [
    "MAX_JSON_DEPTH",
    "MESSAGE_ROLES",
    "ConversationError",
    "InputFormat",
    "Prompt",
    "check_conversation",
    "decode_text",
    "find_unencodable",
    "load_json",
    "read_prompts",
]

InputFormat = Literal["auto", "jsonl", "text"]

MESSAGE_ROLES = ("system", "developer", "user", "assistant")
"""The roles a conversation may hold. Tool calls and their results are not: the answer is chosen
among free-text candidates, and a tool message is meaningless without the call it answers."""
_MESSAGE_KEYS = frozenset({"role", "content", "name"})
# Content parts, by the roles that may send them (as in OpenAI's chat-completions API).
_USER_PARTS = frozenset({"text", "image_url", "input_audio", "file"})
_ASSISTANT_PARTS = frozenset({"text", "refusal"})
MAX_JSON_DEPTH = 128
"""The deepest nesting of objects and arrays an input line or a request body may hold.

LangGraph's checkpoint serialiser stops at 254 levels of the stored state, which wraps a
conversation in levels of its own (a content part's value at 248 levels of a line failed); no
conversation comes near this."""
_INT_RANGE = (-(2**63), 2**64 - 1)
"""The integers a checkpoint holds (msgpack's): a content part with a larger one failed to store."""


class ConversationError(InputError):
    """A conversation is malformed.

    Attributes:
        field: where, as a path into the request (``messages[2].content[0].text``).
    """

    def __init__(self, message: str, *, field: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt to answer: an id, a conversation, where it came from."""

    id: str
    messages: list[dict[str, Any]]
    line: int
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields of the input line kept for exports (Arena-Hard's ``category``, ...)."""


def check_conversation(
    value: Any,
    *,
    label: str = "messages",
    require_user: bool = True,
    unknown_keys: Literal["drop", "refuse"] = "drop",
) -> list[dict[str, Any]]:
    """The conversation as OpenAI-style message dicts, checked so that no backend, cache key or
    store can choke on it later: every surface that takes a conversation from outside (input
    files, ``feedit serve``, the graph's start) goes through this one check.

    Each message is an object with a ``role`` of :data:`MESSAGE_ROLES`, a ``content`` that is
    a string or a list of content parts (objects with a string ``type``; a ``text`` part's
    ``text`` a string; non-text parts from the user only), and an optional string ``name``.
    No string may hold an unpaired UTF-16 surrogate (JSON's ``"\\ud800"``), which has no
    UTF-8 form. Messages are kept whole (system, developer and earlier turns).

    Args:
        value: the conversation.
        label: its name, for the errors.
        require_user: refuse a conversation with no non-empty user message.
        unknown_keys: other message keys (``tool_calls``...): dropped, or refused unless
            ``null``.

    Raises:
        ConversationError: the first problem, with its ``field`` (``messages[1].content``);
            the message names the field, never its value.
    """
    if not isinstance(value, list) or not value:
        raise ConversationError(f"'{label}' must be a non-empty list", field=label)
    bad = find_unencodable(value, label)
    if bad is not None:
        raise ConversationError(unencodable_message(bad), field=bad)
    out: list[dict[str, Any]] = []
    for i, message in enumerate(value):
        where = f"{label}[{i}]"
        if not isinstance(message, dict):
            raise ConversationError(
                f"{where} must be an object with 'role' and 'content'", field=where
            )
        for key in ("role", "content"):
            if key not in message:
                raise ConversationError(f"{where}.{key} is missing", field=f"{where}.{key}")
        role = message["role"]
        if role in ("tool", "function"):
            raise ConversationError(
                f"{where}.role: {role} messages are not supported: feedit answers "
                "free-text conversations (system, developer, user and assistant turns)",
                field=f"{where}.role",
            )
        if role not in MESSAGE_ROLES:
            raise ConversationError(
                f"{where}.role is an unknown role: use one of {', '.join(MESSAGE_ROLES)}",
                field=f"{where}.role",
            )
        _check_content(message["content"], role, f"{where}.content")
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise ConversationError(f"{where}.name must be a string", field=f"{where}.name")
        extra = [k for k in message if k not in _MESSAGE_KEYS and message[k] is not None]
        if extra and unknown_keys == "refuse":
            raise ConversationError(
                f"{where}.{extra[0]} is not supported", field=f"{where}.{extra[0]}"
            )
        out.append({k: message[k] for k in ("role", "content", "name") if k in message})
        if out[-1].get("name") is None:
            out[-1].pop("name", None)
    if require_user and not any(_text(m["content"]).strip() for m in out if m["role"] == "user"):
        raise ConversationError("the conversation has no non-empty user message", field=label)
    return out


def _check_content(content: Any, role: str, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise ConversationError(f"{where} must be a string or a list of content parts", field=where)
    allowed = (
        _USER_PARTS if role == "user" else _ASSISTANT_PARTS if role == "assistant" else {"text"}
    )
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise ConversationError(
                f"{at} must be a content part: an object with a string 'type'", field=at
            )
        kind = part["type"]
        if kind not in allowed:
            raise ConversationError(
                f"{at}.type: {role} messages take {', '.join(sorted(allowed))} parts only",
                field=f"{at}.type",
            )
        if kind in ("text", "refusal") and not isinstance(part.get(kind), str):
            raise ConversationError(f"{at}.{kind} must be a string", field=f"{at}.{kind}")


def find_unencodable(value: Any, where: str = "") -> str | None:
    """The path of the first string (or key) in ``value`` that has no UTF-8 form, or ``None``.

    JSON can escape half a surrogate pair (``"\\ud800"``); Python decodes it to a string that
    every later step (the HTTP request, the cache key, the store) fails to encode.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "(value)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            at = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and find_unencodable(key) is not None:
                return where or "(key)"
            found = find_unencodable(item, at)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = find_unencodable(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def unencodable_message(where: str) -> str:
    return (
        f"{where} holds an unpaired UTF-16 surrogate (one half of a JSON surrogate-pair escape, "
        "the other missing), which is not text: fix the escapes"
    )


def decode_text(data: bytes, *, path: str) -> str:
    """Text from bytes: UTF-8, a leading byte-order mark dropped.

    Raises:
        InputError: the bytes are not UTF-8, naming the line and column of the first bad byte.
    """
    if data.startswith(UTF16_BOMS):
        raise InputError(
            "the text is UTF-16 (it starts with a UTF-16 byte-order mark): save it as UTF-8",
            path=path,
        )
    data = data.removeprefix(BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(
            f"not UTF-8: byte 0x{data[exc.start]:02x} at column {column}", path=path, line=line
        ) from None


def load_json(text: str | bytes) -> Any:
    """JSON text as Python values, holding only what every later step can take.

    Python's ``json`` reads more than JSON: ``NaN`` and ``Infinity`` (which no backend, store or
    other JSON reader takes back), numbers that overflow a float to infinity, integers of any
    size, and nesting as deep as its recursion limit. Each of these crashed a whole batch in the
    backend's request, the checkpoint store or the output; here each is refused, as is nesting
    deeper than :data:`MAX_JSON_DEPTH` and an integer outside the 64-bit range.

    Raises:
        ValueError: what is wrong (a ``json.JSONDecodeError``, with its column, for a syntax
            error); never the value itself beyond a short number.
    """
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
    except RecursionError:
        raise ValueError(_too_deep()) from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise ValueError(_too_deep())
    return value


def _too_deep() -> str:
    return f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _shown(number: str) -> str:
    return number if len(number) <= 24 else f"of {len(number)} characters"


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {_shown(text)} is out of range (it overflows a float)")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    # int() itself refuses more than 4,300 digits, with a message about Python's settings.
    if digits > 20:
        raise ValueError(f"an integer of {digits} digits is outside the 64-bit range")
    value = int(text)
    if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        raise ValueError(f"the integer {text} is outside the 64-bit range")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    # Iterative: the point is to look at values too deep for recursion.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


def _detect(path: Path, lines: list[tuple[int, str]]) -> Literal["jsonl", "text"]:
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if lines:
        return "jsonl" if lines[0][1].lstrip().startswith("{") else "text"
    return "text"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _parse_json_line(text: str, path: str, line: int) -> Prompt:
    data = parse_object(text, path=path, line=line, loads=load_json)
    bad = find_unencodable(data)
    if bad is not None:
        raise InputError(unencodable_message(repr(bad)), path=path, line=line)
    # IFEval's files name the prompt's id "key" (an integer).
    pid = data.get("id", data.get("uid", data.get("key")))
    if "messages" in data:
        try:
            messages = check_conversation(data["messages"])
        except ConversationError as exc:
            raise InputError(str(exc), path=path, line=line) from None
        if pid is None:
            pid = str(line)
    elif "prompt" in data:
        if pid is None:
            raise InputError("missing field 'uid' (or 'id', 'key')", path=path, line=line)
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
    if not isinstance(pid, str | int) or isinstance(pid, bool) or str(pid) == "":
        raise InputError("'id'/'uid' must be a non-empty string or number", path=path, line=line)
    extra = {k: v for k, v in data.items() if k not in ("id", "uid", "key", "messages", "prompt")}
    return Prompt(id=str(pid), messages=messages, line=line, extra=extra)


def read_prompts(
    path: str | Path, *, fmt: InputFormat = "auto"
) -> tuple[list[Prompt], list[InputError]]:
    """All prompts of a file, and an error for each bad line.

    Raises:
        InputError: the file cannot be read at all.
    """
    p = Path(path)
    errors: list[InputError] = []
    lines = list(read_lines(p, on_error=errors.append))
    kind = _detect(p, lines) if fmt == "auto" else fmt
    prompts: list[Prompt] = []
    seen: dict[str, int] = {}
    for number, text in lines:
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
    # The lines that could not be read were set aside as they were read: in line order again.
    errors.sort(key=lambda exc: exc.line or 0)
    return prompts, errors
