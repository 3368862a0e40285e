"""The command line: in-process against the simulated server, errors, and help."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
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
            "--set",
            "roles.draft.seed=0",
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
    # -v: a line per event, the branches' included (they run in subgraphs)
    lines = captured.err.splitlines()
    assert any(" d0.c0.e0 " in line and " edit " in line and "done" in line for line in lines)
    assert any(" d1.c0 " in line and "started" in line for line in lines)
    assert any(line.split()[2:3] == ["finished"] for line in lines if line.strip())


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


# -- batch: the caller's mistakes are one line, exit 2, and lose nothing ------------------------


def prompts_file(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text(
        "".join(json.dumps({"uid": f"q{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(n)),
        encoding="utf-8",
    )
    return path


def batch_args(sim: SimServer, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "batch",
        "--no-progress",
        "--input",
        str(tmp_path / "q.jsonl"),
        "--store",
        str(tmp_path / "store"),
        *sim_args(sim),
        "--drafts",
        "2",
        "--critiques",
        "0",
        *extra,
    ]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("feedit: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--limit", "0", "--limit must be at least 1, got 0"),
        ("--limit", "-1", "--limit must be at least 1, got -1"),
        ("--concurrency", "-1", "--concurrency must be at least 1, got -1"),
        ("--concurrency", "0", "--concurrency must be at least 1, got 0"),
    ],
)
def test_batch_counts_below_one_are_refused_and_truncate_nothing(
    sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    value: str,
    says: str,
) -> None:
    prompts_file(tmp_path)
    out = tmp_path / "out.jsonl"
    assert main(batch_args(sim, tmp_path, "--output", str(out))) == 0
    before = out.read_bytes()
    capsys.readouterr()
    calls = sim.call_count
    assert main(batch_args(sim, tmp_path, "--output", str(out), flag, value)) == 2
    assert says in one_line_error(capsys)
    assert out.read_bytes() == before and sim.call_count == calls


def test_batch_output_that_is_the_input_or_a_folder_is_refused(
    sim: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = prompts_file(tmp_path)
    before = inp.read_bytes()
    calls = sim.call_count
    assert main(batch_args(sim, tmp_path, "--output", str(tmp_path / "." / "q.jsonl"))) == 2
    assert "is the input file" in one_line_error(capsys)
    assert inp.read_bytes() == before
    assert main(batch_args(sim, tmp_path, "--output", str(tmp_path))) == 2
    assert f"--output {tmp_path} is a folder" in one_line_error(capsys)
    assert sim.call_count == calls


def test_batch_store_that_is_a_file_is_a_one_line_error(
    sim: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts_file(tmp_path)
    (tmp_path / "store").write_text("not a folder")
    code = main(batch_args(sim, tmp_path, "--output", str(tmp_path / "out.jsonl")))
    assert code == 2
    err = one_line_error(capsys)
    assert f"the store {tmp_path / 'store'}" in err and "is a file" in err and "--store" in err


def test_batch_checks_key_variables_before_running(
    sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FEEDIT_TEST_UNSET_BATCH_KEY", raising=False)
    prompts_file(tmp_path)
    out = tmp_path / "out.jsonl"
    calls = sim.call_count
    extra = ("--output", str(out), "--api-key-env", "FEEDIT_TEST_UNSET_BATCH_KEY")
    assert main(batch_args(sim, tmp_path, *extra)) == 2
    err = one_line_error(capsys)
    assert "FEEDIT_TEST_UNSET_BATCH_KEY" in err and "not set" in err
    assert not out.exists() and sim.call_count == calls  # no prompt run, none recorded failed


def test_batch_exit_status_says_partial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts_file(tmp_path)
    out = tmp_path / "out.jsonl"
    # one judge call fails: its candidate is unscored and its prompt partial
    with SimServer(
        seed=43, faults=[Fault("500", first=1, match="satisfies this principle")]
    ) as sim:
        args = batch_args(
            sim, tmp_path, "--output", str(out), "--set", "roles.default.max_retries=0"
        )
        assert main(args) == 3
        err = capsys.readouterr().err
        assert "1 partial" in err and "run the same command again" in err
        statuses = [json.loads(line)["status"] for line in out.read_text().splitlines()]
        assert sorted(statuses) == ["ok", "ok", "partial"]
        calls = sim.call_count
        assert main(args) == 0  # the rerun makes the one failed call
        # and probes the judge endpoint for logprobs: a new event loop, so a new endpoint
        assert sim.call_count == calls + 1 + 1
    assert "0 partial, 0 failed" in capsys.readouterr().err


# -- base URLs and the door's key ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "batch"])
def test_a_bad_base_url_is_a_configuration_error_for_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    extra = {
        "run": ["q"],
        "batch": ["--input", str(prompts_file(tmp_path)), "--output", str(tmp_path / "o.jsonl")],
    }[command]
    for url in ("not a url", "ftp://127.0.0.1/v1"):
        code = main([command, "--set", f"roles.draft.base_url={url}", *extra])
        assert code == 2
        err = one_line_error(capsys)
        assert "roles.draft.base_url" in err and "http" in err
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags", [["--base-url", "not a url"], ["--set", "roles.judge.base_url=ftp://h/v1"]]
)
def test_serve_refuses_to_start_on_a_bad_base_url(flags: list[str]) -> None:
    # In a process of its own: a server that starts anyway would serve until killed.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "langgraph_feedit.cli", "serve", "--port", str(port), *flags]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "base_url" in done.stderr and "http" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_serve_client_key_variable_unset_speaks_of_its_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEEDIT_TEST_UNSET_DOOR_KEY", raising=False)
    assert main(["serve", "--client-key-env", "FEEDIT_TEST_UNSET_DOOR_KEY"]) == 2
    err = one_line_error(capsys)
    assert "--client-key-env" in err and "FEEDIT_TEST_UNSET_DOOR_KEY" in err
    assert "api_key_env" not in err


def test_run_says_each_retry_on_stderr() -> None:
    """A backend that never answers in time: ``feedit run`` is not silent while it retries
    (one line per retry, naming the endpoint and why), then fails in one line."""
    with SimServer(seed=3, faults=[Fault("slow", rate=1.0, slow_s=20.0)]) as slow:
        argv = [
            sys.executable,
            "-m",
            "langgraph_feedit.cli",
            "run",
            "--base-url",
            slow.base_url,
            "--model",
            "m",
            "--preset",
            "single",
            "--set",
            "roles.default.timeout=0.3",
            "--set",
            "roles.default.max_retries=2",
            "--set",
            "roles.default.backoff=0.01",
            "q",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    retries = [line for line in lines if "retry" in line and slow.base_url in line]
    assert [r.split("; ")[-1].split(" in ")[0] for r in retries] == ["retry 1 of 2", "retry 2 of 2"]
    assert "Traceback" not in done.stderr
