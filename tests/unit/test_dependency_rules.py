"""The dependency rules of ARCHITECTURE.md ("Dependency rules"), checked on the real import
graph: every .py file of every part is parsed and each import (at the top, in a function, or
under TYPE_CHECKING alike) is mapped to the part it names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Where each part's code lives; the generated API imports as `shoal.v1`.
PARTS = {
    "shoal.v1": Path("proto/shoal"),
    "common": Path("common"),
    "runtime": Path("runtime"),
    "manager": Path("manager"),
    "agent": Path("agent"),
    "node": Path("node"),
    "swarmctl": Path("swarmctl"),
    "deploy": Path("deploy"),
}
EVERY = frozenset(PARTS)
# What each part must not import, and the rule that says so.
FORBIDDEN: dict[str, tuple[frozenset[str], str]] = {
    "shoal.v1": (EVERY, "shoal.v1 imports nothing of Shoal"),
    "common": (EVERY, "common imports nothing of Shoal"),
    "runtime": (
        frozenset({"shoal.v1", "manager", "agent", "node", "swarmctl", "deploy"}),
        "runtime imports nothing of the cluster (shoal works with no cluster)",
    ),
    "manager": (
        frozenset({"agent", "node", "swarmctl", "deploy"}),
        "manager and agent never import each other (they speak gRPC), nor node (which "
        "wires them), swarmctl or deploy",
    ),
    "agent": (
        frozenset({"manager", "node", "swarmctl", "deploy"}),
        "manager and agent never import each other (they speak gRPC), nor node (which "
        "wires them), swarmctl or deploy",
    ),
    "node": (
        frozenset({"swarmctl", "deploy"}),
        "swarmd depends on no client (swarmctl) and no test tooling (deploy)",
    ),
    "swarmctl": (
        EVERY - {"shoal.v1", "common"},
        "swarmctl imports only shoal.v1, common and its own client code",
    ),
    "deploy": (
        EVERY - {"common"},
        "deploy drives Shoal's programs as a user would (processes, CLI), not through imports",
    ),
}


def part_of_module(name: str) -> str | None:
    """The part an absolute module name belongs to, or None (stdlib, third party)."""
    top = name.split(".")[0]
    if top == "shoal":
        return "shoal.v1"
    return top if top in PARTS else None


def imports_of(source: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`; relative imports stay
    inside their own package and are left out."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def files_of(root: Path, part: str) -> list[Path]:
    return sorted((root / PARTS[part]).rglob("*.py"))


def violations(root: Path) -> list[str]:
    """One line per import that breaks a rule: "runtime/x.py:3 imports manager.store: ..."."""
    found = []
    for part, (forbidden, rule) in FORBIDDEN.items():
        for path in files_of(root, part):
            for line, module in imports_of(path.read_text()):
                target = part_of_module(module)
                if target is not None and target != part and target in forbidden:
                    where = path.relative_to(root)
                    found.append(f"{where}:{line} imports {module}: {rule}")
    return found


def test_the_parts_follow_the_dependency_rules() -> None:
    assert violations(ROOT) == []


def test_every_part_is_read() -> None:
    """A moved or renamed part must not make the check above pass by reading nothing."""
    for part in PARTS:
        assert files_of(ROOT, part), f"no Python files for {part} under {PARTS[part]}"
    assert any(m == "common.units" for _, m in imports_of((ROOT / "node/cli.py").read_text()))


def test_the_checker_finds_a_violation(tmp_path: Path) -> None:
    files = {
        "runtime/engine.py": "import os\nfrom common import libc\nfrom . import sibling\n",
        "runtime/bad.py": "def f() -> None:\n    from manager.store import Store\n",
        "swarmctl/cli.py": "from shoal.v1 import control_pb2\nimport node.daemon\n",
        "common/units.py": "from runtime.errors import RuntimeEngineError\n",
        "proto/shoal/v1/x_pb2.py": "from shoal.v1 import y_pb2\nimport google.protobuf\n",
        "deploy/lab.py": "from common import namespaces\nimport swarmctl\n",
        "node/cli.py": "from manager.ports import JOIN_PORT\nfrom swarmctl.units import parse\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    for part in PARTS:
        (tmp_path / PARTS[part]).mkdir(parents=True, exist_ok=True)
    found = [line.split(": ")[0] for line in violations(tmp_path)]
    assert sorted(found) == [
        "common/units.py:1 imports runtime.errors",
        "deploy/lab.py:2 imports swarmctl",
        "node/cli.py:2 imports swarmctl.units",
        "runtime/bad.py:2 imports manager.store",
        "swarmctl/cli.py:2 imports node.daemon",
    ]
