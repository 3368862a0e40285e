"""Answer metadata for style control: arena-hard-auto's ``utils/add_markdown_info.py``.

Style control reads each answer's ``metadata``: ``token_len`` and the header, list and bold
counts of its text (fenced code removed). Answer files without it (the published v0.1
``gpt-4-0314.jsonl``, answers of other tools) cannot be scored with style control until it is
added; `add_markdown_info` does that, like arena-hard-auto's script, to one file or a folder.

``token_len`` can be counted several ways (``token_len=``):

- ``tiktoken``: arena-hard-auto's own count, the answer text in tiktoken's ``gpt-4o`` encoding
  (``o200k_base``), special tokens counted as text (``disallowed_special=()``). The encoding is
  a file tiktoken downloads on first use; this module never downloads: it reads tiktoken's cache
  (``TIKTOKEN_CACHE_DIR``, else ``DATA_GYM_CACHE_DIR``, else ``<tmp>/data-gym-cache``) or a file
  given with ``tiktoken_file=``, and says so clearly when neither is there;
- ``words``: whitespace-separated words, an offline approximation (English prose runs about 1.3
  tokens a word; counts in scripts without spaces, such as Chinese, are far lower);
- ``chars``: characters;
- ``keep``: the ``token_len`` already in the file (for `feedit export`'s files: the endpoint's
  completion tokens), only the markdown counts recomputed.

Style control compares lengths between the model's and the baseline's answers, so every answer
file scored together must count the same way: recount them all with the same choice.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import ValidationError

from langgraph_feedit.errors import InputError, UserError
from langgraph_feedit.evaluate.markdown import markdown_counts
from langgraph_feedit.evaluate.records import ArenaAnswer
from langgraph_feedit.jsonl import read_jsonl, validation_message

__all__ = [
    "TOKEN_LEN_CHOICES",
    "MarkdownInfoSummary",
    "TokenLen",
    "add_markdown_info",
    "token_counter",
]

TokenLen = Literal["tiktoken", "words", "chars", "keep"]
TOKEN_LEN_CHOICES: tuple[str, ...] = get_args(TokenLen)

# tiktoken's o200k_base (the gpt-4o encoding): where it downloads it from, which names the file
# in its cache, and the file's published checksum (tiktoken_ext/openai_public.py, MIT licence).
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


def _tiktoken_cache_file() -> Path | None:
    """Where tiktoken keeps o200k_base once downloaded (None when its cache is disabled)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        folder = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        folder = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        folder = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not folder:
        return None
    return Path(folder) / hashlib.sha1(O200K_URL.encode()).hexdigest()


def _offline_hint() -> str:
    return (
        "feedit never downloads it: copy o200k_base.tiktoken (from "
        f"{O200K_URL}) to {_tiktoken_cache_file() or 'a file'} or pass --tiktoken-file FILE; "
        "or count offline with --token-len words (or chars)"
    )


def _tiktoken_counter(
    tiktoken_file: Path | None, warn: Callable[[str], None] | None
) -> Callable[[str], int]:
    try:
        import tiktoken
    except ImportError:
        raise UserError(
            "--token-len tiktoken needs the tiktoken package (pip install tiktoken), and its "
            "gpt-4o encoding file; or count offline with --token-len words (or chars)"
        ) from None
    path = tiktoken_file if tiktoken_file is not None else _tiktoken_cache_file()
    if path is None or not path.is_file():
        where = f"{path} does not exist" if path is not None else "tiktoken's cache is disabled"
        raise UserError(
            f"tiktoken's gpt-4o encoding (o200k_base) is not here: {where}; " + (_offline_hint())
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the tiktoken encoding {path}: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != O200K_SHA256:
        if tiktoken_file is None:
            raise UserError(
                f"{path} is not tiktoken's o200k_base (its checksum differs); " + _offline_hint()
            )
        if warn is not None:
            warn(
                f"{path} is not tiktoken's o200k_base: token_len will not match "
                "arena-hard-auto's counts"
            )
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError:
            raise InputError(
                "not a tiktoken encoding line (base64 token, then its rank)",
                path=str(path),
                line=number,
            ) from None
    # Built from the file read above, so tiktoken itself never looks for (or fetches) one.
    encoding = tiktoken.Encoding(
        name="o200k_base", pat_str=_O200K_PATTERN, mergeable_ranks=ranks, special_tokens={}
    )

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return count


def token_counter(
    token_len: TokenLen,
    *,
    tiktoken_file: Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> Callable[[str], int] | None:
    """The function counting an answer's ``token_len``; None for ``keep``.

    Raises:
        UserError: tiktoken or its encoding file is not available offline (says what to do).
    """
    if token_len == "tiktoken":
        return _tiktoken_counter(tiktoken_file, warn)
    if token_len == "words":
        return lambda text: len(text.split())
    if token_len == "chars":
        return len
    if token_len == "keep":
        return None
    raise UserError(f"unknown token_len {token_len!r}; one of {', '.join(TOKEN_LEN_CHOICES)}")


@dataclass(slots=True)
class MarkdownInfoSummary:
    """What `add_markdown_info` wrote."""

    files: int = 0
    answers: int = 0


def _with_metadata(
    data: dict[str, Any], count: Callable[[str], int] | None, path: Path, line: int
) -> dict[str, Any]:
    try:
        answer = ArenaAnswer.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_message(exc), path=str(path), line=line) from None
    if count is not None:
        tokens = count(answer.answer)
    elif answer.metadata is not None:
        tokens = answer.metadata.token_len
    else:
        raise InputError(
            "--token-len keep: this answer has no metadata to keep a token_len from; "
            "choose tiktoken, words or chars",
            path=str(path),
            line=line,
        )
    counts = markdown_counts(answer.answer)
    # arena-hard-auto writes {"token_len": ...} | counts: the same keys in the same order.
    metadata = {
        "token_len": tokens,
        "header_count": counts["header_count"],
        "list_count": counts["list_count"],
        "bold_count": counts["bold_count"],
    }
    return {**data, "metadata": metadata}


def _convert(src: Path, dst: Path, count: Callable[[str], int] | None) -> int:
    lines = [_with_metadata(data, count, src, n) for n, data in read_jsonl(src)]
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: an interrupted run leaves the old file whole,
    # which matters when the output is the input (--in-place).
    handle, temp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            for record in lines:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(temp, dst)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return len(lines)


def add_markdown_info(
    source: Path,
    output: Path,
    *,
    token_len: TokenLen = "tiktoken",
    tiktoken_file: Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> MarkdownInfoSummary:
    """Write ``source``'s answers with fresh ``metadata`` to ``output``.

    ``source`` is an answer file or a folder of them (``*.jsonl``, like arena-hard-auto's
    ``--dir``); ``output`` is then a file or a folder. ``output`` may equal ``source``: each
    file is replaced atomically. Every other field and line is kept as it is.

    Raises:
        InputError: a malformed answer line (names file and line).
        UserError: ``source`` is missing or empty, or the token count is unavailable.
    """
    if source.is_dir():
        files = sorted(source.glob("*.jsonl"))
        if not files:
            raise UserError(f"no answer files (*.jsonl) in {source}")
        if output.exists() and not output.is_dir():
            raise UserError(f"{output} is a file: the output of a folder is a folder")
        pairs = [(f, output / f.name) for f in files]
    elif source.is_file():
        if output.is_dir():
            raise UserError(f"{output} is a folder: the output of a file is a file")
        pairs = [(source, output)]
    else:
        raise UserError(f"{source} does not exist")
    count = token_counter(token_len, tiktoken_file=tiktoken_file, warn=warn)
    summary = MarkdownInfoSummary()
    for src, dst in pairs:
        summary.answers += _convert(src, dst, count)
        summary.files += 1
    return summary
