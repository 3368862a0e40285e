"""How often each judge kind scores a candidate at all, and how often it ranks a pair right.

The bench builds its own pairs: a prompt carrying one verifiable instruction ("answer in all
lowercase", "include the word X", "end with the phrase Y", "use at most N words") and two
answers with the same content, one that satisfies the instruction and one that does not (each
checked by the small checkers below; the bench refuses a pair its own checker gets wrong). Each
judge kind scores both answers of every pair:

- ``principle``: the default principle judge (Yes/No logprobs);
- ``llm-json``: the rating judge with ``response_format`` (the endpoint's JSON form);
- ``llm-text``: the rating judge with ``response_format`` turned off (today's ``Score: N``);
- ``pairwise``: one match per pair, in both orders (``--kinds`` to include it).

A pair is right when the satisfying answer scores higher, half right on a tie (or when either
answer is unscored). Backends: the embedded model (SmolLM2-135M-Instruct on llama.cpp, the
quick start's) and the simulated server, whose judges prefer longer answers and whose ratings
are seeded noise, so its accuracy figures measure the plumbing, not judgement; its scored
fraction is the figure that matters there.

Prints one JSON object: per backend, per kind: pairs, candidates, scored, scored_fraction,
correct (ties half), accuracy, ties, calls, tokens, wall_s.

Usage: ``python bench/judges.py [--backend embedded|sim|both] [--pairs 20]
[--kinds principle,llm-json,llm-text,pairwise] [--max-tokens 128] [--threads 1]``

With ``--threads`` the bench starts an embedded server of its own, which is not known to the
endpoint layer as the embedded one, so its endpoint finds llama-cpp-python's JSON form by the
refusal of the first (one 500, not retried), as any remote llama-cpp-python server would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langgraph_feedit import FeeditConfig
from langgraph_feedit.calls import RoleCaller
from langgraph_feedit.embedded import EmbeddedServer, EmbeddedSettings
from langgraph_feedit.endpoints import Usage, aclose_endpoints
from langgraph_feedit.judges import rank_round, score_candidate
from langgraph_feedit.prompts import load_templates
from langgraph_feedit.testing import SimServer

KINDS = ("principle", "llm-json", "llm-text", "pairwise")


@dataclass(frozen=True)
class Pair:
    prompt: str
    good: str
    bad: str
    instruction: str


# -- checkers ------------------------------------------------------------------------------------


def is_lowercase(text: str) -> bool:
    return text == text.lower() and any(c.isalpha() for c in text)


def has_word(word: str) -> Callable[[str], bool]:
    return lambda text: re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


def ends_with(phrase: str) -> Callable[[str], bool]:
    return lambda text: text.strip().endswith(phrase)


def at_most_words(n: int) -> Callable[[str], bool]:
    return lambda text: len(text.split()) <= n


# -- pairs ---------------------------------------------------------------------------------------

# (question, a short answer, a longer one on the same content)
TOPICS = (
    (
        "Why is the sky blue?",
        "Sunlight scatters off air molecules, and blue light scatters the most.",
        "Sunlight is made of many colours. When it passes through the air, the molecules "
        "scatter short wavelengths far more than long ones, so blue light is spread across "
        "the whole sky and reaches our eyes from every direction.",
    ),
    (
        "Give a tip for writing clear emails.",
        "Put your request in the first sentence so the reader knows what you need.",
        "Put your request in the first sentence. Readers skim, so when the ask comes first "
        "they know at once what you need, and the rest of the email can give the reasons "
        "and the details they need to act on it.",
    ),
    (
        "What does a compiler do?",
        "A compiler translates source code into machine code a computer can run.",
        "A compiler reads source code written in a programming language, checks it for "
        "errors, and translates it into machine code or another lower-level form that the "
        "computer can execute directly, often optimising it along the way.",
    ),
    (
        "How do plants make food?",
        "Plants use sunlight, water and carbon dioxide to make sugar by photosynthesis.",
        "Plants make food by photosynthesis: their leaves capture sunlight with chlorophyll "
        "and use its energy to turn water from the roots and carbon dioxide from the air "
        "into sugar, releasing oxygen as a by-product.",
    ),
    (
        "Why do we have seasons?",
        "Earth's tilted axis changes how directly sunlight hits each hemisphere over a year.",
        "We have seasons because Earth's axis is tilted. As Earth orbits the Sun, each "
        "hemisphere leans towards the Sun for part of the year, getting more direct light "
        "and longer days, and leans away for the other part.",
    ),
)

WORDS = ("lantern", "harbor", "velvet", "meadow", "copper")
PHRASES = ("Hope this helps!", "That is all.", "Any other questions?", "Thanks for asking.")


def _capitalise(text: str) -> str:
    return ". ".join(s[:1].upper() + s[1:] for s in text.split(". "))


def build_pairs(count: int) -> list[Pair]:
    """``count`` pairs, cycling instruction types over topics; each checked by its checker."""
    pairs: list[Pair] = []
    i = 0
    while len(pairs) < count:
        question, short, long = TOPICS[i % len(TOPICS)]
        kind = (i // len(TOPICS) + i) % 4
        if kind == 0:
            check: Callable[[str], bool] = is_lowercase
            prompt = f"{question} Your entire answer must be in lowercase letters."
            good, bad, what = short.lower(), _capitalise(short), "lowercase"
        elif kind == 1:
            word = WORDS[i % len(WORDS)]
            check = has_word(word)
            prompt = f"{question} Include the word '{word}' in your answer."
            good = f"{short[:-1]}, much like a {word}."
            bad = f"{short[:-1]}, much like a window."
            what = f"include {word!r}"
        elif kind == 2:
            phrase = PHRASES[i % len(PHRASES)]
            check = ends_with(phrase)
            prompt = f"{question} End your answer with the exact phrase '{phrase}'"
            good, bad, what = f"{short} {phrase}", short, f"end with {phrase!r}"
        else:
            n = len(short.split()) + 2
            check = at_most_words(n)
            prompt = f"{question} Answer in at most {n} words."
            good, bad, what = short, long, f"at most {n} words"
        if not check(good) or check(bad):
            raise AssertionError(f"pair {i} ({what}): the bench's own checker disagrees")
        pairs.append(Pair(prompt, good, bad, what))
        i += 1
    return pairs


# -- judging -------------------------------------------------------------------------------------


def _config(base_url: str | None, kind: str, max_tokens: int, model: str) -> FeeditConfig:
    judge: dict[str, Any] = {"kind": "llm" if kind.startswith("llm") else kind}
    judge["max_tokens"] = max_tokens
    roles: dict[str, Any] = {"judge": judge}
    if base_url is not None:
        # The bench's own llama.cpp server has one slot: queue on our side, where waiting does
        # not count against the request's timeout.
        limit = 16 if model == "sim-model" else 1
        roles["default"] = {"base_url": base_url, "model": model, "max_concurrency": limit}
    return FeeditConfig.load(env={}, overrides={"roles": roles})


async def judge_kind(
    base_url: str | None,
    kind: str,
    pairs: list[Pair],
    max_tokens: int,
    model: str | None = None,
) -> Any:
    caller = RoleCaller.for_config(_config(base_url, kind, max_tokens, model or "sim-model"))
    templates = load_templates("generic")
    if kind == "llm-text":
        (await caller.endpoint("judge")).json_modes = []
    elif kind == "llm-json":
        endpoint = await caller.endpoint("judge")
        if not endpoint.json_modes:
            endpoint.json_modes = ["json_schema", "json_object"]
    started = time.perf_counter()
    usage = Usage()
    paths: dict[str, int] = {}

    async def one(i: int, pair: Pair) -> tuple[float | None, float | None]:
        nonlocal usage
        conv = [{"role": "user", "content": pair.prompt}]
        # Which answer comes first alternates, so a judge that prefers position scores 0.5.
        order = [("good", pair.good), ("bad", pair.bad)]
        if i % 2:
            order.reverse()
        if kind == "pairwise":
            ids = {"good": f"d{order.index(('good', pair.good))}"}
            ids["bad"] = "d1" if ids["good"] == "d0" else "d0"
            cands = [(f"d{j}", text) for j, (_, text) in enumerate(order)]
            ranked = await rank_round("pairwise", caller, conv, cands, templates)
            usage = usage + ranked.usage
            return ranked.scores.get(ids["good"]), ranked.scores.get(ids["bad"])
        scores: dict[str, float | None] = {}
        for j, (label, text) in enumerate(order):
            result = await score_candidate(
                "principle" if kind == "principle" else "llm",
                caller,
                conv,
                text,
                templates,
                index=j,
            )
            usage = usage + result.usage
            paths[str(result.path)] = paths.get(str(result.path), 0) + 1
            scores[label] = result.score
        return scores["good"], scores["bad"]

    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(pairs)))
    wall = time.perf_counter() - started
    scored = sum((g is not None) + (b is not None) for g, b in results)
    correct, ties = 0.0, 0
    per_instruction: dict[str, list[float]] = {}
    for pair, (g, b) in zip(pairs, results, strict=True):
        if g is None or b is None or g == b:
            point = 0.5
            ties += 1
        else:
            point = 1.0 if g > b else 0.0
        correct += point
        per_instruction.setdefault(pair.instruction.split(" ")[0], []).append(point)
    return {
        "pairs": len(pairs),
        "candidates": 2 * len(pairs),
        "scored": scored,
        "scored_fraction": round(scored / (2 * len(pairs)), 4),
        "correct": correct,
        "accuracy": round(correct / len(pairs), 4),
        "ties": ties,
        "by_instruction": {k: round(sum(v) / len(v), 3) for k, v in per_instruction.items()},
        "paths": paths,
        "calls": usage.calls,
        "tokens": usage.total_tokens,
        "wall_s": round(wall, 2),
    }


async def bench(
    backend: str, kinds: list[str], pairs: list[Pair], max_tokens: int, threads: int | None
) -> Any:
    out: dict[str, Any] = {}
    if backend in ("sim", "both"):
        with SimServer(seed=0, mean_tokens=40) as sim:
            out["sim"] = {}
            for kind in kinds:
                out["sim"][kind] = await judge_kind(sim.base_url, kind, pairs, max_tokens)
                await aclose_endpoints()
    if backend in ("embedded", "both"):
        out["embedded"] = {}
        server = None
        if threads is not None:
            # A server of the bench's own: on a machine shared with other work, llama.cpp's
            # threads wait on each other at every step, and one thread is several times faster.
            settings = EmbeddedSettings(n_threads=threads, n_threads_batch=threads)
            server = await asyncio.to_thread(EmbeddedServer(settings).start)
        try:
            for kind in kinds:
                print(f"embedded: {kind}...", file=sys.stderr, flush=True)
                url = None if server is None else server.base_url
                model = None if server is None else server.model
                out["embedded"][kind] = await judge_kind(url, kind, pairs, max_tokens, model)
                await aclose_endpoints()
                print(json.dumps(out["embedded"][kind]), file=sys.stderr, flush=True)
        finally:
            if server is not None:
                server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("embedded", "sim", "both"), default="both")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--kinds", default="principle,llm-json,llm-text")
    parser.add_argument("--max-tokens", type=int, default=128, help="the rating judges' cap")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="run the bench's own embedded server on this many threads (default: the "
        "package's shared server and its thread settings)",
    )
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}: choose from {', '.join(KINDS)}")
    pairs = build_pairs(args.pairs)
    started = time.perf_counter()
    figures = asyncio.run(bench(args.backend, kinds, pairs, args.max_tokens, args.threads))
    figures["wall_s"] = round(time.perf_counter() - started, 2)
    figures["settings"] = {
        "pairs": args.pairs,
        "kinds": kinds,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
