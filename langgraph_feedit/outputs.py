"""The files a batch writes: strict JSON lines, written whole or not at all, by one process.

- Each file is written under a temporary name of its own process beside it and renamed over
  it when done (:class:`AtomicFile`): a reader, or a rerun after a kill, sees the old file
  whole or the new one whole.
- One batch at a time writes an output (:func:`output_lock`): a second one on the same output
  is refused before it reads or runs anything. Two used to share one temporary file and
  interleave their lines in it.
- Lines are strict JSON (:func:`json_line`) that every line reader splits where the file does.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from langgraph_feedit.errors import StoreError, UserError

__all__ = ["AtomicFile", "json_line", "output_lock", "write_atomically"]

# Legal raw in a JSON string, but line breaks to Python's str.splitlines() and to JavaScript
# before ES2019: escaped, so each record is one line to every reader.
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(record: Any) -> str:
    """``record`` as one line of strict JSON (newline included).

    JSON has no NaN or Infinity: Python writes them bare, and neither ``jq`` nor JavaScript
    reads such a line. Inputs holding them are refused (:func:`~langgraph_feedit.inputs.load_json`);
    one arising elsewhere is written as ``null`` rather than lose the line.
    """
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(record), ensure_ascii=False, allow_nan=False)
    return text.translate(_LINE_BREAKS) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class AtomicFile:
    """A text file written under ``.NAME.<pid>.tmp`` beside ``path`` and renamed over it on
    :meth:`commit`. Until then the lines written so far are in the temporary file, and a run
    that is killed leaves them there beside the previous file, whole.

    Write failures after the file was opened (a full disk) are :class:`StoreError` naming
    ``path``; the previous file is kept.
    """

    def __init__(self, path: Path, label: str = "--output") -> None:
        self.path = path
        self.label = label
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file: IO[str] = self.tmp.open("w", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{label} {path}: cannot write: {exc.strerror}") from None

    def write(self, text: str) -> None:
        with self._failures():
            self.file.write(text)

    def flush(self) -> None:
        with self._failures():
            self.file.flush()

    def commit(self) -> None:
        with self._failures():
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)

    def discard(self) -> None:
        # Closing flushes what is buffered, which fails again on a full disk: the file is
        # going anyway.
        with contextlib.suppress(OSError):
            self.file.close()
        self.tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            self.discard()
            raise StoreError(
                f"cannot write {self.label} {self.path}: {exc.strerror or exc}"
            ) from None


def write_atomically(path: Path, lines: list[str], label: str) -> None:
    """``lines`` into ``path``, whole or not at all (see :class:`AtomicFile`)."""
    f = AtomicFile(path, label)
    try:
        for line in lines:
            f.write(line)
    except BaseException:
        f.discard()
        raise
    f.commit()


@contextlib.contextmanager
def output_lock(path: Path, *beside: Path) -> Iterator[None]:
    """Hold ``path``, and the files ``beside`` it that go with it, for this process: an
    exclusive lock on ``.NAME.lock`` beside ``path``.

    The lock is the operating system's (``flock``), so a process that dies, even by
    ``kill -9``, lets go of it. The lock file stays: removing it would let a third process lock
    a new file while a second still holds the old one. Temporary files of runs that were
    killed are removed once the lock is held, since no other process can be writing them.

    Raises:
        UserError: another process holds the lock (naming it), or the folder cannot be written.
    """
    lock = path.with_name(f".{path.name}.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UserError(f"--output {path}: cannot write: {exc.strerror}") from None
    try:
        if not _try_lock(fd):
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f" (process {holder})" if holder.isdigit() else ""
            raise UserError(
                f"--output {path} is being written by another feedit batch{who}: wait for it "
                "to end, or give another --output"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        for name in (path.name, *(p.name for p in beside)):
            stale = re.compile(re.escape(f".{name}.") + r"\d+\.tmp")
            for found in path.parent.glob(f".{glob.escape(name)}.*.tmp"):
                if stale.fullmatch(found.name):
                    found.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)  # lets go of the lock


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
