"""Input files and standard input: lines that look valid but are not, byte-order marks, bytes
that are not UTF-8. Each is an input error naming the file and the line, never a crash."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from langgraph_feedit import InputError
from langgraph_feedit.batch import BatchOptions, run_batch
from langgraph_feedit.cli import main
from langgraph_feedit.inputs import (
    MAX_JSON_DEPTH,
    ConversationError,
    check_conversation,
    read_prompts,
)
from langgraph_feedit.testing import SimServer

from .helpers import json_texts, read_lines, sim_config

GOOD = {"id": "ok", "messages": [{"role": "user", "content": "Name a CRDT."}]}


def _part(value: bytes, pid: bytes = b"part") -> bytes:
    """A messages line whose image part holds ``value`` (JSON text)."""
    return (
        b'{"id": "' + pid + b'", "messages": [{"role": "user", "content": [{"type": "text", '
        b'"text": "hi"}, {"type": "image_url", "image_url": ' + value + b"}]}]}"
    )


# Lines a user could write by hand or export from another tool; each crashed a batch once.
VALID_LOOKING: list[tuple[dict[str, Any] | bytes, str]] = [
    (
        {
            "id": "tool",
            "messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}],
        },
        "messages[1].role: tool messages are not supported",
    ),
    (
        {
            "id": "tool-with-id",
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "tool", "content": "r", "tool_call_id": "c1"},
            ],
        },
        "messages[1].role: tool messages are not supported",
    ),
    (
        {"id": "asst", "messages": [{"role": "assistant", "content": 42}, GOOD["messages"][0]]},
        "messages[0].content must be a string or a list of content parts",
    ),
    (
        {"id": "sys", "messages": [{"role": "system", "content": {"x": 1}}, GOOD["messages"][0]]},
        "messages[0].content must be a string or a list of content parts",
    ),
    (
        {"id": "null", "messages": [{"role": "assistant", "content": None}, GOOD["messages"][0]]},
        "messages[0].content must be a string",
    ),
    (
        {"id": "part", "messages": [{"role": "user", "content": [{"type": "text", "text": 7}]}]},
        "messages[0].content[0].text must be a string",
    ),
    (
        {"id": "untyped", "messages": [{"role": "user", "content": [{"text": "hi"}]}]},
        "messages[0].content[0] must be a content part",
    ),
    (
        {
            "id": "image-from-system",
            "messages": [
                {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                GOOD["messages"][0],
            ],
        },
        "messages[0].content[0].type: system messages take text parts only",
    ),
    (
        {"id": "name", "messages": [{"role": "user", "content": "q", "name": 3}]},
        "messages[0].name must be a string",
    ),
    # JSON escapes half a surrogate pair; Python decodes it to a string with no UTF-8 form.
    (b'{"id": "sur", "messages": [{"role": "user", "content": "a\\ud800b"}]}', "surrogate"),
    (b'{"uid": "sur-prompt", "prompt": "x\\udfff"}', "'prompt' holds an unpaired"),
    (b'{"uid": "sur-extra", "prompt": "fine", "category": "\\ud83d"}', "'category' holds"),
    (b'{"uid": "\\ud800", "prompt": "fine"}', "'uid' holds"),
    (b'{"uid": true, "prompt": "fine"}', "'id'/'uid' must be"),
    (b'{"uid": "deep", "prompt": "x", "extra": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested"),
    # Values Python's json module reads but no store, backend or JSON reader elsewhere takes:
    # each ended a whole batch with a traceback.
    (_part(b"[" * 250 + b"]" * 250), f"nested deeper than {MAX_JSON_DEPTH} levels"),
    (_part(b'{"url": NaN}'), "NaN is not a JSON number"),
    (b'{"uid": "inf", "prompt": "x", "score": -Infinity}', "-Infinity is not a JSON number"),
    (b'{"uid": "overflow", "prompt": "x", "score": 1e400}', "1e400 is out of range"),
    (b'{"uid": "huge", "prompt": "x", "n": ' + b"9" * 5000 + b"}", "an integer of 5000 digits"),
    (_part(b'{"url": "x", "n": ' + str(2**64).encode() + b"}"), "outside the 64-bit range"),
    # Lines that look blank but are not: named, never silently dropped.
    ("\u2003\u3000".encode(), "only whitespace or control characters (U+2003, U+3000)"),
    (b"\x0b\x0c\x1c", "only whitespace or control characters (U+000B, U+000C, U+001C)"),
    ("\u200b\u0085".encode(), "only whitespace or control characters (U+200B, U+0085)"),
]


def _line(item: dict[str, Any] | bytes) -> bytes:
    return item if isinstance(item, bytes) else json.dumps(item).encode()


def write_valid_looking(path: Path) -> Path:
    lines = [json.dumps(GOOD).encode(), *(_line(item) for item, _ in VALID_LOOKING)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_valid_looking_lines_are_input_errors_naming_file_and_line(tmp_path: Path) -> None:
    path = write_valid_looking(tmp_path / "in.jsonl")
    prompts, errors = read_prompts(path)
    assert [p.id for p in prompts] == ["ok"]
    assert len(errors) == len(VALID_LOOKING)
    for line, (err, (_, expected)) in enumerate(zip(errors, VALID_LOOKING, strict=True), start=2):
        assert isinstance(err, InputError)
        assert (err.path, err.line) == (str(path), line)
        assert str(err).startswith(f"{path}:{line}: ")
        assert expected in str(err), (line, str(err))


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=71) as server:
        yield server


async def test_a_batch_skips_them_and_answers_the_rest(sim: SimServer, tmp_path: Path) -> None:
    path = write_valid_looking(tmp_path / "in.jsonl")
    options = BatchOptions(
        input=path,
        output=tmp_path / "out.jsonl",
        store=tmp_path / "store",
        progress=False,
        on_error="skip",
    )
    config = sim_config(sim.base_url, width={"drafts": 1, "critiques": 0})
    summary = await run_batch(config, options)
    assert [r["id"] for r in read_lines(options.output)] == ["ok"]
    assert [e.line for e in summary.skipped] == list(range(2, 2 + len(VALID_LOOKING)))
    # Only the good line reached the backend; a rerun skips the same lines the same way.
    assert all(r.body["messages"] == GOOD["messages"] for r in sim.requests)
    again = await run_batch(config, options)
    assert [e.line for e in again.skipped] == [e.line for e in summary.skipped]


async def test_the_limits_sit_below_what_the_store_holds(sim: SimServer, tmp_path: Path) -> None:
    """A line at each limit runs through the SQLite store; one past it is named."""
    deepest = MAX_JSON_DEPTH - 5  # the line, messages, a message, its content, a part
    lines = [
        _part(b"[" * deepest + b"]" * deepest, b"deepest"),
        _part(b"[" * (deepest + 1) + b"]" * (deepest + 1), b"deeper"),
        _part(b'{"url": "x", "n": %d, "m": %d}' % (2**64 - 1, -(2**63)), b"widest"),
        _part(b'{"url": "x", "n": %d}' % 2**64, b"wider"),
        b'{"uid": "nul\\u0000id\\u001f", "prompt": "a\\u0000b", "score": 1e308}',
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    options = BatchOptions(
        input=path,
        output=tmp_path / "out.jsonl",
        store=tmp_path / "store",
        progress=False,
        on_error="skip",
    )
    config = sim_config(sim.base_url, width={"drafts": 1, "critiques": 0})
    summary = await run_batch(config, options)
    assert [e.line for e in summary.skipped] == [2, 4]
    assert summary.exit_code == 0 and summary.answered == 3, summary.lines()
    text = options.output.read_text(encoding="utf-8")
    records = [json.loads(line, parse_constant=_refuse) for line in text.splitlines()]
    assert [r["id"] for r in records] == ["deepest", "widest", "nul\u0000id\u001f"]


def _refuse(name: str) -> Any:
    raise AssertionError(f"{name} in an output line: not JSON")


def test_on_error_stop_names_the_first_bad_line(sim: SimServer, tmp_path: Path) -> None:
    path = write_valid_looking(tmp_path / "in.jsonl")
    code = main(
        [
            "batch",
            "--input",
            str(path),
            "--output",
            str(tmp_path / "out.jsonl"),
            "--base-url",
            sim.base_url,
            "--no-store",
            "--no-progress",
        ]
    )
    assert code == 2 and sim.call_count == 0


def test_byte_order_mark_is_not_part_of_line_one(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    text = tmp_path / "prompts.txt"
    text.write_bytes(bom + b"What is 2+2?\nName a colour.\n")
    prompts, errors = read_prompts(text)
    assert not errors
    assert [p.messages[0]["content"] for p in prompts] == ["What is 2+2?", "Name a colour."]
    # Without an extension the format is read from the first line, past the mark.
    bare = tmp_path / "questions"
    bare.write_bytes(bom + json.dumps({"uid": "a", "prompt": "Hi"}).encode() + b"\n")
    prompts, errors = read_prompts(bare)
    assert not errors and [(p.id, p.messages[0]["content"]) for p in prompts] == [("a", "Hi")]
    # A .txt holding JSON lines is read by content too.
    txt_json = tmp_path / "questions.txt"
    txt_json.write_bytes(bare.read_bytes())
    assert [p.id for p in read_prompts(txt_json)[0]] == ["a"]


def test_utf16_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes('{"uid": "a", "prompt": "Hi"}\n'.encode("utf-16"))  # with its mark
    with pytest.raises(InputError, match="UTF-16"):
        read_prompts(path)


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_run_from_undecodable_stdin_is_an_input_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sim: SimServer
) -> None:
    _stdin(monkeypatch, b"first line\ncaf\xe9\n")
    assert main(["run", "--base-url", sim.base_url, "--preset", "single", "-"]) == 2
    err = capsys.readouterr().err
    assert "<stdin>:2: not UTF-8: byte 0xe9 at column 4" in err
    assert "Traceback" not in err and sim.call_count == 0


def test_run_from_stdin_drops_the_byte_order_mark(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sim: SimServer
) -> None:
    _stdin(monkeypatch, b"\xef\xbb\xbfName a CRDT.")
    assert main(["run", "--base-url", sim.base_url, "--preset", "single", "-"]) == 0
    assert capsys.readouterr().out.strip()
    assert sim.requests[0].body["messages"] == [{"role": "user", "content": "Name a CRDT."}]


# -- the one check every surface uses --------------------------------------------------------


def test_check_conversation_locates_each_problem() -> None:
    cases: list[tuple[Any, str]] = [
        ([], "messages"),
        ("hi", "messages"),
        (["hi"], "messages[0]"),
        ([{"content": "x"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        (
            [{"role": "user", "content": [{"type": "text", "text": None}]}],
            "messages[0].content[0].text",
        ),
        (
            [{"role": "user", "content": [{"type": "text", "text": "a\ud800"}]}],
            "messages[0].content[0].text",
        ),
        ([{"role": "system", "content": "only a system turn"}], "messages"),
    ]
    for value, where in cases:
        with pytest.raises(ConversationError) as caught:
            check_conversation(value)
        assert caught.value.field == where, value
        assert "\ud800" not in str(caught.value)  # names the field, never the value


def test_check_conversation_keeps_the_conversation_whole() -> None:
    conversation = [
        {"role": "system", "content": "S"},
        {"role": "developer", "content": [{"type": "text", "text": "D"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "U"},
                {"type": "image_url", "image_url": {"url": "data:x"}},
            ],
            "name": "ann",
        },
        {"role": "assistant", "content": "A", "tool_calls": None},
        {"role": "user", "content": "again"},
    ]
    out = check_conversation(conversation)
    assert out[:3] == conversation[:3]
    assert out[3] == {"role": "assistant", "content": "A"}
    with pytest.raises(ConversationError) as caught:
        check_conversation(
            [{"role": "user", "content": "q", "tool_calls": [{"id": "x"}]}], unknown_keys="refuse"
        )
    assert caught.value.field == "messages[0].tool_calls"
    assert check_conversation([{"role": "system", "content": "S"}], require_user=False)


# -- any JSON a parser accepts ------------------------------------------------------------------

# Where a value can sit in an input line.
LINE_SHAPES = [
    '{"id": "p", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, '
    '{"type": "image_url", "image_url": %s}]}]}',
    '{"id": "p", "messages": [{"role": "user", "content": "hi", "name": %s}]}',
    '{"id": "p", "messages": %s}',
    '{"uid": "p", "prompt": "hi", "category": %s}',
    '{"uid": %s, "prompt": "hi"}',
    '{"uid": "p", "prompt": %s}',
    "%s",
]
# Whitespace and control characters, a line's end apart.
INVISIBLE = st.text(
    st.characters(categories=("Zs", "Zl", "Zp", "Cc", "Cf"), exclude_characters="\n\r"),
    min_size=1,
    max_size=4,
)


def _blank(line: str) -> bool:
    return not line.strip(" \t\r")


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from(LINE_SHAPES), json_texts()).map(lambda t: t[0] % t[1]),
            INVISIBLE,
        ),
        min_size=1,
        max_size=3,
    )
)
@example([LINE_SHAPES[0] % '{"url": NaN}', "\u2003"])
@example([LINE_SHAPES[0] % ("[" * 300 + "]" * 300), LINE_SHAPES[3] % "Infinity"])
@example([LINE_SHAPES[0] % str(2**64), LINE_SHAPES[4] % ("9" * 5000)])
def test_every_line_runs_or_is_named_by_its_number(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "any.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8") + b"\n")
    prompts, errors = read_prompts(path, fmt="jsonl")
    for err in errors:
        assert isinstance(err, InputError) and err.path == str(path) and err.line is not None
    numbers = sorted([p.line for p in prompts] + [e.line for e in errors if e.line is not None])
    assert numbers == [n for n, line in enumerate(lines, start=1) if not _blank(line)]
    for prompt in prompts:
        _assert_storable(prompt.messages, {"id": prompt.id, **prompt.extra})


def _assert_storable(messages: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    """What every later step does with an accepted conversation: a strict JSON body for the
    backend and the output line, and the checkpoint store's own serialiser."""
    from langchain_core.messages import convert_to_messages
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    for value in (messages, extra):
        assert json.loads(json.dumps(value, allow_nan=False)) == value
    serde = JsonPlusSerializer()
    state = {"messages": convert_to_messages(messages), "extra": extra}
    assert serde.loads_typed(serde.dumps_typed(state)) == state
