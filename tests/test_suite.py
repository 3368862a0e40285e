"""The test suite's own rules: no test skips without saying why, the quick lane leaves out
exactly the registered markers, and the full run leaves out nothing."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from .conftest import FIXTURE_MARKERS, LANE_MARKERS

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PYTEST = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
MAKEFILE = (ROOT / "Makefile").read_text()

# Where each skipping call keeps its reason: (positional index, keyword); None: keyword only.
SKIPS = {
    "pytest.skip": 0,
    "pytest.importorskip": None,  # its second positional argument is minversion
    "pytest.mark.skip": 0,
    "pytest.mark.skipif": None,
    "pytest.xfail": 0,
    "pytest.mark.xfail": None,
}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _has_reason(call: ast.Call, position: int | None) -> bool:
    given = [k.value for k in call.keywords if k.arg == "reason"]
    if position is not None and len(call.args) > position:
        given.append(call.args[position])
    return any(not (isinstance(v, ast.Constant) and not v.value) for v in given)


def test_every_skip_says_why() -> None:
    """A skip without a reason hides a test that did not run; with one, `-rs` prints it."""
    silent = []
    for path in sorted(TESTS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _dotted(node.func) in SKIPS:
                said = _has_reason(node, SKIPS[_dotted(node.func)])
            elif isinstance(node, ast.Attribute) and id(node) not in calls:
                said = _dotted(node) not in SKIPS  # a bare @pytest.mark.skip says nothing
            else:
                continue
            if not said:
                silent.append(f"{path.name}:{node.lineno}")
    assert silent == []


def test_the_quick_lane_leaves_out_exactly_the_registered_markers() -> None:
    registered = {m.split(":", 1)[0] for m in PYTEST["markers"]}
    lanes = re.search(r"^LANES = (.+)$", MAKEFILE, re.M)
    assert lanes is not None
    assert set(lanes.group(1).split(" or ")) == set(LANE_MARKERS) == registered
    assert set(FIXTURE_MARKERS.values()) <= registered
    assert "--strict-markers" in PYTEST["addopts"].split()  # a mistyped marker is an error


def test_the_full_run_deselects_nothing() -> None:
    """`make test-all`, `make floors` and a plain `pytest` run every test: no `-m` or `-k` (nor
    an `-r` that would replace the one in pyproject.toml)."""
    assert not re.search(r"(^|\s)-[mk]\b", PYTEST["addopts"])
    runs = [line.split("-m pytest", 1)[1] for line in MAKEFILE.splitlines() if "-m pytest" in line]
    full = [args for args in runs if "not ($(LANES))" not in args]
    assert len(runs) == 3 and len(full) == 2  # the quick lane; test-all and floors
    assert all(not re.search(r"(^|\s)-[mkr]", args) for args in full)


def test_every_run_lists_its_skips_with_their_reasons() -> None:
    chars = [a[2:] for a in PYTEST["addopts"].split() if a.startswith("-r")]
    assert len(chars) == 1 and set(chars[0]) >= {"f", "E", "s"}  # failures and errors too


def test_users_of_a_browser_or_a_database_are_marked(pytester: pytest.Pytester) -> None:
    """The fixtures mark their tests (tests/conftest.py): listed by marker, without running."""
    files = [str(TESTS / "test_view.py"), str(TESTS / "test_shared_store.py")]
    run = pytester.inline_run("--collect-only", "-m", "browser or services", *files)
    ids = {item.name for item in run.getcalls("pytest_collection_finish")[0].session.items}
    assert "test_trace_page_in_chromium" in ids  # through `tab`, which uses `browser`
    assert "test_shards_share_postgres_and_redis_and_survive_a_kill" in ids
    assert "test_word_diff_marks_inserted_and_deleted_words" not in ids  # no browser
    assert "test_redact_url" not in ids  # no database
