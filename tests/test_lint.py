"""The lint and type gate (configured in pyproject.toml): ruff and mypy are clean on what ships
(shared/, function_app.py) and on the local host (devtools/). A ``noqa`` or ``type: ignore`` must
say why on its line."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ["shared", "function_app.py", "devtools"]


def _tool(name: str) -> str:
    tool = Path(sys.executable).with_name(name)
    if not tool.exists():
        pytest.fail(f"{name} is not installed: scripts/test.sh installs requirements-dev.txt")
    return str(tool)


def test_ruff_finds_nothing():
    done = subprocess.run([_tool("ruff"), "check", "--no-cache", "--output-format", "concise", *CHECKED], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing(tmp_path):
    done = subprocess.run([_tool("mypy"), "--cache-dir", str(tmp_path / "mypy"), *CHECKED], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_suppression_says_why():
    """``# noqa: X - reason`` / ``# type: ignore[code]`` followed by a comment on the line above or after it."""
    bare = []
    for path in [ROOT / "function_app.py", *sorted((ROOT / "shared").rglob("*.py")), *sorted((ROOT / "devtools").rglob("*.py"))]:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            noqa = re.search(r"#\s*noqa(:[\w, ]+)?(.*)$", line)
            if noqa and not noqa.group(2).strip(" -—:"):
                bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
            ignore = re.search(r"#\s*type:\s*ignore(\[[\w-]+\])?(.*)$", line)
            if ignore:
                said = ignore.group(2).strip(" -—:#") or (number > 1 and lines[number - 2].strip().startswith("#"))
                if not ignore.group(1) or not said:
                    bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert bare == []


def test_test_modules_share_helpers_through_one_module():
    """Shared helpers live in tests/helpers.py (and the fixtures' modules), never in a test module
    another one imports; and one name means one helper (no two top-level helpers of the same name
    doing different things in different test modules)."""
    import ast

    imports, defined = [], {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.test_"):
                imports.append(f"{path.name}: from {node.module}")
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("test_"):
                defined.setdefault(node.name, []).append(path.name)
    helpers = {n.name for n in ast.parse((ROOT / "tests" / "helpers.py").read_text(encoding="utf-8")).body
               if isinstance(n, ast.FunctionDef)}
    assert imports == []
    assert {name: files for name, files in defined.items() if name in helpers} == {}
    assert {name: files for name, files in defined.items() if name in ("make_bridge", "subscribe", "sub")} == {}
