"""Which chat model a role names, and what it is: ``"provider:model"`` strings and identities.

A role's chat model is a LangChain ``BaseChatModel`` the operator gives, or a
``"provider:model"`` string that LangChain's ``init_chat_model`` makes (once per process, so
runs share its client and its limit); a missing integration package is a
:class:`~langgraph_feedit.errors.ConfigError` naming it. :func:`model_identity` is what a model
is (its class and parameters, never its key): part of the role's endpoint digest, so the call
cache and the check of a resumed state cover it.

Apart from :mod:`langgraph_feedit.chatmodels`, which calls a model as a role's backend (and
re-exports these names): choosing a model is configuration, calling it is not.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from typing import Any

from langchain_core.language_models import BaseChatModel

from langgraph_feedit.errors import ConfigError, redact

__all__ = ["ModelSpec", "model_identity", "model_name", "resolve_model"]

ModelSpec = BaseChatModel | str
"""A role's chat model: a LangChain chat model, or ``"provider:model"`` for ``init_chat_model``."""

# Integration packages by init_chat_model's provider names, to say which one is missing.
_PACKAGES = {
    "openai": "langchain-openai",
    "azure_openai": "langchain-openai",
    "anthropic": "langchain-anthropic",
    "google_genai": "langchain-google-genai",
    "google_vertexai": "langchain-google-vertexai",
    "bedrock": "langchain-aws",
    "bedrock_converse": "langchain-aws",
    "ollama": "langchain-ollama",
    "groq": "langchain-groq",
    "mistralai": "langchain-mistralai",
    "fireworks": "langchain-fireworks",
    "together": "langchain-together",
    "deepseek": "langchain-deepseek",
    "xai": "langchain-xai",
    "huggingface": "langchain-huggingface",
    "cohere": "langchain-cohere",
    "perplexity": "langchain-perplexity",
}

_resolved: dict[tuple[str, str | None, str | None], BaseChatModel] = {}
_resolved_lock = threading.Lock()


def resolve_model(
    value: Any,
    *,
    role: str,
    base_url: str | None = None,
    api_key: str | None = None,
) -> BaseChatModel:
    """A role's chat model: ``value`` itself, or the model ``init_chat_model`` makes of a
    ``"provider:model"`` string (with ``base_url`` and ``api_key`` when given). Strings are
    made once per process and shared, so runs share the model's client and its limit.

    Raises:
        ConfigError: ``value`` is neither, the string names no provider LangChain knows, or
            the provider's integration package is not installed (the error names it).
    """
    if isinstance(value, BaseChatModel):
        return value
    if not isinstance(value, str):
        raise ConfigError(
            f"models[{role!r}] must be a LangChain chat model (a BaseChatModel such as "
            f"ChatOpenAI) or a 'provider:model' string, not {type(value).__name__}",
            key=f"models.{role}",
        )
    key = (value, base_url, api_key)
    with _resolved_lock:
        found = _resolved.get(key)
    if found is not None:
        return found
    provider, sep, name = value.partition(":")
    if not sep or not provider or not name:
        raise ConfigError(
            f"the chat model {value!r} of role {role!r} must be written 'provider:model' "
            "(e.g. 'openai:gpt-4o-mini'), as LangChain's init_chat_model reads it",
            key=f"roles.{role}.chat_model",
        )
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise ConfigError(
            f"the chat model {value!r} of role {role!r} is made by LangChain's init_chat_model, "
            "which needs the langchain package: pip install 'langgraph-feedit[chatmodels]'",
            key=f"roles.{role}.chat_model",
        ) from None

    kwargs: dict[str, Any] = {}
    if base_url is not None:
        kwargs["base_url"] = base_url
    if api_key is not None:
        kwargs["api_key"] = api_key
    try:
        model = init_chat_model(name, model_provider=provider, **kwargs)
    except ImportError as exc:
        package = _PACKAGES.get(provider) or _missing_package(str(exc))
        raise ConfigError(
            f"the chat model {value!r} of role {role!r} needs the integration package "
            f"{package}: pip install {package}",
            key=f"roles.{role}.chat_model",
        ) from None
    except ValueError as exc:
        raise ConfigError(
            f"the chat model {value!r} of role {role!r}: {redact(str(exc))}",
            key=f"roles.{role}.chat_model",
        ) from None
    if not isinstance(model, BaseChatModel):  # pragma: no cover - init_chat_model's contract
        raise ConfigError(f"init_chat_model made no chat model of {value!r}")
    with _resolved_lock:
        return _resolved.setdefault(key, model)


def _missing_package(message: str) -> str:
    found = re.search(r"langchain[-_][a-z0-9_-]+", message)
    return found.group(0).replace("_", "-") if found else "the provider's langchain package"


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def model_identity(model: BaseChatModel) -> str:
    """A digest of what a chat model is: its class, its ``_identifying_params`` and the
    arguments it was built with (LangChain's serialised form, with secrets as their names),
    never its key. Two processes that build the same model get the same digest."""
    from langchain_core.load import dumpd

    cls = type(model)
    try:
        params: Any = model._identifying_params
    except Exception:
        params = None
    try:
        built: Any = dumpd(model)
    except Exception:
        built = None
    blob = json.dumps(
        {"class": f"{cls.__module__}.{cls.__qualname__}", "params": params, "built": built},
        sort_keys=True,
        ensure_ascii=False,
        default=repr,
    )
    # Objects without a serialised form show as their repr: drop the memory address.
    blob = _ADDRESS.sub("", blob)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def model_name(model: BaseChatModel) -> str:
    """The model's name as the trace shows it (``model_name``/``model`` where it has one)."""
    for attr in ("model_name", "model", "model_id", "deployment_name"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__
