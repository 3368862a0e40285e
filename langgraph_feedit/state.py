"""Graph state, reducers and the trace: the whole tree of one run as a stable JSON schema.

The trace (``trace`` key of the output, or :meth:`Trace.model_dump_json`) has these keys:

- ``nodes``: every draft, critique and edit, in tree order (see :class:`NodeFields`);
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
critique's edit 0, ``d0.c1.e0.c0`` a critique of that edit in the next round, and so on (see
:mod:`langgraph_feedit.nodeid`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    NotRequired,
    Required,
    cast,
    get_args,
    get_type_hints,
)

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    create_model,
    field_validator,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from langgraph_feedit import nodeid
from langgraph_feedit.nodeid import NodeKind
from langgraph_feedit.usage import UsageDict, empty_usage

__all__ = [
    "TRACE_VERSION",
    "CallFailure",
    "FeeditInput",
    "FeeditOutput",
    "FeeditState",
    "JudgePath",
    "NodeDict",
    "NodeFailure",
    "NodeFields",
    "NodeKind",
    "RunSpec",
    "Target",
    "Trace",
    "TraceNode",
    "is_candidate",
    "judge_failure",
    "merge_nodes",
    "tree_order",
]

TRACE_VERSION = 2
"""The trace's schema version: 2 added ``judge_failure``; version 1 files load as they are
(their judge failures are read from ``judge_note``)."""

CallFailure = Literal["backend", "timeout", "deadline", "budget"]
"""Why a call failed: the endpoint answered an error (``backend``) or never answered in time
(``timeout``), or the run's deadline or token budget ran out."""
NodeFailure = Literal[CallFailure, "not_an_answer"]
"""Why a node failed: its call failed, or an edit's reply was not an answer to the conversation
(``not_an_answer``: see :mod:`langgraph_feedit.prompts.answers`)."""
JudgePath = Literal["logprobs", "json_schema", "text", "unscored"]
"""How a pointwise model judge scored a candidate: ``logprobs`` (principle judge),
``json_schema`` (a rating constrained to JSON), ``text`` (a rating parsed from free text), or
``unscored`` (no score found, or the judge's call failed: see ``judge_failure``)."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class NodeFields(TypedDict, total=False):
    """One draft, critique or edit in the tree: the trace node's fields, written only here.

    In state a node is this plain dict (see :class:`NodeDict`); the trace's :class:`TraceNode`
    is a pydantic model made from these fields. Every key but ``id`` may be missing from a
    node update (the judge adds a score to a node written by another task).
    """

    id: Required[str]
    """The node's place in the tree (see :mod:`langgraph_feedit.nodeid`)."""
    kind: NodeKind
    parent: str | None
    """The node this one answers: ``null`` for drafts, the candidate for a critique, the
    critique for an edit."""
    round: int
    """0 for drafts, r for the critiques and edits of round r."""
    role: str
    model: str | None
    text: str | None
    """The node's answer: a reasoning model's thinking is never part of it."""
    reasoning: str | None
    """The model's thinking before ``text``, when it thought (``null`` when it did not)."""
    score: float | None
    """The judge's score (candidates only: drafts and edits)."""
    verdict: str | None
    """A critique's helpfulness verdict (``not`` .. ``perfectly``), when it states one."""
    usage: UsageDict
    judge_usage: UsageDict
    """Tokens the judge spent scoring this candidate (pointwise judges)."""
    judge_note: str | None
    """What the judge said or why it gave no score."""
    judge_path: JudgePath | None
    """How a model judge scored this candidate (``principle`` and ``llm`` kinds): from the
    Yes/No logprobs, from a rating constrained to JSON, from a rating parsed from text, or
    not at all."""
    judge_failure: CallFailure | None
    """Why the judge gave no score when its call failed (``null`` when it did not fail; a reply
    with no score in it is no failure: see ``judge_path``)."""
    principle_scores: dict[str, float] | None
    """The ``principle`` judge's logprob(Yes) - logprob(No) per principle; ``score`` is their
    weighted mean."""
    judge_parts: dict[str, float] | None
    """A ``combined`` judge's score per part (before weighting); ``score`` is their weighted
    sum."""
    started: float | None
    ended: float | None
    judge_started: float | None
    judge_ended: float | None
    """When this candidate's pointwise judge call started and ended (a pairwise judge's
    matches belong to no one node)."""
    error: str | None
    failure: NodeFailure | None
    """The kind of failure behind ``error``."""
    cut: list[str] | None
    """An edit's: what the edit rule cut from the reply (``preamble``, ``commentary``)."""
    skipped: str | None
    """Why no edit follows this critique (``perfect``: it found nothing to change)."""
    effective: bool | None
    """A critique's: whether it counted as feedback (with ``skip_perfect``, one that asks for no
    change does not, and its slot is sampled again)."""
    sample: int | None
    """A critique's: which sample of its slot it is (0 first; see ``max_critique_samples``)."""
    duplicate_of: str | None
    """A candidate's: the earlier candidate with the same text (whitespace aside); this one
    was not judged or critiqued again and takes that one's score."""
    reused: bool
    """The call was not made by this run: its result came from the call cache, or from an
    earlier attempt of this run that was resumed from its checkpoint (set by ``finish``)."""
    finish_reason: str | None
    """Why the endpoint stopped generating this node's text (``stop``, ``length``...)."""


class NodeDict(NodeFields, total=False):
    """A trace node as it travels in state (plain data, so every checkpointer keeps it).

    Besides :class:`NodeFields`, the keys ``origin`` and ``judge_origin``: the attempt that
    made the node's call and its judge's call, which tell reused calls from bought ones;
    ``attempt``: the attempt whose call failed; and ``share``: the mark of a call identical
    candidates' nodes shared (see ``twins``). ``finish`` drops them from the trace.
    """

    origin: str
    judge_origin: str
    attempt: str
    share: str


STATE_ONLY_KEYS = frozenset(NodeDict.__annotations__) - frozenset(NodeFields.__annotations__)
"""The keys a node has in state and not in the trace."""


def judge_failure(node: Mapping[str, Any]) -> CallFailure | None:
    """Why the judge gave ``node`` no score when its call failed (``None``: it did not fail).

    Nodes written before ``judge_failure`` existed (version 1 traces, older checkpoints) said
    it in their note only, as ``not scored: <why>``, and ``stopped: <limit> reached`` for the
    run's own deadline or budget: that old form is read here, and only for them.
    """
    if "judge_failure" in node:
        return cast(CallFailure | None, node["judge_failure"])
    note = node.get("judge_note") or ""
    if not note.startswith("not scored: "):
        return None
    why = note.removeprefix("not scored: ")
    if why.startswith("stopped: "):
        return "deadline" if why.startswith("stopped: deadline") else "budget"
    return "backend"


class _NodeModel(BaseModel):
    """What :class:`TraceNode` adds to its fields: strict keys, checked ids, old forms read, and
    the candidate test."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _read_old_forms(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "judge_failure" not in data:
            return {**data, "judge_failure": judge_failure(data)}
        return data

    @field_validator("id", check_fields=False)
    @classmethod
    def _check_id(cls, value: str) -> str:
        nodeid.parse(value)  # a malformed id is refused here, naming it
        return value

    @property
    def is_candidate(self) -> bool:
        return is_candidate(self.__dict__)


# Defaults of the fields that are neither optional (``None``) nor required.
_DEFAULTS: dict[str, object] = {"round": 0, "reused": False}
_FACTORIES: dict[str, Callable[[], object]] = {"usage": empty_usage, "judge_usage": empty_usage}


def _model_fields(fields: type) -> dict[str, tuple[object, object]]:
    """``create_model`` fields for a TypedDict's keys: the defaults above, ``None`` for an
    optional value, and required otherwise (``id``, ``kind``, ``role``); each described by
    its docstring in the TypedDict (as pydantic reads it)."""
    docs = TypeAdapter(fields).json_schema()["properties"]
    out: dict[str, tuple[object, object]] = {}
    for name, hint in get_type_hints(fields).items():
        description = docs[name].get("description")
        if name in _FACTORIES:
            info: object = Field(default_factory=_FACTORIES[name], description=description)
        elif name in _DEFAULTS or type(None) in get_args(hint):
            info = Field(_DEFAULTS.get(name), description=description)
        else:
            info = Field(description=description)
        out[name] = (hint, info)
    return out


if TYPE_CHECKING:

    class TraceNode(_NodeModel):
        """One draft, critique or edit in the tree (the fields of :class:`NodeFields`)."""

        def __getattr__(self, name: str) -> Any: ...

else:
    TraceNode = create_model(
        "TraceNode",
        __base__=_NodeModel,
        __module__=__name__,
        __doc__="One draft, critique or edit in the tree (the fields of :class:`NodeFields`).",
        **_model_fields(NodeFields),
    )


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


class Target(TypedDict):
    """The text a branch works on: a candidate to critique, or a critique to follow."""

    id: str
    text: str


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


tree_order = nodeid.order
"""Sort key following the tree (:func:`langgraph_feedit.nodeid.order`)."""


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
    out: list[NodeDict] = [NodeDict(**n) for n in (left or [])]
    index = {n["id"]: i for i, n in enumerate(out)}
    for node in right or []:
        i = index.get(node["id"])
        if i is None:
            index[node["id"]] = len(out)
            out.append(NodeDict(**node))
        else:
            out[i] = {**out[i], **node}
    return out


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
    feedit_next: list[Target]
    """Candidates the next round critiques (set by ``select``)."""
