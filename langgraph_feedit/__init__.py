"""langgraph-feedit: draft, critique, edit and judge as a LangGraph graph."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langgraph_feedit.adapters import (
        ChatFeedit,
        FeeditResult,
        afeedit,
        feedit_node,
        feedit_runnable,
    )
    from langgraph_feedit.chatapi import ChatResult
    from langgraph_feedit.config import (
        PRESETS,
        BudgetConfig,
        DepthConfig,
        FeeditConfig,
        RoleConfig,
        RolesConfig,
        WidthConfig,
    )
    from langgraph_feedit.endpoints import Endpoint, get_endpoint
    from langgraph_feedit.errors import (
        ConfigError,
        EmbeddedError,
        EndpointError,
        EndpointTimeout,
        FeeditError,
        InputError,
        NoCandidateError,
        StoreError,
        UserError,
    )
    from langgraph_feedit.graph import FeeditContext, create_feedit_graph
    from langgraph_feedit.state import FeeditState, Trace, TraceNode
    from langgraph_feedit.usage import Usage

try:
    __version__ = version("langgraph-feedit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

# Public names and their modules, imported on first use: `feedit --version` and `--help` (and
# any program that needs only the configuration) do not pay for LangGraph and LangChain.
_LAZY = {
    "ChatFeedit": "adapters",
    "FeeditResult": "adapters",
    "afeedit": "adapters",
    "feedit_node": "adapters",
    "feedit_runnable": "adapters",
    "PRESETS": "config",
    "BudgetConfig": "config",
    "DepthConfig": "config",
    "FeeditConfig": "config",
    "RoleConfig": "config",
    "RolesConfig": "config",
    "WidthConfig": "config",
    "ChatResult": "chatapi",
    "Endpoint": "endpoints",
    "Usage": "usage",
    "get_endpoint": "endpoints",
    "ConfigError": "errors",
    "DeploymentError": "errors",
    "EmbeddedError": "errors",
    "EndpointError": "errors",
    "EndpointTimeout": "errors",
    "FeeditError": "errors",
    "InputError": "errors",
    "NoCandidateError": "errors",
    "StoreError": "errors",
    "UserError": "errors",
    "FeeditContext": "graph",
    "create_feedit_graph": "graph",
    "FeeditState": "state",
    "Trace": "state",
    "TraceNode": "state",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'langgraph_feedit' has no attribute {name!r}")
    value = getattr(import_module(f"langgraph_feedit.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "PRESETS",
    "BudgetConfig",
    "ChatFeedit",
    "ChatResult",
    "ConfigError",
    "DeploymentError",
    "DepthConfig",
    "EmbeddedError",
    "Endpoint",
    "EndpointError",
    "EndpointTimeout",
    "FeeditConfig",
    "FeeditContext",
    "FeeditError",
    "FeeditResult",
    "FeeditState",
    "InputError",
    "NoCandidateError",
    "RoleConfig",
    "RolesConfig",
    "StoreError",
    "Trace",
    "TraceNode",
    "Usage",
    "UserError",
    "WidthConfig",
    "__version__",
    "afeedit",
    "create_feedit_graph",
    "feedit_node",
    "feedit_runnable",
    "get_endpoint",
]
