"""``feedit verify`` and ``feedit sweep --scorer verify``: IFEval's checkers on the project's own
instruction prompts (tests/data/ifeval_prompts.jsonl), offline."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from langgraph_feedit.cli import main
from langgraph_feedit.errors import InputError
from langgraph_feedit.evaluate.verify import (
    instruction_ids,
    read_ifeval_questions,
    verify_files,
)
from langgraph_feedit.testing import SimServer

from .helpers import sim_config

DATA = Path(__file__).parent / "data"
PROMPTS = DATA / "ifeval_prompts.jsonl"
ROOT = Path(__file__).resolve().parent.parent


def question(key: int, ids: list[str], kwargs: list[dict[str, Any]], prompt: str = "Q?") -> str:
    return json.dumps({"key": key, "prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs})


def batch_line(pid: str, answer: str, tokens: int = 10) -> str:
    usage = {"prompt_tokens": tokens, "completion_tokens": tokens, "cached_tokens": 0, "calls": 1}
    return json.dumps({"id": pid, "status": "ok", "answer": answer, "usage": usage})


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_prompt_file_uses_only_known_instructions() -> None:
    known = set(instruction_ids())
    for line in PROMPTS.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert set(record["instruction_id_list"]) <= known
        assert len(record["kwargs"]) == len(record["instruction_id_list"])


def test_the_larger_prompt_set_keeps_the_first_and_reads_whole() -> None:
    # bench/verify.py --file: the 15 prompts first, as they are, then more with their own keys,
    # every instruction one the checkers know (read_ifeval_questions rejects any other).
    large = ROOT / "bench" / "data" / "ifeval_prompts_50.jsonl"
    questions = read_ifeval_questions(large)
    first = PROMPTS.read_text(encoding="utf-8").splitlines()
    assert large.read_text(encoding="utf-8").splitlines()[: len(first)] == first
    assert len(questions) == 50
    ids = {i for q in questions for i in q.instruction_id_list}
    assert len(ids) >= 20


def test_scores_strict_loose_and_per_instruction(tmp_path: Path) -> None:
    qs = write(
        tmp_path / "q.jsonl",
        [
            question(1, ["punctuation:no_comma"], [{}]),
            question(2, ["change_case:english_lowercase", "punctuation:no_comma"], [{}, {}]),
            question(3, ["startend:end_checker"], [{"end_phrase": "Bye."}]),
        ],
    )
    answers = write(
        tmp_path / "a.jsonl",
        [
            batch_line("1", "no commas here", 10),
            batch_line("2", "lower case, with a comma", 20),
            # Strict fails on the trailing markdown; loose strips the asterisks.
            batch_line("3", "Hello there. **Bye.**", 30),
        ],
    )
    result = verify_files(qs, answers)
    assert result["prompts"] == 3 and result["instructions"] == 4
    assert result["prompt_strict"] == pytest.approx(1 / 3, abs=1e-3)
    assert result["prompt_loose"] == pytest.approx(2 / 3, abs=1e-3)
    assert result["instruction_strict"] == pytest.approx(2 / 4)
    assert result["instruction_loose"] == pytest.approx(3 / 4)
    per = result["per_instruction"]
    assert per["punctuation:no_comma"] == {"count": 2, "strict": 0.5, "loose": 0.5}
    assert per["startend:end_checker"] == {"count": 1, "strict": 0.0, "loose": 1.0}
    assert result["mean_tokens"] == pytest.approx((20 + 40 + 60) / 3)


def test_cli_prints_one_json_object_from_arena_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    qs = write(tmp_path / "q.jsonl", [question(7, ["detectable_format:title"], [{}])])
    arena = {
        "uid": "7",
        "ans_id": "x",
        "model": "m",
        "messages": [
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": {"answer": "<<Rain>>\nDrip."}},
        ],
        "tstamp": 0,
    }
    answers = write(tmp_path / "a.jsonl", [json.dumps(arena)])
    assert main(["verify", "--questions", str(qs), "--answers", str(answers)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    for key in ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose"):
        assert result[key] == 1.0
    assert result["per_instruction"]["detectable_format:title"]["loose"] == 1.0
    assert result["mean_tokens"] is None  # arena files carry no run usage


@pytest.mark.parametrize(
    ("questions", "answers", "message"),
    [
        (
            [
                question(1, ["punctuation:no_comma"], [{}]),
                question(2, ["punctuation:no_comma"], [{}]),
            ],
            [batch_line("1", "ok")],
            "q.jsonl:2: no answer to key 2",
        ),
        (
            [question(1, ["punctuation:no_comma"], [{}])],
            [batch_line("1", "ok"), "{not json"],
            "a.jsonl:2: not valid JSON",
        ),
        (
            [question(1, ["punctuation:no_comma"], [{}])],
            [json.dumps({"id": "1", "status": "failed", "error": "backend down"})],
            "a.jsonl:1: the run of '1' has no answer (backend down)",
        ),
        (
            [question(1, ["punctuation:no_comma"], [{}])],
            [json.dumps({"answer": "x"})],
            "a.jsonl:1: not an answer",
        ),
        (
            ["", question(1, ["keywords:no_such_check"], [{}])],
            [batch_line("1", "ok")],
            "q.jsonl:2: unknown instruction 'keywords:no_such_check'",
        ),
        (
            [question(1, ["punctuation:no_comma", "detectable_format:title"], [{}])],
            [batch_line("1", "ok")],
            "q.jsonl:1: 'kwargs' has 1 item(s) for 2 instruction(s)",
        ),
        (
            [json.dumps({"key": 1, "prompt": "Q?"})],
            [batch_line("1", "ok")],
            "q.jsonl:1: field 'instruction_id_list'",
        ),
    ],
)
def test_bad_input_names_the_file_and_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    questions: list[str],
    answers: list[str],
    message: str,
) -> None:
    qs = write(tmp_path / "q.jsonl", questions)
    ans = write(tmp_path / "a.jsonl", answers)
    with pytest.raises(InputError, match="^" + str(tmp_path).replace("\\", "\\\\")):
        verify_files(qs, ans)
    assert main(["verify", "--questions", str(qs), "--answers", str(ans)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_sentence_counts_work_with_no_nltk_data(tmp_path: Path) -> None:
    """In a fresh interpreter whose NLTK finds no data at all (no punkt, no punkt_tab)."""
    script = textwrap.dedent(
        """
        import json, nltk
        for name in ("tokenizers/punkt", "tokenizers/punkt_tab"):
            try:
                nltk.data.find(name)
                raise SystemExit(f"{name} is present: the test cannot prove anything")
            except LookupError:
                pass
        from langgraph_feedit.evaluate.verify import (
            IFEvalQuestion, VerifiedAnswer, verify_answers,
        )
        fewer = [{"num_sentences": 4, "relation": "less than"}]
        q = [
            IFEvalQuestion(key=1, prompt="p", kwargs=fewer,
                           instruction_id_list=["length_constraints:number_sentences"]),
            IFEvalQuestion(key=2, prompt="p", kwargs=fewer,
                           instruction_id_list=["length_constraints:number_sentences"]),
            IFEvalQuestion(key=3, prompt="p",
                           kwargs=[{"capital_frequency": 2, "capital_relation": "at least"}],
                           instruction_id_list=["change_case:capital_word_frequency"]),
        ]
        a = {
            "1": VerifiedAnswer("1", "Dr. Smith came. He sat down. Then he left.", None, 1),
            "2": VerifiedAnswer("2", "One. Two. Three. Four. Five.", None, 2),
            "3": VerifiedAnswer("3", "The NASA and ESA teams met.", None, 3),
        }
        r = verify_answers(q, a)
        print(json.dumps({"splitter": r["sentence_splitter"],
                          "passed": [p["strict"] for p in r["per_prompt"]]}))
        """
    )
    empty = tmp_path / "nltk_data"
    empty.mkdir()
    env = {
        **os.environ,
        "NLTK_DATA": str(empty),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["splitter"] == "punkt-untrained"
    # 3 sentences (the "Dr." abbreviation is not a sentence end) < 4; 5 sentences are not.
    assert result["passed"] == [True, False, True]


async def test_sweep_scores_verified_accuracy_through_one_cache(tmp_path: Path) -> None:
    from langgraph_feedit.evaluate.sweep import run_sweep

    grid = "preset=single,best-of-n; drafts=2"
    with SimServer(seed=11) as sim:
        config = sim_config(sim.base_url, roles={"draft": {"seed": 1}})
        kw: dict[str, Any] = {
            "questions": PROMPTS,
            "baseline": None,
            "grid": grid,
            "output": tmp_path / "sweep",
            "limit": 6,
            "scorer": "verify",
        }
        result = await run_sweep(config, **kw)
        # best-of-n 2 (2 drafts, 2 judge calls) makes every call; single reuses draft 0; and
        # the judge endpoint's logprobs probe, once for the sweep.
        assert sim.call_count == 6 * 4 + 1 and result["calls_made"] == sim.call_count
        again = await run_sweep(config, **kw)
        assert again["calls_made"] == 0 and sim.call_count == 6 * 4 + 1
    rows = list(csv.DictReader((tmp_path / "sweep" / "sweep.csv").open()))
    assert [r["point"] for r in rows] == ["single", "best-of-n_d2"]
    for r in rows:
        assert r["prompts"] == "6"
        assert 0.0 <= float(r["prompt_loose"]) <= 1.0
        assert float(r["score"]) == pytest.approx(100 * float(r["prompt_loose"]))
        assert float(r["mean_tokens"]) > 0
    tokens = {r["point"]: float(r["mean_tokens"]) for r in rows}
    assert tokens["best-of-n_d2"] > tokens["single"]
    png = (tmp_path / "sweep" / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "prompt loose" in report and "some candidate passes" in report
    points = json.loads((tmp_path / "sweep" / "report.json").read_text())
    for point in points:
        assert 0.0 <= point["any_pass"] <= 1.0 and point["any_pass"] >= point["prompt_loose"]


def test_sweep_cli_takes_the_verify_scorer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SimServer(seed=12) as sim:
        code = main(
            [
                "sweep",
                "--scorer",
                "verify",
                "--questions",
                str(PROMPTS),
                "--grid",
                "preset=single",
                "--output",
                str(tmp_path / "s"),
                "--limit",
                "3",
                "--base-url",
                sim.base_url,
                "--model",
                "sim-model",
            ]
        )
    assert code == 0
    assert capsys.readouterr().out.startswith("single: ")
    assert (tmp_path / "s" / "sweep.png").exists()
