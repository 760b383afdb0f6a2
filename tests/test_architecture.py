"""Rule 1 of docs/architecture.md: the library never imports dagster (only dagster_pipes, inside job
entry points)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "medmo_pipeline"


def test_no_dagster_import_statement_in_the_library():
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(LIBRARY)}: {n}" for n in names
                          if n == "dagster" or n.startswith("dagster.") or n.startswith("dagster_")
                          and n != "dagster_pipes"]
    assert offenders == []


def test_importing_the_library_loads_no_dagster():
    modules = [p.relative_to(LIBRARY.parent).with_suffix("").as_posix().replace("/", ".")
               for p in LIBRARY.rglob("*.py") if p.name != "__main__.py"]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
        "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
