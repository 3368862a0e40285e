"""One documented tree of errors, split by whose fault it is.

```
FeeditError
├── UserError            the caller's mistake: fix the input and run again
│   ├── ConfigError      a bad configuration key or value (names the key and the file)
│   └── InputError       a bad input record (names the file and the line)
├── EndpointError        a backend failed (names the endpoint, the status and the body)
│   └── EndpointTimeout  a call ran past its timeout
├── ServerProcessError   a child server process could not start (says why, with its log)
│   └── EmbeddedError    the embedded llama.cpp endpoint could not start
├── StoreError           a store or a batch's output could not be reached, set up or written
├── DeploymentError      a LangGraph server stopped answering a batch (down longer than it waits)
├── NoCandidateError     every branch of a run failed, so there is nothing to select
├── BudgetExhausted      the run's deadline or token budget ran out (``calls``; the branch
│                        records it, and the run answers with the best candidate so far)
├── NodeFailed           a call node's call failed, its trace node attached (``branches``;
│                        the node's error handler keeps it in the tree)
└── APIError             the door's answer to a request it refuses, in OpenAI's shape
                         (``serve.protocol``)
```

No error ever carries an API key: endpoints are named by base URL and model only, and every
secret value the process loaded (backends' API keys, the door's client key) is registered with
:func:`register_secret` and redacted from every error's text as the error is made, and from every
record of the package's loggers (:class:`RedactingFilter`). A backend that echoes the key it was
sent (``Incorrect API key provided: sk-...``) therefore cannot get it into an output, a store, a
log or a reply.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = [
    "REDACTED",
    "ConfigError",
    "DeploymentError",
    "EmbeddedError",
    "EndpointError",
    "EndpointTimeout",
    "FeeditError",
    "InputError",
    "NoCandidateError",
    "RedactingFilter",
    "ServerProcessError",
    "StoreError",
    "StreamRedactor",
    "UserError",
    "has_secrets",
    "redact",
    "register_secret",
]

_BODY_LIMIT = 2000

# -- secrets ------------------------------------------------------------------------------------

REDACTED = "[redacted]"
"""What a secret value is replaced with."""

_MIN_SECRET = 4
"""Shorter values are not registered: they would blank out ordinary words, and no real key is
that short."""

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
# Every proper prefix of every form, and the longest form: what a stream holds back.
_prefixes: frozenset[str] = frozenset()
_longest = 0
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret value the process loaded, so that :func:`redact` removes it, in each
    form a backend may write it back in (see :func:`_forms`).

    Called wherever a key is read (``RoleConfig.api_key``, the door's client key); values are
    kept for the life of the process, which is what may echo them.
    """
    global _pattern, _prefixes, _longest
    if not value or len(value) < _MIN_SECRET:
        return
    with _secrets_lock:
        if value in _secrets:
            return
        forms = _forms(value)
        _secrets.update(forms)
        # Longest first, so a key that contains another is replaced whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))
        _prefixes = _prefixes | {f[:i] for f in forms for i in range(1, len(f))}
        _longest = max(_longest, *(len(f) for f in forms))


_MIN_ENCODED = 12
"""A base64 form shorter than this is not registered (it could match ordinary text)."""


def _forms(value: str) -> set[str]:
    """The forms a key takes in what a backend writes back: as sent; JSON-escaped (with or
    without ``\\/`` and non-ASCII escapes, as a decoded JSON body would give back the key
    itself); URL-encoded (in a query, a form body, a proxy's log); and base64 as inside HTTP
    Basic credentials (``user:key``), at each of the three byte alignments a prefix can give
    it, keeping only the characters that encode the key's own bytes."""
    forms = {value}
    for ascii_only in (True, False):
        escaped = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms |= {escaped, escaped.replace("/", "\\/")}
    forms |= {quote(value, safe=""), quote(value), quote_plus(value)}
    raw = value.encode()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw + bytes(2)).decode()
        # Character k carries bits [6k, 6k + 6): keep those that lie inside the key's bytes.
        first = -(-8 * offset // 6)
        last = (8 * (offset + len(raw))) // 6
        part = encoded[first:last]
        if len(part) >= _MIN_ENCODED:
            forms.add(part)
    return {f for f in forms if len(f) >= _MIN_SECRET}


def redact(text: str) -> str:
    """``text`` with every registered secret value replaced by ``[redacted]``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def has_secrets() -> bool:
    """Whether any secret is registered (nothing to redact otherwise)."""
    return _pattern is not None


class StreamRedactor:
    """Redacts a text that arrives in pieces (streamed tokens), where a key may be split
    across pieces: each :meth:`feed` returns what can be shown now, holding back only the end
    that could still be the start of a secret; :meth:`flush` returns the rest."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        if _pattern is None and not self._held:
            return piece
        text = redact(self._held + piece)
        keep = _open_prefix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        text, self._held = redact(self._held), ""
        return text


def _open_prefix(text: str) -> int:
    """The length of the longest end of ``text`` that begins some secret form (a set lookup
    per length: a streamed token costs a few microseconds, whatever the number of keys)."""
    prefixes, longest = _prefixes, _longest
    for size in range(min(longest - 1, len(text)), 0, -1):
        if text[len(text) - size :] in prefixes:
            return size
    return 0


def _redact_all(values: Iterable[object]) -> tuple[object, ...]:
    return tuple(redact(v) if isinstance(v, str) else v for v in values)


class RedactingFilter(logging.Filter):
    """Redacts registered secrets from a log record: its message, arguments and traceback.

    Installed on the package's loggers (``langgraph_feedit`` and ``langgraph_feedit.serve``) at
    import. The traceback is formatted here, redacted, and kept as the record's ``exc_text``,
    which every formatter prints instead of formatting the exception again: an error's cause
    (the HTTP client's own exception) may quote a reply that echoed a key.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let the handler report it as it would
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()
for _name in ("langgraph_feedit", "langgraph_feedit.serve"):
    # A logger's filters see only the records logged on it, not its children's: each logger
    # the package logs on is named here.
    logging.getLogger(_name).addFilter(_FILTER)


# -- errors -------------------------------------------------------------------------------------


class FeeditError(RuntimeError):
    """Base class of every error raised by langgraph-feedit.

    A ``RuntimeError`` (and a user's mistake a ``ValueError``): LangGraph Server shows a failed
    run's message to its client only for exception types it knows, built-ins among them.
    Text arguments are redacted of registered secrets when the error is made, so no copy of
    the error (its message, a trace node, a checkpoint, a reply) can carry one.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*_redact_all(args))


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
        self.body = redact(body)[:_BODY_LIMIT] if body else body
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


class ServerProcessError(FeeditError):
    """A child server process (see ``supervise.py``) could not be started or reached.

    Attributes:
        log_tail: the last lines the server wrote, if it got as far as starting.
    """

    log_label = "server"
    """What the log's heading calls the server."""

    def __init__(self, message: str, *, log_tail: str | None = None) -> None:
        self.log_tail = redact(log_tail) if log_tail else log_tail
        text = message
        if log_tail:
            text += f"\n--- {self.log_label} log (last lines) ---\n{log_tail}"
        super().__init__(text)


class EmbeddedError(ServerProcessError):
    """The embedded llama.cpp endpoint could not be found, started or reached."""

    log_label = "embedded server"


class StoreError(FeeditError):
    """A checkpoint or cache store, or a batch's output file, could not be reached, set up or
    written (a full disk, a read-only file): names it, password hidden."""


class DeploymentError(FeeditError):
    """A LangGraph server a batch runs on stopped answering for longer than the batch waits
    (``feedit batch --server``). What it answered is kept on its threads: the same command
    run again reads it back."""


class NoCandidateError(FeeditError):
    """Every branch of a run failed, so no candidate answer exists.

    Attributes:
        errors: one line per failed branch, saying which node failed and why.
        timed_out: every failure was a timeout or the run's deadline (not a backend error).
    """

    def __init__(
        self, message: str, *, errors: list[str] | None = None, timed_out: bool = False
    ) -> None:
        self.errors = [redact(e) for e in errors or []]
        self.timed_out = timed_out
        text = message
        if self.errors:
            text += "\n" + "\n".join(f"  - {e}" for e in self.errors[:20])
        super().__init__(text)
