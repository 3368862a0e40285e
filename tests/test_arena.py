"""Arena-Hard compatibility: judge prompts, verdict parsing, markdown counts and the JSONL files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from langgraph_feedit import InputError
from langgraph_feedit.evaluate import (
    ARENA_HARD_SYSTEM_PROMPT,
    CREATIVE_WRITING_SYSTEM_PROMPT,
    JUDGE_USER_TEMPLATE,
    VERDICTS,
    ArenaAnswer,
    ArenaJudgment,
    answer_record,
    dump_record,
    game_record,
    judge_messages,
    judgment_record,
    markdown_counts,
    metadata_from_answers,
    parse_arena_verdict,
    read_answer_dir,
    read_answers,
    read_judgments,
    read_questions,
    split_think,
    strip_think,
)

DATA = Path(__file__).parent / "data" / "arena"
V01 = DATA / "arena-hard-v0.1"
JUDGMENTS = V01 / "model_judgment" / "gpt-4-1106-preview" / "feedit-demo.jsonl"
ANSWERS = V01 / "model_answer"

# --- prompts ---------------------------------------------------------------------------------


def test_default_prompt_answers_first_and_lists_the_five_labels() -> None:
    p = ARENA_HARD_SYSTEM_PROMPT
    assert p.startswith("Please act as an impartial judge")
    assert "Begin your evaluation by generating your own answer to the prompt." in p
    for word in ("helpful", "relevant", "concise", "creativity", "missing important information"):
        assert word in p
    positions = [p.index(f"[[{label}]]") for label in VERDICTS]
    assert positions == sorted(positions)
    assert p.endswith('Example output: "My final verdict is tie: [[A=B]]".')


def test_creative_writing_prompt_skips_answering_first() -> None:
    c = CREATIVE_WRITING_SYSTEM_PROMPT
    assert "generating your own answer" not in c
    assert "compare both assistants' answers. You must identify" in c
    # Apart from the first-answer step the two prompts are the same text.
    tail = "Then consider if the assistant's answers are helpful"
    assert c[c.index(tail) :] == ARENA_HARD_SYSTEM_PROMPT[ARENA_HARD_SYSTEM_PROMPT.index(tail) :]


def test_judge_messages_pick_the_prompt_by_category() -> None:
    for category in ("arena-hard-v0.1", "hard_prompt", "coding", "math", None, "other"):
        assert judge_messages("q", "a", "b", category=category)[0]["content"] == (
            ARENA_HARD_SYSTEM_PROMPT
        )
    creative = judge_messages("q", "a", "b", category="creative_writing")
    assert creative[0]["content"] == CREATIVE_WRITING_SYSTEM_PROMPT


def test_judge_user_turn_is_the_template_and_leaves_braces_alone() -> None:
    question, a, b = "Write {x}", "def f(): return {'k': 1}  # {ANSWER_B}", "B's {QUESTION}"
    user = judge_messages(question, a, b)[1]
    assert user["role"] == "user"
    assert user["content"] == JUDGE_USER_TEMPLATE.format(QUESTION=question, ANSWER_A=a, ANSWER_B=b)
    assert user["content"].startswith("<|User Prompt|>\nWrite {x}\n\n<|The Start of Assistant A's")
    assert user["content"].endswith("B's {QUESTION}\n<|The End of Assistant B's Answer|>")


def test_fixture_prompts_are_reproduced_byte_for_byte() -> None:
    """The fixture's prompts were written from arena-hard-auto's own text; ours must match."""
    questions = {q.uid: q.prompt for q in read_questions(V01 / "question.jsonl")}
    answers = read_answer_dir(ANSWERS)
    for row in read_judgments(JUDGMENTS):
        base = answers["gpt-4-0314"][row.uid].answer
        mine = answers["feedit-demo"][row.uid].answer
        expected = (
            judge_messages(questions[row.uid], base, mine, category=row.category),
            judge_messages(questions[row.uid], mine, base, category=row.category),
        )
        for game, messages in zip(row.games, expected, strict=True):
            if game is not None:
                assert game.prompt == messages


# --- verdicts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My final verdict is tie: [[A=B]]", "A=B"),
        ("Assistant A is significantly better: [[A>>B]]", "A>>B"),
        ("[[B>>A]]", "B>>A"),
        ("Final verdict: [B>A]", "B>A"),
        ("First [[A>B]], then on reflection [[B>A]].", "B>A"),
        ("[[A>B]] and a single-bracket [B>>A] later: the double pattern decides", "A>B"),
        ("no verdict at all", None),
        ("", None),
        ("my final verdict is [[a>>b]]", "A>>B"),
        ("[[A>B]] then an unscorable [[A]]", None),
        ("[[A>>>B]]", None),
        ("[[B=A]]", "A=B"),
        ("[[A<B]]", "B>A"),
        ("[[B<<A]]", "A>>B"),
        ("[[ A>B ]]", None),
        ("<think>maybe [[A>B]]</think>My final verdict is [[B>A]]", "B>A"),
        ("<think>leaning [[A>>B]] but not done", None),
        ("I keep thinking [[A>B]]</think> Final: [[A=B]]", "A=B"),
    ],
)
def test_parse_verdict(text: str, expected: str | None) -> None:
    assert parse_arena_verdict(text) == expected


def test_parse_verdict_of_none_is_none() -> None:
    assert parse_arena_verdict(None) is None


def test_fixture_scores_are_what_their_judgments_say() -> None:
    for row in read_judgments(JUDGMENTS):
        for game in row.games:
            if game is not None:
                assert isinstance(game.judgment, dict)
                assert parse_arena_verdict(game.judgment["answer"]) == game.score


_PROSE = st.text(alphabet=st.characters(blacklist_characters="[]<>"), max_size=40)


@given(st.lists(st.tuples(_PROSE, st.sampled_from(VERDICTS)), min_size=1, max_size=5), _PROSE)
def test_the_last_double_bracket_label_wins(pairs: list[tuple[str, str]], tail: str) -> None:
    text = "".join(f"{prose}[[{label}]]" for prose, label in pairs) + tail
    assert parse_arena_verdict(text) == pairs[-1][1]


@given(_PROSE, st.sampled_from(VERDICTS), _PROSE)
def test_single_brackets_count_when_no_double_ones(head: str, label: str, tail: str) -> None:
    assert parse_arena_verdict(f"{head}[{label}]{tail}") == label
    assert parse_arena_verdict(f"{head}[{label.lower()}]{tail}") == label


@given(st.text(alphabet=st.characters(blacklist_characters="["), max_size=200))
def test_no_bracket_no_verdict(text: str) -> None:
    assert parse_arena_verdict(text) is None


@pytest.mark.slow
@given(st.text(max_size=300))
def test_parse_verdict_never_guesses(text: str) -> None:
    assert parse_arena_verdict(text) in (*VERDICTS, None)


def test_strip_think() -> None:
    assert strip_think("<think>a</think>b<think>c</think> d ") == "b d"
    assert strip_think("reasoning...</think>\n\nanswer") == "answer"
    assert strip_think("answer <think>cut off") == "answer"
    assert strip_think("plain") == "plain"
    assert strip_think(None) == ""


def test_split_think_keeps_an_unfinished_reply_as_the_answer() -> None:
    assert split_think("<think>plan</think>\n\nThe answer.") == ("plan", "The answer.")
    assert split_think("plan</think>The answer.") == ("plan", "The answer.")
    assert split_think("<think>never finished") == (None, "<think>never finished")
    assert split_think("no reasoning") == (None, "no reasoning")


# --- markdown and answer records -------------------------------------------------------------


def test_markdown_counts_ignore_fenced_code() -> None:
    text = (
        "# Title\n## Part\n###NoSpace\n"
        "1. one\n2. two\n  3. indented\n"
        "- a\n* b\n+ c\n"
        "**bold** and __under__ and ** not bold\n"
        "```python\n# comment, not a header\n- not a list\n**not bold**\n```\n"
        "#### After the fence\n"
    )
    counts = markdown_counts(text)
    assert counts["header_count"] == {"h1": 1, "h2": 1, "h3": 0, "h4": 1, "h5": 0, "h6": 0}
    assert counts["list_count"] == {"ordered": 3, "unordered": 3}
    assert counts["bold_count"] == {"**": 1, "__": 1}


def test_markdown_counts_keep_arena_hards_quirks() -> None:
    # A fenced block holding a backtick is not removed by Arena-Hard's pattern.
    assert markdown_counts("```\n`x`\n# h\n```")["header_count"]["h1"] == 1
    # Removal deletes the block's text wherever it occurs, outside the fence too.
    assert markdown_counts("```- a\n```\n- a\n- b\n")["list_count"]["unordered"] == 1


def test_markdown_counts_match_the_fixture_metadata() -> None:
    for model in ("gpt-4-0314", "feedit-demo"):
        for answer in read_answers(ANSWERS / f"{model}.jsonl"):
            assert answer.metadata is not None
            counts = markdown_counts(answer.answer)
            meta = answer.metadata.model_dump()
            assert {k: meta[k] for k in ("header_count", "list_count", "bold_count")} == counts


def test_answer_record_shape() -> None:
    record = answer_record(
        "u1", "my-model", "## Hi\n- **x**", 7, prompt="Say hi", thought="plan", tstamp=1.5
    )
    assert list(record) == ["uid", "ans_id", "model", "messages", "tstamp", "metadata"]
    assert list(record["metadata"]) == ["token_len", "header_count", "list_count", "bold_count"]
    assert record["metadata"]["token_len"] == 7
    assert list(record["metadata"]["header_count"]) == ["h1", "h2", "h3", "h4", "h5", "h6"]
    assert list(record["metadata"]["list_count"]) == ["ordered", "unordered"]
    assert list(record["metadata"]["bold_count"]) == ["**", "__"]
    assert record["messages"] == [
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": {"answer": "## Hi\n- **x**", "thought": "plan"}},
    ]
    assert isinstance(record["ans_id"], str) and record["ans_id"]
    parsed = ArenaAnswer.model_validate(json.loads(dump_record(record)))
    assert (parsed.answer, parsed.thought) == ("## Hi\n- **x**", "plan")


def test_answer_record_with_a_conversation() -> None:
    conversation = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    record = answer_record("u", "m", "A", 1, messages=conversation)
    assert record["messages"][:2] == conversation
    assert record["messages"][-1]["content"] == {"answer": "A"}
    with pytest.raises(ValueError, match="exactly one"):
        answer_record("u", "m", "A", 1)
    with pytest.raises(ValueError, match="exactly one"):
        answer_record("u", "m", "A", 1, prompt="Q", messages=conversation)


# --- files -----------------------------------------------------------------------------------


def test_read_questions_of_both_versions() -> None:
    v01 = read_questions(V01 / "question.jsonl")
    assert len(v01) == 6
    assert v01[0].category == "arena-hard-v0.1" and v01[0].cluster and v01[0].subcategory is None
    v2 = read_questions(DATA / "arena-hard-v2.0-question.jsonl")
    assert [q.subcategory for q in v2] == ["math", "math", "creative_writing"]
    assert v2[0].prompt == "如何证明拉格朗日中值定理"


def test_read_answers_and_metadata() -> None:
    answers = read_answer_dir(ANSWERS)
    assert sorted(answers) == ["feedit-demo", "gpt-4-0314"]
    assert all(len(by_uid) == 6 for by_uid in answers.values())
    metadata = metadata_from_answers(answers)
    first = next(iter(metadata["feedit-demo"].values()))
    assert first.token_len > 0 and set(first.header_count) == {f"h{n}" for n in range(1, 7)}


def test_read_judgments_keeps_null_games() -> None:
    rows = read_judgments(JUDGMENTS)
    assert len(rows) == 6
    assert all(r.baseline == "gpt-4-0314" and r.judge == "gpt-4-1106-preview" for r in rows)
    first = rows[0].games[0]
    assert first is not None and first.verdict == "B>A"
    fifth = rows[4].games[1]
    assert fifth is not None and fifth.score is None
    assert rows[5].games[1] is None


@pytest.mark.parametrize(
    ("path", "reader"),
    [
        (V01 / "question.jsonl", read_questions),
        (DATA / "arena-hard-v2.0-question.jsonl", read_questions),
        (ANSWERS / "gpt-4-0314.jsonl", read_answers),
        (ANSWERS / "feedit-demo.jsonl", read_answers),
        (JUDGMENTS, read_judgments),
    ],
)
def test_files_round_trip_byte_for_byte(path: Path, reader: Callable[[Path], list[Any]]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert [dump_record(r) for r in reader(path)] == lines


def test_writers_produce_arena_hards_judgment_lines() -> None:
    """Rebuilding each fixture row with the writers gives the same line."""
    lines = JUDGMENTS.read_text(encoding="utf-8").splitlines(keepends=True)
    for row, line in zip(read_judgments(JUDGMENTS), lines, strict=True):
        games: list[dict[str, Any] | None] = []
        for game in row.games:
            if game is None:
                games.append(None)
                continue
            assert isinstance(game.judgment, dict) and game.prompt is not None
            games.append(game_record(game.verdict, game.judgment["answer"], game.prompt))
        assert row.category is not None and row.baseline is not None
        record = judgment_record(row.uid, row.category, row.judge, row.model, row.baseline, games)
        assert dump_record(record) == line
        data = json.loads(line)
        assert list(record) == list(data)
        assert [list(g) if g else None for g in record["games"]] == [
            list(g) if g else None for g in data["games"]
        ]


def test_writers_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown verdict"):
        game_record("A>>>B", "text", [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two games"):
        judgment_record("u", "c", "j", "m", "b", [None])


def test_readers_tolerate_unknown_fields_and_v01_judgments(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    old = {
        "question_id": "q1",
        "model": "m",
        "judge": "gpt-4-1106-preview",
        "games": [
            {"user_prompt": "...", "judgment": "\n... [[A>B]]", "score": "A>B"},
            {"user_prompt": "...", "judgment": "\n... [[A=B]]", "score": "A=B"},
        ],
        "extra": {"anything": 1},
    }
    path.write_text(json.dumps(old) + "\n", encoding="utf-8")
    (row,) = read_judgments(path)
    assert (row.uid, row.category, row.baseline) == ("q1", None, None)
    assert [g.verdict for g in row.games if g is not None] == ["A>B", "A=B"]
    assert row.model_extra is not None and row.model_extra["extra"] == {"anything": 1}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"uid": "u", "category": "c", "judge": "j", "model": "m"}', "field 'games'"),
        (
            '{"uid": "u", "category": "c", "judge": "j", "model": "m", "games": "x"}',
            "field 'games'",
        ),
    ],
)
def test_malformed_judgment_lines_name_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    good = JUDGMENTS.read_text(encoding="utf-8").splitlines()[0]
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        read_judgments(path)
    assert info.value.path == str(path) and info.value.line == 3
    assert str(info.value).startswith(f"{path}:3: ")


def test_malformed_answer_and_question_lines(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    bad = {"uid": "u", "ans_id": "a", "model": "m", "tstamp": 1, "messages": [{"role": "user"}]}
    path.write_text(json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="last message must be the assistant"):
        read_answers(path)
    path.write_text('{"uid": "u", "category": "c"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="field 'prompt'"):
        read_questions(path)
    with pytest.raises(InputError, match="cannot read"):
        read_questions(tmp_path / "absent.jsonl")


def test_arena_needs_no_eval_extra() -> None:
    """With numpy, scipy and matplotlib unimportable, judging still works and scoring says
    which extra to install."""
    script = """
import sys
for name in ("numpy", "scipy", "matplotlib"):
    sys.modules[name] = None
from langgraph_feedit.evaluate import parse_arena_verdict, judge_messages
assert parse_arena_verdict("[[A>B]]") == "A>B"
try:
    from langgraph_feedit.evaluate import score_judgments
except ImportError as exc:
    print(exc)
else:
    raise SystemExit("scoring imported without numpy")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'langgraph-feedit[eval]'" in done.stdout


def test_core_package_does_not_import_numpy() -> None:
    script = (
        "import sys, langgraph_feedit, langgraph_feedit.evaluate;"
        "print(sorted(m for m in ('numpy', 'scipy', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_judgment_from_mapping_requires_games() -> None:
    with pytest.raises(ValueError):
        ArenaJudgment.from_mapping({"uid": "u", "judge": "j", "model": "m", "games": []})
