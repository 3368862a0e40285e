"""Trace pages: one prompt's tree, or a whole batch, as self-contained HTML files.

``feedit view TRACE.json`` writes one page; ``feedit view answers.jsonl -o DIR`` writes
``DIR/index.html`` (one sortable row per prompt) and a page per answered prompt in
``DIR/p/``. The pages load nothing from anywhere (no CDN, no font, no request at all), so they
open offline and can be attached to a bug report. :mod:`langgraph_feedit.serve.pages` serves
the same pages for the runs ``feedit serve`` keeps, and ``feedit sweep`` writes them next to
its report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langgraph_feedit.errors import InputError
from langgraph_feedit.view.render import (
    INDEX_POLICY,
    TRACE_POLICY,
    index_page,
    trace_page,
    word_diff,
)

__all__ = [
    "INDEX_POLICY",
    "TRACE_POLICY",
    "batch_row",
    "check_trace",
    "index_page",
    "trace_page",
    "word_diff",
    "write_batch_pages",
    "write_trace_page",
]


def check_trace(data: Any, *, path: str, line: int | None = None) -> dict[str, Any]:
    """``data`` as a valid trace (JSON data), or an :class:`InputError` naming the place."""
    from pydantic import ValidationError

    from langgraph_feedit.state import Trace

    try:
        return Trace.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the top level"
        raise InputError(
            f"not a feedit trace: {where}: {first['msg']} ({exc.error_count()} error(s))",
            path=path,
            line=line,
        ) from None


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read it: {exc}", path=str(path)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None  # not one JSON document: an answers file (JSON lines), or nothing valid


def is_single_trace(path: Path) -> bool:
    """Whether ``path`` holds one trace (``feedit run --trace``, or ``{"messages", "trace"}``)
    rather than a batch's answers file."""
    data = _read_json(path)
    if not isinstance(data, Mapping):
        return False
    return "nodes" in data or ("trace" in data and "status" not in data)


def write_trace_page(source: Path, output: Path, *, title: str | None = None) -> Path:
    """The page of the trace in ``source`` (a trace, or ``{"messages": [...], "trace": {...}}``).

    Raises:
        InputError: the file is not a trace (the message names the first bad field).
    """
    data = _read_json(source)
    if not isinstance(data, Mapping):
        raise InputError("not a JSON object holding a feedit trace", path=str(source))
    messages = None
    if "nodes" not in data and isinstance(data.get("trace"), Mapping):
        messages = data.get("messages")
        data = data["trace"]
    trace = check_trace(data, path=str(source))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        trace_page(trace, messages=messages, title=title or f"feedit trace: {source.name}"),
        encoding="utf-8",
    )
    return output


def batch_row(
    pid: str, record: Mapping[str, Any], trace: Mapping[str, Any] | None, href: str | None
) -> dict[str, Any]:
    """One row of an index page."""
    if trace is None:
        return {
            "id": pid,
            "href": href,
            "status": record.get("status"),
            "error": record.get("error"),
        }
    total = (trace.get("usage") or {}).get("total") or {}
    selected = trace.get("selected")
    best = next((n for n in trace.get("nodes") or [] if n["id"] == selected), None)
    return {
        "id": pid,
        "href": href,
        "status": record.get("status"),
        "score": None if best is None else best.get("score"),
        "tokens": int(total.get("prompt_tokens", 0)) + int(total.get("completion_tokens", 0)),
        "calls": total.get("calls"),
        "wall_s": trace.get("wall_s"),
        "selected": selected,
        "stopped": trace.get("stopped"),
        "error": record.get("error") or (", ".join(record.get("missing") or []) or None),
    }


def write_batch_pages(
    answers: Path, output: Path, *, title: str | None = None
) -> list[dict[str, Any]]:
    """``output/index.html`` and ``output/p/<id>.html`` for each answered prompt of a
    ``feedit batch`` answers file; returns the index's rows.

    Raises:
        InputError: a line is not a batch record, or its trace is malformed (names the line).
    """
    from langgraph_feedit.batch_output import safe_name
    from langgraph_feedit.exports import ANSWERED, read_answers_file

    pages = output / "p"
    pages.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for line, record in read_answers_file(answers):
        pid = str(record["id"])
        trace: dict[str, Any] | None = None
        if record["status"] in ANSWERED:
            raw: Any = record.get("trace")
            if raw is None and isinstance(record.get("trace_file"), str):
                # A relative trace_file is where `feedit batch --traces` wrote it, from the
                # folder it ran in; try beside the answers file too.
                candidate = Path(record["trace_file"])
                if not candidate.is_absolute() and not candidate.exists():
                    candidate = answers.parent / candidate
                raw = _read_json(candidate) if candidate.exists() else None
                if raw is None:
                    raise InputError(
                        f"cannot read the trace file {record['trace_file']!r}",
                        path=str(answers),
                        line=line,
                    )
            if raw is not None:
                trace = check_trace(raw, path=str(answers), line=line)
        href = None
        if trace is not None:
            name = f"{safe_name(pid)}.html"
            (pages / name).write_text(
                trace_page(
                    trace,
                    messages=record.get("messages"),
                    title=f"prompt {pid}",
                    back="../index.html",
                ),
                encoding="utf-8",
            )
            href = f"p/{name}"
        rows.append(batch_row(pid, record, trace, href))
    (output / "index.html").write_text(
        index_page(rows, title=title or f"feedit batch: {answers.name}"), encoding="utf-8"
    )
    return rows


def default_output(source: Path, batch: bool) -> Path:
    """Where ``feedit view`` writes when no ``-o`` is given: beside the input."""
    return source.with_name(source.stem + ("-pages" if batch else ".html"))
