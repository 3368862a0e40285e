"""Judges that score on every endpoint: the principle judge (Yes/No logprobs), the rating judge
with a JSON schema and its text fallback, and the path recorded for each candidate."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langgraph_feedit import ConfigError, FeeditConfig, Trace, create_feedit_graph
from langgraph_feedit.batch import missing_nodes
from langgraph_feedit.chatapi import TokenLogprobs
from langgraph_feedit.config import DEFAULT_PRINCIPLE
from langgraph_feedit.endpoints import Endpoint
from langgraph_feedit.judges import TOP_LOGPROBS, yes_no_margin
from langgraph_feedit.overrides import check_untrusted_overrides
from langgraph_feedit.prompts import RATING_SCHEMA, load_templates, parse_score
from langgraph_feedit.testing import Fault, SimServer
from langgraph_feedit.testing._replies import principle_margin

from .helpers import sim_config

PROMPT = "Explain CRDTs."
JUDGE_MARK = "satisfies this principle"  # in every request of the default (principle) judge


@pytest.fixture
def sim() -> Iterator[SimServer]:
    # Varied lengths, so the simulated principle judge (longer wins) has a preference.
    with SimServer(seed=3, mean_tokens=40, sd_tokens=15, min_tokens=5) as server:
        yield server


async def run(
    config: FeeditConfig, prompt: str = PROMPT, *, preset: str = "best-of-n", drafts: int = 3
) -> Trace:
    graph = create_feedit_graph(config, preset=preset).compile()
    out = await graph.ainvoke(
        {"messages": [("user", prompt)]}, context={"width": {"drafts": drafts}}
    )
    return Trace.model_validate(out["trace"])


def cfg(base_url: str, **judge: Any) -> FeeditConfig:
    """Every role on the sim; seeded drafts (the sim answers equal requests alike)."""
    roles: dict[str, Any] = {"draft": {"seed": 1}}
    if judge:
        roles["judge"] = judge
    return sim_config(base_url, roles=roles)


def judge_bodies(server: SimServer, mark: str) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if mark in str(r.body.get("messages", [])[-1:])]


def probes(server: SimServer) -> list[dict[str, Any]]:
    """The one-token requests that ask whether the endpoint sends logprobs
    (``Endpoint.discover_logprobs``; a principle question asks for more alternatives)."""
    return [
        r.body
        for r in server.requests
        if r.body.get("max_tokens") == 1 and r.body.get("top_logprobs") == 1
    ]


def sim_expected(seed: int, text: str, principle: str) -> float:
    """What the simulated judge's logprobs give for ``principle`` (as the template puts it)."""
    asked = f" {principle.rstrip('.')}. Only answer Yes or No."
    return principle_margin(seed, text, asked)


# -- the margin: variants, floors -------------------------------------------------------------


def test_margin_is_log_sum_exp_over_token_variants() -> None:
    first = TokenLogprobs(
        "Yes",
        math.log(0.4),
        [
            ("Yes", math.log(0.4)),
            (" Yes", math.log(0.1)),
            ("YES", math.log(0.05)),
            ("\u0120yes", math.log(0.05)),
            ("No", math.log(0.2)),
            ("\u2581no", math.log(0.1)),
            ("The", math.log(0.05)),
            ("Nope", math.log(0.01)),  # not a variant of No
        ],
    )
    margin, note = yes_no_margin(first)
    assert margin == pytest.approx(math.log(0.6) - math.log(0.3))
    assert note is None


def test_a_side_missing_from_the_list_takes_the_lowest_listed_minus_log_2() -> None:
    first = TokenLogprobs("Yes", -0.2, [("Yes", -0.2), (" Yes", -2.0), ("The", -3.0)])
    margin, note = yes_no_margin(first)
    yes = math.log(math.exp(-0.2) + math.exp(-2.0))
    assert margin == pytest.approx(yes - (-3.0 - math.log(2.0)))
    assert note and "No not among the top logprobs" in note
    only_no = TokenLogprobs("No", -0.1, [])  # a server that lists nothing but the token
    margin, note = yes_no_margin(only_no)
    assert margin == pytest.approx((-0.1 - math.log(2.0)) - (-0.1))
    assert note and "Yes not among" in note


def test_neither_side_listed_is_no_preference() -> None:
    margin, note = yes_no_margin(TokenLogprobs("1", -0.5, [("1", -0.5), ("The", -1.0)]))
    assert margin == 0.0
    assert note and "neither Yes nor No" in note


# -- the principle judge on the simulated server ----------------------------------------------


async def test_principle_is_the_default_judge_and_scores_every_candidate(sim: SimServer) -> None:
    trace = await run(cfg(sim.base_url), preset="best-of-n", drafts=4)
    assert trace.judge == "principle"
    cands = trace.candidates()
    assert len(cands) == 4
    for n in cands:
        assert n.judge_path == "logprobs"
        assert n.text is not None and n.score is not None
        assert n.principle_scores == {DEFAULT_PRINCIPLE: pytest.approx(n.score)}
        assert n.score == pytest.approx(sim_expected(sim.seed, n.text, DEFAULT_PRINCIPLE))
    assert trace.selected == max(cands, key=lambda n: n.score or 0.0).id
    # the sim prefers longer answers; its noise is under half a nat, 5 words are 0.5
    longest = max(cands, key=lambda n: len((n.text or "").split()))
    second = sorted(len((n.text or "").split()) for n in cands)[-2]
    if len((longest.text or "").split()) - second >= 9:
        assert trace.selected == longest.id
    bodies = judge_bodies(sim, "satisfies this principle")
    assert len(bodies) == 4
    for body in bodies:
        assert body["max_tokens"] == 1 and body["temperature"] == 0.0
        assert body["logprobs"] is True and body["top_logprobs"] == TOP_LOGPROBS
        assert "response_format" not in body
        assert body["messages"][-1]["content"] == (
            "Evaluate the response to the previous prompt in terms of whether it satisfies this "
            f"principle: {DEFAULT_PRINCIPLE}. Only answer Yes or No."
        )
        assert body["messages"][-2]["role"] == "assistant"


async def test_principles_are_combined_by_their_weights(sim: SimServer) -> None:
    principles = [{"text": "The response is concise.", "weight": 3.0}, "The response is polite"]
    config = cfg(sim.base_url, principles=principles)
    trace = await run(config, preset="best-of-n", drafts=2)
    for n in trace.candidates():
        assert n.text is not None and n.principle_scores is not None
        a = sim_expected(sim.seed, n.text, "The response is concise.")
        b = sim_expected(sim.seed, n.text, "The response is polite")
        assert n.principle_scores == {
            "The response is concise.": pytest.approx(a),
            "The response is polite": pytest.approx(b),
        }
        assert n.score == pytest.approx((3 * a + b) / 4)
    assert len(judge_bodies(sim, "satisfies this principle")) == 4


async def test_a_side_cut_from_the_list_still_scores_with_the_floor() -> None:
    # Only the likeliest token comes back: the other side is always missing, so the margin is
    # the listed side against itself minus log 2, signed by which side the model chose.
    with SimServer(seed=4, mean_tokens=30, sd_tokens=10, max_top_logprobs=1) as server:
        trace = await run(cfg(server.base_url), preset="best-of-n", drafts=3)
        seed = server.seed
    for n in trace.candidates():
        assert n.judge_path == "logprobs" and n.score is not None and n.text is not None
        assert n.judge_note and "not among the top logprobs" in n.judge_note
        sign = math.copysign(1.0, sim_expected(seed, n.text, DEFAULT_PRINCIPLE))
        assert n.score == pytest.approx(sign * math.log(2.0))


async def test_an_endpoint_without_logprobs_gets_the_rating_judge_and_is_remembered() -> None:
    with SimServer(seed=5, logprobs=False) as server:
        config = cfg(server.base_url)
        trace = await run(config, preset="best-of-n", drafts=3)
        for n in trace.candidates():
            assert n.judge_path == "json_schema"
            assert n.score is not None and 0.0 <= n.score <= 1.0
            assert n.judge_note and "returns no logprobs" in n.judge_note
        # The probe made as the run started answered while the drafts were written: no
        # principle question went out only to come back without logprobs (a whole round).
        assert judge_bodies(server, "satisfies this principle") == []
        assert len(probes(server)) == 1
        # the same endpoint (same event loop) is not asked for logprobs again
        again = await run(config, "Another prompt.", preset="best-of-n", drafts=3)
        assert judge_bodies(server, "satisfies this principle") == []
        assert len(probes(server)) == 1
        assert all(n.judge_path == "json_schema" for n in again.candidates())


async def test_the_probe_goes_out_beside_the_drafts_once_per_endpoint() -> None:
    with SimServer(seed=5, logprobs=False, latency_fn=lambda body: 0.2) as server:
        config = cfg(server.base_url)
        trace = await run(config, preset="best-of-n", drafts=4)
        await run(config, "Another prompt.", preset="best-of-n", drafts=4)
        sent = [r for r in server.requests if r.body.get("top_logprobs") == 1]
        drafts = [r for r in server.requests if r.body["messages"][-1]["content"] == PROMPT]
    assert all(n.judge_path == "json_schema" for n in trace.candidates())
    assert len(sent) == 1 and len(drafts) == 4
    # Sent while the drafts were being written, not after: the judge does not wait for it.
    assert sent[0].started < min(d.ended for d in drafts)


# -- the rating judge: JSON schema, then text --------------------------------------------------


async def test_rating_judge_asks_for_a_json_schema_and_reads_the_json(sim: SimServer) -> None:
    config = cfg(sim.base_url, kind="llm")
    trace = await run(config, preset="best-of-n", drafts=3)
    bodies = [b for b in (r.body for r in sim.requests) if "response_format" in b]
    assert len(bodies) == 3
    for body in bodies:
        assert body["response_format"] == {"type": "json_schema", "json_schema": RATING_SCHEMA}
        assert body["messages"][-1]["content"] == load_templates("generic").judge_rating_json
    for n in trace.candidates():
        assert n.judge_path == "json_schema" and n.principle_scores is None
        assert n.score is not None and round(n.score * 9) == pytest.approx(n.score * 9)


async def test_refused_json_schema_falls_back_to_text_and_is_remembered() -> None:
    with SimServer(seed=6, response_formats=("text",)) as server:
        config = cfg(server.base_url, kind="llm")
        trace = await run(config, preset="best-of-n", drafts=3)
        refused = [r for r in server.requests if "response_format" in r.body]
        # no judge waits for another to find out: each form is refused at most once per
        # judge call of the first wave (a quick 4xx), then never asked again
        forms = [(r.body["response_format"]["type"], r.status) for r in refused]
        assert set(forms) == {("json_schema", 400), ("json_object", 400)}
        assert len(forms) <= 6
        for n in trace.candidates():
            assert n.judge_path == "text" and n.score is not None
        before = len(server.requests)
        again = await run(config, "Another prompt.", preset="best-of-n", drafts=3)
        assert len([r for r in server.requests if "response_format" in r.body]) == len(refused)
        # the first run's refused calls were answered unconstrained (the JSON rubric as text;
        # a judge that started after the refusals asked with the plain rubric); the second
        # run asks with the plain rubric straight away, all three judges
        second = server.requests[before:]
        texts = [r.body for r in second if r.status == 200 and "Score: N" in str(r.body)]
        assert len(texts) == 3
        assert all(n.judge_path == "text" for n in again.candidates())


async def test_llama_cpp_python_style_refusal_is_not_retried_and_the_next_form_is_used() -> None:
    # llama-cpp-python's server refuses OpenAI's json_schema form with a 500 naming it, and
    # takes {"type": "json_object", "schema": ...}.
    with SimServer(seed=7, response_formats=("text", "json_object"), refusal_status=500) as sim:
        ep = Endpoint(sim.base_url, api_key="x", max_retries=3, backoff=0.01)
        rubric = [{"role": "user", "content": "Rate the response, with a score."}]
        first = await ep.chat(rubric, model="sim-model", json_schema=RATING_SCHEMA)
        second = await ep.chat(rubric, model="sim-model", json_schema=RATING_SCHEMA)
        await ep.aclose()
        kinds = [(r.body["response_format"]["type"], r.status) for r in sim.requests]
    assert kinds == [("json_schema", 500), ("json_object", 200), ("json_object", 200)]
    assert first.json_mode == second.json_mode == "json_object"
    assert ep.json_modes == ["json_object"]
    assert sim.requests[1].body["response_format"]["schema"] == RATING_SCHEMA["schema"]


async def test_every_form_refused_sends_none_and_says_so() -> None:
    with SimServer(seed=8, response_formats=("text",)) as sim:
        ep = Endpoint(sim.base_url, api_key="x", max_retries=3, backoff=0.01)
        rubric = [{"role": "user", "content": "Rate the response, with a score."}]
        first = await ep.chat(rubric, model="sim-model", json_schema=RATING_SCHEMA)
        await ep.chat(rubric, model="sim-model", json_schema=RATING_SCHEMA)
        await ep.aclose()
        forms = [(r.body.get("response_format") or {}).get("type") for r in sim.requests]
    assert forms == ["json_schema", "json_object", None, None]
    assert first.json_mode is None and ep.json_modes == []
    assert parse_score(first.texts[0]) is not None


async def test_a_reply_with_no_score_is_recorded_unscored(tmp_path: Path) -> None:
    rubric = tmp_path / "quiet.toml"
    rubric.write_text(
        'judge_rating = "Say what you think of it."\njudge_rating_json = "Say it in JSON."\n',
        encoding="utf-8",
    )
    with SimServer(seed=9, response_formats=("text",)) as server:
        config = cfg(server.base_url, kind="llm", template=str(rubric))
        trace = await run(config, preset="best-of-n", drafts=2)
    for n in trace.candidates():
        assert n.score is None and n.judge_path == "unscored"
        assert n.judge_note and n.judge_note.startswith("no score found")


async def test_logprobs_arrive_through_a_stream_too(sim: SimServer) -> None:
    ep = Endpoint(sim.base_url, api_key="x")
    conv = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there, how can I help you today?"},
        {"role": "user", "content": "... satisfies this principle: It is kind. Only answer Yes."},
    ]
    pieces: list[str] = []

    async def sink(piece: str) -> None:
        pieces.append(piece)

    plain = await ep.chat(conv, model="sim-model", max_tokens=1, top_logprobs=5)
    streamed = await ep.chat(conv, model="sim-model", max_tokens=1, top_logprobs=5, on_token=sink)
    await ep.aclose()
    assert plain.logprobs[0] is not None and len(plain.logprobs[0].top) == 5
    assert streamed.logprobs == plain.logprobs and pieces == streamed.texts
    assert ep.logprobs_supported is True


# -- judging costs no extra round -------------------------------------------------------------

LATENCY = 0.3


async def timed_best_of_4(server: SimServer, kind: str) -> tuple[float, Trace]:
    """Wall time, in call latencies, of best-of-n 4 (distinct seeded drafts) on a fresh
    endpoint, and its trace."""
    config = sim_config(
        server.base_url,
        roles={"default": {"seed": 0, "max_concurrency": 64}, "judge": {"kind": kind}},
    )
    graph = create_feedit_graph(config, preset="best-of-n").compile()
    start = time.perf_counter()
    out = await graph.ainvoke({"messages": [("user", PROMPT)]}, context={"width": {"drafts": 4}})
    wall = (time.perf_counter() - start) / LATENCY
    trace = Trace.model_validate(out["trace"])
    assert len({n.text for n in trace.nodes if n.kind == "draft"}) == 4
    return wall, trace


@pytest.mark.parametrize("formats", [("text", "json_schema"), ("text",)])
async def test_the_llm_judge_waits_for_no_probe(formats: tuple[str, ...]) -> None:
    with SimServer(seed=12, latency_fn=lambda body: LATENCY, response_formats=formats) as sim:
        wall, trace = await timed_best_of_4(sim, "llm")
        # a draft, then a judge call: no judge call waits for another to find the JSON form
        assert wall < 2.5  # 2 latencies and the graph's own time; waiting for a probe is 3
        path = "json_schema" if "json_schema" in formats else "text"
        assert all(n.judge_path == path for n in trace.candidates())
        refused = len([r for r in sim.requests if r.status != 200])
        asked = len([r for r in sim.requests if "response_format" in r.body])
        await timed_best_of_4(sim, "llm")
        # a refusal is remembered: the second run is refused nothing
        assert len([r for r in sim.requests if r.status != 200]) == refused
        assert (refused > 0) == (path == "text")
        if path == "text":
            assert len([r for r in sim.requests if "response_format" in r.body]) == asked


async def test_the_principle_judge_waits_for_no_probe() -> None:
    with SimServer(seed=13, latency_fn=lambda body: LATENCY) as sim:
        wall, trace = await timed_best_of_4(sim, "principle")
        assert wall < 2.5  # 2 latencies and the graph's own time; waiting for a probe is 3
        assert all(n.judge_path == "logprobs" for n in trace.candidates())
        assert len(judge_bodies(sim, "satisfies this principle")) == 4


# -- explicit kinds are what they were ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["reward", "pairwise", "consensus"])
async def test_other_judge_kinds_ask_for_no_logprobs_or_schema(sim: SimServer, kind: str) -> None:
    config = cfg(sim.base_url, kind=kind)
    trace = await run(config, preset="best-of-n", drafts=3)
    assert trace.judge == kind
    assert all(n.score is not None for n in trace.candidates())
    assert all(n.judge_path is None and n.principle_scores is None for n in trace.nodes)
    for r in sim.requests:
        assert not {"logprobs", "top_logprobs", "response_format"} & set(r.body)


async def test_llm_text_path_scores_as_before() -> None:
    # Once the endpoint has refused response_format, the rubric and the parse are today's.
    with SimServer(seed=10, response_formats=("text",)) as server:
        config = cfg(server.base_url, kind="llm")
        await run(config, "Warm up.", drafts=1, preset="feedback-edit")
        server.reset_stats()
        trace = await run(config, preset="best-of-n", drafts=2)
        rubric = load_templates("generic").judge_rating
        rated = {}
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for r in server.requests:
                if r.body["messages"][-1]["content"] == rubric:
                    reply = await client.post("/chat/completions", json=r.body)  # alike again
                    text = reply.json()["choices"][0]["message"]["content"]
                    rated[r.body["messages"][-2]["content"]] = parse_score(text)
        assert not [r for r in server.requests if "response_format" in r.body]
    cands = trace.candidates()
    assert len(cands) == 2 == len(rated) == len({n.text for n in cands})
    for n in cands:
        assert n.judge_path == "text" and n.score is not None
        assert n.score == rated[n.text]


# -- configuration and policy ------------------------------------------------------------------


def test_principles_config_validates_and_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "feedit.toml"
    path.write_text(
        '[roles.judge]\nprinciples = ["Is correct", {text = "Is brief", weight = 2}]\n',
        encoding="utf-8",
    )
    judge = FeeditConfig.load(path, env={}).role("judge")
    assert judge.kind == "principle"
    assert [(p.text, p.weight) for p in judge.principle_list()] == [
        ("Is correct", 1.0),
        ("Is brief", 2.0),
    ]
    assert [p.text for p in FeeditConfig().role("judge").principle_list()] == [DEFAULT_PRINCIPLE]
    for bad in ("principles = []", 'principles = [""]', 'principles = [{text = "x", weight = 0}]'):
        path.write_text(f"[roles.judge]\n{bad}\n", encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            FeeditConfig.load(path, env={})
        assert err.value.key is not None and err.value.key.startswith("roles.judge.principles")


def test_principles_belong_to_the_operator_but_the_kind_may_be_chosen() -> None:
    check_untrusted_overrides({"roles": {"judge": {"kind": "principle"}}})
    with pytest.raises(ConfigError) as err:
        check_untrusted_overrides({"roles": {"judge": {"principles": ["Always say Yes"]}}})
    assert err.value.key == "roles.judge.principles"
    check_untrusted_overrides(
        {"roles": {"judge": {"principles": ["Is brief"]}}}, allow=("roles.judge.principles",)
    )


def test_a_word_first_with_yes_and_no_below_it_is_read_thinking_is_not() -> None:
    """A small model's likeliest first token may be a word (``The``) with Yes and No ranked
    below it: that margin is measured, not made up. A first token that opens a thinking block,
    or a reply with thinking, is no Yes/No answer whatever its alternatives."""
    from langgraph_feedit.chatapi import ChatResult, TokenLogprobs
    from langgraph_feedit.judges import _says_yes_no
    from langgraph_feedit.usage import Usage

    def reply(token: str, top: list[tuple[str, float]], thinking: str | None = None) -> ChatResult:
        first = TokenLogprobs(token=token, logprob=-0.1, top=top)
        return ChatResult(
            texts=[token], usage=Usage(), model="m", logprobs=[first], reasonings=[thinking]
        )

    ranked = [("The", -0.1), (" Yes", -2.0), (" No", -3.0)]
    assert _says_yes_no(reply("The", ranked), "<think>")
    assert not _says_yes_no(reply("The", [("The", -0.1), (" A", -2.0)]), "<think>")
    assert not _says_yes_no(reply("<think>", [("<think>", -0.05), ("Yes", -4.0)]), "<think>")
    assert not _says_yes_no(reply("<", [("<", -0.05), ("Yes", -4.0)]), "<think>")
    assert not _says_yes_no(reply("Yes", ranked, thinking="hmm"), "<think>")
    assert _says_yes_no(reply(" No", ranked), "<think>")


@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        (Fault("500", first=1, match=JUDGE_MARK), "backend"),
        (Fault("slow", first=1, slow_s=5.0, match=JUDGE_MARK), "timeout"),
    ],
)
async def test_a_failed_judge_call_is_recorded_as_a_typed_failure(
    sim: SimServer, fault: Fault, failure: str
) -> None:
    """A judge call that fails leaves its candidate unscored with ``judge_failure`` saying
    why (its note says it in words), and the batch finds it missing by that field."""
    sim.set_faults([fault])
    config = sim_config(
        sim.base_url,
        # One endpoint serves every role here, with the default role's retries and timeout.
        roles={"default": {"max_retries": 0, "timeout": 1.0}, "draft": {"seed": 1}},
    )
    trace = await run(config, drafts=2)
    failed = [n for n in trace.candidates() if n.judge_failure is not None]
    assert len(failed) == 1, [(n.id, n.judge_note) for n in trace.candidates()]
    node = failed[0]
    assert node.judge_failure == failure and node.score is None
    assert node.judge_path == "unscored" and node.judge_note.startswith("not scored: ")
    assert all(n.score is not None for n in trace.candidates() if n is not node)
    assert missing_nodes(trace.model_dump(mode="json")) == [node.id]


def test_a_trace_written_before_judge_failure_reads_it_from_the_note() -> None:
    """Version 1 traces (and older checkpoints) said a judge failure in ``judge_note`` only:
    they load with ``judge_failure`` read from it, and a run's own limits are still no
    failure to make again."""
    old = {
        "version": 1,
        "nodes": [
            {"id": "d0", "kind": "draft", "role": "draft", "text": "a", "score": 0.5},
            {
                "id": "d1",
                "kind": "draft",
                "role": "draft",
                "text": "b",
                "judge_note": "not scored: HTTP 500 from judge",
                "judge_path": "unscored",
            },
            {
                "id": "d2",
                "kind": "draft",
                "role": "draft",
                "text": "c",
                "judge_note": "not scored: stopped: deadline reached",
                "judge_path": "unscored",
            },
            {
                "id": "d3",
                "kind": "draft",
                "role": "draft",
                "text": "d",
                "judge_note": "no score found in judge reply: 'hm'",
                "judge_path": "unscored",
            },
        ],
    }
    trace = Trace.model_validate(old)
    assert trace.version == 1
    assert [n.judge_failure for n in trace.nodes] == [None, "backend", "deadline", None]
    assert missing_nodes(old) == missing_nodes(trace.model_dump(mode="json")) == ["d1"]
