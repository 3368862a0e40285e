"""A tool-using agent whose final answer step is feedit: a tool-calling chat model runs the
tool loop, then feedit drafts, critiques, edits and judges the answer from what the tools found.

This is the supported way to combine tools with feedit. ``ChatFeedit`` refuses ``bind_tools``
(a tool call is no candidate a judge can score), so ``create_react_agent(ChatFeedit(...),
tools=[...])`` fails, naming this pattern.

The tool-calling model is ``TOOL_MODEL`` (``"provider:model"`` for LangChain's
``init_chat_model``, e.g. ``openai:gpt-4o-mini``); without it a stand-in looks the question up
once. feedit's endpoints come from the environment, e.g.
``FEEDIT_ROLES__DEFAULT__BASE_URL=http://127.0.0.1:8000/v1 FEEDIT_ROLES__DEFAULT__MODEL=m``.
"""

import asyncio
import os
import sys
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from langgraph_feedit import feedit_node


@tool
def lookup(topic: str) -> str:
    """Look a topic up in the team's notes."""
    return f"Notes on {topic}: keep it short, cite one example, name one trade-off."


def tool_model() -> Runnable[Any, AIMessage]:
    """The agent's tool-calling model, or a stand-in that calls ``lookup`` once."""
    name = os.environ.get("TOOL_MODEL")
    if name:
        from langchain.chat_models import init_chat_model

        return init_chat_model(name).bind_tools([lookup])

    def stand_in(messages: list[Any]) -> AIMessage:
        if any(isinstance(m, ToolMessage) for m in messages):
            return AIMessage(content="")  # done with tools
        question = str(messages[-1].content)
        call = {"name": "lookup", "args": {"topic": question}, "id": "call-1"}
        return AIMessage(content="", tool_calls=[call])

    return RunnableLambda(stand_in)


def build() -> StateGraph[MessagesState, None, MessagesState, MessagesState]:
    model = tool_model()

    async def agent(state: MessagesState) -> dict[str, list[AIMessage]]:
        reply = await model.ainvoke(state["messages"])
        # Tool calls go on to the tools; the answer itself is feedit's to write.
        return {"messages": [reply]} if reply.tool_calls else {"messages": []}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else "answer"

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([lookup]))
    graph.add_node("answer", feedit_node(preset="feedback-edit"))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", "answer"])
    graph.add_edge("tools", "agent")
    graph.add_edge("answer", END)
    return graph


async def main(prompt: str) -> None:
    app = build().compile()
    out = await app.ainvoke({"messages": [("user", prompt)]})
    tools_used = [m.name for m in out["messages"] if isinstance(m, ToolMessage)]
    print("TOOLS:", ", ".join(tools_used) or "none")
    print(out["messages"][-1].content)


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "How should we version our public API?"))
