"""One documented tree of errors, split by whose fault it is.

```
FeeditError
├── UserError            the caller's mistake: fix the input and run again
│   ├── ConfigError      a bad configuration key or value (names the key and the file)
│   └── InputError       a bad input record (names the file and the line)
├── EndpointError        a backend failed (names the endpoint, the status and the body)
│   └── EndpointTimeout  a call ran past its timeout
├── EmbeddedError        the embedded endpoint could not start (says why, with its log)
└── NoCandidateError     every branch of a run failed, so there is nothing to select
```

No error ever carries an API key: endpoints are named by base URL and model only.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EmbeddedError",
    "EndpointError",
    "EndpointTimeout",
    "FeeditError",
    "InputError",
    "NoCandidateError",
    "UserError",
]

_BODY_LIMIT = 2000


class FeeditError(RuntimeError):
    """Base class of every error raised by langgraph-feedit.

    A ``RuntimeError`` (and a user's mistake a ``ValueError``): LangGraph Server shows a failed
    run's message to its client only for exception types it knows, built-ins among them.
    Messages never hold a key, so they are safe to show.
    """


class UserError(FeeditError, ValueError):
    """The caller's mistake: a bad configuration, argument or input record."""


class ConfigError(UserError):
    """A configuration key or value is wrong.

    Attributes:
        key: dotted path of the offending key (``roles.draft.temperature``), if known.
        source: where the value came from (a file path, an environment variable, ``arguments``).
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        self.key = key
        self.source = source
        super().__init__(message)


class InputError(UserError):
    """An input record is malformed.

    Attributes:
        path: the input file.
        line: the 1-based line number, if the problem is in one line.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")


class EndpointError(FeeditError):
    """A backend endpoint failed after retries, or with an error that must not be retried.

    Attributes:
        endpoint: ``base_url`` and model of the endpoint (never the key).
        status: the HTTP status, or ``None`` for connection failures and timeouts.
        body: the start of the response body, if any.
        role: the role whose call failed, if known.
        retryable: whether the failure was of a kind that is retried.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status: int | None = None,
        body: str | None = None,
        role: str | None = None,
        retryable: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.body = body[:_BODY_LIMIT] if body else body
        self.role = role
        self.retryable = retryable
        parts = [f"endpoint {endpoint}"]
        if role:
            parts.insert(0, f"role {role!r}")
        if status is not None:
            parts.append(f"status {status}")
        detail = f": {message}" if message else ""
        text = f"{', '.join(parts)}{detail}"
        if self.body:
            text += f" (body: {self.body[:300]})"
        super().__init__(text)


class EndpointTimeout(EndpointError):
    """A call to an endpoint ran past its timeout."""


class EmbeddedError(FeeditError):
    """The embedded llama.cpp endpoint could not be found, started or reached.

    Attributes:
        log_tail: the last lines the server wrote, if it got as far as starting.
    """

    def __init__(self, message: str, *, log_tail: str | None = None) -> None:
        self.log_tail = log_tail
        text = message
        if log_tail:
            text += f"\n--- embedded server log (last lines) ---\n{log_tail}"
        super().__init__(text)


class NoCandidateError(FeeditError):
    """Every branch of a run failed, so no candidate answer exists.

    Attributes:
        errors: one line per failed branch, saying which node failed and why.
        timed_out: every failure was a timeout or the run's deadline (not a backend error).
    """

    def __init__(
        self, message: str, *, errors: list[str] | None = None, timed_out: bool = False
    ) -> None:
        self.errors = errors or []
        self.timed_out = timed_out
        text = message
        if self.errors:
            text += "\n" + "\n".join(f"  - {e}" for e in self.errors[:20])
        super().__init__(text)
