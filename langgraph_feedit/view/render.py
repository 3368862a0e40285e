"""HTML for one trace and for a batch's index: self-contained pages, built as strings.

Every text that came from a model or a caller (answers, critiques, messages, prompt ids, error
texts) goes through :func:`html.escape` once, where it is written into the page; nothing else
writes caller text. The pages load nothing (see :mod:`langgraph_feedit.view.page`), so even
a text that slipped past escaping could neither run a script nor call home.

A trace page has no script (the tree folds with ``<details>``, which the browser lays out
only when opened, so a tree of hundreds of nodes opens at once). The index has one small
script that sorts its table.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any, get_args

# The policies are importable from here as before the page's shell had a module of its own.
from langgraph_feedit.view.page import INDEX_POLICY as INDEX_POLICY
from langgraph_feedit.view.page import INDEX_SCRIPT, page
from langgraph_feedit.view.page import TRACE_POLICY as TRACE_POLICY
from langgraph_feedit.view.page import page_policy as page_policy

__all__ = ["index_page", "trace_page", "word_diff"]


# The role and node-kind lists come from where they are defined, imported when a page is
# written: `feedit --help` builds the view command's parser without loading the configuration
# or LangGraph (tests/test_seams.py).
def _run_roles() -> tuple[str, ...]:
    """The roles a run calls, in the order the pages list them (``overrides.RUN_ROLES`` less
    ``default``, which is no role of its own)."""
    from langgraph_feedit.overrides import RUN_ROLES

    return tuple(r for r in RUN_ROLES if r != "default")


def _node_kinds() -> tuple[str, ...]:
    from langgraph_feedit.state import NodeKind

    return get_args(NodeKind)


# -- pieces ---------------------------------------------------------------------------------------


# Words are compared without the blanks around them (each keeps the blank after it for
# display): blanks as tokens of their own would be the most common element by far, which makes
# difflib's matching quadratic (17 s for a 16x4x2 tree instead of under one).
_WORDS = re.compile(r"(\S+)(\s*)")


def _split(text: str) -> tuple[str, list[str], list[str]]:
    lead = text[: len(text) - len(text.lstrip())]
    pairs = _WORDS.findall(text)
    return lead, [w for w, _ in pairs], [w + blank for w, blank in pairs]


def word_diff(old: str, new: str) -> str:
    """``new`` as HTML, with the words it adds in ``<ins>`` and those it drops in ``<del>``."""
    _, a, a_shown = _split(old)
    lead, b, b_shown = _split(new)
    out: list[str] = [escape(lead)]
    matcher = difflib.SequenceMatcher(None, a, b)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(escape("".join(b_shown[j1:j2])))
            continue
        # The blank after a changed run stays outside its mark (the new text's, if any).
        gone, added = "".join(a_shown[i1:i2]), "".join(b_shown[j1:j2])
        if gone:
            out.append(f"<del>{escape(gone.rstrip())}</del>")
        if added:
            out.append(f"<ins>{escape(added.rstrip())}</ins>")
        tail = added if added else gone
        out.append(escape(tail[len(tail.rstrip()) :]))
    return "".join(out)


def _tokens(usage: Mapping[str, Any] | None) -> int:
    usage = usage or {}
    return int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _blank(value: object) -> str:
    return "" if value is None else escape(str(value))


def _duration(node: Mapping[str, Any]) -> float | None:
    started, ended = node.get("started"), node.get("ended")
    if started is None or ended is None:
        return None
    return max(float(ended) - float(started), 0.0)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            else:
                parts.append(json.dumps(part, ensure_ascii=False))
        return "\n".join(parts)
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def _conversation(messages: Sequence[Any] | None) -> str:
    if not messages:
        return (
            '<p class="meta" id="conversation">The conversation is not in this file (a trace '
            "written before traces kept their conversation).</p>"
        )
    rows = []
    for m in messages:
        if isinstance(m, Mapping):
            role, content = str(m.get("role", "?")), _content_text(m.get("content"))
        elif isinstance(m, Sequence) and not isinstance(m, str) and len(m) == 2:
            role, content = str(m[0]), _content_text(m[1])
        else:
            role, content = "?", _content_text(m)
        rows.append(
            f'<div class="msg"><span class="who">{escape(role)}</span>'
            f'<div class="text">{escape(content)}</div></div>'
        )
    return f'<div id="conversation">{"".join(rows)}</div>'


def _reasoning_cell(usage: Mapping[str, Any]) -> str:
    """Thinking tokens, or why there is no count: a server without a reasoning parser does
    not count them apart, and a guess would mislead."""
    reported, calls = int(usage.get("reasoning_reported", 0)), int(usage.get("calls", 0))
    if not calls:
        return "0"
    if not reported:
        return "not reported"
    tokens = int(usage.get("reasoning_tokens", 0))
    return str(tokens) if reported >= calls else f"{tokens} ({reported} of {calls} calls)"


def _usage_table(trace: Mapping[str, Any]) -> str:
    usage: Mapping[str, Any] = trace.get("usage") or {}
    roles = _run_roles()
    names = [r for r in roles if r in usage] + [r for r in usage if r not in roles and r != "total"]
    rows = []
    for name in [*names, "total"]:
        u = usage.get(name)
        if u is None:
            continue
        rows.append(
            f"<tr><td>{escape(str(name))}</td><td>{u.get('calls', 0)}</td>"
            f"<td>{u.get('prompt_tokens', 0)}</td><td>{u.get('completion_tokens', 0)}</td>"
            f"<td>{_reasoning_cell(u)}</td><td>{u.get('cached_tokens', 0)}</td></tr>"
        )
    reused = trace.get("reused") or {}
    if reused:
        rows.append(
            f"<tr><td>reused (cache)</td><td>{reused.get('calls', 0)}</td>"
            f"<td>{reused.get('prompt_tokens', 0)}</td>"
            f"<td>{reused.get('completion_tokens', 0)}</td>"
            f"<td>{_reasoning_cell(reused)}</td>"
            f"<td>{reused.get('cached_tokens', 0)}</td></tr>"
        )
    return (
        '<table id="usage"><thead><tr><th>role</th><th>calls</th><th>prompt tokens</th>'
        '<th>completion tokens</th><th title="the part of completion tokens that was '
        'thinking, where the servers counted it">of them thinking</th>'
        "<th>cached tokens</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _calls(nodes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every timed call: each node's own (draft, critique, edit) and a candidate's pointwise
    judge call, which the trace records on the candidate's node."""
    calls: list[dict[str, Any]] = []
    for n in nodes:
        if n.get("started") is not None and n.get("ended") is not None:
            calls.append(dict(n))
        if n.get("judge_started") is not None and n.get("judge_ended") is not None:
            calls.append(
                {
                    "id": n["id"],
                    "role": "judge",
                    "started": n["judge_started"],
                    "ended": n["judge_ended"],
                    "reused": n.get("reused"),
                    "error": n.get("judge_note") if n.get("judge_path") == "unscored" else None,
                    "judge": True,
                }
            )
    return calls


def _timeline(nodes: Sequence[Mapping[str, Any]], path: set[str]) -> str:
    timed = _calls(nodes)
    if not timed:
        return '<p class="meta" id="timeline">No call in this trace has a start and end time.</p>'
    timed.sort(key=lambda n: (float(n["started"]), str(n["id"])))
    # The axis is this run's own calls: a node reused from an earlier attempt of a resumed run
    # keeps that attempt's times, maybe hours before, and would squash every other bar.
    own = [n for n in timed if not n.get("reused")] or timed
    t0 = min(float(n["started"]) for n in own)
    end = max(float(n["ended"]) for n in own)
    span = max(end - t0, 1e-9)
    elsewhere = [n for n in timed if float(n["started"]) < t0 or float(n["ended"]) > end]
    timed = [n for n in timed if n not in elsewhere]
    rows = []
    for n in timed:
        left = (float(n["started"]) - t0) / span * 100
        width = max((float(n["ended"]) - float(n["started"])) / span * 100, 0.0)
        classes = ["bar", f"role-{n.get('role', '')}"]
        if n.get("reused"):
            classes.append("reused")
        if n.get("error"):
            classes.append("failed")
        if n["id"] in path:
            classes.append("on-path")
        title = (
            f"{n['id']} ({n.get('role')}): {float(n['started']) - t0:.3f} s to "
            f"{float(n['ended']) - t0:.3f} s"
        )
        rows.append(
            f'<div class="tl-row"><a href="#n-{escape(str(n["id"]))}" '
            f'class="{" ".join(escape(c) for c in classes)}" data-node="{escape(str(n["id"]))}" '
            f'style="left:{left:.3f}%;width:{width:.3f}%" title="{escape(title)}"></a></div>'
        )
    untimed = sum(1 for n in nodes if n.get("started") is None or n.get("ended") is None)
    notes = [f"{untimed} node(s) without a time"] if untimed else []
    if elsewhere:
        notes.append(f"{len(elsewhere)} reused from an earlier attempt")
    note = f" (left out: {'; '.join(notes)})" if notes else ""
    return (
        '<div class="legend">'
        + "".join(f'<span><i style="background:var(--{r})"></i>{r}</span>' for r in _run_roles())
        + '<span><i style="background:#c33"></i>failed</span>'
        '<span><i style="background:#999;opacity:.4"></i>reused</span></div>'
        f'<div class="timeline" id="timeline">{"".join(rows)}</div>'
        f'<div class="axis"><span>0 s</span><span>{span:.2f} s{escape(note)}</span></div>'
    )


def _tags(node: Mapping[str, Any], selected: str | None) -> str:
    tags = [
        f'<span class="tag kind k-{escape(str(node["kind"]))}">{escape(str(node["kind"]))}</span>'
    ]
    if node["kind"] != "draft":
        tags.append(f'<span class="tag">round {int(node.get("round") or 0)}</span>')
    if node.get("role") and node.get("role") != node["kind"]:
        tags.append(f'<span class="tag">role {escape(str(node["role"]))}</span>')
    if node.get("model"):
        tags.append(f'<span class="tag">{escape(str(node["model"]))}</span>')
    if node.get("score") is not None:
        tags.append(f'<span class="tag score">score {float(node["score"]):.3f}</span>')
    elif node["kind"] != "critique" and node.get("text") is not None:
        tags.append('<span class="tag err" title="see the judge note">no score</span>')
    if node.get("verdict"):
        tags.append(f'<span class="tag verdict">{escape(str(node["verdict"]))} helpful</span>')
    usage = node.get("usage") or {}
    tags.append(
        f'<span class="tag" title="prompt + completion tokens">'
        f"{usage.get('prompt_tokens', 0)}+{usage.get('completion_tokens', 0)} tok</span>"
    )
    duration = _duration(node)
    if duration is not None:
        tags.append(f'<span class="tag">{duration:.2f} s</span>')
    if node.get("finish_reason") and node.get("finish_reason") != "stop":
        tags.append(f'<span class="tag err">finish {escape(str(node["finish_reason"]))}</span>')
    if node.get("error"):
        kind = node.get("failure") or "error"
        tags.append(f'<span class="tag err failure">{escape(str(kind))}</span>')
    if node.get("skipped"):
        tags.append(f'<span class="tag">skipped: {escape(str(node["skipped"]))}</span>')
    if node.get("reused"):
        tags.append('<span class="tag reused">reused</span>')
    if node["id"] == selected:
        tags.append('<span class="tag sel">selected</span>')
    return "".join(tags)


def _body(node: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    text = node.get("text")
    if node.get("reasoning"):
        # The model's thinking, folded away: the answer below is what the tree passed on.
        parts.append(
            '<details class="thinking"><summary>thinking</summary>'
            f'<div class="text">{escape(str(node["reasoning"]))}</div></details>'
        )
    if node["kind"] == "edit" and text is not None:
        critique = by_id.get(str(node.get("parent")))
        base = by_id.get(str(critique.get("parent"))) if critique else None
        if critique is not None and base is not None and base.get("text") is not None:
            parts.append(
                '<div class="pair"><div><h4>critique '
                f"{escape(str(critique['id']))}</h4>"
                f'<div class="text critique">{escape(str(critique.get("text") or ""))}</div>'
                f"</div><div><h4>edit, as changed from {escape(str(base['id']))}</h4>"
                f'<div class="text diff">{word_diff(str(base["text"]), str(text))}</div>'
                "</div></div>"
            )
        else:
            parts.append(f'<div class="text">{escape(str(text))}</div>')
    elif text is not None:
        parts.append(f'<div class="text">{escape(str(text))}</div>')
    if node.get("error"):
        parts.append(f'<h4>error</h4><div class="text error">{escape(str(node["error"]))}</div>')
    if node.get("judge_note"):
        parts.append(f"<h4>judge</h4><div class=text>{escape(str(node['judge_note']))}</div>")
    judge = node.get("judge_usage") or {}
    if judge.get("calls"):
        parts.append(
            f'<p class="meta">judged with {judge.get("calls")} call(s), {_tokens(judge)} tokens</p>'
        )
    return f'<div class="body">{"".join(parts)}</div>'


def _tree(trace: Mapping[str, Any]) -> tuple[str, set[str]]:
    nodes: list[Mapping[str, Any]] = list(trace.get("nodes") or [])
    by_id = {str(n["id"]): n for n in nodes}
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for n in nodes:
        parent = n.get("parent")
        key = str(parent) if parent is not None and str(parent) in by_id else None
        children.setdefault(key, []).append(n)
    selected = trace.get("selected")
    path: set[str] = set()
    cursor = by_id.get(str(selected)) if selected is not None else None
    while cursor is not None and str(cursor["id"]) not in path:
        path.add(str(cursor["id"]))
        parent = cursor.get("parent")
        cursor = by_id.get(str(parent)) if parent is not None else None

    def items(parent: str | None) -> Iterable[str]:
        for n in children.get(parent, []):
            nid = str(n["id"])
            classes = ["node", f"kind-{n['kind']}"]
            if nid in path:
                classes.append("on-path")
            if nid == selected:
                classes.append("selected")
            sub = "".join(items(nid))
            yield (
                f'<li class="{escape(" ".join(classes))}" id="n-{escape(nid)}" '
                f'data-node="{escape(nid)}"><details class="box"{" open" if nid in path else ""}>'
                f'<summary><span class="id">{escape(nid)}</span>{_tags(n, selected)}</summary>'
                f"{_body(n, by_id)}</details>" + (f"<ul>{sub}</ul>" if sub else "") + "</li>"
            )

    return f'<ul class="tree" id="tree">{"".join(items(None))}</ul>', path


# -- pages ----------------------------------------------------------------------------------------


def trace_page(
    trace: Mapping[str, Any],
    *,
    messages: Sequence[Any] | None = None,
    title: str = "feedit trace",
    back: str | None = None,
) -> str:
    """The page of one prompt's run: conversation, answer, usage, timeline and tree.

    ``trace`` is a :class:`~langgraph_feedit.state.Trace` as JSON data; ``messages`` the
    conversation it answered, when known (else the trace's own ``conversation``); ``back`` a
    link to an index page.
    """
    messages = messages or trace.get("conversation")
    nodes: list[Mapping[str, Any]] = list(trace.get("nodes") or [])
    tree, path = _tree(trace)
    selected = trace.get("selected")
    best = next((n for n in nodes if n["id"] == selected), None)
    total = (trace.get("usage") or {}).get("total") or {}
    counts = {k: sum(1 for n in nodes if n["kind"] == k) for k in _node_kinds()}
    failed = sum(1 for n in nodes if n.get("error"))
    summary = (
        f'<p class="meta" id="summary">selected <b>{escape(str(selected))}</b>'
        + (
            f" with score <b>{_num(best.get('score'), 3)}</b>"
            if best and best.get("score") is not None
            else ""
        )
        + f" · stopped: <b id=stopped>{escape(str(trace.get('stopped')))}</b>"
        f" · judge {escape(str(trace.get('judge')))} · {int(trace.get('rounds') or 0)} round(s)"
        + f" · {', '.join(f'{count} {kind}s' for kind, count in counts.items())}"
        + (f", <b>{failed} failed</b>" if failed else "")
        + f" · {total.get('calls', 0)} calls, {_tokens(total)} tokens"
        f" · {float(trace.get('wall_s') or 0):.2f} s</p>"
    )
    answer = trace.get("answer")
    body = (
        (f'<p><a href="{escape(back)}">&larr; all prompts</a></p>' if back else "")
        + f"<h1>{escape(title)}</h1>{summary}"
        + f"<h2>Conversation</h2>{_conversation(messages)}"
        + "<h2>Answer</h2>"
        + (
            f'<div class="text" id="answer">{escape(str(answer))}</div>'
            if answer is not None
            else '<p class="meta" id="answer">No answer: every branch failed.</p>'
        )
        + "<h2>Usage per role</h2>"
        + _usage_table(trace)
        + "<h2>Timeline</h2><p class=meta>One bar per call (draft, critique, edit, and each "
        "candidate's judge call), from its start to its end: bars side by side ran at the same "
        "time. A pairwise judge's matches belong to no one node: they are in the usage only.</p>"
        + _timeline(nodes, path)
        + "<h2>Tree</h2><p class=meta>Draft, critique, edit, round by round; the selected "
        "path is highlighted and open. An edit shows the critique that asked for it beside "
        "its word diff against the answer it edited.</p>" + tree
    )
    return page(title, body)


def index_page(rows: Sequence[Mapping[str, Any]], *, title: str = "feedit batch") -> str:
    """A sortable table, one row per prompt: ``id``, ``href`` (its page, or None), ``status``,
    ``score``, ``tokens``, ``calls``, ``wall_s``, ``selected``, ``stopped``, ``error``."""
    head = (
        "<tr><th class=sort>prompt</th><th class=sort>status</th><th class=sort>score</th>"
        "<th class=sort>tokens</th><th class=sort>calls</th><th class=sort>wall s</th>"
        "<th>selected</th><th>stopped</th></tr>"
    )
    out = []
    for r in rows:
        pid = escape(str(r["id"]))
        link = f'<a href="{escape(str(r["href"]))}">{pid}</a>' if r.get("href") else pid
        status = str(r.get("status") or "")
        error = f' title="{escape(str(r["error"]))}"' if r.get("error") else ""
        score, tokens, calls, wall = (
            r.get("score"),
            r.get("tokens"),
            r.get("calls"),
            r.get("wall_s"),
        )
        out.append(
            f'<tr class="{escape(status)}"><td data-v="{pid}">{link}</td>'
            f'<td data-v="{escape(status)}"{error}>{escape(status)}</td>'
            f'<td data-v="{"" if score is None else score}">{_num(score, 3)}</td>'
            f'<td data-v="{_blank(tokens)}">{_blank(tokens)}</td>'
            f'<td data-v="{_blank(calls)}">{_blank(calls)}</td>'
            f'<td data-v="{"" if wall is None else wall}">{_num(wall)}</td>'
            f"<td>{escape(str(r.get('selected') or ''))}</td>"
            f"<td>{escape(str(r.get('stopped') or ''))}</td></tr>"
        )
    body = (
        f"<h1>{escape(title)}</h1><p class=meta>{len(rows)} prompt(s); click a column to sort."
        "</p>"
        f'<table id="index"><thead>{head}</thead><tbody>{"".join(out)}</tbody></table>'
    )
    return page(title, body, INDEX_SCRIPT)
