"""What a request must pass before it is read: the clients' key and the body's size.

The key is kept only as a SHA-256 digest and compared with the digest of what the client sent,
in constant time; neither the key nor what the client sent is ever echoed or logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from starlette.requests import Request

from langgraph_feedit.errors import ConfigError, register_secret
from langgraph_feedit.serve.protocol import APIError

__all__ = ["authorize", "key_digest", "read_body", "require_json"]


def key_digest(api_key_env: str | None, env: Mapping[str, str]) -> bytes | None:
    """A digest of the clients' key; only the digest is kept, so the key is in no object."""
    if api_key_env is None:
        return None
    value = env.get(api_key_env)
    if not value:
        raise ConfigError(
            f"api_key_env names the environment variable {api_key_env!r}, which is not set",
            key="api_key_env",
            source="environment",
        )
    register_secret(value)  # a client echoing it back in a prompt must not see it in an error
    return hashlib.sha256(value.encode()).digest()


def authorize(request: Request, digest: bytes | None) -> None:
    """Let the request through if it carries ``Authorization: Bearer <key>`` (or no key is set).

    Raises:
        APIError: 401, the key is missing or wrong.
    """
    if digest is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise APIError(
            401,
            "You didn't provide an API key: send it as 'Authorization: Bearer <key>'",
            code="invalid_api_key",
        )
    # Digests of equal length, compared in constant time: neither the key's length nor its
    # content shows in the timing; the key the client sent is never echoed.
    if not hmac.compare_digest(hashlib.sha256(token.encode()).digest(), digest):
        raise APIError(401, "Incorrect API key provided", code="invalid_api_key")


def require_json(request: Request) -> None:
    """Let the request through if its body is declared JSON, or not declared at all.

    A body sent as ``text/plain`` or a form (``curl -d`` without ``-H``) is usually a client
    that meant something else: refusing it says so, where parsing it anyway would not.

    Raises:
        APIError: 415, the ``Content-Type`` names another media type.
    """
    declared = request.headers.get("content-type")
    if declared is None:
        return
    media = declared.partition(";")[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise APIError(
        415,
        "the request body must be JSON: send it with 'Content-Type: application/json'",
        param="Content-Type",
        code="unsupported_media_type",
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, read no further than ``limit`` bytes.

    Raises:
        APIError: 413, the body declares or turns out to be larger than ``limit``.
        ClientDisconnect: the client left before its body was whole.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    # A chunked body declares no length: count as it arrives and stop at the limit.
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
    return b"".join(parts)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
