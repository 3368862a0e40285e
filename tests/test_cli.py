"""The command line: in-process against the simulated server, errors, and help."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from langgraph_feedit import __version__
from langgraph_feedit.cli import main
from langgraph_feedit.testing import Fault, SimServer


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=41) as server:
        yield server


def sim_args(sim: SimServer) -> list[str]:
    return ["--base-url", sim.base_url, "--model", "sim-model"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--preset",
        "--drafts",
        "--critiques",
        "--edits",
        "--rounds",
        "--judge",
        "--deadline",
        "--trace",
        "--json",
        "--config",
        "--set",
    ):
        assert flag in text


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "run" in capsys.readouterr().out


def test_run_prints_the_answer(sim: SimServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *sim_args(sim), "--preset", "single", "Explain CRDTs."]) == 0
    out = capsys.readouterr().out.strip()
    assert out and out == out.strip()


def test_run_json_and_trace_file(
    sim: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace_path = tmp_path / "trace.json"
    code = main(
        [
            "run",
            *sim_args(sim),
            "--drafts",
            "2",
            "--critiques",
            "1",
            "--edits",
            "1",
            "--judge",
            "consensus",
            "--json",
            "--trace",
            str(trace_path),
            "-v",
            "q",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    saved = json.loads(trace_path.read_text())
    assert printed == saved
    assert saved["judge"] == "consensus"
    assert [n["id"] for n in saved["nodes"]] == [
        "d0",
        "d0.c0",
        "d0.c0.e0",
        "d1",
        "d1.c0",
        "d1.c0.e0",
    ]
    assert '"event": "finished"' in captured.err


def test_set_and_config_file(
    sim: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "f.toml"
    config.write_text(f'[roles.default]\nbase_url = "{sim.base_url}"\n[width]\ndrafts = 3\n')
    code = main(["run", "--config", str(config), "--set", "depth.max_rounds=0", "--json", "q"])
    assert code == 0
    trace = json.loads(capsys.readouterr().out)
    assert len(trace["nodes"]) == 3


def test_bad_config_key_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[width]\ndraftz = 2\n")
    assert main(["run", "--config", str(config), "q"]) == 2
    err = capsys.readouterr().err
    assert "width.draftz" in err and "bad.toml" in err
    assert main(["run", "--set", "nonsense", "q"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_empty_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "  "]) == 2
    assert "empty" in capsys.readouterr().err


def test_failing_backend_names_the_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    with SimServer(seed=42, faults=[Fault("500", rate=1.0)]) as server:
        code = main(
            [
                "run",
                "--base-url",
                server.base_url,
                "--model",
                "m",
                "--drafts",
                "2",
                "--set",
                "roles.default.max_retries=0",
                "q",
            ]
        )
    assert code == 1
    err = capsys.readouterr().err
    assert "NoCandidateError" in err and server.base_url in err and "status 500" in err
