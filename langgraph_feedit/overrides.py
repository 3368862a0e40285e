"""What an untrusted caller may set per run, in one place.

A run's ``context`` on LangGraph Server and the body of a request to ``feedit serve`` come from
clients. They may tune the tree (width, depth, budget) and sampling, never where calls go or
which key they carry: a client able to set ``base_url`` and ``api_key_env`` could have the
server send any of its environment variables to a host of the client's choosing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from fnmatch import fnmatchcase
from typing import Any

from langgraph_feedit.errors import ConfigError

__all__ = ["UNTRUSTED_ROLE_FIELDS", "UNTRUSTED_SECTIONS", "check_untrusted_overrides"]

UNTRUSTED_SECTIONS = frozenset({"preset", "width", "depth", "budget", "roles"})
"""Top-level keys an untrusted caller may send."""
UNTRUSTED_ROLE_FIELDS = frozenset(
    {"temperature", "top_p", "max_tokens", "seed", "stop", "template", "kind"}
)
"""Role fields an untrusted caller may set: sampling, a built-in template set, the judge kind."""
BUILTIN_TEMPLATE_NAMES = frozenset({"generic", "nemotron"})


def _leaves(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_leaves(value, dotted + "."))
        else:
            out.append((dotted, value))
    return out


def check_untrusted_overrides(overrides: Mapping[str, Any], *, allow: Collection[str] = ()) -> None:
    """Refuse any key of ``overrides`` an untrusted caller may not set.

    ``allow`` widens the policy with dotted patterns (``roles.*.model``, ``roles.draft.*``).

    Raises:
        ConfigError: naming the first refused key (never its value).
    """
    for dotted, value in _leaves(overrides):
        if any(fnmatchcase(dotted, pattern) for pattern in allow):
            continue
        parts = dotted.split(".")
        allowed = parts[0] in UNTRUSTED_SECTIONS and parts[0] != "roles"
        if parts[0] == "roles" and len(parts) == 3 and parts[2] in UNTRUSTED_ROLE_FIELDS:
            allowed = parts[2] != "template" or value in BUILTIN_TEMPLATE_NAMES
        if not allowed:
            raise ConfigError(
                f"{dotted!r} cannot be set per run: endpoints, keys, limits, retries and "
                "template files belong to the server's configuration (the operator can allow "
                "it with context_allow)",
                key=dotted,
                source="run context",
            )
