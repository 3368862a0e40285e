"""Train dedicated feedback, edit and select models (the ``train`` extra).

The paper's point is that *dedicated* feedback and edit models make feedback-and-edit scaling
work. This package trains them, small or large, from HelpSteer3 rows, from the trees a strong
teacher grew in ``feedit batch`` (distillation), or from preference pairs, with examples
rendered by the very message builders and template sets the graph uses at inference; exports
them to GGUF so the embedded llama.cpp server serves each role its own model offline.

- :mod:`~langgraph_feedit.train.data`: the sources and their validation;
- :mod:`~langgraph_feedit.train.trainers`: supervised fine-tuning and the Bradley-Terry select
  model on transformers' ``Trainer``;
- :mod:`~langgraph_feedit.train.gguf_io`: a trainable copy of a GGUF base, and GGUF export.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from langgraph_feedit.errors import UserError

__all__ = ["PRINCIPLE_PROMPT", "load_examples", "require_extra", "select_messages"]


def __getattr__(name: str) -> Any:
    # Lazily: ``feedit --help`` registers ``train`` without loading the data layer.
    if name in ("PRINCIPLE_PROMPT", "load_examples", "select_messages"):
        from langgraph_feedit.train import data

        return getattr(data, name)
    raise AttributeError(name)


_NEEDS = ("torch", "transformers", "peft", "accelerate", "gguf")


def require_extra() -> None:
    """Raise a :class:`UserError` naming the install line when the train extra is missing."""
    missing = [m for m in _NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"feedit train needs {', '.join(missing)}: pip install 'langgraph-feedit[train]'"
        )
