"""Templates and the parsers of critique verdicts, ratings and pairwise verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from langgraph_feedit import ConfigError
from langgraph_feedit.prompts import (
    critique_messages,
    edit_messages,
    load_templates,
    pairwise_messages,
    parse_critique_verdict,
    parse_pairwise,
    parse_score,
)

CONVERSATION = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
LEVELS = ["not", "slightly", "partially", "mostly", "perfectly"]


def test_builtin_sets_are_named_and_versioned() -> None:
    for name in ("generic", "nemotron"):
        t = load_templates(name)
        assert t.name == name and t.version
        assert "{feedback}" in t.edit
    assert load_templates("nemotron").critique.startswith(
        "Evaluate the response to the previous prompt in terms of how helpful it is"
    )


def test_user_template_file_inherits_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('base = "nemotron"\nedit = "Fix it: {feedback}"\n', encoding="utf-8")
    t = load_templates(str(path))
    assert t.edit == "Fix it: {feedback}"
    assert t.critique == load_templates("nemotron").critique
    assert t.name == "mine"


def test_bad_template_specs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown template set 'fancy'"):
        load_templates("fancy")
    path = tmp_path / "bad.toml"
    path.write_text('critque = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="critque"):
        load_templates(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        load_templates(str(tmp_path / "absent.toml"))


def test_messages_keep_the_conversation_and_share_a_prefix() -> None:
    t = load_templates("generic")
    crit = critique_messages(CONVERSATION, "draft text", t)
    edit = edit_messages(CONVERSATION, "draft text", "fix the intro", t)
    assert crit[:2] == CONVERSATION and edit[:2] == CONVERSATION
    assert crit[2] == edit[2] == {"role": "assistant", "content": "draft text"}
    assert "fix the intro" in edit[3]["content"] and edit[3]["role"] == "user"
    pair = pairwise_messages(CONVERSATION, "AAA", "BBB", t)
    assert "AAA" in pair[0]["content"] and "BBB" in pair[0]["content"]


@given(level=st.sampled_from(LEVELS), before=st.text(max_size=40), after=st.text(max_size=40))
def test_verdict_found_anywhere(level: str, before: str, after: str) -> None:
    text = f"{before}\nThe response is {level} helpful. {after}"
    # text before the sentence could itself contain a verdict only by construction of the
    # same words, which st.text essentially never produces
    assert parse_critique_verdict(text) == level or "helpful" in before


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("the response is MOSTLY helpful", "mostly"),
        ("**The response is partially helpful.**", "partially"),
        ("The response is **not** helpful", "not"),
        ("It is quite helpful.", None),
        ("", None),
    ],
)
def test_verdict_forms(text: str, level: str | None) -> None:
    assert parse_critique_verdict(text) == level


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Good answer.\nScore: 7", 7),
        ("**Score:** 8/10", 8),
        ("Rating: 6.5", 6.5),
        ("I give it [[9]]", 9),
        ("On a scale of 1 to 10 ... Final score: 3", 3),
        ("score = 10", 10),
        ("It deserves 4/5.", 1 + 9 * 4 / 5),
        ("SCORE: 2\n...\nScore: 5", 5),
        ("no number here", None),
        ("Score: 42", None),
        ("Score: 0", None),
    ],
)
def test_score_forms(text: str, expected: float | None) -> None:
    got = parse_score(text)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx((expected - 1) / 9)


@given(n=st.integers(1, 10), noise=st.text(alphabet="abc ,.\n", max_size=60))
def test_score_is_the_last_stated_and_in_range(n: int, noise: str) -> None:
    got = parse_score(f"{noise}\nScore: {n}")
    assert got == pytest.approx((n - 1) / 9)
    assert 0.0 <= (got or 0.0) <= 1.0


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("... so [[A]]", "A"),
        ("[[B]] is better", "B"),
        ("tie: [[C]]", "C"),
        ("first [[A]] then on reflection [[B]]", "B"),
        ("single bracket [A]", "A"),
        ("no verdict", None),
    ],
)
def test_pairwise_forms(text: str, verdict: str | None) -> None:
    assert parse_pairwise(text) == verdict
