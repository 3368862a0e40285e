"""feedit train: data sources and their errors, train/serve format equality, and (slow, marked
``train``) the whole path: distil from a batch run, train feedback, edit and select models on
SmolLM2-135M, export them to GGUF, serve each role its own model and run the graph on them."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langgraph_feedit import FeeditConfig, InputError
from langgraph_feedit.batch import BatchOptions, run_batch
from langgraph_feedit.prompts import critique_messages, edit_messages, load_templates
from langgraph_feedit.testing import SimServer
from langgraph_feedit.train.data import (
    PRINCIPLE_PROMPT,
    DataCounts,
    PairExample,
    SFTExample,
    load_examples,
    select_messages,
)

from .helpers import sim_config, write_prompts

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is ever downloaded
DATA = Path(__file__).parent / "data" / "train"
NEMOTRON = load_templates("nemotron")


# -- data, no model -----------------------------------------------------------------------------


def test_helpsteer3_feedback_rows_render_with_the_graphs_critique_builder() -> None:
    counts = DataCounts()
    ex = load_examples("feedback", [DATA / "helpsteer3_feedback.jsonl"], NEMOTRON, counts=counts)
    assert len(ex) == 16 and counts.rows == 8  # two responses per row, one feedback each
    first = ex[0]
    assert isinstance(first, SFTExample)
    row = json.loads((DATA / "helpsteer3_feedback.jsonl").read_text().splitlines()[0])
    assert first.messages == critique_messages(row["context"], row["response1"], NEMOTRON)
    assert first.target == row["feedback1"][0]
    assert first.where.endswith("helpsteer3_feedback.jsonl:1")


def test_helpsteer3_edit_rows_join_the_annotators_feedback() -> None:
    ex = load_examples("edit", [DATA / "helpsteer3_edit.jsonl"], NEMOTRON)
    row = json.loads((DATA / "helpsteer3_edit.jsonl").read_text().splitlines()[0])
    feedback = row["feedback"][0]  # the empty annotator strings are dropped
    assert ex[0].messages == edit_messages(
        row["context"], row["original_response"], feedback, NEMOTRON
    )
    assert ex[0].target == row["edited_response"]


def test_select_pairs_from_preference_edit_quality_and_plain_pairs() -> None:
    files = [DATA / f for f in ("helpsteer3_preference.jsonl", "helpsteer3_edit_quality.jsonl")]
    ex = load_examples("select", [*files, DATA / "pairs.jsonl"], NEMOTRON)
    assert len(ex) == 8 + 8 + 4 and all(isinstance(e, PairExample) for e in ex)
    rows = [json.loads(x) for x in files[0].read_text().splitlines()]
    for e, row in zip(ex, rows, strict=False):
        better = row["response1"] if row["overall_preference"] < 0 else row["response2"]
        assert e.chosen == better and e.rejected != better
    assert ex[-1].conversation == [
        {"role": "user", "content": "Tell me the largest planet in the solar system."}
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "bad.jsonl:2: not valid JSON"),
        ('{"context": "hi", "response1": "a", "response2": "b", "feedback1": [3]}', "bad.jsonl:2"),
        ('{"prompt": "q", "chosen": "", "rejected": "r"}', "bad.jsonl:2: 'chosen' must be"),
        ('{"something": "else"}', "bad.jsonl:2: unrecognised row"),
        (
            '{"context": [{"role": "robot", "content": "x"}], "response1": "a", "response2": "b",'
            ' "overall_preference": 1}',
            "bad.jsonl:2: context[0].role",
        ),
        (
            '{"context": "q", "response1": "a", "response2": "b", "overall_preference": 9}',
            "bad.jsonl:2: 'overall_preference' must be an integer from -3 to 3",
        ),
    ],
)
def test_a_bad_row_names_its_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    good = (DATA / "pairs.jsonl").read_text().splitlines()[0]
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n")
    task = "select" if "chosen" in line or "preference" in line or "robot" in line else "feedback"
    if "something" in line or "not json" in line:
        task = "select"
    with pytest.raises(InputError, match="^" + str(tmp_path).replace("\\", "\\\\")) as info:
        load_examples(task, [path], NEMOTRON)  # type: ignore[arg-type]
    assert expected in str(info.value)


def test_a_file_with_nothing_for_the_task_is_an_error() -> None:
    with pytest.raises(InputError, match="no edit examples in this file"):
        load_examples("edit", [DATA / "pairs.jsonl"], NEMOTRON)


def _trace_record(gain: float) -> dict[str, Any]:
    nodes = [
        {"id": "d0", "kind": "draft", "role": "draft", "text": "Draft.", "score": 0.4},
        {"id": "d0.c0", "kind": "critique", "parent": "d0", "role": "critique", "text": "Fix."},
        {
            "id": "d0.c0.e0",
            "kind": "edit",
            "parent": "d0.c0",
            "role": "edit",
            "text": "Better.",
            "score": 0.4 + gain,
        },
    ]
    return {"id": "p", "status": "ok", "messages": [{"role": "user", "content": "Q?"}],
            "trace": {"nodes": nodes}}  # fmt: skip


def test_distillation_keeps_edits_that_beat_their_parent_by_the_threshold(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(json.dumps(_trace_record(g)) for g in (0.3, 0.05, -0.2)) + "\n")
    counts = DataCounts()
    fb = load_examples("feedback", [path], NEMOTRON, min_gain=0.1, counts=counts)
    assert len(fb) == 1 and fb[0].target == "Fix."
    assert fb[0].messages == critique_messages(
        [{"role": "user", "content": "Q?"}], "Draft.", NEMOTRON
    )
    assert counts.dropped == {"below min_gain": 2}
    ed = load_examples("edit", [path], NEMOTRON, min_gain=0.0)
    assert [e.target for e in ed] == ["Better.", "Better."]
    sel = load_examples("select", [path], NEMOTRON, min_gain=0.2)
    assert [(p.chosen, p.rejected) for p in sel] == [("Better.", "Draft.")]


def test_a_batch_record_without_its_trace_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    rec = _trace_record(0.3)
    del rec["trace"]
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(InputError, match=r"answers.jsonl:1: .*needs its 'trace'"):
        load_examples("edit", [path], NEMOTRON, source="batch")


def test_each_role_may_name_its_own_embedded_model(tmp_path: Path) -> None:
    config = FeeditConfig.load(
        env={},
        overrides={
            "embedded_model": "/m/base.gguf",
            "roles": {"critique": {"embedded_model": "/m/fb.gguf"}},
        },
    )
    assert config.role("critique").embedded_model == "/m/fb.gguf"
    assert config.role("edit").embedded_model is None  # the top-level one applies
    from langgraph_feedit.overrides import UNTRUSTED_KEYS

    assert not any("embedded_model" in k for k in UNTRUSTED_KEYS)  # operators only


def test_the_select_question_is_the_principle_judges() -> None:
    for name in ("generic", "nemotron"):
        assert load_templates(name).judge_principle == PRINCIPLE_PROMPT


# -- with the model (slow) ----------------------------------------------------------------------

torch = pytest.importorskip("torch", reason="needs the 'train' extra")
pytest.importorskip("transformers", reason="needs the 'train' extra")
pytest.importorskip("llama_cpp", reason="needs the 'embedded' extra (llama-cpp-python)")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trainable copy of SmolLM2's GGUF (made once; FEEDIT_TRAIN_CACHE keeps it across runs)."""
    from langgraph_feedit.embedded import default_model_path
    from langgraph_feedit.train.gguf_io import prepare_base

    cache = os.environ.get("FEEDIT_TRAIN_CACHE")
    root = Path(cache) if cache else tmp_path_factory.mktemp("base")
    return prepare_base(default_model_path(), root)


@pytest.fixture(scope="module")
def tokenizer(base_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_dir))


@pytest.fixture(scope="module")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, SimServer]]:
    """A ``feedit batch`` run of a teacher (the simulated server) with its traces."""
    tmp = tmp_path_factory.mktemp("distil")
    with SimServer(seed=5, mean_tokens=10) as sim:
        config = sim_config(
            sim.base_url,
            # every call's seed derives from the cache key: the same teacher data each run
            cache_key="distil",
            width={"drafts": 2, "critiques": 2, "edits": 1},
            roles={
                # seeded drafts differ (identical ones would share their critiques and edits)
                "draft": {"seed": 0},
                "critique": {"template": "nemotron"},
                "edit": {"template": "nemotron"},
            },
        )
        options = BatchOptions(
            input=write_prompts(tmp / "q.jsonl", 3),
            output=tmp / "answers.jsonl",
            progress=False,
            durable=False,
        )
        import asyncio

        asyncio.run(run_batch(config, options))
        yield options.output, sim


@pytest.mark.train
def test_training_examples_are_byte_for_byte_what_the_graph_sends(
    distilled: tuple[Path, SimServer], tokenizer: Any
) -> None:
    from langgraph_feedit.embedded import default_model_path
    from langgraph_feedit.train.trainers import encode_sft, prompt_text

    answers, sim = distilled
    sent = [r.body["messages"] for r in sim.requests if r.path.endswith("chat/completions")]
    for task in ("feedback", "edit"):
        examples = load_examples(task, [answers], NEMOTRON, min_gain=-1.0)  # type: ignore[arg-type]
        assert len(examples) == 3 * 2 * 2  # every critique, and every edit, of the batch
        for ex in examples:
            assert ex.messages in sent, f"{task} example {ex.where} is not what the graph sent"
            body = sent[sent.index(ex.messages)]
            served = prompt_text(tokenizer, body)
            assert prompt_text(tokenizer, ex.messages) == served
            enc = encode_sft(tokenizer, ex, 4096)
            assert enc is not None
            n_prompt = enc["labels"].count(-100)
            served_ids = tokenizer(served, add_special_tokens=False)["input_ids"]
            assert enc["input_ids"][:n_prompt] == served_ids
    # The select model's prompt is the principle judge's request, to the byte.
    from langgraph_feedit.config import DEFAULT_PRINCIPLE
    from langgraph_feedit.train.trainers import encode_pair

    pairs = load_examples("select", [answers], NEMOTRON, min_gain=-1.0)
    assert pairs
    for pair in pairs:
        for text in (pair.chosen, pair.rejected):
            msgs = select_messages(pair.conversation, text, DEFAULT_PRINCIPLE)
            assert msgs in sent, f"select example {pair.where} is not what the judge sent"
        enc = encode_pair(tokenizer, pair, DEFAULT_PRINCIPLE, 4096)
        judged = prompt_text(tokenizer, select_messages(pair.conversation, pair.chosen,
                                                        DEFAULT_PRINCIPLE))  # fmt: skip
        assert enc["chosen_ids"] == tokenizer(judged, add_special_tokens=False)["input_ids"]
    # The chat template the tokenizer renders with is the one llama.cpp reads from the GGUF.
    import gguf

    reader = gguf.GGUFReader(str(default_model_path()))
    assert tokenizer.chat_template == reader.fields["tokenizer.chat_template"].contents()


def _train(task: str, data: list[Path], out: Path, base: Path, **kw: Any) -> dict[str, Any]:
    from langgraph_feedit.train.settings import TrainSettings
    from langgraph_feedit.train.trainers import train

    settings = TrainSettings(
        task=task,  # type: ignore[arg-type]
        data=data,
        output=out,
        base_model=base,
        template="nemotron",
        min_gain=0.0,
        max_length=128,
        progress=False,
        **kw,
    )
    return dict(train(settings))


@pytest.mark.train
@pytest.mark.embedded
@pytest.mark.timeout(2400)  # minutes on a busy 2-core machine
def test_train_export_and_serve_feedback_edit_and_select_models(
    tmp_path: Path, base_dir: Path, distilled: tuple[Path, SimServer]
) -> None:
    import asyncio

    from langgraph_feedit import create_feedit_graph
    from langgraph_feedit.embedded import _registry, default_model_path, stop_all
    from langgraph_feedit.state import Trace

    answers, _ = distilled
    # The prepared base remembers its GGUF, so the trained models export against it.
    base = default_model_path()
    common = {"max_steps": 3, "batch_size": 2, "max_examples": 4, "save_steps": 2}
    runs = {}
    runs["feedback"] = _train(
        "feedback",
        [DATA / "helpsteer3_feedback.jsonl", answers],
        tmp_path / "fb",
        base,
        learning_rate=2e-4,
        cache_dir=base_dir.parent,
        **{**common, "max_steps": 4},  # two passes over its 4 examples
    )
    runs["edit"] = _train(
        "edit",
        [DATA / "helpsteer3_edit.jsonl", answers],
        tmp_path / "ed",
        base,
        learning_rate=2e-4,
        cache_dir=base_dir.parent,
        **{**common, "max_steps": 4},  # two passes over its 4 examples
    )
    runs["select"] = _train(
        "select",
        [DATA / "helpsteer3_preference.jsonl", DATA / "pairs.jsonl"],
        tmp_path / "sel",
        base,
        learning_rate=2e-3,
        lora=True,
        lora_r=8,
        cache_dir=base_dir.parent,
        **common,
    )
    # --resume continues the select run from its last checkpoint to step 4: Trainer saved at
    # step 2 (save_steps) and at the end of training (step 3).
    resumed = _train(
        "select",
        [DATA / "helpsteer3_preference.jsonl", DATA / "pairs.jsonl"],
        tmp_path / "sel",
        base,
        learning_rate=2e-3,
        lora=True,
        lora_r=8,
        cache_dir=base_dir.parent,
        resume=True,
        export_gguf=False,
        **{**common, "max_steps": 4},
    )
    assert resumed["figures"]["resumed_from"].endswith("checkpoint-3")
    assert resumed["figures"]["steps"] == 4 and [p["step"] for p in resumed["losses"]][-1] == 4
    for task, rec in runs.items():
        losses = [p["loss"] for p in rec["losses"]]
        if task == "select":
            assert len(losses) == 3 and losses[-1] < losses[0], (
                f"{task}: loss did not fall: {losses}"
            )
        else:
            # the second pass over the same examples against the first: one batch's loss
            # alone swings with what the other batch's step did
            assert len(losses) == 4 and sum(losses[2:]) < sum(losses[:2]), f"{task}: {losses}"
        assert Path(rec["gguf"]).is_file() and Path(rec["loss_png"]).is_file()
        on_disk = json.loads((tmp_path / {"feedback": "fb", "edit": "ed", "select": "sel"}[task]
                              / "run.json").read_text())  # fmt: skip
        # max_examples (4) taken, less those whose prompt runs past max_length (the nemotron
        # edit prompt, with its rules, can)
        data = on_disk["data"]
        too_long = data["dropped"].get("prompt over max_length 128", 0)
        assert data["trained_on"] >= 2 and data["trained_on"] + too_long == 4
        assert on_disk["figures"]["steps"] == 4  # select: resumed from 3 to 4
    # The distilled batch counted: the feedback run read the batch file's rows too.
    assert runs["feedback"]["data"]["rows"] > 8

    # The exported GGUF computes what the trained PyTorch model computes.
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(runs["feedback"]["model"])
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    pt = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    msgs = critique_messages([{"role": "user", "content": "What is 2+2?"}], "5", NEMOTRON)
    ids = tok(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True),
              add_special_tokens=False)["input_ids"]  # fmt: skip
    llm = Llama(runs["feedback"]["gguf"], n_ctx=256, logits_all=True, verbose=False, n_threads=1)
    llm.eval(ids)
    import numpy as np

    lc = np.array(llm.scores[: len(ids)])
    with torch.no_grad():
        ref = pt(torch.tensor([ids])).logits[0].numpy()
    assert (lc.argmax(-1) == ref.argmax(-1)).mean() > 0.95
    assert np.abs(lc - ref).max() < 1.0  # F16 weights
    del llm, pt

    # Each role on its own embedded model: draft on the base, the rest on what was trained.
    roles = {
        "default": {"max_tokens": 24},
        "critique": {"embedded_model": runs["feedback"]["gguf"], "template": "nemotron"},
        "edit": {"embedded_model": runs["edit"]["gguf"], "template": "nemotron"},
        "judge": {"embedded_model": runs["select"]["gguf"], "kind": "principle"},
    }
    config = FeeditConfig.load(
        env={}, overrides={"roles": roles, "width": {"drafts": 1, "critiques": 1, "edits": 1}}
    )
    graph = create_feedit_graph(config, preset="feedback-edit").compile()
    try:
        out = asyncio.run(graph.ainvoke({"messages": [("user", "What is the capital of France?")]}))
        trace = Trace.model_validate(out["trace"])
        kinds = [n.kind for n in trace.nodes]
        assert kinds.count("critique") == 1 and kinds.count("edit") == 1
        # every call answered (a few-step model's edit may be no answer: recorded, not judged)
        failed = [n.error for n in trace.nodes if n.error and n.failure != "not_an_answer"]
        assert not failed, failed
        # The principle judge read its Yes/No margin from the trained select model.
        scored = [n for n in trace.nodes if n.kind != "critique" and not n.error]
        assert scored and all(n.score is not None for n in scored), [n.judge_note for n in scored]
        served = {str(s.model_path) for s in _registry}
        assert {runs[t]["gguf"] for t in runs} | {str(base)} <= served
    finally:
        stop_all()
        shutil.rmtree(tmp_path, ignore_errors=True)
