"""Trace pages (``feedit view``, ``feedit serve --keep-traces``), checked in a real headless
Chromium: Debian's ``chromium`` driven by Playwright's client (no browser download; ``make test``
installs the Debian package when it can). Without a Chromium the browser tests skip, saying so.

Artifacts: screenshots and the measured page sizes and times are written to
``build/artifacts/test_view/`` (``FEEDIT_ARTIFACTS`` moves it), for a person to look at.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from langgraph_feedit.batch import BatchOptions, run_batch
from langgraph_feedit.cli import main
from langgraph_feedit.errors import InputError
from langgraph_feedit.serve import build_app, serve_in_thread
from langgraph_feedit.testing import SimServer
from langgraph_feedit.view import trace_page, word_diff, write_batch_pages

from .helpers import sim_config, write_prompts

DATA = Path(__file__).parent / "data" / "view"
ARTIFACTS = Path(os.environ.get("FEEDIT_ARTIFACTS", "build/artifacts")) / "test_view"
HOSTILE = (
    '<script>window.__pwned = 1</script><img src="http://127.0.0.1:9/x.png" '
    'onerror="window.__pwned = 2"> & </div></details>'
)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str | None:
    for candidate in (os.environ.get("FEEDIT_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = _chromium()
    if path is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set FEEDIT_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright client is not installed (pip install '.[test]')")
    with sync_playwright() as p:
        # launch() gives every run a new empty profile (its own --user-data-dir).
        b = p.chromium.launch(executable_path=path, headless=True, args=FLAGS)
        yield b
        b.close()


class Page:
    """A browser tab that records every request it makes."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1200, "height": 900})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, url: str) -> Any:
        self.page.goto(url, wait_until="load")
        return self.page

    def outside(self, allowed: str) -> list[str]:
        return [u for u in self.requests if not u.startswith(allowed)]


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    t = Page(browser)
    yield t
    t.context.close()


def recorded() -> dict[str, Any]:
    """A trace recorded from the simulated server: 2 drafts, 2 critiques each, 1 edit, two
    rounds with a beam of 1."""
    data: dict[str, Any] = json.loads((DATA / "trace.json").read_text(encoding="utf-8"))
    return data


def doctored() -> dict[str, Any]:
    """The recorded trace with the selected edit changed from its draft by one word (so the
    diff has a known insertion and deletion), and hostile text in a critique."""
    trace = recorded()
    by_id = {n["id"]: n for n in trace["nodes"]}
    selected = by_id[trace["selected"]]
    base = by_id[by_id[selected["parent"]]["parent"]]
    base["text"] = "The quick brown fox jumps over the lazy dog."
    selected["text"] = "The quick red fox jumps over the lazy dog."
    trace["answer"] = selected["text"]
    by_id[selected["parent"]]["text"] = "Say red, not brown. " + HOSTILE
    return trace


def ancestors(trace: dict[str, Any], node_id: str) -> set[str]:
    by_id = {n["id"]: n for n in trace["nodes"]}
    out = set()
    cursor: str | None = node_id
    while cursor is not None:
        out.add(cursor)
        cursor = by_id[cursor]["parent"]
    return out


def save_artifact(name: str, data: bytes | str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


# -- without a browser ----------------------------------------------------------------------------


def test_word_diff_marks_inserted_and_deleted_words() -> None:
    html = word_diff("a quick brown fox", "a quick red fox <b>")
    assert "<del>brown</del>" in html and "<ins>red</ins>" in html
    assert "&lt;b&gt;" in html and "<b>" not in html


def test_every_text_is_escaped() -> None:
    trace = doctored()
    page = trace_page(trace, messages=[{"role": "user", "content": HOSTILE}], title=HOSTILE)
    assert "<script>window" not in page and "<img" not in page
    assert "&lt;script&gt;window.__pwned" in page
    # The page allows no request and, having no script of its own, runs none.
    assert "default-src 'none'" in page and "script-src" not in page


def test_node_facts_are_shown() -> None:
    trace = recorded()
    by_id = {n["id"]: n for n in trace["nodes"]}
    by_id["d1.c1.e0"].update(text=None, error="sim: 500 <Internal>", failure="backend", score=None)
    by_id["d1.c0"].update(verdict="mostly", reused=True)
    by_id["d1"].update(finish_reason="length")
    page = trace_page(trace)

    def summary(node_id: str) -> str:
        start = page.index(f'id="n-{node_id}"')
        return page[start : page.index("</summary>", start)]

    assert "backend" in summary("d1.c1.e0") and "score" not in summary("d1.c1.e0")
    assert "sim: 500 &lt;Internal&gt;" in page
    assert "mostly helpful" in summary("d1.c0") and "reused" in summary("d1.c0")
    assert "finish length" in summary("d1")
    assert "score 1.000" in summary(trace["selected"]) and "selected" in summary(trace["selected"])
    assert "113+30 tok" in summary(trace["selected"]) and " s</span>" in summary("d0")


def test_timeline_axis_is_the_runs_own_calls() -> None:
    """A node reused from an earlier attempt of a resumed run keeps that attempt's times; the
    timeline leaves it out instead of stretching its axis over the hours between."""
    trace = recorded()
    old = trace["nodes"][1]
    old.update(reused=True, started=old["started"] - 3600, ended=old["ended"] - 3600)
    page = trace_page(trace)
    timeline = page[page.index('id="timeline"') : page.index("<h2>Tree")]
    assert timeline.count('class="bar ') == len(trace["nodes"]) - 1
    assert f'data-node="{old["id"]}"' not in timeline
    assert "left out: 1 reused from an earlier attempt" in timeline
    assert "3600" not in timeline and "1.57 s" in timeline


def test_view_command_writes_a_page_and_names_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "trace.json"
    src.write_text(json.dumps(recorded()), encoding="utf-8")
    assert main(["view", str(src)]) == 0
    page = (tmp_path / "trace.html").read_text(encoding="utf-8")
    assert all(f'data-node="{n["id"]}"' in page for n in recorded()["nodes"])
    bad = tmp_path / "bad.json"
    trace = recorded()
    trace["nodes"][3]["kind"] = "poem"
    bad.write_text(json.dumps(trace), encoding="utf-8")
    assert main(["view", str(bad), "-o", str(tmp_path / "bad.html")]) == 2
    err = capsys.readouterr().err
    assert "nodes.3.kind" in err and "bad.json" in err and "Traceback" not in err
    lines = tmp_path / "answers.jsonl"
    lines.write_text('{"id": "a", "status": "failed", "error": "x"}\nnot json\n', encoding="utf-8")
    assert main(["view", str(lines), "-o", str(tmp_path / "pages")]) == 2
    assert "answers.jsonl:2: not valid JSON" in capsys.readouterr().err


# -- in the browser -------------------------------------------------------------------------------


def test_trace_page_in_chromium(tab: Page, tmp_path: Path) -> None:
    trace = doctored()
    out = tmp_path / "trace.html"
    src = tmp_path / "run.json"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": HOSTILE}]
    src.write_text(json.dumps({"messages": messages, "trace": trace}), encoding="utf-8")
    assert main(["view", str(src), "-o", str(out)]) == 0
    page = tab.open(out.as_uri())

    ids = page.eval_on_selector_all("li.node", "els => els.map(e => e.dataset.node)")
    assert sorted(ids) == sorted(n["id"] for n in trace["nodes"])
    on_path = page.eval_on_selector_all("li.on-path", "els => els.map(e => e.dataset.node)")
    assert set(on_path) == ancestors(trace, trace["selected"])
    assert page.eval_on_selector_all("li.selected", "els => els.map(e => e.dataset.node)") == [
        trace["selected"]
    ]
    # The selected path is open; the rest folded.
    assert page.eval_on_selector_all(
        "li.node > details[open]", "els => els.map(e => e.parentElement.dataset.node)"
    ) == [n["id"] for n in trace["nodes"] if n["id"] in on_path]

    selected = page.locator(f'li[data-node="{trace["selected"]}"] > details .diff')
    assert selected.locator("ins").all_inner_texts() == ["red"]
    assert selected.locator("del").all_inner_texts() == ["brown"]
    critique = page.locator(f'li[data-node="{trace["selected"]}"] > details .critique')
    assert HOSTILE in critique.inner_text()  # shown as text, beside the edit it produced

    timed = [n for n in trace["nodes"] if n["started"] is not None and n["ended"] is not None]
    bars = page.eval_on_selector_all("#timeline .bar", "els => els.map(e => e.dataset.node)")
    assert sorted(bars) == sorted(n["id"] for n in timed)
    calls = sum(trace["usage"][r]["calls"] for r in ("draft", "critique", "edit"))
    assert len(bars) == calls
    # Each bar spans its call, on one time axis: calls that ran side by side overlap.
    spans = dict(
        page.eval_on_selector_all(
            "#timeline .bar",
            "els => els.map(e => { const r = e.getBoundingClientRect(),"
            " t = e.closest('.timeline').getBoundingClientRect();"
            " return [e.dataset.node,"
            " [(r.left - t.left) / t.width, (r.right - t.left) / t.width]]; })",
        )
    )
    t0 = min(n["started"] for n in timed)
    span = max(n["ended"] for n in timed) - t0
    for n in timed:
        left, right = spans[n["id"]]
        assert left == pytest.approx((n["started"] - t0) / span, abs=0.01)
        assert right == pytest.approx((n["ended"] - t0) / span, abs=0.01)
    assert spans["d0.c0"][0] == pytest.approx(spans["d0.c1"][0], abs=0.01)

    usage = page.locator("#usage").inner_text()
    assert all(role in usage for role in ("draft", "critique", "edit", "judge", "total"))
    assert page.locator("#stopped").inner_text() == trace["stopped"]
    assert HOSTILE in page.locator("#conversation").inner_text()
    assert page.evaluate("window.__pwned") is None
    assert tab.outside("file://") == []
    shot = save_artifact("trace.png", page.screenshot(full_page=True))
    assert shot.stat().st_size > 10_000


def large_trace(drafts: int = 16, critiques: int = 4, edits: int = 2, rounds: int = 2) -> Any:
    """A tree of the recorded trace's shape, ``drafts x critiques x edits``, every candidate
    carried into the next round: the largest tree those widths make."""
    rng = random.Random(5)
    words = [w for n in recorded()["nodes"] for w in (n["text"] or "").split()]
    template = recorded()["nodes"][0]
    nodes: list[dict[str, Any]] = []
    t = 1_800_000_000.0

    def node(nid: str, kind: str, parent: str | None, rnd: int) -> dict[str, Any]:
        start = t + rnd * 3 + rng.random()
        n = copy.deepcopy(template)
        n.update(
            id=nid,
            kind=kind,
            parent=parent,
            round=rnd,
            role=kind,
            text=" ".join(rng.choice(words) for _ in range(rng.randint(120, 220))),
            score=None if kind == "critique" else rng.random(),
            started=start,
            ended=start + 0.5 + rng.random(),
        )
        nodes.append(n)
        return n

    frontier = [node(f"d{i}", "draft", None, 0)["id"] for i in range(drafts)]
    for rnd in range(1, rounds + 1):
        nxt = []
        for cand in frontier:
            for c in range(critiques):
                cid = node(f"{cand}.c{c}", "critique", cand, rnd)["id"]
                nxt += [node(f"{cid}.e{e}", "edit", cid, rnd)["id"] for e in range(edits)]
        frontier = nxt[: drafts * critiques * edits // 8] if rnd < rounds else nxt
    trace = recorded()
    trace.update(nodes=nodes, selected=frontier[0], answer=nodes[-1]["text"], rounds=rounds)
    return trace


def test_large_tree_opens_and_scrolls(tab: Page, tmp_path: Path) -> None:
    trace = large_trace()
    out = tmp_path / "large.html"
    began = time.perf_counter()
    out.write_text(trace_page(trace), encoding="utf-8")
    build_s = time.perf_counter() - began
    size = out.stat().st_size
    began = time.perf_counter()
    page = tab.open(out.as_uri())
    load_s = time.perf_counter() - began
    assert page.locator("li.node").count() == len(trace["nodes"])
    began = time.perf_counter()
    for fraction in (0.25, 0.5, 0.75, 1.0):
        page.evaluate(
            "f => new Promise(r => { window.scrollTo(0, document.body.scrollHeight * f);"
            " requestAnimationFrame(() => requestAnimationFrame(r)); })",
            fraction,
        )
    scroll_s = time.perf_counter() - began
    # Opening one folded node lays out only that node.
    began = time.perf_counter()
    page.locator(f'li[data-node="{trace["nodes"][-1]["id"]}"] > details > summary').click()
    open_s = time.perf_counter() - began
    figures = {
        "nodes": len(trace["nodes"]),
        "bytes": size,
        "build_s": round(build_s, 3),
        "load_s": round(load_s, 3),
        "scroll_s": round(scroll_s, 3),
        "open_node_s": round(open_s, 3),
    }
    save_artifact("large.json", json.dumps(figures, indent=2))
    print(figures)
    assert len(trace["nodes"]) > 300
    # Generous bounds for a loaded 2-core CI machine; an idle one measures far below them.
    assert size < 6_000_000
    assert build_s < 10 and load_s < 15 and scroll_s < 10 and open_s < 5
    assert tab.outside("file://") == []


def make_batch(tmp_path: Path) -> list[dict[str, Any]]:
    """A real batch of five prompts on the simulated server, one failed record added, and its
    pages; returns the index's rows."""
    import asyncio

    with SimServer(seed=13, ttft=0.005, rate=4000, mean_tokens=25, sd_tokens=15) as sim:
        config = sim_config(
            sim.base_url, width={"drafts": 2, "critiques": 1, "edits": 1}, depth={"max_rounds": 1}
        )
        options = BatchOptions(
            input=write_prompts(tmp_path / "q.jsonl", 5),
            output=tmp_path / "answers.jsonl",
            store=tmp_path / "store",
            progress=False,
        )
        # Its own thread: Playwright's client runs an event loop in this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run_batch(config, options)).result()
    answers = tmp_path / "answers.jsonl"
    with answers.open("a", encoding="utf-8") as f:
        f.write(
            json.dumps({"id": "<b>gone</b>", "status": "failed", "error": "backend 500"}) + "\n"
        )
    rows = write_batch_pages(answers, tmp_path / "pages")
    assert [r["status"] for r in rows].count("ok") == 5
    return rows


def test_batch_index_in_chromium(tab: Page, tmp_path: Path) -> None:
    rows = make_batch(tmp_path)
    index = tmp_path / "pages" / "index.html"
    page = tab.open(index.as_uri())

    def column(n: int) -> list[str]:
        return page.eval_on_selector_all(
            f"#index tbody tr td:nth-child({n})", "els => els.map(e => e.dataset.v)"
        )

    answered = [r for r in rows if r["href"]]
    for header, key, n in (("score", "score", 3), ("tokens", "tokens", 4), ("wall s", "wall_s", 6)):
        page.locator("#index th", has_text=header).click()
        ascending = sorted(r[key] for r in answered)
        assert [float(v) for v in column(n) if v] == pytest.approx(ascending)
        assert column(n)[-1] == ""  # the failed prompt has none: last either way
        page.locator("#index th", has_text=header).click()
        assert [float(v) for v in column(n) if v] == pytest.approx(ascending[::-1])
    page.locator("#index th", has_text="status").click()
    assert sorted(column(2)) == column(2)
    assert "<b>gone</b>" in page.locator("#index").inner_text()
    save_artifact("index.png", page.screenshot(full_page=True))
    first = answered[0]
    page.locator("#index a", has_text=first["id"]).click()
    page.wait_for_load_state("load")
    assert page.url.endswith(first["href"])
    assert page.locator("li.selected").get_attribute("data-node") == first["selected"]
    assert page.locator("#conversation").inner_text().count("Question") == 1
    assert tab.outside("file://") == []


# -- feedit serve ---------------------------------------------------------------------------------

KEY = "sk-view-key-5b1e"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def door() -> Iterator[tuple[str, list[str]]]:
    """``feedit serve`` keeping two traces, behind a key, after three chat completions (the
    second streamed); yields its root URL and the three completion ids."""
    with SimServer(seed=3, ttft=0.005, rate=4000, mean_tokens=20) as sim:
        app = build_app(
            # seeded drafts differ (identical ones would share their subtrees)
            sim_config(sim.base_url, roles={"draft": {"seed": 0}}),
            api_key_env="FEEDIT_VIEW_TEST_KEY",
            env={"FEEDIT_VIEW_TEST_KEY": KEY},
            keep_traces=2,
        )
        with serve_in_thread(app) as url:
            ids = []
            for i, stream in enumerate((False, True, False)):
                body = {
                    "model": "feedback-edit",
                    "messages": [{"role": "user", "content": f"Prompt {i} {HOSTILE}"}],
                    "stream": stream,
                    "feedit": {"drafts": 2, "critiques": 1, "edits": 1},
                }
                r = httpx.post(f"{url}/chat/completions", json=body, headers=AUTH, timeout=30)
                assert r.status_code == 200, r.text
                if stream:
                    first = next(ln for ln in r.text.splitlines() if ln.startswith("data: {"))
                    ids.append(json.loads(first[6:])["id"])
                else:
                    ids.append(r.json()["id"])
            yield url.removesuffix("/v1"), ids


def test_serve_keeps_trace_pages_behind_its_key(door: tuple[str, list[str]]) -> None:
    root, ids = door
    assert len(set(ids)) == 3 and all(len(i) > 32 for i in ids)
    assert httpx.get(f"{root}/traces/").status_code == 401
    assert httpx.get(f"{root}/traces/{ids[2]}").status_code == 401
    wrong = {"Authorization": "Bearer sk-guess"}
    assert httpx.get(f"{root}/traces/{ids[2]}", headers=wrong).status_code == 401
    index = httpx.get(f"{root}/traces/", headers=AUTH)
    assert index.status_code == 200
    assert "default-src 'none'" in index.headers["content-security-policy"]
    # Only the last two are kept, newest first.
    assert ids[0] not in index.text
    assert index.text.index(ids[2]) < index.text.index(ids[1])
    assert httpx.get(f"{root}/traces/{ids[0]}", headers=AUTH).status_code == 404
    missing = httpx.get(f"{root}/traces/<img src=x onerror=alert(1)>", headers=AUTH)
    assert missing.status_code == 404 and "<img" not in missing.text
    page = httpx.get(f"{root}/traces/{ids[1]}", headers=AUTH)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script>window" not in page.text and "Prompt 1" in page.text
    assert KEY not in page.text and KEY not in index.text


def test_serve_keeps_nothing_unless_asked() -> None:
    with SimServer(seed=3) as sim, serve_in_thread(build_app(sim_config(sim.base_url))) as url:
        assert httpx.get(url.removesuffix("/v1") + "/traces/").status_code == 404


def test_serve_trace_page_in_chromium(tab: Page, door: tuple[str, list[str]]) -> None:
    root, ids = door
    tab.context.set_extra_http_headers(AUTH)  # the key goes with every request of the tab
    index = tab.open(f"{root}/traces/")
    index.locator("#index a", has_text=ids[1]).click()
    index.wait_for_load_state("load")
    assert index.url == f"{root}/traces/{ids[1]}"
    assert index.locator("li.node").count() == 6
    assert index.locator("li.selected").count() == 1
    assert HOSTILE in index.locator("#conversation").inner_text()
    assert index.evaluate("window.__pwned") is None
    assert tab.outside(root + "/traces/") == []


def test_keep_traces_flag() -> None:
    import argparse

    from langgraph_feedit.commands.serve import add_parser
    from langgraph_feedit.errors import ConfigError

    parser = argparse.ArgumentParser(prog="feedit")
    add_parser(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["serve"]).keep_traces == 0
    assert parser.parse_args(["serve", "--keep-traces", "50"]).keep_traces == 50
    with pytest.raises(ConfigError, match="keep_traces"):
        build_app(sim_config("http://127.0.0.1:9/v1"), keep_traces=-1)


def test_batch_pages_read_trace_files(tmp_path: Path) -> None:
    """``feedit batch --traces DIR`` keeps traces in files; their pages are drawn all the same,
    and a trace file that is gone is named with its line."""
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "a.json").write_text(json.dumps(recorded()), encoding="utf-8")
    answers = tmp_path / "answers.jsonl"
    record = {"id": "a", "status": "ok", "messages": [], "trace_file": "traces/a.json"}
    answers.write_text(json.dumps(record) + "\n", encoding="utf-8")
    rows = write_batch_pages(answers, tmp_path / "pages")
    assert rows[0]["href"] == "p/a.html" and rows[0]["selected"] == recorded()["selected"]
    page = (tmp_path / "pages" / "p" / "a.html").read_text(encoding="utf-8")
    assert page.count('class="node ') == len(recorded()["nodes"])
    record["trace_file"] = "traces/gone.json"
    answers.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"gone\.json") as caught:
        write_batch_pages(answers, tmp_path / "pages")
    assert caught.value.line == 1


@pytest.mark.slow
def test_a_run_trace_file_alone_has_its_conversation_and_judge_bars(tmp_path: Path) -> None:
    """``feedit run --trace`` writes the conversation into the trace, and each candidate's
    pointwise judge call has its own bar on the timeline."""
    src = tmp_path / "run.json"
    with SimServer(seed=7, ttft=0.01, rate=2000, mean_tokens=20) as sim:
        args = ["run", "--base-url", sim.base_url, "--model", "sim-model", "--trace", str(src)]
        width = ["--drafts", "2", "--critiques", "1", "--edits", "1"]
        seeded = ["--set", "roles.draft.seed=0"]
        # In a process of its own, as a user runs it (the browser tests hold this one's loop).
        cli = [sys.executable, "-m", "langgraph_feedit.cli"]
        done = subprocess.run(
            [*cli, *args, *width, *seeded, "Say <b>hi</b> twice."],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    trace = json.loads(src.read_text(encoding="utf-8"))
    assert trace["conversation"] == [{"role": "user", "content": "Say <b>hi</b> twice."}]
    candidates = [n for n in trace["nodes"] if n["kind"] in ("draft", "edit")]
    assert len(candidates) == 4
    assert all(n["judge_started"] <= n["judge_ended"] for n in candidates)
    assert main(["view", str(src)]) == 0
    page = (tmp_path / "run.html").read_text(encoding="utf-8")
    conversation = page[page.index('id="conversation"') : page.index("<h2>Answer")]
    assert "Say &lt;b&gt;hi&lt;/b&gt; twice." in conversation
    timeline = page[page.index('id="timeline"') : page.index("<h2>Tree")]
    assert timeline.count("role-judge") == len(candidates)
    assert timeline.count('class="bar ') == len(trace["nodes"]) + len(candidates)
