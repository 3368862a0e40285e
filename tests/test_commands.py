"""The command convention: one module per subcommand, registered from one list; the console
entry runs each; ``feedit --help`` loads none of the commands' work; the flags that name roles
and judge kinds come from the configuration's own types."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from typing import get_args

import pytest

from langgraph_feedit import commands
from langgraph_feedit.commands.options import KINDS_WITH_SETTINGS

# The console entry, as `feedit` runs it (pyproject's [project.scripts]), in a fresh process.
FEEDIT = [sys.executable, "-m", "langgraph_feedit.cli"]
NAMES = [register.__module__.rsplit(".", 1)[1].replace("_", "-") for register in commands.COMMANDS]


def test_the_console_script_is_the_commands_main() -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "feedit"]
    assert script.value == "langgraph_feedit.cli:main"
    assert script.load() is commands.main


def test_the_top_help_lists_every_command_module() -> None:
    out = subprocess.run([*FEEDIT, "--help"], capture_output=True, text=True, check=True).stdout
    listed = [
        line.split()[0]
        for line in out.split("COMMAND\n", 1)[1].split("\noptions:")[0].splitlines()
        if line.startswith("    ") and not line.startswith("     ")
    ]
    assert listed == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_each_command_helps_through_the_console_entry(name: str) -> None:
    done = subprocess.run([*FEEDIT, name, "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: feedit {name} [-h]")
    assert done.stderr == ""


def test_a_users_mistake_is_exit_2_without_a_traceback() -> None:
    done = subprocess.run([*FEEDIT, "run", "--judge", "nope", "x"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "argument --judge: invalid choice: 'nope'" in done.stderr
    assert "Traceback" not in done.stderr


# What `feedit --help` must not load: the graph, the configuration models, the clients, and
# the commands' work (the train, serve, view and eval packages and their extras).
HEAVY = (
    "langgraph",
    "langchain_core",
    "openai",
    "pydantic",
    "yaml",
    "httpx",
    "torch",
    "transformers",
    "fastapi",
    "uvicorn",
    "numpy",
    "llama_cpp",
    "langgraph_feedit.config",
    "langgraph_feedit.train",
    "langgraph_feedit.serve",
    "langgraph_feedit.view",
    "langgraph_feedit.evaluate",
)


def _loaded_by(argv: list[str]) -> list[str]:
    code = (
        "import sys\n"
        "from langgraph_feedit.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stderr.split()


def test_top_help_loads_no_heavy_module() -> None:
    assert _loaded_by(["--help"]) == []


@pytest.mark.parametrize("name", ["train", "serve", "view", "verify", "score", "export"])
def test_a_commands_help_loads_none_of_its_work(name: str) -> None:
    assert _loaded_by([name, "--help"]) == []


def test_role_and_judge_flags_come_from_the_configuration() -> None:
    from langgraph_feedit.config import JudgeKind, RoleConfig
    from langgraph_feedit.overrides import RUN_ROLES

    out = subprocess.run(
        [*FEEDIT, "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for role in RUN_ROLES:
        if role != "default":
            assert f"--{role}-url" in out and f"--{role}-model" in out
    choices = out.split("--judge {", 1)[1].split("}", 1)[0].split(",")
    # Every judge kind is a --judge choice, or needs a setting of its own that RoleConfig has.
    assert sorted(choices + list(KINDS_WITH_SETTINGS)) == sorted(get_args(JudgeKind))
    for key in KINDS_WITH_SETTINGS.values():
        assert key.startswith("roles.judge.") and key.rsplit(".", 1)[1] in RoleConfig.model_fields
