"""Quick start: the full draft-critique-edit-judge graph on the embedded endpoint.

Needs no server, key or network: the package starts llama.cpp's server on SmolLM2-135M-Instruct.
That model is tiny, so the answers are weak; point the roles at real endpoints for real work.

    python examples/quickstart.py "Explain CRDTs in two sentences."
"""

import asyncio
import sys

from langgraph_feedit import afeedit


async def main(prompt: str) -> None:
    result = await afeedit(prompt, preset="feedback-edit", drafts=2, critiques=1, edits=1)
    print(result.answer)
    usage = result.trace.usage["total"]
    print(
        f"\n[{len(result.trace.nodes)} nodes, selected {result.trace.selected}, "
        f"{usage['calls']} calls, {usage['prompt_tokens'] + usage['completion_tokens']} tokens, "
        f"{result.trace.wall_s:.1f} s]",
        file=sys.stderr,
    )


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "Give three tips for writing clear emails."))
