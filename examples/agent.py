"""A LangGraph agent with a feedit node: the answers that matter are drafted, critiqued,
edited and judged; the rest of the agent sees an ordinary MessagesState.

Endpoints come from the environment, e.g.
``FEEDIT_ROLES__DEFAULT__BASE_URL=http://127.0.0.1:8000/v1 FEEDIT_ROLES__DEFAULT__MODEL=m``.
"""

import asyncio
import sys

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from langgraph_feedit import feedit_node


def route(state: MessagesState) -> dict[str, list[AIMessage]]:
    """A stand-in for the agent's own logic: it decides the question deserves feedit."""
    return {"messages": []}


def build() -> StateGraph[MessagesState, None, MessagesState, MessagesState]:
    agent = StateGraph(MessagesState)
    agent.add_node("route", route)
    agent.add_node("feedit", feedit_node(preset="feedback-edit"))
    agent.add_edge(START, "route")
    agent.add_edge("route", "feedit")
    agent.add_edge("feedit", END)
    return agent


async def main(prompt: str) -> None:
    app = build().compile()
    out = await app.ainvoke({"messages": [("user", prompt)]})
    print(out["messages"][-1].content)


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "Plan a three-day trip to Lisbon."))
