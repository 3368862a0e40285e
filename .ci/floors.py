"""Print pip constraints pinning every dependency of pyproject.toml to its floor.

``--check`` instead verifies that the running interpreter has exactly those versions.

`make floors` installs the package with these constraints (`pip install -c FILE -e '.[test]'`)
and runs the tests, so each `>=` in pyproject.toml is a version the suite has passed on. The
pins are read from pyproject.toml itself, so a raised floor is tested without editing a list.
Requirements without a floor (type stubs) are left free, as are dependencies of dependencies.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*(?:;.*)?$")


def floors(pyproject: Path) -> dict[str, str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    own = project["name"].lower()
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pins: dict[str, str] = {}
    for requirement in requirements:
        match = _REQ.match(requirement)
        if match is None:
            raise SystemExit(f"cannot read the requirement {requirement!r}")
        name, spec = match.group(1).lower().replace("_", "-"), match.group(2)
        if name == own:
            continue
        floor = re.search(r">=\s*([0-9][^,\s]*)", spec)
        if floor is None:
            continue
        if name in pins and pins[name] != floor.group(1):
            raise SystemExit(f"{name} has two floors: {pins[name]} and {floor.group(1)}")
        pins[name] = floor.group(1)
    return pins


def check(pins: dict[str, str]) -> None:
    """Fail unless every pinned distribution installed here is at its floor."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    wrong = []
    for name, floor in sorted(pins.items()):
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue  # an extra's package behind an environment marker
        # A local label is a build of the same release (torch's `2.13.0+cpu`).
        if Version(Version(installed).public) != Version(floor):
            wrong.append(f"{name} {installed} (floor {floor})")
    if wrong:
        raise SystemExit("not at their floors: " + ", ".join(wrong))
    print(f"{len(pins)} dependencies at their floors")


def main() -> None:
    args = sys.argv[1:]
    root = Path(__file__).resolve().parent.parent
    pins = floors(root / "pyproject.toml")
    if args == ["--check"]:
        check(pins)
        return
    if args:
        raise SystemExit("usage: floors.py [--check]")
    for name, version in sorted(pins.items()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
