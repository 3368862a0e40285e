"""Every model call as a LangChain chat-model run, through the node's callback manager.

LangSmith, ``astream_events`` and LangGraph's ``stream_mode="messages"`` see a model call only
when it is reported to the run's callbacks as a chat model's: ``on_chat_model_start``, a
``on_llm_new_token`` per streamed token, then ``on_llm_end`` (or ``on_llm_error``). The
endpoints speak the OpenAI wire protocol directly, so :func:`traced_chat` does that reporting
around each call, with the role, the tree node, the model and the endpoint in the run's
metadata and tags and the token usage as the message's ``usage_metadata``.

A reasoning model's thinking is reported the way LangChain's own chat models report it: in
``additional_kwargs["reasoning_content"]`` of the message (and of each streamed chunk that
carries thinking, whose ``content`` is empty), which langchain-core reads as a ``reasoning``
content block (``message.content_blocks``). The text a handler streams is the answer alone.

Nothing is paid when nobody listens: with no handler in the node's callback manager (and no
LangSmith tracing switched on) the call goes straight through. The endpoint is asked to
stream only when a streaming handler listens (LangGraph's messages mode, ``astream_events``).

Progress events (a node started, ended, failed; a round judged) go to LangGraph's
``stream_mode="custom"`` through :func:`emit`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args
from uuid import NAMESPACE_URL, UUID, uuid5

from langchain_core.callbacks import AsyncCallbackManager, BaseCallbackManager
from langchain_core.messages import AIMessage, AIMessageChunk, convert_to_messages
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers._streaming import _StreamingCallbackHandler
from langchain_core.utils.utils import LC_ID_PREFIX

from langgraph_feedit.errors import StreamRedactor
from langgraph_feedit.roles import SAMPLING_FIELDS
from langgraph_feedit.state import NodeKind
from langgraph_feedit.usage import Usage

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from langgraph_feedit.chatapi import ChatResult
    from langgraph_feedit.config import RoleConfig

__all__ = ["CallInfo", "TokenSink", "emit", "reasoning_details", "traced_chat"]

TokenSink = Callable[[str], Awaitable[None]]
"""Receives each streamed piece of a completion's text."""

_SERIALIZED: dict[str, Any] = {
    "lc": 1,
    "type": "not_implemented",
    "id": ["langgraph_feedit", "endpoints", "Endpoint"],
    "repr": "OpenAI-compatible endpoint",
}


def emit(runtime: Runtime[Any], event: str, node: Mapping[str, Any], **extra: Any) -> None:
    """A progress event on ``stream_mode="custom"`` (a no-op when nobody listens)."""
    payload = {
        "event": event,
        "id": node.get("id"),
        "kind": node.get("kind"),
        "round": node.get("round"),
        **extra,
    }
    runtime.stream_writer({"feedit": payload})


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Where in the tree a call belongs: shown in the run's name, metadata and tags."""

    role: str
    node_id: str | None = None
    kind: str | None = None
    round: int | None = None
    run_key: str | None = None
    attempt: str | None = None
    """The run's key and this attempt's id: with them, a draft's, critique's or edit's call
    has a run id of its own in the tree (:func:`call_run_id`), and so its message, which the
    run's final answer reuses (:func:`message_id`)."""


_TREE_KINDS = get_args(NodeKind)


def call_run_id(info: CallInfo) -> UUID | None:
    """The callback run id of a draft's, critique's or edit's call, derived from the run, the
    attempt and the tree node (``None`` for other calls: LangChain picks one)."""
    if not (info.run_key and info.attempt and info.node_id):
        return None
    if info.kind not in _TREE_KINDS:
        return None
    return uuid5(NAMESPACE_URL, f"feedit:{info.run_key}/{info.attempt}/{info.node_id}")


def message_id(run_key: str, attempt: str, node_id: str) -> str:
    """The id of the message a tree node's call streams (LangChain's own form, ``lc_run-``
    and the run id, as a chat model's message has), and of the final answer when that node
    is selected: LangGraph's ``messages`` stream then sends the answer once, as the selected
    call's tokens, not a second time as the run's output."""
    info = CallInfo(role="", node_id=node_id, kind="draft", run_key=run_key, attempt=attempt)
    return f"{LC_ID_PREFIX}-{call_run_id(info)}"


def reasoning_details(usage: Usage) -> dict[str, Any]:
    """``output_token_details`` of a ``usage_metadata``: the thinking tokens, where every
    call's server counted them (LangChain's field has no way to say "not known")."""
    if not usage.reasoning_reported or not usage.reasoning_known:
        return {}
    return {"output_token_details": {"reasoning": usage.reasoning_tokens}}


def _tracing_on() -> bool:
    try:
        from langchain_core.tracers.context import _tracing_v2_is_enabled

        return bool(_tracing_v2_is_enabled())
    except ImportError:  # pragma: no cover - older langchain-core
        return False


async def traced_chat(
    config: RunnableConfig,
    info: CallInfo,
    messages: Sequence[Mapping[str, Any]],
    request: Callable[[TokenSink | None, TokenSink | None], Awaitable[ChatResult]],
    *,
    model: str | None,
    endpoint: str,
    settings: RoleConfig,
) -> ChatResult:
    """Make ``request`` (one completion) as a chat-model run of the node's callbacks.

    ``request(on_token, on_reasoning)`` makes the call; both are ``None`` unless a streaming
    handler listens, in which case the endpoint streams and each piece of the answer, and of
    the thinking, is reported as it arrives.
    """
    callbacks = config.get("callbacks")
    # LangGraph hands every node a callback manager, with no handler when nobody listens;
    # configuring a child manager costs more than the rest of a call, so look first.
    handlers = callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else callbacks
    if not handlers and not _tracing_on():
        return await request(None, None)
    metadata: dict[str, Any] = {
        "feedit_role": info.role,
        "feedit_id": info.node_id,
        "feedit_kind": info.kind,
        "feedit_round": info.round,
        "feedit_endpoint": endpoint,
        "ls_provider": "openai",
        "ls_model_type": "chat",
        "ls_model_name": model,
        "ls_temperature": settings.temperature,
        "ls_max_tokens": settings.max_tokens,
    }
    tags = ["feedit", f"feedit:{info.role}"]
    if info.kind and info.kind != info.role:
        tags.append(f"feedit:{info.kind}")
    manager = AsyncCallbackManager.configure(
        inheritable_callbacks=callbacks,
        inheritable_tags=config.get("tags"),
        inheritable_metadata=config.get("metadata"),
        local_tags=tags,
        local_metadata={k: v for k, v in metadata.items() if v is not None},
    )
    if not manager.handlers:
        return await request(None, None)
    params = {
        "model": model,
        **{field: getattr(settings, field) for field in SAMPLING_FIELDS},
        "_type": "feedit-openai-compatible",
    }
    run_managers = await manager.on_chat_model_start(
        _SERIALIZED,
        [convert_to_messages([dict(m) for m in messages])],
        invocation_params={k: v for k, v in params.items() if v is not None},
        options={"stop": settings.stop},
        name=f"feedit:{info.role}",
        batch_size=1,
        run_id=call_run_id(info),
    )
    run = run_managers[0]
    msg_id = f"{LC_ID_PREFIX}-{run.run_id}"
    streaming = any(isinstance(h, _StreamingCallbackHandler) for h in manager.handlers)

    # A key a backend writes into its reply may arrive split across tokens.
    text_out, thought_out = StreamRedactor(), StreamRedactor()

    async def send_text(piece: str) -> None:
        chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece, id=msg_id))
        await run.on_llm_new_token(piece, chunk=chunk)

    async def send_thought(piece: str) -> None:
        message = AIMessageChunk(
            content="", additional_kwargs={"reasoning_content": piece}, id=msg_id
        )
        await run.on_llm_new_token("", chunk=ChatGenerationChunk(message=message))

    async def on_token(piece: str) -> None:
        if piece := text_out.feed(piece):
            await send_text(piece)

    async def on_reasoning(piece: str) -> None:
        if piece := thought_out.feed(piece):
            await send_thought(piece)

    try:
        if streaming:
            result = await request(on_token, on_reasoning)
        else:
            result = await request(None, None)
    except BaseException as exc:
        await run.on_llm_error(exc)
        raise
    if streaming:
        if rest := thought_out.flush():
            await send_thought(rest)
        if rest := text_out.flush():
            await send_text(rest)
    usage = result.usage
    reasoning = result.reasonings[0] if result.reasonings else None
    message = AIMessage(
        content=result.texts[0] if result.texts else "",
        additional_kwargs={"reasoning_content": reasoning} if reasoning else {},
        id=msg_id,
        response_metadata={
            "model_name": result.model,
            "finish_reason": result.finish_reasons[0] if result.finish_reasons else None,
            # langchain-core's "openai" translator of content blocks reads no
            # reasoning_content: without a provider, its generic reading finds it.
            **({} if reasoning else {"model_provider": "openai"}),
        },
        usage_metadata={
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "input_token_details": {"cache_read": usage.cached_tokens},
            **reasoning_details(usage),
        },
    )
    token_usage = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    await run.on_llm_end(
        LLMResult(
            generations=[[ChatGeneration(message=message)]],
            llm_output={"token_usage": token_usage, "model_name": result.model},
            run=None,
        )
    )
    return result
