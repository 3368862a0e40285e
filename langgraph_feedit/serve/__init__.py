"""``feedit serve``: the feedit graph behind an OpenAI-compatible chat-completions API.

Any OpenAI client can use it: the ``model`` is a preset (``single``, ``best-of-n``,
``feedback-edit``, ``self-refine``, ``beam``), per-request settings go in
``extra_body={"feedit": {...}}``, and ``stream=True`` streams chunks that each hold a choice
(progress goes out as SSE comments unless a request asks for it as chunks). ``usage`` counts
every call of the tree.

Example:
    ```python
    from openai import OpenAI

    client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused")
    reply = client.chat.completions.create(
        model="feedback-edit",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "..."}],
        extra_body={"feedit": {"drafts": 4, "critiques": 2, "judge": "llm", "trace": True}},
    )
    print(reply.choices[0].message.content, reply.usage, reply.model_extra["feedit_trace"])
    ```

Modules: :mod:`.protocol` (requests) and :mod:`.replies` (replies and errors), the wire format
with no web framework; :mod:`.guards` (the clients' key and the body limit); :mod:`.app`
(``build_app``; with the guards, it needs the ``serve`` extra: FastAPI and uvicorn);
:mod:`.runner` (the command line and a server in a background thread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langgraph_feedit.serve.runner import (
    config_from_args,
    run_serve,
    serve_in_thread,
)

if TYPE_CHECKING:
    from langgraph_feedit.serve.app import build_app

__all__ = ["build_app", "config_from_args", "run_serve", "serve_in_thread"]


def __getattr__(name: str) -> Any:
    # FastAPI is imported only when the app is asked for, so the command line can add
    # `feedit serve` to its parser without the serve extra installed.
    if name == "build_app":
        from langgraph_feedit.serve.app import build_app

        return build_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
