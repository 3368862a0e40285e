"""An async app streaming progress events (for a UI) while the tree grows, then the answer."""

import asyncio
import json
import sys

from langgraph_feedit import create_feedit_graph


async def main(prompt: str) -> None:
    graph = create_feedit_graph(preset="feedback-edit").compile()
    final = None
    async for namespace, mode, chunk in graph.astream(
        {"messages": [("user", prompt)]},
        context={"width": {"drafts": 2, "critiques": 1, "edits": 1}},
        stream_mode=["custom", "values"],
        subgraphs=True,
    ):
        if mode == "custom":
            print(json.dumps(chunk["feedit"]), flush=True)
        elif mode == "values" and not namespace:
            final = chunk
    assert final is not None
    print("ANSWER:", final["messages"][-1].content)


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "Summarise the CAP theorem."))
