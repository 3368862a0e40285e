"""A batch on a LangGraph server against the local batch, on the same simulated server.

200 prompts, feedback-edit 2 x 1 x 1 (10 calls a prompt), the simulated server in its own
process. The same dataset runs twice: ``feedit batch`` here (SQLite checkpoints and call cache)
and ``feedit batch --server`` through ``langgraph dev`` serving graphs/langgraph.json, which makes
the calls itself. Prints one JSON line, side by side: calls per second, the client's CPU per
call (the ``feedit`` process: for the server batch only the client, the graph runs in the server)
and, for the server batch, the server's CPU per call.

    python bench/server_batch.py [--prompts 200] [--jobs 16]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from simproc import batch_cmd, sim_stats, start_sim

ROOT = Path(__file__).resolve().parent.parent
TREE = ["--preset", "feedback-edit", "--drafts", "2", "--critiques", "1", "--edits", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_dev(work: Path, base_url: str, jobs: int) -> tuple[subprocess.Popen[bytes], str]:
    """``langgraph dev`` in ``work``, serving the project's graphs with every role on the
    simulated server."""
    served = json.loads((ROOT / "graphs" / "langgraph.json").read_text())
    graphs = {k: str(ROOT / "graphs" / v.removeprefix("./")) for k, v in served["graphs"].items()}
    (work / "langgraph.json").write_text(
        json.dumps({"dependencies": [str(ROOT)], "graphs": graphs, "env": served["env"]})
    )
    cli = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    if cli is None:
        raise SystemExit("needs langgraph-cli[inmem] (the 'test' extra)")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FEEDIT_ROLES__DEFAULT__BASE_URL": base_url,
        "FEEDIT_ROLES__DEFAULT__MODEL": "m",
        "FEEDIT_ROLES__DRAFT__SEED": "0",
        "LANGSMITH_TRACING": "false",
    }
    proc = subprocess.Popen(
        [
            *(cli, "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser"),
            *("--no-reload", "--n-jobs-per-worker", str(jobs)),
        ],
        cwd=work,
        env=env,
        stdout=(work / "dev.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/ok", timeout=1) as r:
            if r.status == 200:
                return proc, url
        if proc.poll() is not None:
            raise SystemExit((work / "dev.log").read_text()[-3000:])
        time.sleep(0.3)
    raise SystemExit("langgraph dev did not start in 120 s")


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str]) -> tuple[float, float]:
    """The batch's own wall time (its summary line) and the CPU its process used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    m = re.search(r"tokens spent \(.*?\), ([0-9.]+) s", done.stderr)
    assert m, done.stderr
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(m.group(1)), cpu


def side(calls: int, wall: float, cpu: float) -> dict[str, float]:
    return {
        "calls": calls,
        "wall_s": round(wall, 2),
        "calls_per_s": round(calls / wall, 1),
        "client_cpu_ms_per_call": round(1000 * cpu / calls, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=16, help="langgraph dev's jobs per worker")
    parser.add_argument("--concurrency", type=int, default=32, help="prompts in flight")
    args = parser.parse_args()
    sim, base_url = start_sim(
        *("--seed", "1", "--capacity", str(args.slots), "--ttft", "0.05", "--rate", "300"),
        *("--mean-tokens", "48", "--sd-tokens", "16", "--min-tokens", "8"),
    )
    dev: subprocess.Popen[bytes] | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            with (work / "q.jsonl").open("w") as f:
                for i in range(args.prompts):
                    f.write(json.dumps({"uid": f"q{i}", "prompt": f"Question {i}: explain."}))
                    f.write("\n")
            common = [*TREE, "--concurrency", str(args.concurrency)]

            before = sim_stats(base_url)["call_count"]
            local_wall, local_cpu = timed(
                batch_cmd(base_url, work, "local", *common, "--set", "roles.draft.seed=0")
            )
            local_calls = sim_stats(base_url)["call_count"] - before
            print(f"local: {local_wall:.1f} s, {local_calls} calls", file=sys.stderr)

            (work / "dev").mkdir()
            dev, url = start_dev(work / "dev", base_url, args.jobs)
            cmd = batch_cmd(base_url, work, "server", *common)
            # The server's own configuration names the endpoints: drop the client's.
            cut = cmd.index("--store")
            cmd = [*cmd[:cut], "--server", url, *common]
            before = sim_stats(base_url)["call_count"]
            server_cpu_before = cpu_of(dev.pid)
            server_wall, server_client_cpu = timed(cmd)
            server_cpu = cpu_of(dev.pid) - server_cpu_before
            server_calls = sim_stats(base_url)["call_count"] - before
            print(f"server: {server_wall:.1f} s, {server_calls} calls", file=sys.stderr)
            same = [json.loads(x)["answer"] for x in (work / "local.jsonl").open()] == [
                json.loads(x)["answer"] for x in (work / "server.jsonl").open()
            ]
    finally:
        if dev is not None:
            dev.terminate()
            dev.wait()
        sim.terminate()
        sim.wait()
    server = side(server_calls, server_wall, server_client_cpu)
    server["server_cpu_ms_per_call"] = round(1000 * server_cpu / server_calls, 3)
    print(
        json.dumps(
            {
                "bench": "server_batch",
                "prompts": args.prompts,
                "tree": "feedback-edit 2x1x1",
                "concurrency": args.concurrency,
                "dev_jobs_per_worker": args.jobs,
                "local": side(local_calls, local_wall, local_cpu),
                "server": server,
                "same_answers": same,
            }
        )
    )


if __name__ == "__main__":
    main()
