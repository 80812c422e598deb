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
    "gra_local.backends.llama.process",
    "gra_local.cli",
])
def test_textual_is_not_loaded(module: str) -> None:
    loaded = loaded_after_import(module)
    assert "gra_local" in loaded
    assert "textual" not in loaded


def test_engine_does_not_load_llama_cpp() -> None:
    # models are loaded in worker processes; the engine and its backend client stay light
    loaded = loaded_after_import("gra_local.core.engine.scheduler, gra_local.backends.llama.process")
    assert not loaded & {"textual", "llama_cpp", "rich"}, loaded & FORBIDDEN_IN_CORE


FIRST_FRAME = "gra_local.cli, gra_local.tui.app, gra_local.tui.screens.new_run"
"""What `gra-local app` imports before New run's first frame."""
AFTER_FIRST_FRAME = ("gra_local.core.backend", "gra_local.core.config", "gra_local.core.engine",
                     "gra_local.core.records", "gra_local.core.seeds", "gra_local.models",
                     "gra_local.tui.widgets.run_plan", "gra_local.tui.widgets.file_preview")
"""What New run's workers import once the form is drawn: the seed scan, the registry, GGUF
headers, the hardware probe, the plan, the engine."""


def test_the_first_frame_imports_none_of_the_checks() -> None:
    code = (f"import sys, {FIRST_FRAME}\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith('gra_local')))")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert "gra_local.tui.widgets.option_form" in loaded
    assert sorted(m for m in loaded if m.startswith(AFTER_FIRST_FRAME)) == []


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


REPO = PACKAGE.parent
MAX_MODULE_LINES = 400


def _readme_layout() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_readme_layout_matches_the_packages() -> None:
    """Every package folder of gra_local is named in the README's Layout, and every
    gra_local path named there exists: the map a newcomer reads is the tree."""
    listed = {line.split()[0].rstrip("/") for line in _readme_layout().splitlines()
              if line.startswith("gra_local/")}
    packages = {str(p.parent.relative_to(REPO)) for p in PACKAGE.rglob("__init__.py")
                if p.parent != PACKAGE and p.parent.parent.name != "tui"}
    assert packages - listed == set(), "packages missing from README's Layout"
    assert {p for p in listed if not (REPO / p).exists() and not (REPO / f"{p}.py").exists()} == set()


def test_the_method_document_is_in_the_project() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/method.md" in readme
    method = (REPO / "docs" / "method.md").read_text(encoding="utf-8")
    assert "## One round" in method and "τ" in method


def test_no_module_is_over_400_lines() -> None:
    """The package, its tests and its scripts alike."""
    files = [*PACKAGE.rglob("*.py"), *(REPO / "tests").rglob("*.py"), *(REPO / "scripts").glob("*.py")]
    long = {str(p.relative_to(REPO)): n for p in files
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_import_contracts_are_kept() -> None:
    """The layers in pyproject's [tool.importlinter] (also run by scripts/test)."""
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.fail("import-linter is not installed: it is part of the [test] extra (scripts/setup)")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    """No module of gra_local imports itself back through others, type-checking imports
    included (the scheduler ↔ run.json circle was one)."""
    import grimp

    graph = grimp.build_graph("gra_local", exclude_type_checking_imports=False, cache_dir=None)
    edges = {m: {d for d in graph.find_modules_directly_imported_by(m) if d.startswith("gra_local")}
             for m in graph.modules}
    assert _cycles(edges) == []
