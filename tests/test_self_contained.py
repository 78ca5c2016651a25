"""A fresh clone has nothing beside it: no code under tests/, benchmarks/, scripts/, shared/, devtools/
or .ci/ may reach a path outside the repository (the team's reference folder, absolute workspace
paths, or a climb above the repository root from ``__file__`` / ``$0``).

Python is read with ``ast`` and each path expression anchored at ``__file__`` is followed to see how
far up it climbs; shell scripts are read line by line. Each rule is shown to catch a planted file."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("tests", "benchmarks", "scripts", "shared", "devtools", ".ci")
SKIPPED_PARTS = {"__pycache__", "node_modules", ".venv", "__blobstorage__", "__queuestorage__", "__azurite_db"}
REFERENCE_DIR = re.compile(r"\.\.[/\\]+shared\b")            # ../shared, ..\shared
WORKSPACE = re.compile(r"""(^|[\s"'=:(])/work(/|\b)""")        # absolute workspace paths
DIR_OF_SCRIPT = re.compile(r"""\$\(\s*dirname\s+["']?\$(?:0|\{?BASH_SOURCE(?:\[0\])?\}?)["']?\s*\)["']?((?:/\.\.)*)""")


def code_files(root: Path) -> list[Path]:
    files = []
    for top in SCANNED:
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if not path.is_file() or SKIPPED_PARTS & set(path.relative_to(root).parts):
                continue
            if path.suffix in (".py", ".sh") or (path.suffix == "" and _is_shell(path)):
                files.append(path)
    files += [p for p in (root / "function_app.py",) if p.is_file()]
    return files


def _is_shell(path: Path) -> bool:
    with path.open("rb") as handle:
        first = handle.readline(200)
    return first.startswith(b"#!") and b"sh" in first


# Python ------------------------------------------------------------------------------------------
class _Climb(ast.NodeVisitor):
    """Follows path expressions anchored at ``__file__``: ``level`` is how many directories below the
    repository root a value points (the file itself: its number of path parts); below 0 is outside."""

    def __init__(self, parts: int):
        self.parts, self.names, self.escapes = parts, {}, []

    def level(self, node) -> int | None:
        match node:
            case ast.Name(id="__file__"):
                return self.parts
            case ast.Name(id=name):
                return self.names.get(name)
            case ast.Attribute(value=value, attr="parent"):
                return _minus(self.level(value), 1)
            case ast.Subscript(value=ast.Attribute(value=value, attr="parents"), slice=ast.Constant(value=int(k))):
                return _minus(self.level(value), k + 1)
            case ast.Call(func=ast.Attribute(value=value, attr="resolve" | "absolute" | "expanduser")):
                return self.level(value)
            case ast.Call(func=ast.Attribute(value=value, attr="joinpath"), args=args):
                return self._join(self.level(value), args)
            case ast.Call(func=ast.Name(id="Path" | "PurePath") | ast.Attribute(attr="Path" | "PurePath"), args=[first, *rest]):
                return self._join(self.level(first), rest)
            case ast.Call(func=ast.Attribute(attr="dirname"), args=[arg]):
                return _minus(self.level(arg), 1)
            case ast.Call(func=ast.Attribute(attr="abspath" | "realpath" | "normpath"), args=[arg]):
                return self.level(arg)
            case ast.Call(func=ast.Attribute(attr="join"), args=[first, *rest]) if self.level(first) is not None:
                return self._join(self.level(first), rest)
            case ast.BinOp(left=left, op=ast.Div(), right=right):
                return self._join(self.level(left), [right])
        return None

    def _join(self, level: int | None, args) -> int | None:
        for arg in args:
            if level is None:
                return None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                return level + 1 if level >= 0 else level  # an unknown name goes down one level
            for part in arg.value.replace("\\", "/").split("/"):
                level = level - 1 if part == ".." else level if part in ("", ".") else level + 1
                if level < 0:
                    return level
        return level

    def visit(self, node):
        level = self.level(node) if isinstance(node, ast.expr) else None
        if level is not None and level < 0:
            self.escapes.append(node)
            return  # report the outermost expression once
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self.visit(node.value)
            self.names[node.targets[0].id] = self.level(node.value)
            return
        super().generic_visit(node)


def _minus(level: int | None, steps: int) -> int | None:
    return None if level is None else level - steps


def python_problems(relative: Path, text: str) -> list[str]:
    tree = ast.parse(text, filename=str(relative))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if REFERENCE_DIR.search(node.value):
                problems.append(f"{relative}:{node.lineno}: names the reference folder outside the repository")
            if WORKSPACE.search(node.value):
                problems.append(f"{relative}:{node.lineno}: absolute workspace path")
    climb = _Climb(len(relative.parts))
    climb.visit(tree)
    problems += [f"{relative}:{node.lineno}: climbs above the repository root: {ast.unparse(node)}" for node in climb.escapes]
    return problems


# Shell -------------------------------------------------------------------------------------------
def shell_problems(relative: Path, text: str) -> list[str]:
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#!") else ""
        if REFERENCE_DIR.search(code):
            problems.append(f"{relative}:{number}: names the reference folder outside the repository")
        if WORKSPACE.search(code):
            problems.append(f"{relative}:{number}: absolute workspace path")
        for match in DIR_OF_SCRIPT.finditer(code):
            # $(dirname "$0") is the script's folder, len(parts) - 1 levels below the root.
            if match.group(1).count("/..") > len(relative.parts) - 1:
                problems.append(f"{relative}:{number}: climbs above the repository root")
    return problems


def problems_in(root: Path) -> list[str]:
    found = []
    for path in code_files(root):
        relative = path.relative_to(root)
        text = path.read_text("utf-8", errors="replace")
        found += python_problems(relative, text) if path.suffix == ".py" else shell_problems(relative, text)
    return found


def test_no_code_reads_outside_the_repository():
    assert len(code_files(ROOT)) > 40  # the scan sees the code it guards
    assert problems_in(ROOT) == []


# The guard is not vacuous ------------------------------------------------------------------------
UP = ".."
PLANTED = {
    # relative path: (source, expected problem or None for allowed)
    "tests/test_a.py": ("from pathlib import Path\nSPEC = Path(__file__).resolve().parents[2] / 'x'\n", "climbs above"),
    "tests/test_b.py": ("from pathlib import Path\nROOT = Path(__file__).resolve().parents[1]\nX = ROOT.parent / 'y'\n",
                        "climbs above"),
    "tests/test_c.py": ("from pathlib import Path\nX = Path(__file__).parent.parent.parent\n", "climbs above"),
    "tests/test_d.py": ("import os\nX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '"
                        + UP + "', 'notes')\n", "climbs above"),
    "tests/test_e.py": ("X = open('" + UP + "/shared/calendly/FACTS.md').read()\n", "reference folder"),
    "benchmarks/b.py": ("X = '/wo" + "rk/shared/calendly/x.yaml'\n", "absolute workspace"),
    "shared/s.py": ("from pathlib import Path\nX = Path(__file__).parents[1] / '" + UP + "' / '" + UP + "'\n",
                    "climbs above"),
    "scripts/s.sh": ("#!/usr/bin/env bash\ncd \"$(dirname \"$0\")/" + UP + "/" + UP + "\"\n", "climbs above"),
    "scripts/t.sh": ("#!/usr/bin/env bash\ncat " + UP + "/shared/calendly/FACTS.md\n", "reference folder"),
    ".ci/run": ("#!/usr/bin/env bash\ncd /wo" + "rk/main\n", "absolute workspace"),
    # Allowed: the repository root and below, and strings that are not paths being read.
    "tests/test_ok.py": ("from pathlib import Path\nROOT = Path(__file__).resolve().parents[1]\n"
                         "A = Path(__file__).parent.parent / 'connector'\nB = ROOT / 'tests' / " + repr(UP) + "\n"
                         "URL = '/api/subscriptions/" + UP + "/" + UP + "/etc/passwd'\n", None),
    "scripts/ok.sh": ("#!/usr/bin/env bash\ncd \"$(dirname \"$0\")/" + UP + "\"\n", None),
}


@pytest.mark.parametrize("relative", list(PLANTED))
def test_the_guard_catches_a_planted_escape(tmp_path, relative):
    source, expected = PLANTED[relative]
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, "utf-8")
    problems = problems_in(tmp_path)
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0] and problems[0].startswith(relative), problems
