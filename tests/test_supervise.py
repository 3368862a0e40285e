"""Child-process supervision (``supervise.py``) on a real child: Python's own HTTP server."""

from __future__ import annotations

import sys
import urllib.request

import pytest

from langgraph_feedit.embedded import EmbeddedServer
from langgraph_feedit.errors import EmbeddedError, ServerProcessError
from langgraph_feedit.supervise import ChildServer


class _HttpServer(ChildServer):
    name = "http server"

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "http.server", "--bind", self.host, str(port)]


class _Crashing(ChildServer):
    name = "crashing server"

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-c", "import sys; print('boom: no luck'); sys.exit(3)"]

    def hint(self, log: str) -> str | None:
        return "it said boom" if "boom" in log else None


def test_start_restart_stop_a_child_server() -> None:
    server = _HttpServer(health_path="/", startup_timeout=30)
    with pytest.raises(ServerProcessError, match="http server has no port yet"):
        _ = server.port
    with server:
        assert server.running
        assert server.process is not None
        first = server.process.pid
        with urllib.request.urlopen(f"{server.origin}/", timeout=5) as reply:
            assert reply.status == 200
        server.restart()
        assert server.running and server.process.pid != first
        assert server.log_path is not None
        assert server.log_tail().startswith("$ ")
    assert not server.running
    assert server.process.poll() is not None


def test_a_child_that_exits_names_itself_its_exit_code_and_its_log() -> None:
    server = _Crashing(startup_timeout=30)
    with pytest.raises(ServerProcessError) as info:
        server.start()
    text = str(info.value)
    assert "crashing server exited while starting (exit code 3); it said boom" in text
    assert "--- server log (last lines) ---" in text
    assert info.value.log_tail is not None and "boom: no luck" in info.value.log_tail
    assert not server.running


def test_the_embedded_server_is_a_child_server_raising_embedded_errors() -> None:
    assert issubclass(EmbeddedServer, ChildServer)
    assert issubclass(EmbeddedError, ServerProcessError)
    assert "--- embedded server log" in str(EmbeddedError("x", log_tail="tail"))
