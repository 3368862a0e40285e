"""`feedit markdown-info`: the answer metadata style control needs (add_markdown_info.py)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from langgraph_feedit.cli import main
from langgraph_feedit.errors import UserError
from langgraph_feedit.evaluate.markdown_info import (
    _tiktoken_cache_file,
    add_markdown_info,
    token_counter,
)

DATA = Path(__file__).parent / "data" / "arena" / "arena-hard-v0.1"
JUDGMENTS = DATA / "model_judgment" / "gpt-4-1106-preview" / "feedit-demo.jsonl"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def without_metadata(tmp_path: Path) -> Path:
    """The fixture's answer folder, the baseline's metadata taken out (as in the published
    v0.1 gpt-4-0314.jsonl), one of its answers a plain string."""
    folder = tmp_path / "model_answer"
    folder.mkdir()
    shutil.copy(DATA / "model_answer" / "feedit-demo.jsonl", folder)
    rows = lines(DATA / "model_answer" / "gpt-4-0314.jsonl")
    for r in rows:
        del r["metadata"]
    rows[0]["messages"][-1]["content"] = rows[0]["messages"][-1]["content"]["answer"]
    (folder / "gpt-4-0314.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return folder


def test_a_baseline_without_metadata_is_scored_with_style_once_it_is_added(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = without_metadata(tmp_path)
    score = ["score", str(JUDGMENTS), "--answers-dir", str(answers), "--bootstrap", "10"]
    assert main(score) == 2
    err = capsys.readouterr().err
    assert "missing for gpt-4-0314: 4 prompt(s)" in err and "feedit markdown-info" in err

    assert main(["markdown-info", str(answers), "--in-place", "--token-len", "words"]) == 0
    assert "12 answer(s) in 2 file(s)" in capsys.readouterr().err
    assert main(score) == 0
    out = capsys.readouterr().out
    assert "style ctrl" in out

    # The markdown counts are arena-hard-auto's (the fixture's were counted by its regexes);
    # token_len is the word count asked for; every other field is kept as it was.
    original = lines(DATA / "model_answer" / "gpt-4-0314.jsonl")
    for new, old in zip(lines(answers / "gpt-4-0314.jsonl"), original, strict=True):
        content = new["messages"][-1]["content"]
        text = content if isinstance(content, str) else content["answer"]
        assert list(new["metadata"]) == ["token_len", "header_count", "list_count", "bold_count"]
        assert new["metadata"]["token_len"] == len(text.split())
        for key in ("header_count", "list_count", "bold_count"):
            assert new["metadata"][key] == old["metadata"][key]
        assert {k: v for k, v in new.items() if k not in ("metadata", "messages")} == {
            k: v for k, v in old.items() if k not in ("metadata", "messages")
        }


def test_keep_recounts_markdown_and_keeps_token_len(tmp_path: Path) -> None:
    src = DATA / "model_answer" / "feedit-demo.jsonl"
    out = tmp_path / "out" / "feedit-demo.jsonl"
    summary = add_markdown_info(src, out, token_len="keep")
    assert (summary.files, summary.answers) == (1, 6)
    assert lines(out) == lines(src)
    chars = add_markdown_info(src, tmp_path / "c.jsonl", token_len="chars")
    assert chars.answers == 6
    for row in lines(tmp_path / "c.jsonl"):
        assert row["metadata"]["token_len"] == len(row["messages"][-1]["content"]["answer"])


def test_keep_without_metadata_and_bad_lines_name_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = without_metadata(tmp_path)
    target = answers / "gpt-4-0314.jsonl"
    before = target.read_bytes()
    assert main(["markdown-info", str(target), "--in-place", "--token-len", "keep"]) == 2
    err = capsys.readouterr().err
    assert f"{target}:1: --token-len keep" in err and "Traceback" not in err
    assert target.read_bytes() == before  # nothing half-written
    bad = tmp_path / "bad.jsonl"
    bad.write_text(before.decode().splitlines()[1] + "\n" + '{"uid": "x"}\n')
    cmd = ["markdown-info", str(bad), "--output", str(tmp_path / "o.jsonl"), "--token-len", "words"]
    assert main(cmd) == 2
    assert f"{bad}:2: field" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
    assert main(["markdown-info", str(tmp_path / "nope"), "--in-place"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_tiktoken_is_never_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tiktoken", reason="needs tiktoken")
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    with pytest.raises(UserError, match=r"never downloads it.*--token-len words"):
        token_counter("tiktoken")
    src = DATA / "model_answer" / "feedit-demo.jsonl"
    assert main(["markdown-info", str(src), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "o200k_base" in err and str(cache) in err and "Traceback" not in err
    assert list(cache.iterdir()) == [] and not (tmp_path / "o.jsonl").exists()
    # A cached file that is not o200k_base is refused too (tiktoken would refetch it).
    cached = _tiktoken_cache_file()
    assert cached is not None and cached.parent == cache
    cached.write_bytes(b"bm90IGl0 0\n")
    with pytest.raises(UserError, match="checksum differs"):
        token_counter("tiktoken")


def test_tiktoken_counts_with_a_given_encoding_file(tmp_path: Path) -> None:
    pytest.importorskip("tiktoken", reason="needs tiktoken")
    # A byte-level encoding, 256 single bytes and one merge ("ab"): counts are then known.
    ranks = [bytes([i]) for i in range(256)] + [b"ab"]
    encoding = tmp_path / "tiny.tiktoken"
    encoding.write_bytes(
        b"".join(base64.b64encode(t) + b" " + str(r).encode() + b"\n" for r, t in enumerate(ranks))
    )
    warnings: list[str] = []
    count = token_counter("tiktoken", tiktoken_file=encoding, warn=warnings.append)
    assert count("xyz") == 3 and count("abab") == 2 and count("é") == 2
    assert count("<|endoftext|>") == len("<|endoftext|>")  # special tokens count as text
    assert len(warnings) == 1 and "not tiktoken's o200k_base" in warnings[0]
    broken = tmp_path / "broken.tiktoken"
    broken.write_text("not base64 at all\n")
    with pytest.raises(UserError, match=r"broken.tiktoken:1: not a tiktoken encoding line"):
        token_counter("tiktoken", tiktoken_file=broken)


PUBLISHED = Path(__file__).parent / "data" / "arena" / "published"


def test_markdown_counts_match_arena_hard_autos_published_metadata(tmp_path: Path) -> None:
    # Lines of arena-hard-auto's own files: v2.0's o3-mini answers carry the metadata its
    # add_markdown_info.py wrote; counted again here from the text alone, they must agree.
    published = lines(PUBLISHED / "o3-mini-2025-01-31.jsonl")
    assert any(sum(r["metadata"][k].values()) for r in published for k in ("header_count",))
    stripped = tmp_path / "o3-mini-2025-01-31.jsonl"
    stripped.write_text(
        "".join(
            json.dumps({k: v for k, v in r.items() if k != "metadata"}) + "\n" for r in published
        )
    )
    add_markdown_info(stripped, stripped, token_len="words")
    for new, old in zip(lines(stripped), published, strict=True):
        for key in ("header_count", "list_count", "bold_count"):
            assert new["metadata"][key] == old["metadata"][key], (old["uid"], key)
    # v0.1's published baseline has no metadata at all: it gets it, nothing else changes.
    v01 = lines(PUBLISHED / "gpt-4-0314.jsonl")
    assert all("metadata" not in r for r in v01)
    out = tmp_path / "gpt-4-0314.jsonl"
    assert add_markdown_info(PUBLISHED / "gpt-4-0314.jsonl", out, token_len="chars").answers == 3
    for new, old in zip(lines(out), v01, strict=True):
        assert {k: v for k, v in new.items() if k != "metadata"} == old
        assert new["metadata"]["token_len"] == len(old["messages"][-1]["content"]["answer"])
