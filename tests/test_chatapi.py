"""The chat API's shapes (``langgraph_feedit.chatapi``): request bodies and lenient replies."""

from __future__ import annotations

from typing import Any

import pytest

from langgraph_feedit.chatapi import (
    ChatRequest,
    TokenLogprobs,
    pooled_reward,
    read_choices,
    refuses_response_format,
)

CONVERSATION = [{"role": "user", "content": "hi"}]
SCHEMA = {"name": "rating", "schema": {"type": "object"}}


def test_a_body_says_what_the_request_asked_and_extra_body_comes_last() -> None:
    request = ChatRequest(
        CONVERSATION,
        "m",
        params={"temperature": 0.7, "max_tokens": 9},
        extra_body={"temperature": 0.1, "top_k": 5},
    )
    assert request.body() == {
        "model": "m",
        "messages": CONVERSATION,
        "temperature": 0.1,
        "max_tokens": 9,
        "top_k": 5,
    }
    assert request.body(n=3, seed=4)["n"] == 3 and request.body(n=3, seed=4)["seed"] == 4
    streamed = request.body(stream=True)
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}
    assert request.max_tokens == 9 and not request.asks_json and not request.asks_logprobs


def test_the_two_json_forms() -> None:
    request = ChatRequest(CONVERSATION, "m")
    openai_form = request.formatted("json_schema", SCHEMA)
    llama_form = request.formatted("json_object", SCHEMA)
    assert openai_form.params["response_format"] == {"type": "json_schema", "json_schema": SCHEMA}
    assert llama_form.params["response_format"] == {
        "type": "json_object",
        "schema": {"type": "object"},
    }
    assert openai_form.asks_json and not request.asks_json  # the original is unchanged


def test_choices_are_read_in_index_order_with_first_token_logprobs() -> None:
    reply: dict[str, Any] = {
        "choices": [
            {"index": 1, "message": {"content": "b"}, "finish_reason": "length"},
            {
                "index": 0,
                "message": {"content": "a"},
                "finish_reason": "stop",
                "logprobs": {
                    "content": [
                        {
                            "token": "Yes",
                            "logprob": -0.1,
                            "top_logprobs": [{"token": "No", "logprob": -2.3}],
                        }
                    ]
                },
            },
        ],
        "usage": {
            "prompt_tokens": 7,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }
    choices = read_choices(reply)
    assert choices is not None
    assert choices.texts == ["a", "b"] and choices.reasons == ["stop", "length"]
    assert choices.logprobs == [TokenLogprobs("Yes", -0.1, [("No", -2.3)]), None]
    usage = choices.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (7, 2, 4)


@pytest.mark.parametrize(
    "reply",
    [{}, {"choices": []}, {"choices": "x"}, [], "text", {"choices": [{"index": "z"}]}],
)
def test_a_reply_with_nothing_to_read_has_no_choices(reply: Any) -> None:
    assert read_choices(reply) is None


def test_odd_logprobs_and_a_missing_usage_are_absent_not_errors() -> None:
    choices = read_choices(
        {"choices": [{"message": {"content": None}, "logprobs": {"content": [{"token": 1}]}}]}
    )
    assert choices is not None
    assert choices.texts == [""] and choices.logprobs == [None] and choices.usage.calls == 1


def test_a_pooled_reward_is_the_last_value() -> None:
    assert pooled_reward({"data": [{"data": [[0.1], [0.2, 1.5]]}], "usage": {"prompt_tokens": 3}})[
        0
    ] == pytest.approx(1.5)
    with pytest.raises(KeyError):
        pooled_reward({"data": [{}]})


def test_a_refusal_names_response_format() -> None:
    assert refuses_response_format(500, "unknown field response_format")
    assert not refuses_response_format(500, "out of memory")
    assert not refuses_response_format(401, "response_format")
