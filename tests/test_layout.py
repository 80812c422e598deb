"""Layout rules: the engine (gra_local.core) never loads Textual, llama.cpp or Rich."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gra_local"
CORE = PACKAGE / "core"
FORBIDDEN_IN_CORE = {"textual", "llama_cpp", "rich"}


def loaded_after_import(module: str) -> set[str]:
    """Top-level package names in sys.modules after importing `module` in a fresh process."""
    code = (f"import sys, {module}\n"
            "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


@pytest.mark.parametrize("module", [
    "gra_local.core",
    "gra_local.core.engine.scheduler",
    "gra_local.backends.llama_process",
    "gra_local.cli",
])
def test_textual_is_not_loaded(module: str) -> None:
    loaded = loaded_after_import(module)
    assert "gra_local" in loaded
    assert "textual" not in loaded


def test_engine_does_not_load_llama_cpp() -> None:
    # models are loaded in worker processes; the engine and its backend client stay light
    loaded = loaded_after_import("gra_local.core.engine.scheduler, gra_local.backends.llama_process")
    assert not loaded & {"textual", "llama_cpp", "rich"}, loaded & FORBIDDEN_IN_CORE


def _is_dynamic_import(call: ast.Call) -> bool:
    """importlib.import_module("x") or __import__("x") with a literal name."""
    func = call.func
    named = ((isinstance(func, ast.Attribute) and func.attr == "import_module")
             or (isinstance(func, ast.Name) and func.id == "__import__"))
    return (named and bool(call.args) and isinstance(call.args[0], ast.Constant)
            and isinstance(call.args[0].value, str))


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` / `from … import` in the file names (any nesting level)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            names.add(node.args[0].value)
    return names


def test_core_sources_do_not_import_ui_or_llama() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 5
    offenders = {}
    for path in files:
        bad = {m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN_IN_CORE}
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert offenders == {}


def test_the_static_check_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom rich.console import Console\n"
                      "def f():\n    import llama_cpp\n    __import__('textual')\n", encoding="utf-8")
    assert {"os", "rich.console", "llama_cpp", "textual"} <= imported_modules(sample)
