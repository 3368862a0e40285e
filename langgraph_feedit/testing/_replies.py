"""What the simulated server says: reply text, content hooks, usage and the JSON and SSE it sends.

Everything here is pure (no sockets, no clock other than ``created`` stamps), so the server module
keeps only timing, slots, faults and HTTP. Determinism comes from ``digest``: the same request
always draws from the same RNG.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from typing import Any

from langgraph_feedit.roles import SAMPLING_FIELDS

# One choice: its tokens (each with its leading separator) and its finish reason.
Choice = tuple[list[str], str]
# One token's logprobs as the chat API sends them: {token, logprob, bytes, top_logprobs}.
TokenLogprob = dict[str, Any]

_SYLLABLES = ("ba", "ce", "di", "fo", "gu", "ka", "le", "mi", "no", "pu", "ra", "se", "ti")
_SYLLABLES_MORE = ("vo", "zu", "an", "el", "in", "or", "um", "tra", "ste", "plo", "gri")
_LEVELS = ("not", "slightly", "partially", "mostly", "perfectly")
# What changes a reply's draw: the sampling fields a role sends, less those that only bound the
# reply, and the penalties a client may send besides.
_SAMPLING_KEYS = (
    *(field for field in SAMPLING_FIELDS if field not in ("max_tokens", "stop")),
    "presence_penalty",
    "frequency_penalty",
)
_TOKENS_PER_MESSAGE = 3

_ARENA_ANSWER = re.compile(
    r"<\|the start of assistant ([ab])'s answer\|>(.*?)<\|the end of assistant \1's answer\|>",
    re.DOTALL,
)


def digest(*parts: Any) -> int:
    text = json.dumps(parts, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def reply_key(seed: int, messages: list[Any], body: dict[str, Any]) -> int:
    """The seed of a chat reply: the server seed, the messages and the sampling settings
    (at temperature 0 without the request's ``seed``: greedy decoding draws nothing)."""
    greedy = body.get("temperature") == 0
    settings = {k: None if greedy and k == "seed" else body.get(k) for k in _SAMPLING_KEYS}
    return digest(seed, messages, settings)


def arena_verdict(prompt: str) -> str:
    """A judge that prefers the longer answer: ``A>>B`` when A is 1.5 times as long."""
    lengths = {m.group(1): len(m.group(2).split()) for m in _ARENA_ANSWER.finditer(prompt)}
    a, b = lengths.get("a", 0), lengths.get("b", 0)
    if a == b:
        return "A=B"
    strong = max(a, b) >= 1.5 * max(1, min(a, b))
    if a > b:
        return "A>>B" if strong else "A>B"
    return "B>>A" if strong else "B>A"


PRINCIPLE_MARK = "satisfies this principle:"
# How the Yes and No mass splits over token variants, as a BPE model's would.
_YES_VARIANTS = (("Yes", 0.7), (" Yes", 0.2), ("yes", 0.1))
_NO_VARIANTS = (("No", 0.7), (" No", 0.2), ("no", 0.1))
_FILLER = ("The", "I", "1", "It", "This", "A")


def principle_margin(seed: int, response: str, principle: str) -> float:
    """The simulated principle judge's logprob(Yes) - logprob(No): it favours longer
    responses (one nat per 10 words past 20), plus seeded noise under half a nat, so a test
    can tell which of two candidates it prefers."""
    noise = random.Random(f"{seed}:principle:{principle}:{response}").uniform(-0.4, 0.4)
    return (len(response.split()) - 20) / 10.0 + noise


def principle_logprobs(margin: float) -> list[tuple[str, float]]:
    """Every listed token with its logprob, likeliest first: 90% of the mass on Yes and No
    (split by ``margin``, then over variants), the rest on filler tokens."""
    p_yes = 0.9 / (1.0 + math.exp(-margin))
    p_no = 0.9 - p_yes
    listed = [(t, p_yes * share) for t, share in _YES_VARIANTS]
    listed += [(t, p_no * share) for t, share in _NO_VARIANTS]
    listed += [(t, 0.1 / len(_FILLER) / (i + 1)) for i, t in enumerate(_FILLER)]
    return sorted(((t, math.log(p)) for t, p in listed if p > 0), key=lambda x: -x[1])


def judged_response(messages: list[Any]) -> str:
    """The assistant turn a judge prompt is about (the last one before the instruction)."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "assistant":
            return content_text(m.get("content"))
    return ""


def token_logprobs(
    tokens: list[str], key: int, choice: int, top: int, first: list[tuple[str, float]] | None
) -> list[TokenLogprob]:
    """Chat-completion ``logprobs.content`` for a reply: the first token's list is ``first``
    when given (a principle judge's Yes/No), else every token leads a seeded list."""
    rng = random.Random(f"{key}:{choice}:logprobs")
    out: list[TokenLogprob] = []
    for pos, token in enumerate(tokens):
        if pos == 0 and first is not None:
            listed = first
        else:
            lead = -rng.uniform(0.01, 1.0)
            listed = [(token, lead)] + [
                (f" {w}", lead - 1.0 - i - rng.random()) for i, w in enumerate(_FILLER)
            ]
        chosen = next((lp for t, lp in listed if t == token), listed[0][1])
        out.append(
            {
                "token": token,
                "logprob": chosen,
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in listed[:top]
                ],
            }
        )
    return out


THINK_MARK = "let me ponder"
"""Words every simulated thinking starts with (and no answer holds), so a test can tell
thinking that leaked into a prompt or an answer."""
_THINK_OFF_SYSTEM = "detailed thinking off"


def thinks(body: dict[str, Any]) -> bool:
    """Whether a reasoning model would think for this request, as real ones are switched:
    ``chat_template_kwargs.enable_thinking``, ``reasoning_effort: "none"``, Nemotron's system
    line ``detailed thinking off``, or Qwen3's ``/no_think`` after the last user message."""
    kwargs = body.get("chat_template_kwargs")
    if isinstance(kwargs, dict) and kwargs.get("enable_thinking") is False:
        return False
    if body.get("reasoning_effort") == "none":
        return False
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if any(
        m.get("role") == "system" and _THINK_OFF_SYSTEM in content_text(m.get("content"))
        for m in messages
    ):
        return False
    users = [content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    return not (users and users[-1].rstrip().endswith("/no_think"))


def thinking(key: int, choice: int, count: int) -> list[str]:
    """``count`` tokens of thinking (at least the marker's): :data:`THINK_MARK`, then words."""
    head = ["Okay,", " let", " me", " ponder", " this."]
    rng = random.Random(f"{key}:{choice}:think")
    return head + [f" {w}" for w in words(rng, max(1, count - len(head)))]


def think_first(top: list[tuple[str, float]] | None) -> list[tuple[str, float]]:
    """A thinking model's first-token logprobs: ``<think>`` almost surely, the rest after."""
    rest = [(t, lp - 4.0) for t, lp in (top or [])][:8]
    return [("<think>", math.log(0.95)), *rest]


def json_rating(rng: random.Random, score: int) -> list[str]:
    """A rating as a JSON object (what a ``response_format`` json_schema asks), as tokens."""
    text = json.dumps({"reason": " ".join(words(rng, 8)), "score": score})
    pieces = text.split(" ")
    return [pieces[0]] + [f" {p}" for p in pieces[1:]]


def words(rng: random.Random, count: int) -> list[str]:
    """Pseudo-words in sentences: readable enough to eyeball, one whitespace word per token."""
    out: list[str] = []
    sentence = 0
    for _ in range(count):
        word = "".join(rng.choice(_SYLLABLES + _SYLLABLES_MORE) for _ in range(rng.randint(1, 3)))
        out.append(word.capitalize() if sentence == 0 else word)
        sentence += 1
        if sentence >= 6 and rng.random() < 0.25:
            out[-1] += "."
            sentence = 0
    if out and not out[-1].endswith("."):
        out[-1] += "."
    return out


def compose(
    messages: list[Any],
    key: int,
    choice: int,
    cap: int | None,
    *,
    mean_tokens: int,
    sd_tokens: float,
    min_tokens: int,
    json_reply: bool = False,
    principle_first: list[tuple[str, float]] | None = None,
) -> Choice:
    """One choice as tokens (each with its leading separator) and its finish reason.

    ``principle_first`` (a principle judge's listed first tokens) makes the reply its
    likeliest token; ``json_reply`` makes a rating prompt's reply a JSON object.
    """
    rng = random.Random(f"{key}:{choice}")
    if principle_first is not None:
        return [principle_first[0][0]], ("length" if cap == 1 else "stop")
    length = mean_tokens
    if sd_tokens > 0:
        length = round(rng.gauss(mean_tokens, sd_tokens))
    length = max(min_tokens, length)
    last_user = next(
        (
            content_text(m.get("content")).lower()
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    head: list[str] = []
    tail: list[str] = []
    if "evaluate the response" in last_user:
        level = _LEVELS[digest("level", key, choice) % len(_LEVELS)]
        head = f"The response is {level} helpful.".split()
    if "rate the response" in last_user or "score" in last_user:
        score = 1 + digest("score", key, choice) % 10
        if json_reply:
            tokens = json_rating(rng, score)
            return (
                (tokens[:cap], "length")
                if cap is not None and len(tokens) > cap
                else (
                    tokens,
                    "stop",
                )
            )
        tail = ["\nScore:", f" {score}"]
    if "<|the start of assistant a's answer|>" in last_user:
        tail = ["\nMy", " final", " verdict:", f" [[{arena_verdict(last_user)}]]"]
    body = head + words(rng, max(1, length - len(head) - len(tail)))
    tokens = [body[0]] + [f" {w}" for w in body[1:]] + tail
    mode = _edit_mode(messages, last_user)
    if mode == "preamble":
        tokens = ["Here's", " the", " revised", " response:", "\n\n" + tokens[0], *tokens[1:]]
    elif mode == "commentary":
        tokens = [*tokens, "\n\nNote:", " I", " made", " the", " changes", " you", " asked."]
    elif mode in _NON_ANSWERS:
        said = _NON_ANSWERS[mode].split(" ")
        tokens = [said[0], *(f" {w}" for w in said[1:])]
    if cap is not None and len(tokens) > cap:
        return tokens[:cap], "length"
    return tokens, "stop"


_EDIT_MODE = re.compile(r"sim-edit:(preamble|commentary|non-answer|verdict)")
_NON_ANSWERS = {
    "non-answer": "I'm ready to assist with your editing needs. Please go ahead and provide "
    "the text you'd like me to edit.",
    "verdict": "The response is X helpful, with several specific issues to fix.",
}


def _edit_mode(messages: list[Any], last_user: str) -> str | None:
    """How an edit call is answered when the first user turn asks for a misbehaving edit
    model (``sim-edit:preamble``, ``commentary``, ``non-answer`` or ``verdict``): a call is
    an edit when its last turn is a user turn, mentioning feedback, after an assistant turn."""
    if len(messages) < 3 or "feedback" not in last_user:
        return None
    if not (isinstance(messages[-2], dict) and messages[-2].get("role") == "assistant"):
        return None
    first = next(
        (
            content_text(m.get("content"))
            for m in messages
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    found = _EDIT_MODE.search(first)
    return found.group(1) if found else None


def prompt_prefixes(messages: list[Any]) -> tuple[int, list[int]]:
    """Prompt tokens, and a chained hash of every prefix of the flattened prompt (word by word).

    A prefix cache keeps these hashes; the leading run already in it is the cached part.
    """
    flat: list[str] = []
    prompt_tokens = 0
    for message in messages:
        role = message.get("role", "user") if isinstance(message, dict) else "user"
        text = content_text(message.get("content") if isinstance(message, dict) else message)
        flat.append(f"<{role}>")
        flat.extend(text.split())
        prompt_tokens += len(text.split()) + _TOKENS_PER_MESSAGE
    chain: list[int] = []
    h = 0
    for word in flat:
        h = hash((h, word))
        chain.append(h)
    return prompt_tokens, chain


def cached_prefix(chain: list[int], seen: set[int]) -> int:
    """How many leading words an earlier prompt already had; ``chain`` joins ``seen``.

    Memory grows with the total number of prompt words seen, which suits tests and benchmarks.
    """
    cached = 0
    while cached < len(chain) and chain[cached] in seen:
        cached += 1
    seen.update(chain)
    return cached


def chat_usage(prompt_tokens: int, completion_tokens: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def chat_completion(
    reply_id: str,
    model: str,
    choices: list[Choice],
    usage: dict[str, Any],
    logprobs: list[list[TokenLogprob]] | None = None,
    reasoning: tuple[str, list[int]] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion``; with ``reasoning`` (a field name and, per choice, how many of its
    leading tokens are thinking) the thinking goes in that field instead of ``content``."""

    def message(i: int, tokens: list[str]) -> dict[str, Any]:
        if reasoning is None:
            return {"role": "assistant", "content": "".join(tokens)}
        name, counts = reasoning
        said = "".join(tokens[counts[i] :])
        thought = "".join(tokens[: counts[i]])
        out: dict[str, Any] = {"role": "assistant", "content": said or None}
        if thought:
            out[name] = thought
        return out

    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "sim",
        "choices": [
            {
                "index": i,
                "message": message(i, tokens),
                "logprobs": None if logprobs is None else {"content": logprobs[i], "refusal": None},
                "finish_reason": finish,
            }
            for i, (tokens, finish) in enumerate(choices)
        ],
        "usage": usage,
    }


def sse_steps(
    reply_id: str,
    model: str,
    choices: list[Choice],
    usage: dict[str, Any] | None,
    logprobs: list[list[TokenLogprob]] | None = None,
    reasoning: tuple[str, list[int]] | None = None,
) -> list[list[bytes]]:
    """SSE events grouped by decoding step: step 0 is the role, the last holds the ending.
    With ``reasoning`` (as :func:`chat_completion`'s) thinking tokens go out in that field."""

    def delta(i: int, pos: int, token: str) -> dict[str, str]:
        if reasoning is not None and pos < reasoning[1][i]:
            return {reasoning[0]: token}
        return {"content": token}

    def event(parts: list[dict[str, Any]], final_usage: dict[str, Any] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": reply_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": parts,
        }
        if usage is not None:
            chunk["usage"] = final_usage
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def part(
        index: int, delta: dict[str, str], finish: str | None = None, pos: int | None = None
    ) -> dict[str, Any]:
        lp = None
        if logprobs is not None and pos is not None:
            lp = {"content": [logprobs[index][pos]], "refusal": None}
        return {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}

    steps = [[event([part(i, {"role": "assistant", "content": ""}) for i in range(len(choices))])]]
    for pos in range(max(len(tokens) for tokens, _ in choices)):
        parts = [
            part(i, delta(i, pos, t[pos]), pos=pos)
            for i, (t, _) in enumerate(choices)
            if pos < len(t)
        ]
        steps.append([event(parts)])
    ending = [event([part(i, {}, finish) for i, (_, finish) in enumerate(choices)])]
    if usage is not None:
        ending.append(event([], usage))
    steps.append([*ending, b"data: [DONE]\n\n"])
    return steps


def pooled_texts(body: dict[str, Any]) -> list[str] | None:
    """The texts a pooling request scores, or None when it has neither form.

    Chat form (``messages``): the last assistant message, or the last message if there is none.
    Prompt form (``input``): one text per input; token-id lists are scored as their JSON.
    """
    messages = body.get("messages")
    raw = body.get("input")
    if isinstance(messages, list) and messages:
        scored = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
        last = (scored or messages)[-1]
        return [content_text(last.get("content") if isinstance(last, dict) else last)]
    if isinstance(raw, str) or (isinstance(raw, list) and raw):
        inputs: list[Any] = [raw] if isinstance(raw, str) or isinstance(raw[0], int) else raw
        return [t if isinstance(t, str) else json.dumps(t) for t in inputs]
    return None


def reward_scores(seed: int, texts: list[str]) -> list[float]:
    """One float in [-10, 10] per text, fixed by the server seed and the text."""
    return [round(random.Random(f"{seed}:reward:{t}").uniform(-10, 10), 4) for t in texts]


def pooling_reply(
    reply_id: str, model: str, scores: list[float], prompt_tokens: int
) -> dict[str, Any]:
    return {
        "id": reply_id,
        "object": "list",
        "created": int(time.time()),
        "model": model,
        "data": [{"index": i, "object": "pooling", "data": [s]} for i, s in enumerate(scores)],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens,
            "completion_tokens": 0,
            "prompt_tokens_details": None,
        },
    }
