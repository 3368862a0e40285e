"""Reading JSON Lines: the one reader of every input file, its errors worded alike.

Every problem of a line is an :class:`~langgraph_feedit.errors.InputError` naming
``file:line`` and what is wrong with it, the same words whichever file it is (prompts, a
batch's answers, Arena-Hard records, training data)::

    answers.jsonl:3: not valid JSON: Expecting value (column 1)
    rows.jsonl:7: not UTF-8: byte 0xe9 at column 12
    rows.jsonl:9: each line must be a JSON object

What a line must hold beyond a JSON object is each caller's own check.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph_feedit.errors import InputError

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "BOM",
    "UTF16_BOMS",
    "parse_object",
    "read_jsonl",
    "read_lines",
    "validation_message",
]

BOM = b"\xef\xbb\xbf"
"""UTF-8's byte-order mark: editors on Windows start files with it; it is not part of line 1."""
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
"""The byte-order marks of UTF-16, which no line of these files may be in."""

OnError = Callable[[InputError], None]


def read_lines(path: str | Path, *, on_error: OnError | None = None) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of a UTF-8 file that holds something.

    Lines end at ``\\n`` only (``str.splitlines`` would also cut a line inside a string at
    U+2028 and the like); a trailing ``\\r`` and a leading byte-order mark are dropped, and
    blank lines skipped. The file is read as it is iterated.

    Args:
        on_error: given, a bad line is handed to it and skipped; by default it is raised.

    Raises:
        InputError: the file cannot be opened or is UTF-16; a line is not UTF-8, or holds only
            whitespace and control characters (not a blank line anyone meant to leave).
    """
    p = Path(path)
    try:
        handle = p.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(p)) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                if raw.startswith(UTF16_BOMS):
                    raise InputError(
                        "the file is UTF-16 (it starts with a UTF-16 byte-order mark): "
                        "save it as UTF-8",
                        path=str(p),
                    )
                raw = raw.removeprefix(BOM)
            try:
                text = _line_text(raw.removesuffix(b"\n"), p, number)
            except InputError as exc:
                if on_error is None:
                    raise
                on_error(exc)
                continue
            if text is not None:
                yield number, text


def _line_text(raw: bytes, path: Path, number: int) -> str | None:
    try:
        text = raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}",
            path=str(path),
            line=number,
        ) from None
    if not text.strip(" \t"):
        return None
    codes = _invisible(text)
    if codes is not None:
        # A line of other spaces or control characters is no blank line a user meant to
        # leave: a file mangled in transit, or a record that lost its text.
        raise InputError(
            f"the line holds only whitespace or control characters ({codes})",
            path=str(path),
            line=number,
        )
    return text


def _invisible(text: str) -> str | None:
    """The code points of a line holding only whitespace and control or format characters
    (``U+2003, U+200B``), or ``None`` for a line with something to read."""
    if any(not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf") for ch in text):
        return None
    codes = list(dict.fromkeys(f"U+{ord(ch):04X}" for ch in text))
    return ", ".join(codes[:6]) + (", ..." if len(codes) > 6 else "")


def parse_object(
    text: str, *, path: str | Path, line: int, loads: Callable[[str], Any] = json.loads
) -> dict[str, Any]:
    """One line as a JSON object.

    Args:
        loads: the JSON reader; a ``ValueError`` it raises is what is wrong with the line
            (:func:`langgraph_feedit.inputs.load_json` refuses more than ``json.loads``).

    Raises:
        InputError: the line is not valid JSON, or not an object.
    """
    try:
        data = loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON: {exc.msg} (column {exc.colno})", path=str(path), line=line
        ) from None
    except ValueError as exc:
        raise InputError(str(exc), path=str(path), line=line) from None
    if not isinstance(data, dict):
        raise InputError("each line must be a JSON object", path=str(path), line=line)
    return data


def read_jsonl(
    path: str | Path,
    *,
    loads: Callable[[str], Any] = json.loads,
    on_error: OnError | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each line of a JSON Lines file, as it is read.

    Args:
        loads: the JSON reader (see :func:`parse_object`).
        on_error: given, a bad line is handed to it and skipped; by default it is raised.

    Raises:
        InputError: the file cannot be read, or a line is not UTF-8, not valid JSON or not an
            object (see :func:`read_lines`); the message starts ``file:line:``.

    Example:
        ```python
        for number, record in read_jsonl("answers.jsonl"):
            if "id" not in record:
                raise InputError("no 'id'", path="answers.jsonl", line=number)
        ```
    """
    for number, text in read_lines(path, on_error=on_error):
        try:
            data = parse_object(text, path=path, line=number, loads=loads)
        except InputError as exc:
            if on_error is None:
                raise
            on_error(exc)
            continue
        yield number, data


def validation_message(exc: ValidationError) -> str:
    """What is wrong with a record pydantic refused, in one line: its first error, the field
    it is in, and how many more there are (for an :class:`InputError` naming the line)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field '{where}': {first['msg']}{more}" if where else f"{first['msg']}{more}"
