"""langgraph-feedit: draft, critique, edit and judge as a LangGraph graph."""

from importlib.metadata import PackageNotFoundError, version

from langgraph_feedit.adapters import FeeditResult, afeedit, feedit_node, feedit_runnable
from langgraph_feedit.config import (
    PRESETS,
    BudgetConfig,
    DepthConfig,
    FeeditConfig,
    RoleConfig,
    RolesConfig,
    WidthConfig,
)
from langgraph_feedit.endpoints import ChatResult, Endpoint, Usage, get_endpoint
from langgraph_feedit.errors import (
    ConfigError,
    EmbeddedError,
    EndpointError,
    EndpointTimeout,
    FeeditError,
    InputError,
    NoCandidateError,
    UserError,
)
from langgraph_feedit.graph import FeeditContext, create_feedit_graph
from langgraph_feedit.state import FeeditState, Trace, TraceNode

try:
    __version__ = version("langgraph-feedit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "PRESETS",
    "BudgetConfig",
    "ChatResult",
    "ConfigError",
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
