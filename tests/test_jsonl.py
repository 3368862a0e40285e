"""One JSON Lines reader: a malformed line of any input file (a batch's prompts, a batch's
answers, Arena-Hard records, training data) is an InputError naming ``file:line``, worded the
same whichever file it is."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from langgraph_feedit.errors import InputError
from langgraph_feedit.evaluate.records import read_questions
from langgraph_feedit.exports import read_answers_file
from langgraph_feedit.inputs import read_prompts
from langgraph_feedit.jsonl import read_jsonl
from langgraph_feedit.train.data import read_rows


def _batch_input(path: Path) -> None:
    _, errors = read_prompts(path)
    raise errors[0]


def _export(path: Path) -> None:
    list(read_answers_file(path))


def _eval_records(path: Path) -> None:
    read_questions(path)


def _training_data(path: Path) -> None:
    list(read_rows(path))


# Each reader's first line is a good record of its own kind, holding U+2028 (LINE SEPARATOR)
# inside a string: a reader that split lines as str.splitlines does would count it as two.
READERS: dict[str, tuple[Callable[[Path], None], dict[str, str]]] = {
    "batch input": (_batch_input, {"uid": "a", "prompt": "one\u2028two"}),
    "export": (_export, {"id": "a", "status": "failed", "error": "one\u2028two"}),
    "eval records": (_eval_records, {"uid": "a", "category": "c", "prompt": "one\u2028two"}),
    "training data": (_training_data, {"prompt": "one\u2028two", "chosen": "x"}),
}

BAD_LINES = [
    (b'{"uid": "b", "prompt": ', "not valid JSON: Expecting value (column 24)"),
    (b'["a list"]', "each line must be a JSON object"),
    (b'{"uid": "caf\xe9"}', "not UTF-8: byte 0xe9 at column 13"),
    (b"\xe2\x80\x83\xe2\x80\x8b", "the line holds only whitespace or control characters"),
]


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_bad_line_is_named_alike_in_every_input_file(
    tmp_path: Path, reader: str, line: bytes, message: str
) -> None:
    read, good = READERS[reader]
    path = tmp_path / "input.jsonl"
    path.write_bytes(json.dumps(good, ensure_ascii=False).encode() + b"\r\n" + line + b"\n")
    with pytest.raises(InputError) as info:
        read(path)
    assert (info.value.path, info.value.line) == (str(path), 2)
    assert str(info.value).startswith(f"{path}:2: {message}")


@pytest.mark.parametrize("reader", list(READERS))
def test_a_file_that_cannot_be_read_is_named_alike(tmp_path: Path, reader: str) -> None:
    read, _ = READERS[reader]
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(InputError) as info:
        read(missing)
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"


def test_the_reader_collects_or_raises(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"a": 1}\n}\n\n{"b": 2}\n3\n', encoding="utf-8")
    errors: list[InputError] = []
    got = list(read_jsonl(path, on_error=errors.append))
    assert got == [(1, {"a": 1}), (4, {"b": 2})]
    assert [str(e) for e in errors] == [
        f"{path}:2: not valid JSON: Expecting value (column 1)",
        f"{path}:5: each line must be a JSON object",
    ]
    with pytest.raises(InputError, match=r"mixed\.jsonl:2: not valid JSON"):
        list(read_jsonl(path))


def test_a_bom_starts_no_line_and_utf16_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n')
    assert list(read_jsonl(path)) == [(1, {"a": 1})]
    path.write_bytes('{"a": 1}\n'.encode("utf-16"))
    with pytest.raises(InputError, match="is UTF-16"):
        list(read_jsonl(path))
