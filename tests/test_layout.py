"""The package's layout: small modules, imports one way, and the role list written once."""

from __future__ import annotations

import ast
from pathlib import Path

import langgraph_feedit

PACKAGE = Path(langgraph_feedit.__file__).parent
MAX_LINES = 500

# Modules still over the limit while they are split along their seams; a module may leave
# this list, never join it.
STILL_OVER: set[str] = set()

ROLE_WORDS = {"draft", "critique", "edit"}
# The names that define the role and node-kind lists (`config.RoleName` and `ROLE_NAMES`,
# `state.NodeKind`, `overrides.RUN_ROLES`), wherever they live. Every other module derives them
# (`typing.get_args`, or `RUN_ROLES` less "default").
DEFINING = {"RoleName", "RunRoleName", "ROLE_NAMES", "NodeKind", "RUN_ROLES"}
# Modules that still write the list again while they are changed elsewhere; may only shrink.
STILL_WRITTEN: set[str] = set()


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_no_module_is_over_500_lines() -> None:
    over = {
        _name(p): n
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert set(over) <= STILL_OVER, {k: v for k, v in over.items() if k not in STILL_OVER}


def _role_lists(path: Path) -> tuple[list[int], list[int]]:
    """Lines where ``path`` writes a collection literal holding draft, critique and edit: those
    that define one of :data:`DEFINING`, and the others."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defining: set[int] = set()
    for node in ast.walk(tree):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        value = getattr(node, "value", None)
        # ``__all__`` lists the functions called ``draft``, ``critique`` and ``edit``.
        if value is not None and any(
            isinstance(t, ast.Name) and t.id in {*DEFINING, "__all__"} for t in targets
        ):
            defining.update(id(sub) for sub in ast.walk(value))
    found: tuple[list[int], list[int]] = ([], [])
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        words = {e.value for e in items if isinstance(e, ast.Constant)}
        if words >= ROLE_WORDS:
            found[id(node) not in defining].append(node.lineno)
    return found


def test_the_role_list_is_written_only_where_it_is_defined() -> None:
    found = {_name(p): _role_lists(p) for p in _modules()}
    again = {name: lines for name, (_, lines) in found.items() if lines}
    assert set(again) <= STILL_WRITTEN, {k: v for k, v in again.items() if k not in STILL_WRITTEN}
    assert any(defined for defined, _ in found.values())  # the scan finds the definitions


# (lower, upper): the first imports nothing of the second. Each split-off module sits below the
# one it came from, which re-exports its names.
ONE_WAY = [
    ("thinking", "chatapi"),
    ("chatmodel_specs", "chatmodels"),
    ("batch_summary", "batch_output"),
    ("testing/_chat", "testing._server"),
    ("view/page", "view.render"),
    ("evaluate/grid", "evaluate.sweep"),
    ("evaluate/sweep_report", "evaluate.sweep"),
]


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports, at its top or inside functions, as absolute names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_split_modules_import_one_way() -> None:
    for lower, upper in ONE_WAY:
        upper_name = f"langgraph_feedit.{upper}"
        imported = _imports(PACKAGE / f"{lower}.py")
        assert not {m for m in imported if m == upper_name or m.startswith(upper_name + ".")}, (
            lower,
            upper,
        )
