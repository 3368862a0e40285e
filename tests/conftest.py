"""Shared test settings, and the markers that keep the quick lane quick.

``make test`` runs the tests that need nothing but the simulated server, in a few minutes;
``make test-all`` runs every test. The markers in ``pyproject.toml`` say what a test needs
beyond that (a browser, Postgres and Redis, the embedded model...) or that it is slow. A test
that requests one of the fixtures in ``FIXTURE_MARKERS`` is marked here, so that a new test
using a browser or a database leaves the quick lane without anyone remembering to mark it.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import settings

# tests/test_suite.py runs pytest on the suite's own files to see how they are marked.
pytest_plugins = ["pytester"]

# The suite shares two cores with servers it starts: a property test's per-example deadline
# measures the machine's load, not the code, so it is off (each test still has its timeout).
settings.register_profile("feedit", deadline=None)
settings.load_profile("feedit")

# Fixture name -> the marker of every test that uses it (directly or through another fixture).
FIXTURE_MARKERS = {
    "browser": "browser",  # test_view.py: a headless Chromium
    "pg": "services",  # test_shared_store.py: a Postgres server
    "rd": "services",  # test_shared_store.py: a Redis server
}

# The markers that take a test out of the quick lane (`make test`); the Makefile's expression
# names the same ones (tests/test_suite.py checks that they agree with pyproject.toml).
LANE_MARKERS = ("embedded", "train", "browser", "services", "langgraph_dev", "npm", "slow")

_LANES = pytest.StashKey[Counter[str]]()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for name in sorted(used & FIXTURE_MARKERS.keys()):
            item.add_marker(FIXTURE_MARKERS[name])


def pytest_collection_finish(session: pytest.Session) -> None:
    lanes: Counter[str] = Counter()
    for item in session.items:
        names = [m for m in LANE_MARKERS if item.get_closest_marker(m) is not None]
        lanes.update(names or ["quick"])
    session.config.stash[_LANES] = lanes


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """How many of the selected tests each lane holds (a test may be in several): the full run
    shows that the marked tests ran, the quick lane that they were left out."""
    lanes = config.stash.get(_LANES, None)
    if lanes:
        counts = ", ".join(f"{lanes[m]} {m}" for m in ("quick", *LANE_MARKERS) if lanes[m])
        terminalreporter.write_line(f"lanes: {counts}")
