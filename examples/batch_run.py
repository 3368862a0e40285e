"""A batch run from Python: answer a file of prompts, resumably, and print a summary.

Run it twice: the second run reads every answer back from the store and makes no call.

    python examples/batch_run.py prompts.txt answers.jsonl
"""

import asyncio
import sys
from pathlib import Path

from langgraph_feedit import FeeditConfig
from langgraph_feedit.batch import BatchOptions, run_batch


async def main(prompts: Path, answers: Path) -> None:
    config = FeeditConfig.load(overrides={"preset": "best-of-n", "width": {"drafts": 2}})
    summary = await run_batch(
        config, BatchOptions(input=prompts, output=answers, store=answers.parent / ".feedit")
    )
    for line in summary.lines():
        print(line)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
