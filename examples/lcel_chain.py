"""feedit inside a LangChain (LCEL) chain: prompt template | feedit | output parser."""

import asyncio
import sys

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langgraph_feedit import feedit_runnable

prompt = ChatPromptTemplate.from_messages(
    [("system", "You are a concise technical writer."), ("user", "Explain {topic} briefly.")]
)
chain = prompt | feedit_runnable(preset="best-of-n") | StrOutputParser()


async def main(topics: list[str]) -> None:
    answers = await chain.abatch([{"topic": t} for t in topics], {"max_concurrency": 2})
    for topic, answer in zip(topics, answers, strict=True):
        print(f"## {topic}\n{answer}\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["CRDTs", "vector clocks"]))
