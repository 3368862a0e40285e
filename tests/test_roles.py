"""Each closed set is written once, in its type, and every list of it is derived from there."""

from __future__ import annotations

from typing import get_args

from langgraph_feedit.config import (
    JUDGE_KINDS,
    ROLE_NAMES,
    RUN_ROLE_NAMES,
    SAMPLING_FIELDS,
    FeeditConfig,
    JudgeKind,
    RoleConfig,
    RoleName,
    RolesConfig,
    SamplingConfig,
)
from langgraph_feedit.overrides import RUN_ROLES, UNTRUSTED_KEYS
from langgraph_feedit.runs import make_spec


def test_role_names_judge_kinds_and_sampling_fields_come_from_their_types() -> None:
    assert ROLE_NAMES == get_args(RoleName) == (*RUN_ROLE_NAMES, "evaluator")
    assert get_args(JudgeKind) == JUDGE_KINDS
    assert tuple(SamplingConfig.model_fields) == SAMPLING_FIELDS
    assert SAMPLING_FIELDS == ("temperature", "top_p", "max_tokens", "seed", "stop")
    assert issubclass(RoleConfig, SamplingConfig)
    # The one place each role is named again, as a typed field of its table.
    assert set(RolesConfig.model_fields) == {"default", *ROLE_NAMES}


def test_the_run_policy_and_the_spec_read_the_same_lists() -> None:
    assert ("default", *RUN_ROLE_NAMES) == RUN_ROLES
    assert {f"roles.*.{f}" for f in SAMPLING_FIELDS} <= set(UNTRUSTED_KEYS)
    config = FeeditConfig.model_validate(
        {"roles": {"default": {"seed": 3, "stop": ["END"], "top_p": 0.5}}}
    )
    spec = make_spec(config, [{"role": "user", "content": "hi"}])
    assert set(spec["roles"]) == set(RUN_ROLE_NAMES)
    assert set(spec["roles"]["draft"]) == {*SAMPLING_FIELDS, "template"}
    assert spec["roles"]["judge"]["kind"] == "principle"
    # The budget's token limit keeps its name in its table, beside the roles' own.
    assert spec["budget"] == {"deadline_s": None, "max_tokens": None}
    assert spec["roles"]["draft"]["max_tokens"] == 1024
