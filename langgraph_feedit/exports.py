"""Exports from a batch's answers file: Arena-Hard answers, a flat table of nodes, one trace.

Arena-Hard answer files follow arena-hard-auto's schema exactly (``model`` is the file stem;
``metadata`` holds only ``token_len``, ``header_count``, ``list_count``, ``bold_count``, in that
order, with markdown counted outside code fences). ``token_len`` is the number of completion
tokens the endpoint that wrote the selected answer reported for it: no tokenizer is loaded, so
it can differ slightly from arena-hard-auto's own count (tiktoken's ``gpt-4o`` encoding), which
only the style-controlled score reads.

Records with status ``partial`` (answered, but some branch failed or some candidate went
unscored) have an answer and are exported like ``ok`` ones; only ``failed`` records, which have
none, are left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langgraph_feedit.errors import InputError, UserError
from langgraph_feedit.jsonl import read_jsonl

__all__ = [
    "ANSWERED",
    "export_arena_answers",
    "export_nodes",
    "find_trace",
    "read_answers_file",
]

ANSWERED = frozenset({"ok", "partial"})
"""Statuses of records that hold an answer and a trace."""


def read_answers_file(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The records of a ``feedit batch`` output file, with their line numbers.

    Raises:
        InputError: the file cannot be read, or a line is not a batch record (naming the line).
    """
    p = Path(path)
    for number, record in read_jsonl(p):
        if "id" not in record or "status" not in record:
            raise InputError(
                "not a feedit batch record (no 'id'/'status')", path=str(p), line=number
            )
        yield number, record


def _trace(record: dict[str, Any], path: Path, line: int) -> dict[str, Any]:
    if "trace" in record:
        trace: dict[str, Any] = record["trace"]
        return trace
    if "trace_file" in record:
        data: dict[str, Any] = json.loads(Path(record["trace_file"]).read_text(encoding="utf-8"))
        return data
    raise InputError("the record has no trace", path=str(path), line=line)


def export_arena_answers(answers: str | Path, output: str | Path) -> tuple[int, list[str]]:
    """Write an Arena-Hard answer file; returns the count written and the ids left out
    (prompts that failed). Partial answers are written."""
    from langgraph_feedit.evaluate.prompts import split_think
    from langgraph_feedit.evaluate.records import answer_record, dump_record

    src, out = Path(answers), Path(output)
    model = out.stem
    written, missing = 0, []
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for line, record in read_answers_file(src):
            if record["status"] not in ANSWERED:
                missing.append(str(record["id"]))
                continue
            trace = _trace(record, src, line)
            selected = next(n for n in trace["nodes"] if n["id"] == trace["selected"])
            # The answer holds no thinking; the selected node keeps it. A trace written before
            # replies were split may still hold a think block in its answer.
            thought, answer = selected.get("reasoning"), trace["answer"] or ""
            if thought is None:
                thought, answer = split_think(answer)
            row = answer_record(
                str(record["id"]),
                model,
                answer,
                # The answer's length: the thinking's tokens, where counted, are not in it.
                int(selected["usage"]["completion_tokens"])
                - int(selected["usage"].get("reasoning_tokens", 0)),
                messages=record.get("messages") or [],
                thought=thought,
                tstamp=selected.get("ended"),
            )
            f.write(dump_record(row))
            written += 1
    return written, missing


def export_nodes(answers: str | Path, output: str | Path) -> int:
    """Every node of every trace as one flat JSON line, for analysis; returns the count."""
    src, out = Path(answers), Path(output)
    count = 0
    with out.open("w", encoding="utf-8") as f:
        for line, record in read_answers_file(src):
            if record["status"] not in ANSWERED:
                continue
            trace = _trace(record, src, line)
            for node in trace["nodes"]:
                usage = node.get("usage") or {}
                row = {
                    "prompt_id": record["id"],
                    **{k: v for k, v in node.items() if k not in ("usage", "judge_usage")},
                    "selected": node["id"] == trace["selected"],
                    **{f"usage_{k}": v for k, v in usage.items()},
                    **{f"judge_{k}": v for k, v in (node.get("judge_usage") or {}).items()},
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
    return count


def find_trace(answers: str | Path, prompt_id: str) -> dict[str, Any]:
    """One prompt's trace by id."""
    src = Path(answers)
    for line, record in read_answers_file(src):
        if str(record["id"]) == prompt_id:
            if record["status"] not in ANSWERED:
                raise UserError(f"prompt {prompt_id!r} failed: {record.get('error')}")
            return _trace(record, src, line)
    raise UserError(f"no prompt with id {prompt_id!r} in {src}")
