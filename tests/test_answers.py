"""An edit is an answer: the edit rule (pure), and through the graph on the simulated server;
every call its own seed; the tree ``feedit run`` prints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langgraph_feedit import Trace, create_feedit_graph
from langgraph_feedit.calls import call_seed
from langgraph_feedit.cli import main
from langgraph_feedit.prompts import edit_messages, load_templates, parse_critique_verdict
from langgraph_feedit.prompts.answers import clean_edit
from langgraph_feedit.testing import SimServer
from langgraph_feedit.tracing import CallInfo

from .helpers import is_probe, sim_config

# -- the rule -----------------------------------------------------------------------------------

# Replies of the embedded model (SmolLM2-135M-Instruct) to the edit prompt, as recorded.
RECORDED_NON_ANSWERS = [
    "Here's the rewritten response:\n\nI'm ready to assist with your editing needs. Please go "
    "ahead and provide text you would like me to edit.",
    "The response is X helpful, with several specific issues that need to be addressed.",
    "I'd be happy to help! Could you please provide the text you'd like me to revise?",
    "Use this feedback to write a better response to my request, keeping what was good.",
]


@pytest.mark.parametrize("reply", RECORDED_NON_ANSWERS)
def test_a_reply_that_is_no_answer_is_rejected(reply: str) -> None:
    assert clean_edit(reply, feedback="Add a third tip.").rejected is not None


@pytest.mark.parametrize(
    ("reply", "kept"),
    [
        ("Here's the revised response:\n\nRed, yellow and blue.", "Red, yellow and blue."),
        ("Sure! Here is an improved version of the email:\nDear Sam,", "Dear Sam,"),
        ("**Revised response:**\n1. Be brief.\n2. Be clear.", "1. Be brief.\n2. Be clear."),
        ("Revised Response:\n\nUse a clear subject line.", "Use a clear subject line."),
    ],
)
def test_a_preamble_is_cut(reply: str, kept: str) -> None:
    cleaned = clean_edit(reply)
    assert cleaned.text == kept
    assert cleaned.rejected is None
    assert cleaned.cut == ("preamble",)


@pytest.mark.parametrize(
    "note",
    [
        "Note: I removed the commas as the feedback asked.",
        "I have revised the response to address every point.",
        "This revised version is shorter and clearer.",
        "---\nChanges made: shorter sentences.",
    ],
)
def test_trailing_commentary_is_cut(note: str) -> None:
    cleaned = clean_edit(f"1. Keep it short.\n2. One topic per email.\n\n{note}")
    assert cleaned.text == "1. Keep it short.\n2. One topic per email."
    assert cleaned.cut == ("commentary",)


def test_the_request_copied_after_an_answer_is_cut() -> None:
    # As the embedded model replied: an answer, then the edit prompt's last line copied.
    reply = (
        "The capital of France is Paris, known as the City of Light.\n"
        " My request: Answer in capitals: what is the capital of France?"
    )
    cleaned = clean_edit(reply, feedback="Use capitals.")
    assert cleaned.rejected is None
    assert cleaned.text == "The capital of France is Paris, known as the City of Light."
    assert cleaned.cut == ("commentary",)
    # With no answer before it, it is still no answer.
    assert clean_edit("My request: Name a fish.").rejected == "addresses the editor"


def test_an_answer_is_kept_whole() -> None:
    answer = "Here are three tips:\n1. Use a clear subject.\n2. Be brief.\n3. End with an ask."
    assert clean_edit(answer).text == answer and clean_edit(answer).cut == ()
    plain = "The primary colors are red, yellow and blue."
    assert clean_edit(plain).text == plain and clean_edit(plain).rejected is None


def test_a_phrase_the_prompt_asks_for_is_not_addressing_the_editor() -> None:
    prompt = "Write a note asking a colleague to send me the draft by Friday."
    note = "Hi Ana, could you send me the draft by Friday? Thanks, Sam"
    assert clean_edit(note, prompt=prompt).rejected is None
    assert clean_edit(note).rejected is not None


def test_restating_the_feedback_is_rejected() -> None:
    feedback = "The answer lists only two tips; add a third tip about the subject line."
    assert clean_edit(feedback, feedback=feedback).rejected is not None
    assert clean_edit("Tip three: a clear subject line.", feedback=feedback).rejected is None


def test_the_edit_prompt_asks_the_request_again() -> None:
    conversation = [{"role": "user", "content": "Give three tips for {feedback} emails."}]
    msgs = edit_messages(conversation, "Two tips.", "Add one.", load_templates("generic"))
    last = msgs[-1]["content"]
    assert last.rstrip().endswith("My request: Give three tips for {feedback} emails.")
    assert "Add one." in last


def test_the_edit_prompt_keeps_every_instruction_of_the_request() -> None:
    # The edit must not undo an instruction the feedback overlooks or contradicts ("more
    # detail" against "in fewer than 50 words").
    text = load_templates("generic").edit
    assert "Follow every instruction in my request exactly" in text
    assert "where the feedback asks for something my request forbids, follow my request" in text
    echoed = "Follow every instruction in my request exactly, as the feedback says."
    assert clean_edit(echoed, feedback="Add a third tip.").rejected == "addresses the editor"


def test_the_critique_prompt_checks_the_prompts_instructions() -> None:
    text = load_templates("generic").critique
    assert "check every instruction in the prompt" in text
    assert "name each one the response does not follow" in text
    # The verdict sentence stays first, where the parser reads it.
    assert text.index("The response is not helpful.") < text.index("check every instruction")


def test_the_critique_prompt_has_no_placeholder_to_copy() -> None:
    text = load_templates("generic").critique
    assert "X helpful" not in text
    for level in ("not", "slightly", "partially", "mostly", "perfectly"):
        assert parse_critique_verdict(f"The response is {level} helpful.") == level
        assert f"The response is {level} helpful." in text


# -- through the graph ----------------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=5) as server:
        yield server


async def run(config: Any, prompt: str = "Explain CRDTs.") -> Trace:
    graph = create_feedit_graph(config).compile()
    out = await graph.ainvoke({"messages": [("user", prompt)]})
    return Trace.model_validate(out["trace"])


def fe_config(sim: SimServer, **extra: Any) -> Any:
    return sim_config(sim.base_url, width={"drafts": 2, "critiques": 1, "edits": 1}, **extra)


async def test_a_preamble_is_cut_from_the_edit(sim: SimServer) -> None:
    trace = await run(fe_config(sim), "Explain CRDTs. sim-edit:preamble")
    edits = [n for n in trace.nodes if n.kind == "edit"]
    assert edits and all(n.error is None for n in edits)
    assert all(n.cut == ["preamble"] for n in edits)
    assert not any((n.text or "").startswith("Here's") for n in edits)


async def test_commentary_is_cut_from_the_edit(sim: SimServer) -> None:
    trace = await run(fe_config(sim), "Explain CRDTs. sim-edit:commentary")
    edits = [n for n in trace.nodes if n.kind == "edit"]
    assert all(n.cut == ["commentary"] and "Note:" not in (n.text or "") for n in edits)


@pytest.mark.parametrize("mode", ["non-answer", "verdict"])
async def test_an_edit_that_is_no_answer_fails_and_is_never_selected(
    sim: SimServer, mode: str
) -> None:
    trace = await run(fe_config(sim), f"Explain CRDTs. sim-edit:{mode}")
    edits = [n for n in trace.nodes if n.kind == "edit"]
    assert len(edits) == 2
    for n in edits:
        assert n.failure == "not_an_answer"
        assert n.error is not None and n.error.startswith("not an answer: ")
        assert n.score is None  # never judged
    assert trace.selected in ("d0", "d1")


# -- seeds --------------------------------------------------------------------------------------


def test_call_seeds() -> None:
    info = CallInfo(role="draft", node_id="d0", kind="draft")
    assert call_seed(7, "run", info, 2) == 9  # a role's own seed, as before
    assert call_seed(None, None, info, 0) is None
    seed = call_seed(None, "run-a", info, 0)
    assert seed is not None and 0 <= seed < 2**31
    assert seed == call_seed(None, "run-a", info, 0)
    assert seed != call_seed(None, "run-b", info, 0)
    assert seed != call_seed(None, "run-a", CallInfo(role="draft", node_id="d1", kind="draft"), 0)


async def test_two_runs_without_a_seed_draw_different_drafts(sim: SimServer) -> None:
    config = sim_config(sim.base_url, preset="best-of-n", width={"drafts": 2})
    first, second = await run(config), await run(config)
    texts = [n.text for n in first.nodes if n.kind == "draft"]
    assert len(set(texts)) == 2, "each draft of a run is its own sample"
    assert texts != [n.text for n in second.nodes if n.kind == "draft"]
    # Every sample carries its seed (the judge endpoint's logprobs probe is no sample).
    seeds = [r.body.get("seed") for r in sim.requests if not is_probe(r.body)]
    assert None not in seeds and len(set(seeds)) == len(seeds)


async def test_a_fixed_seed_repeats_its_samples(sim: SimServer) -> None:
    config = sim_config(
        sim.base_url, preset="best-of-n", width={"drafts": 2}, roles={"draft": {"seed": 11}}
    )
    first, second = await run(config), await run(config)
    assert [n.text for n in first.nodes] == [n.text for n in second.nodes]


# -- the tree feedit run prints -------------------------------------------------------------------


def test_run_prints_the_tree_on_stderr(
    sim: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--base-url", sim.base_url, "--model", "sim-model"]
    args += ["--drafts", "2", "--critiques", "1", "--edits", "1"]
    assert main([*args, "Explain CRDTs. sim-edit:non-answer"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    start = lines.index("tree (principle judge; > marks the selected answer):")
    tree = lines[start + 1 : start + 7]
    assert [line.split()[1 if line.startswith(">") else 0] for line in tree] == [
        "d0",
        "d0.c0",
        "d0.c0.e0",
        "d1",
        "d1.c0",
        "d1.c0.e0",
    ]
    assert sum(line.startswith(">") for line in tree) == 1
    assert "draft  score " in tree[0] and " tok  " in tree[0]
    assert "edit  rejected: addresses the editor" in tree[2] and "I'm ready to" in tree[2]
    assert "feedit view" in lines[start + 7]
    assert captured.out.strip() and "tree" not in captured.out

    assert main([*args, "--quiet", "--trace", str(tmp_path / "t.json"), "Explain CRDTs."]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out.strip()


def test_a_phrase_kept_from_the_draft_is_not_addressing_the_editor() -> None:
    draft = "Dear Ms. Lee,\n\nThank you for your note. I'd be happy to assist you with the move."
    edit = draft.replace("the move.", "the move on May 3.")
    assert clean_edit(edit, prompt="Write a short reply to Ms. Lee.").rejected == (
        "addresses the editor"
    )
    kept = clean_edit(edit, prompt="Write a short reply to Ms. Lee.", draft=draft)
    assert kept.rejected is None and kept.text == edit
    # a phrase of its own that the draft does not hold still counts
    also = edit + "\n\nPlease provide the text you want me to edit."
    assert clean_edit(also, draft=draft).rejected == "addresses the editor"
