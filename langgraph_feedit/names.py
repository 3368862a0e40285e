"""The closed sets of names the configuration is made of: roles and judge kinds.

Each is written once, as a ``Literal`` type; its tuple is derived from it with
``typing.get_args``. Nothing here imports pydantic, so the command line can list them in its
help without loading the configuration's models (:mod:`langgraph_feedit.roles` re-exports them
beside the models that use them).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "JUDGE_KINDS",
    "PART_KINDS",
    "ROLE_NAMES",
    "RUN_ROLE_NAMES",
    "JudgeKind",
    "PartKind",
    "RoleName",
    "RunRoleName",
]

RunRoleName = Literal["draft", "critique", "edit", "judge"]
"""The roles a run calls."""
RoleName = Literal[RunRoleName, "evaluator"]
"""Every role: a run's, and ``evaluator`` (``feedit judge``'s, not a run's)."""
RUN_ROLE_NAMES: tuple[RunRoleName, ...] = get_args(RunRoleName)
ROLE_NAMES: tuple[RoleName, ...] = get_args(RoleName)

PartKind = Literal["principle", "reward", "llm", "function", "verify"]
"""The pointwise judge kinds a ``combined`` judge adds up."""
JudgeKind = Literal[PartKind, "pairwise", "consensus", "combined"]
"""Every judge kind: the pointwise ones, the whole-round ``pairwise`` and ``consensus``, and
``combined`` (a weighted sum of pointwise ones)."""
PART_KINDS: tuple[PartKind, ...] = get_args(PartKind)
JUDGE_KINDS: tuple[JudgeKind, ...] = get_args(JudgeKind)
