"""Graph state, reducers and the trace: the whole tree of one run as a stable JSON schema.

The trace (``trace`` key of the output, or :meth:`Trace.model_dump_json`) has these keys:

- ``nodes``: every draft, critique and edit, in tree order (see :class:`TraceNode`);
- ``selected``: the id of the chosen candidate (``null`` when every branch failed);
- ``answer``: its text;
- ``usage``: tokens per role and in total, each ``{prompt_tokens, completion_tokens,
  cached_tokens, calls, reasoning_tokens, reasoning_reported}`` (thinking is part of
  ``completion_tokens``; ``reasoning_tokens`` is what the servers counted of it, in
  ``reasoning_reported`` of the ``calls``);
- ``reused``: the part of ``usage`` served from the call cache rather than bought by this run;
- ``wall_s``: seconds from the start of the run to its end;
- ``stopped``: why the run stopped deepening (``max_rounds``, ``stop_score``, ``deadline``,
  ``budget`` or ``no_candidates``); ``judge``: the judge kind; ``version``: the schema version.

Node ids encode the tree: ``d0`` is draft 0, ``d0.c1`` its critique 1, ``d0.c1.e0`` that
critique's edit 0, ``d0.c1.e0.c0`` a critique of that edit in the next round, and so on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired, cast

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from langgraph_feedit.usage import UsageDict, empty_usage

__all__ = [
    "TRACE_VERSION",
    "FeeditInput",
    "FeeditOutput",
    "FeeditState",
    "NodeDict",
    "NodeKind",
    "RunSpec",
    "Trace",
    "TraceNode",
    "is_candidate",
    "merge_nodes",
    "tree_order",
]

TRACE_VERSION = 1
NodeKind = Literal["draft", "critique", "edit"]


class TraceNode(BaseModel):
    """One draft, critique or edit in the tree."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: NodeKind
    parent: str | None = None
    """The node this one answers: ``null`` for drafts, the candidate for a critique, the
    critique for an edit."""
    round: int = 0
    """0 for drafts, r for the critiques and edits of round r."""
    role: str
    model: str | None = None
    text: str | None = None
    """The node's answer: a reasoning model's thinking is never part of it."""
    reasoning: str | None = None
    """The model's thinking before ``text``, when it thought (``null`` when it did not)."""
    score: float | None = None
    """The judge's score (candidates only: drafts and edits)."""
    verdict: str | None = None
    """A critique's helpfulness verdict (``not`` .. ``perfectly``), when it states one."""
    usage: UsageDict = Field(default_factory=empty_usage)
    judge_usage: UsageDict = Field(default_factory=empty_usage)
    """Tokens the judge spent scoring this candidate (pointwise judges)."""
    judge_note: str | None = None
    """What the judge said or why it gave no score."""
    judge_path: Literal["logprobs", "json_schema", "text", "unscored"] | None = None
    """How a model judge scored this candidate (``principle`` and ``llm`` kinds): from the
    Yes/No logprobs, from a rating constrained to JSON, from a rating parsed from text, or
    not at all."""
    principle_scores: dict[str, float] | None = None
    """The ``principle`` judge's logprob(Yes) - logprob(No) per principle; ``score`` is their
    weighted mean."""
    judge_parts: dict[str, float] | None = None
    """A ``combined`` judge's score per part (before weighting); ``score`` is their weighted
    sum."""
    started: float | None = None
    ended: float | None = None
    judge_started: float | None = None
    judge_ended: float | None = None
    """When this candidate's pointwise judge call started and ended (a pairwise judge's
    matches belong to no one node)."""
    error: str | None = None
    failure: Literal["backend", "timeout", "deadline", "budget", "not_an_answer"] | None = None
    """The kind of failure behind ``error``: the endpoint answered an error (``backend``) or
    never answered in time (``timeout``), the run's deadline or token budget ran out, or an
    edit's reply was not an answer to the conversation (``not_an_answer``: see
    :mod:`langgraph_feedit.prompts.answers`)."""
    cut: list[str] | None = None
    """An edit's: what the edit rule cut from the reply (``preamble``, ``commentary``)."""
    skipped: str | None = None
    """Why no edit follows this critique (``perfect``: it found nothing to change)."""
    effective: bool | None = None
    """A critique's: whether it counted as feedback (with ``skip_perfect``, one that asks for no
    change does not, and its slot is sampled again)."""
    sample: int | None = None
    """A critique's: which sample of its slot it is (0 first; see ``max_critique_samples``)."""
    duplicate_of: str | None = None
    """A candidate's: the earlier candidate with the same text (whitespace aside); this one
    was not judged or critiqued again and takes that one's score."""
    reused: bool = False
    """The call was not made by this run: its result came from the call cache, or from an
    earlier attempt of this run that was resumed from its checkpoint."""
    finish_reason: str | None = None
    """Why the endpoint stopped generating this node's text (``stop``, ``length``...)."""

    @property
    def is_candidate(self) -> bool:
        return self.kind != "critique" and self.error is None and self.text is not None


class Trace(BaseModel):
    """The whole tree of one run; serialises to JSON and back losslessly."""

    model_config = ConfigDict(extra="forbid")

    version: int = TRACE_VERSION
    nodes: list[TraceNode] = Field(default_factory=list)
    selected: str | None = None
    answer: str | None = None
    usage: dict[str, UsageDict] = Field(default_factory=dict)
    """What the tree cost, per role (``draft``, ``critique``, ``edit``, ``judge``) and ``total``,
    whether its calls were made by this run or reused from the call cache."""
    reused: UsageDict = Field(default_factory=empty_usage)
    """The part of ``usage["total"]`` served from the call cache instead of bought by this run."""
    wall_s: float = 0.0
    stopped: str | None = None
    judge: str | None = None
    rounds: int = 0
    conversation: list[dict[str, Any]] | None = None
    """The conversation the tree answered (OpenAI-style messages), so a trace file alone can be
    read, and drawn by ``feedit view``."""

    def node(self, node_id: str) -> TraceNode:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def candidates(self) -> list[TraceNode]:
        return [n for n in self.nodes if n.is_candidate]


class NodeDict(TypedDict, total=False):
    """A trace node as it travels in state (plain data, so every checkpointer keeps it).

    The keys are :class:`TraceNode`'s, plus ``origin`` and ``judge_origin``: the attempt that
    made the node's call and its judge's call, which tell reused calls from bought ones, and
    ``share``: the mark of a call identical candidates' nodes shared (see ``twins``).
    """

    id: str
    kind: NodeKind
    parent: str | None
    round: int
    role: str
    model: str | None
    text: str | None
    reasoning: str | None
    score: float | None
    verdict: str | None
    usage: UsageDict
    judge_usage: UsageDict
    judge_note: str | None
    judge_path: Literal["logprobs", "json_schema", "text", "unscored"] | None
    principle_scores: dict[str, float] | None
    judge_parts: dict[str, float] | None
    started: float | None
    ended: float | None
    judge_started: float | None
    judge_ended: float | None
    error: str | None
    failure: Literal["backend", "timeout", "deadline", "budget", "not_an_answer"] | None
    cut: list[str] | None
    skipped: str | None
    effective: bool | None
    sample: int | None
    duplicate_of: str | None
    finish_reason: str | None
    origin: str
    judge_origin: str
    attempt: str
    share: str


class RunSpec(TypedDict):
    """One run's settings, resolved once by ``start``: the plain form the run's state carries.

    Plain data (what any checkpointer keeps, with no custom types to allow-list), in the
    configuration's own shape. It holds what a run may choose (width, depth, budget, each
    role's sampling and built-in template, the judge kind) and nothing of where calls go: each
    role's endpoint, model, key variable, extra fields, principles and template file come from
    the graph's configuration (``runs.Operator``), and appear here only as a digest that keys
    the call cache and checks a resumed or forged state against that configuration. Thread
    state is readable and writable by every client of a server. Nodes read the validated
    configuration this becomes (``runs.ActiveRun.config``), not this. A spec written before
    it took this shape (flat ``drafts``, ``max_tokens``, ``judge``...) is read by
    ``runs.read_spec``.
    """

    key: str
    """Identifies the run (one per thread turn); keys the process-local budget and caller."""
    started: float
    conversation: list[dict[str, Any]]
    roles: dict[str, dict[str, Any]]
    """Per role, the sampling settings (``temperature``, ``top_p``, ``max_tokens``, ``seed``,
    ``stop``) and a built-in ``template`` name, where set; the judge's ``kind``."""
    endpoints: dict[str, str]
    """Per role, a digest of its endpoint and the operator's settings for it."""
    width: dict[str, int]
    """The configuration's ``width`` table."""
    depth: dict[str, int | float | bool | None]
    """The configuration's ``depth`` table."""
    budget: dict[str, int | float | None]
    """The configuration's ``budget`` table."""
    cache_key: str
    preset: str | None
    answer_schema: NotRequired[dict[str, Any] | None]
    """The JSON schema every draft and edit is constrained by (``FeeditConfig.answer_schema``);
    absent in states written before it existed."""
    trivial: bool
    """One draft and no rounds: nothing to choose, so no judge call (derived from width and
    depth, for the call cache's keys, which are made before any node runs)."""


def tree_order(node_id: str) -> tuple[tuple[str, int], ...]:
    """Sort key following the tree: ``d2`` < ``d10``, ``d0.c1`` < ``d0.c1.e0``."""
    return tuple((part[0], int(part[1:])) for part in node_id.split("."))


def is_candidate(node: Mapping[str, Any]) -> bool:
    """A trace node (as a mapping) that can be the answer: a draft or edit with text."""
    return node.get("kind") != "critique" and not node.get("error") and node.get("text") is not None


def keep_first(left: Any, right: Any) -> Any:
    """Reducer for values set once per branch: the first value stays.

    LangGraph's ``astream_events`` hands a subgraph's whole state back to its parent, so
    parallel child branches all write the keys they share with the parent in one step; a plain
    key would fail there ("can receive only one value per step"), a reducer merges them.
    """
    return right if left is None else left


def merge_nodes(
    left: Sequence[NodeDict] | None, right: Sequence[NodeDict] | None
) -> list[NodeDict]:
    """Reducer for trace nodes: append new ids, update known ones field by field.

    Merging by id (not appending blindly) keeps the tree whole when a resumed run writes a
    node again, and lets the judge add a score to a node written by an earlier task.
    """
    out: list[dict[str, Any]] = [dict(n) for n in (left or [])]
    index = {n["id"]: i for i, n in enumerate(out)}
    for node in right or []:
        i = index.get(node["id"])
        if i is None:
            index[node["id"]] = len(out)
            out.append(dict(node))
        else:
            out[i] = {**out[i], **node}
    return cast(list[NodeDict], out)


def _concat(left: list[Any] | None, right: list[Any] | None) -> list[Any]:
    return [*(left or []), *(right or [])]


class FeeditInput(TypedDict):
    """Input: a conversation, as LangChain messages or OpenAI-style dicts."""

    messages: Annotated[list[AnyMessage], add_messages]


class FeeditOutput(TypedDict):
    """Output: the conversation with the selected answer appended, and the trace."""

    messages: Annotated[list[AnyMessage], add_messages]
    trace: dict[str, Any]


class FeeditState(TypedDict, total=False):
    """The graph's whole state. Keys starting with ``feedit_`` are internal."""

    messages: Annotated[list[AnyMessage], add_messages]
    trace: dict[str, Any]
    feedit_nodes: Annotated[list[NodeDict], merge_nodes]
    """Trace nodes as plain dicts, merged by id."""
    feedit_spec: RunSpec
    """The run's resolved settings and conversation (set once, by ``start``)."""
    feedit_round: int
    feedit_stopped: str | None
    feedit_judge_usage: Annotated[list[UsageDict], _concat]
    """Usage of whole-round judging (pairwise, consensus)."""
    feedit_next: list[dict[str, Any]]
    """Candidates the next round critiques (set by ``select``)."""
