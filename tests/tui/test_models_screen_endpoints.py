"""The Models screen with endpoint models: shown beside GGUF ones, their servers checked
in a worker (a stubbed check here; the CLI tests use a real server) whose answer lands as
a message, and the Add endpoint form registering one against a scripted server."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest
from textual.widgets import Checkbox, DataTable, Input, Label, Static

from gra_local.backends.endpoint.reach import EndpointReach, ServerReach
from gra_local.core.config import ModelSpec, Role
from gra_local.models.registry import add_endpoint_model, add_model, read_user_registry
from gra_local.runs.formatting import MISSING
from gra_local.tui.screens.models import ModelsScreen
from gra_local.tui.services import Services
from gra_local.tui.settings import Settings
from gra_local.tui.widgets.endpoint_form import EndpointForm
from gra_local.tui.widgets.model_detail import Row, describe_row

sys.path.insert(0, str(Path(__file__).parent))
from harness import ScreenHost, tables_settled  # noqa: E402
from test_models_screen import NotedHost, fixed_hardware, settle, table_names  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent / "backends" / "endpoint"))
from endpoint_fakes import FakeServer  # noqa: E402

URL = "http://gpu-box:8080/v1"


def stub_check(specs: list[ModelSpec]) -> dict[str, EndpointReach]:
    """What check_specs would say of a llama-server at gpu-box, without a network."""
    assert threading.current_thread() is not threading.main_thread()  # never on the UI thread
    return {s.name: EndpointReach(s.name, (ServerReach(
        URL, "up", "llama.cpp", "b5432-6a1b2c3", "qwen2.5-7b-instruct", ("qwen2.5-7b-instruct",),
        8192, 4.2),)) for s in specs if s.is_endpoint}


def screen(**kwargs) -> ModelsScreen:
    return ModelsScreen(hardware=fixed_hardware, discover_defaults=False, **kwargs)


@pytest.fixture
def mixed(tiny_gguf: Path) -> None:
    add_model(tiny_gguf, name="tiny")
    add_endpoint_model([URL], model="qwen2.5-7b-instruct", api_key_env="JUDGE_KEY",
                       roles=[Role.REVIEWER, Role.ADJUDICATOR])


def test_an_endpoint_model_beside_a_gguf(mixed: None) -> None:
    async def go() -> None:
        app = NotedHost(screen(reach=stub_check), Services(settings=Settings()))
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            assert table_names(app) == ["tiny", "qwen2.5-7b-instruct"]
            table = app.screen.query_one(DataTable)
            assert table.get_row_at(1) == ["qwen2.5-7b-instruct", "llama.cpp", "gpu-box:8080", MISSING,
                                           "8192", "rev,adj", "up 4 ms"]
            assert table.get_row_at(0)[1] == "F32"  # the GGUF row as before
            table.move_cursor(row=1)
            await pilot.pause()
            detail = str(app.screen.query_one("#detail", Static).render())
            assert f"endpoint     {URL}" in detail and "key          from $JUDGE_KEY" in detail
            assert "Servers: 1 of 1 server(s) up" in detail
            assert "up 4 ms: llama.cpp server (b5432-6a1b2c3), model qwen2.5-7b-instruct" in detail
            await pilot.press("b")  # bench is for GGUF models: a warning, nothing loaded
            await pilot.pause()
            assert app.notes[-1][0] == "warning" and app.errors() == []

    asyncio.run(go())


def test_rows_show_checking_until_the_answer_lands_and_a_failed_check_as_a_problem(mixed: None) -> None:
    release = threading.Event()

    def slow(specs: list[ModelSpec]) -> dict[str, EndpointReach]:
        release.wait(10)
        raise OSError("resolver exploded")

    async def go() -> None:
        app = NotedHost(screen(reach=slow), Services(settings=Settings()))
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(100):  # the table is drawn while the check is still out
                await pilot.pause(0.02)
                if table_names(app) == ["tiny", "qwen2.5-7b-instruct"]:
                    break
            table = app.screen.query_one(DataTable)
            assert table.get_row_at(1)[-1] == "checking" and table.get_row_at(1)[1] == "endpoint"
            release.set()
            await settle(pilot, app)
            assert table.get_row_at(1)[-1] == "problem"
            table.move_cursor(row=1)
            await pilot.pause()
            detail = str(app.screen.query_one("#detail", Static).render())
            assert "PROBLEM: the check failed: resolver exploded" in detail

    asyncio.run(go())


def test_add_endpoint_checks_the_server_and_registers_it(tiny_gguf: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer(models=("judge-8b",), owned_by="llamacpp")
    monkeypatch.setenv("JUDGE_KEY", "sk-tui-SECRET-0042")

    async def go() -> NotedHost:
        app = NotedHost(screen(), Services(settings=Settings()))  # the real check
        async with app.run_test(size=(100, 40)) as pilot:
            await settle(pilot, app)
            await pilot.press("e")
            await pilot.pause()
            form = app.screen
            assert isinstance(form, EndpointForm)
            await pilot.press("enter")  # nothing typed: told in the form, which stays open
            await pilot.pause()
            assert str(form.query_one("#endpoint-error", Label).render()).startswith("URL: give")
            form.query_one("#endpoint-url", Input).value = "http://admin:pw@gpu-box/v1"
            await pilot.press("enter")
            await pilot.pause()
            assert "takes no credentials" in str(form.query_one("#endpoint-error", Label).render())
            form.query_one("#endpoint-url", Input).value = server.url
            form.query_one("#endpoint-key", Input).value = "JUDGE_KEY"
            form.query_one("#endpoint-role-generator", Checkbox).value = False
            form.query_one("#endpoint-role-annotator", Checkbox).value = False
            await pilot.click("#endpoint-add")
            await settle(pilot, app)
            assert isinstance(app.screen, ModelsScreen) and app.errors() == []
            assert table_names(app) == ["judge-8b"]
            assert app.screen.query_one(DataTable).get_row_at(0)[-1].startswith("up ")
            detail = str(app.screen.query_one("#detail", Static).render())
            assert "sk-tui-SECRET" not in detail and "from $JUDGE_KEY" in detail
        return app

    try:
        asyncio.run(go())
        assert server.seen[0].headers["Authorization"] == "Bearer sk-tui-SECRET-0042"
    finally:
        server.close()
    (spec,) = read_user_registry().models
    assert (spec.name, spec.model, spec.endpoint, spec.api_key_env) == ("judge-8b", "judge-8b",
                                                                       server.url, "JUDGE_KEY")
    assert spec.roles == [Role.REVIEWER, Role.ADJUDICATOR]


def test_an_unreachable_endpoint_is_refused_with_the_way_out(tmp_path: Path) -> None:
    from endpoint_fakes import refused_url

    async def go() -> NotedHost:
        app = NotedHost(screen(reach=stub_check), Services(settings=Settings()))
        async with app.run_test(size=(100, 40)) as pilot:
            await settle(pilot, app)
            await pilot.press("e")
            await pilot.pause()
            app.screen.query_one("#endpoint-url", Input).value = refused_url()
            await pilot.press("enter")
            await settle(pilot, app)
            (error,) = app.errors()
            assert error.startswith("Cannot add the endpoint: http://127.0.0.1:")
            assert "unreachable: cannot connect" in error
            assert error.endswith('untick "contact the server now" to add it anyway')
            await pilot.press("e")
            await pilot.pause()
            app.screen.query_one("#endpoint-url", Input).value = URL
            app.screen.query_one("#endpoint-check", Checkbox).value = False
            await pilot.press("enter")  # unticked: registered without contact
            await settle(pilot, app)
            assert table_names(app) == ["gpu-box"]
        return app

    asyncio.run(go())
    assert read_user_registry().models[0].endpoint == URL


def test_the_detail_text_of_an_unchecked_endpoint() -> None:
    spec = ModelSpec(name="judge", endpoint=[URL, "http://gpu-box-2:8080/v1"], max_in_flight=8)
    text = describe_row(Row(spec))
    assert f"endpoint     {URL}, http://gpu-box-2:8080/v1" in text
    assert "model        the only one the server lists" in text and "key          none" in text
    assert "in flight    8 per server" in text and text.endswith("Checking the server(s)…")


def test_snapshot_with_an_endpoint(mixed: None, tiny_gguf: Path, snap_compare, monkeypatch) -> None:
    from gra_local.tui.screens import models as models_screen

    def stable(row: Row) -> str:
        return describe_row(row).replace(str(tiny_gguf.parent), "<tmp>")

    monkeypatch.setattr(models_screen, "describe_row", stable)

    async def run_before(pilot) -> None:
        await settle(pilot, pilot.app)
        pilot.app.screen.query_one(DataTable).move_cursor(row=1)
        await settle(pilot, pilot.app)
        await tables_settled(pilot)

    # 150 columns: the whole row shows (at 100 the table scrolls sideways, as with any long name)
    app = ScreenHost(screen(reach=stub_check), Services(settings=Settings()))
    assert snap_compare(app, terminal_size=(150, 30), run_before=run_before)
