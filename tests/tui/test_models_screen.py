"""Pilot tests of the Models screen, on tiny GGUFs and a fixed (CPU-only) hardware probe."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from textual.notifications import SeverityLevel
from textual.widgets import DataTable, Input, SelectionList, Static

from gra_local.core import paths
from gra_local.core.backend import ChatRequest, ChatResult, LoadInfo
from gra_local.core.config import ModelSpec, Role
from gra_local.models.bench import BenchStore
from gra_local.models.hardware import Hardware, LlamaBuild
from gra_local.models.registry import add_model, read_user_registry
from gra_local.runs.formatting import MISSING
from gra_local.tui.screens.models import ModelsScreen
from gra_local.tui.services import Services
from gra_local.tui.settings import Settings
from gra_local.tui.widgets.confirm import ConfirmScreen
from gra_local.tui.widgets.model_detail import Row, describe_row
from gra_local.tui.widgets.path_prompt import FileTree, PathPrompt
from gra_local.tui.widgets.pick_list import PickList

sys.path.insert(0, str(Path(__file__).parent))
from harness import ScreenHost, tables_settled  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent))
from ggufs import write_tiny_gguf  # noqa: E402

GIB = 1024**3


def fixed_hardware() -> Hardware:
    return Hardware(system="Linux", machine="x86_64", cpu_logical=8, cpu_physical=4,
                    ram_total_bytes=16 * GIB, ram_available_bytes=8 * GIB, llama=LlamaBuild())


class NotedHost(ScreenHost):
    """Keeps every notification, through the public `App.notify` (Textual's own list is
    private, and drops a toast when it times out)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[tuple[str, str]] = []  # (severity, message)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        self.notes.append((severity, message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def errors(self) -> list[str]:
        return [message for severity, message in self.notes if severity == "error"]


def screen(**kwargs) -> ModelsScreen:
    return ModelsScreen(hardware=fixed_hardware, discover_defaults=False, **kwargs)


def host(services: Services | None = None, **kwargs) -> NotedHost:
    return NotedHost(screen(**kwargs), services or Services(settings=Settings()))


class BenchSession:
    def __init__(self, name: str) -> None:
        self.info = LoadInfo(name=name, seconds=0.01, n_gpu_layers=0, n_ctx=2048)

    def chat(self, request: ChatRequest) -> ChatResult:
        return ChatResult(text="x", finish_reason="stop", prompt_tokens=50,
                          completion_tokens=request.max_tokens, seconds=0.5)

    def chat_many(self, requests, cancel=None) -> list[ChatResult]:
        return [self.chat(request) for request in requests]

    def close(self) -> None:
        pass


class BenchBackend:
    def load(self, spec: ModelSpec) -> BenchSession:
        return BenchSession(spec.name)


async def settle(pilot, app: ScreenHost) -> None:
    """Let the thread workers finish and their results land on the UI thread; a result
    may start another worker (refresh after add), so wait until none is left."""
    for _ in range(20):
        # A DirectoryTree's loader is long-lived (and cancelled with its screen): skip it.
        ours = [w for w in app.workers if w.group != "_loader"]
        if ours:  # (an empty list would mean every worker)
            await app.workers.wait_for_complete(ours)
        await pilot.pause()
        if not any(w.is_running for w in app.workers if w.group != "_loader"):
            await pilot.pause()
            return


def table_names(app: ScreenHost) -> list[str]:
    table = app.screen.query_one(DataTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


@pytest.fixture
def registered(tiny_gguf: Path) -> Path:
    add_model(tiny_gguf, name="tiny")
    return tiny_gguf


def test_registry_shown_with_detail(registered: Path) -> None:
    asyncio.run(_test_registry_shown_with_detail(registered))


async def _test_registry_shown_with_detail(registered: Path) -> None:
    app = host()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        assert table_names(app) == ["tiny"]
        row = app.screen.query_one(DataTable).get_row_at(0)
        assert row[1] == "F32" and row[-1] == "CPU"
        detail = str(app.screen.query_one("#detail", Static).render())
        assert "architecture llama" in detail
        assert "Memory at n_ctx" in detail and "GPU layers 0/" in detail


def test_add_by_typing_a_path(registered: Path, tmp_path: Path) -> None:
    asyncio.run(_test_add_by_typing_a_path(registered, tmp_path))


async def _test_add_by_typing_a_path(registered: Path, tmp_path: Path) -> None:
    other = write_tiny_gguf(tmp_path / "other-model.gguf")
    app = host()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, PathPrompt)
        app.screen.query_one(Input).value = str(other)
        await pilot.press("enter")
        await settle(pilot, app)
        assert table_names(app) == ["tiny", "other-model"]
        assert app.screen.query_one(DataTable).cursor_row == 1  # the new model is selected
    assert {m.name for m in read_user_registry().models} == {"tiny", "other-model"}


def test_add_by_picking_in_the_file_tree(registered: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_test_add_by_picking_in_the_file_tree(registered, tmp_path, monkeypatch))


async def _test_add_by_picking_in_the_file_tree(registered: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".hidden").mkdir(parents=True)
    (home / "notes.txt").write_text("not a model")
    picked = write_tiny_gguf(home / "picked.gguf")
    monkeypatch.setenv("HOME", str(home))
    app = host()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("a")
        tree = app.screen.query_one(FileTree)
        for _ in range(100):  # the tree loads in its own long-lived worker: poll, not settle
            await pilot.pause(0.02)
            if tree.root.children:
                break
        shown = [str(node.data.path.name) for node in tree.root.children]
        assert shown == ["picked.gguf"]  # no hidden folder, no .txt
        tree.select_node(tree.root.children[0])
        await settle(pilot, app)
        assert table_names(app) == ["tiny", "picked"]
    assert {m.path for m in read_user_registry().models} >= {str(picked)}


def test_invalid_path_notifies_and_keeps_running(registered: Path, tmp_path: Path) -> None:
    asyncio.run(_test_invalid_path_notifies_and_keeps_running(registered, tmp_path))


async def _test_invalid_path_notifies_and_keeps_running(registered: Path, tmp_path: Path) -> None:
    app = host()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one(Input).value = str(tmp_path / "missing.gguf")
        await pilot.press("enter")
        await settle(pilot, app)
        (error,) = app.errors()
        assert error.startswith(f"Cannot add {tmp_path / 'missing.gguf'}: ")
        assert isinstance(app.screen, ModelsScreen)
        assert table_names(app) == ["tiny"]
        await pilot.press("r")  # still responsive
        await settle(pilot, app)
        assert table_names(app) == ["tiny"]


def test_remove_with_confirm(registered: Path) -> None:
    asyncio.run(_test_remove_with_confirm(registered))


async def _test_remove_with_confirm(registered: Path) -> None:
    app = host()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # declined: nothing removed
        await pilot.pause()
        assert table_names(app) == ["tiny"]
        await pilot.press("x")
        await pilot.pause()
        await pilot.click("#yes")
        await settle(pilot, app)
        assert table_names(app) == []
    assert read_user_registry().models == []


def test_empty_registry_hint() -> None:
    asyncio.run(_test_empty_registry_hint())


async def _test_empty_registry_hint() -> None:
    app = host()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        assert "No models registered" in str(app.screen.query_one("#detail", Static).render())


def test_discover_and_pick(registered: Path, tmp_path: Path) -> None:
    async def go() -> None:
        found_dir = tmp_path / "found"
        found_dir.mkdir()
        write_tiny_gguf(found_dir / "found-a.gguf")
        write_tiny_gguf(found_dir / "found-b.gguf", name="other")
        app = host(discover_dirs=[found_dir])
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            await pilot.press("d")
            await settle(pilot, app)
            assert isinstance(app.screen, PickList)
            choices = app.screen.query_one(SelectionList)
            assert choices.option_count == 2
            choices.select(choices.get_option_at_index(1).value)
            await pilot.click("#ok")
            await settle(pilot, app)
            assert isinstance(app.screen, ModelsScreen)
            assert table_names(app) == ["tiny", "found-b"], app.notes
            assert app.notes[-1] == ("information", "Added 1 model(s)")
        assert len(read_user_registry().models) == 2

    asyncio.run(go())


def test_set_roles(registered: Path) -> None:
    async def go() -> None:
        app = host()
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            await pilot.press("o")
            await pilot.pause()
            choices = app.screen.query_one(SelectionList)
            choices.deselect(Role.ADJUDICATOR)
            choices.deselect(Role.ANNOTATOR)
            await pilot.click("#ok")
            await settle(pilot, app)
            assert app.screen.query_one(DataTable).get_row_at(0)[5] == "gen,rev"
            assert app.notes[-1] == ("information", "tiny: roles generator, reviewer")
        assert read_user_registry().models[0].roles == [Role.GENERATOR, Role.REVIEWER]

    asyncio.run(go())


def test_roles_of_a_models_file_entry_are_refused(tiny_gguf: Path, tmp_path: Path) -> None:
    async def go() -> None:
        models = tmp_path / "models.toml"
        text = f'[[models]]\nname = "mine"\npath = "{tiny_gguf}"\n'
        models.write_text(text, encoding="utf-8")
        app = host(Services(settings=Settings(), models_file=models))
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            await pilot.press("o")
            await pilot.pause()
            app.screen.query_one(SelectionList).deselect(Role.ANNOTATOR)
            await pilot.click("#ok")
            await settle(pilot, app)
            (error,) = app.errors()
            assert "no model named 'mine' in the user registry" in error
            assert "--models file" in error
            assert app.screen.query_one(DataTable).get_row_at(0)[5] == "gen,rev,adj,ann"
        assert not paths.user_registry_path().exists()  # nothing written anywhere
        assert models.read_text(encoding="utf-8") == text

    asyncio.run(go())


def test_unreadable_model_shows_dashes_and_the_problem(registered: Path, tmp_path: Path) -> None:
    async def go() -> None:
        gone = write_tiny_gguf(tmp_path / "gone.gguf")
        add_model(gone, name="gone")
        gone.unlink()
        app = host()
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            table = app.screen.query_one(DataTable)
            assert table_names(app) == ["tiny", "gone"]
            assert table.get_row_at(1) == ["gone", MISSING, MISSING, MISSING, MISSING,
                                           "gen,rev,adj,ann", "problem"]
            table.move_cursor(row=1)
            await pilot.pause()
            detail = str(app.screen.query_one("#detail", Static).render())
            assert "PROBLEM: " in detail and "gone.gguf" in detail
            assert "architecture" not in detail  # nothing read from a file that is not there

    asyncio.run(go())


def test_bench_stores_result(registered: Path) -> None:
    async def go() -> None:
        app = host(Services(settings=Settings(), backend_factory=lambda _logs: BenchBackend()))
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            await pilot.press("b")
            await settle(pilot, app)
            assert "Bench: load" in str(app.screen.query_one("#detail", Static).render())
            assert app.errors() == []
        result = BenchStore(paths.cache_dir()).latest(registered)
        assert result is not None and result.decode_tokens_per_s == 128.0

    asyncio.run(go())


def test_snapshot(registered: Path, snap_compare, monkeypatch) -> None:
    # The pane is re-rendered on every row highlight, which may land after run_before
    # on a loaded machine: hide the tmp path in the renderer itself, not in one update.
    from gra_local.tui.screens import models as models_screen

    def stable(row: Row) -> str:
        return describe_row(row).replace(str(registered.parent), "<tmp>")

    monkeypatch.setattr(models_screen, "describe_row", stable)

    async def run_before(pilot) -> None:
        await settle(pilot, pilot.app)
        await tables_settled(pilot)

    # a plain ScreenHost: the app's class name is the header's title
    app = ScreenHost(screen(), Services(settings=Settings()))
    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)
