"""Every call's tokens as they arrive, tagged by tree node, with LangChain's `astream_events`
(the same events LangSmith records), then the selected answer. Sync code can use
`graph.stream(..., stream_mode="messages", subgraphs=True)` the same way."""

import asyncio
import sys

from langgraph_feedit import create_feedit_graph


async def main(prompt: str) -> None:
    graph = create_feedit_graph(preset="feedback-edit").compile()
    pieces: dict[str, int] = {}
    answer = None
    async for event in graph.astream_events(
        {"messages": [("user", prompt)]},
        context={"width": {"drafts": 2, "critiques": 1, "edits": 1}},
        version="v2",
    ):
        if event["event"] == "on_chat_model_stream":
            node = f"{event['metadata']['feedit_id']} ({event['metadata']['feedit_role']})"
            pieces[node] = pieces.get(node, 0) + 1
        elif event["event"] == "on_chat_model_end":
            usage = event["data"]["output"].usage_metadata
            print(f"{event['metadata']['feedit_id']}: {usage['total_tokens']} tokens", flush=True)
        elif event["event"] == "on_chain_end" and event["name"] == "feedit":
            answer = event["data"]["output"]["messages"][-1].content
    print("STREAMED:", ", ".join(f"{k}: {v} pieces" for k, v in sorted(pieces.items())))
    print("ANSWER:", answer)


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "Summarise the CAP theorem."))
