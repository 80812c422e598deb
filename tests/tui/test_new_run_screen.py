"""The New run screen: the form, the seed preview, the models per role, the plan (at a
fixed size, on a fixed CPU-only hardware probe); what the task names in view at 100×30
with the Advanced section folded (f6 opens it, its title names what changed); every
RunOptions field set from the form, errors worded with the form's labels."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLE_SEEDS, write_models_toml
from textual.widgets import Collapsible, Select, Switch

from gra_local.core import paths
from gra_local.core.engine.request import RunRequest
from gra_local.core.options import RunOptions, option_fields
from gra_local.models.bench import BenchResult, BenchStore
from gra_local.models.hardware import Hardware, LlamaBuild
from gra_local.tui.app import GraApp
from gra_local.tui.services import DEMO_NOTICE, Services
from gra_local.tui.settings import Settings, load_settings
from gra_local.tui.widgets import run_plan

GIB = 1024**3


def fixed_hardware() -> Hardware:
    return Hardware(system="Linux", machine="x86_64", cpu_logical=8, cpu_physical=4,
                    ram_total_bytes=16 * GIB, ram_available_bytes=8 * GIB, llama=LlamaBuild())


@pytest.fixture
def app(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> GraApp:
    monkeypatch.chdir(tmp_path)  # relative paths on screen: the snapshot is the same anywhere
    monkeypatch.setattr(run_plan, "probe_hardware", fixed_hardware)
    shutil.copy(EXAMPLE_SEEDS, tmp_path / "seeds.jsonl")
    shutil.copy(tiny_gguf, tmp_path / "tiny.gguf")
    write_models_toml(Path("models.toml"), [("tiny", Path("tiny.gguf"))])
    settings = Settings(last_seeds="seeds.jsonl", last_out_dir="out", last_run=RunOptions(samples=5))
    return GraApp(Services(models_file=Path("models.toml"), settings=settings), start="new_run")


async def settle(pilot) -> None:
    for _ in range(100):
        await pilot.pause(0.05)
        preview = str(pilot.app.screen.query_one("#preview").render())
        models = str(pilot.app.screen.query_one("#models").render())
        plan = str(pilot.app.screen.query_one("#plan").render())
        if "usable" in preview and "generator" in models and "ETA" in plan:
            return
    raise AssertionError("the New run screen did not settle")


async def test_preview_and_models(app: GraApp) -> None:
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        preview = str(app.screen.query_one("#preview").render())
        assert "21 usable, 0 skipped (jsonl)" in preview
        assert "generator    tiny" in str(app.screen.query_one("#models").render())
        app.screen.query_one("#seeds").value = "missing.jsonl"
        await pilot.press("ctrl+t")
        for _ in range(50):
            await asyncio.sleep(0.02)
            if "not found" in str(app.screen.query_one("#preview").render()):
                break
        assert "missing.jsonl" in str(app.screen.query_one("#preview").render())


async def test_the_embedded_model_alone_is_named_a_demo_once(app: GraApp) -> None:
    """A first run's registry holds the embedded model only: one line says it is a demo and
    how to add real ones; with a model of the user's, nothing is said."""
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        assert "demo model" not in str(app.screen.query_one("#models").render())
    Path("models.toml").write_text('[[models]]\nname = "smollm2-135m"\npath = "default"\n',
                                   encoding="utf-8")
    first_run = GraApp(Services(models_file=Path("models.toml"), settings=app.services.settings),
                       start="new_run")
    async with first_run.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        models = str(first_run.screen.query_one("#models").render())
        assert models.count("demo model") == 1
        assert models.splitlines()[-1] == f"note: {DEMO_NOTICE}"


def test_snapshot(snap_compare, app: GraApp) -> None:
    assert snap_compare(app, terminal_size=(100, 30), run_before=settle)


def test_snapshot_advanced_open(snap_compare, app: GraApp) -> None:
    async def opened(pilot) -> None:
        await settle(pilot)
        await pilot.press("f6")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 40), run_before=opened)


# --- in view at 100×30: the seed preview, the models, the plan, Start -------------------------

async def test_what_a_run_needs_is_in_view_at_100x30(app: GraApp) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#advanced", Collapsible).collapsed
        for selector in ("#seeds", "#out", "#samples", "#advanced", "#preview", "#models", "#plan",
                         "#start"):
            region = screen.query_one(selector).region
            assert region.area > 0 and screen.region.contains_region(region), (selector, region)


async def test_f6_opens_and_folds_the_advanced_options(app: GraApp) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        section = app.screen.query_one("#advanced", Collapsible)
        assert not app.screen.query_one("#tau").region.area  # folded: not drawn
        await pilot.press("f6")
        await pilot.pause()
        assert not section.collapsed and app.focused is app.screen.query_one("#rounds")
        assert app.screen.query_one("#rounds").region.area
        await pilot.press("f6")  # from inside the section's own input
        await pilot.pause()
        assert section.collapsed


async def test_the_folded_title_names_changed_advanced_options(app: GraApp) -> None:
    app.services.settings.last_run = RunOptions(samples=5, minhash=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        section = app.screen.query_one("#advanced", Collapsible)
        assert section.title == "Advanced options (f6): no minhash"
        fill(app.screen, {"tau": "7.5", "dedup_threshold": "off", "samples": "9"})
        await pilot.pause()
        assert section.title == "Advanced options (f6): τ 7.5, no dedup, no minhash"
        fill(app.screen, {"tau": "8", "dedup_threshold": "0.9", "minhash": True})
        await pilot.pause()
        assert section.title == "Advanced options (f6): all at their defaults"
        # review mode leaves the generation options out of it
        fill(app.screen, {"seed_pool": "3"})
        await pilot.pause()
        assert section.title.endswith("seed pool 3")
        app.screen.query_one("#mode").value = "review"
        await pilot.pause()
        assert section.title.endswith("all at their defaults")


async def test_the_plan_per_model_calls_and_eta(app: GraApp) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        lines = str(app.screen.query_one("#plan").render()).splitlines()
        assert lines[0].startswith("tiny  CPU · GPU layers 0/") and "n_parallel 8" in lines[0]
        assert "KV 16384 cells" in lines[0]
        # 5 samples at 50% accepted: 10 candidates, 4 canary pairs in one batch; the default
        # judge reads each candidate and canary side once, and the one model judges the 8 sides
        assert lines[1] == ("calls: annotate 64 · generate 20 · review_a 8 · review_b 8 · "
                            "likelihood 18")
        assert lines[2].startswith("ETA: once the speed of tiny is measured at its first load")
        # an option changes: the calls follow; speed figures cached: a predicted duration
        BenchStore(paths.cache_dir()).save(Path("tiny.gguf"), BenchResult(
            model="tiny", load_seconds=0.5, prompt_tokens_per_s=500.0, decode_tokens_per_s=50.0,
            n_gpu_layers=0, measured_at=1.0))
        fill(app.screen, {"samples": "10"})
        for _ in range(50):
            await pilot.pause(0.05)
            if "generate 40" in (plan := str(app.screen.query_one("#plan").render())):
                break
        assert "generate 40" in plan and "predicted duration: about" in plan
        fill(app.screen, {"samples": "lots"})
        for _ in range(50):
            await pilot.pause(0.05)
            if "not valid" in (plan := str(app.screen.query_one("#plan").render())):
                break
        assert "calls: — (an option above is not valid yet)" in plan


# --- the form is RunOptions: every option settable, errors in the form's words ----------------

EVERY_OPTION = {"samples": "2", "max_attempts": "3", "rounds": "2", "panel": "1", "tau": "7.5",
                "delta": "2", "batch": "2", "seed": "7", "seed_pool": "5",
                "examples_per_prompt": "2", "dedup_threshold": "off", "minhash": False,
                "relevance": False, "likelihood": False, "canaries": "1", "calibration": "flag", "min_canary_accuracy": "0.5",
                "judge": "panel", "routing": False}


def fill(screen, values: dict[str, object]) -> None:
    for name, value in values.items():
        widget = screen.query_one(f"#{name}")
        widget.value = value


async def test_the_form_has_a_row_per_run_option(app: GraApp) -> None:
    assert set(EVERY_OPTION) == set(RunOptions.model_fields)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen.query_one("#minhash"), Switch)
        assert isinstance(screen.query_one("#calibration"), Select)
        shown = {f.name: screen.query_one(f"#{f.name}").value for f in option_fields()}
        assert shown["samples"] == "5" and shown["tau"] == "8.0" and shown["batch"] == ""
        assert shown["dedup_threshold"] == "0.9" and shown["minhash"] is True


async def test_the_app_sets_every_option(app: GraApp, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[RunRequest] = []
    monkeypatch.setattr(GraApp, "start_run",
                        lambda self, request, source=None: started.append(request) or True)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        fill(app.screen, EVERY_OPTION)
        await pilot.press("ctrl+r")
        for _ in range(200):
            await pilot.pause(0.05)
            if started:
                break
        assert app.current_mode == "new_run"
    expected = RunOptions(samples=2, max_attempts=3, rounds=2, panel=1, tau=7.5, delta=2.0,
                          batch=2, seed=7, seed_pool=5, examples_per_prompt=2,
                          dedup_threshold=None, minhash=False, relevance=False, likelihood=False,
                          canaries=1,
                          calibration="flag", min_canary_accuracy=0.5, judge="panel",
                          routing=False)
    assert started and started[0].options == expected
    saved = load_settings()
    assert saved.last_run == expected
    assert (saved.last_seeds, saved.last_out_dir) == ("seeds.jsonl", "out")


@pytest.mark.parametrize("values, message", [
    ({"tau": "11"}, "tau: Input should be less than or equal to 10"),
    ({"min_canary_accuracy": "lots"}, "min canary acc: Input should be a valid number"),
    ({"samples": ""}, "samples: Field required"),
])
async def test_option_errors_use_the_forms_labels(app: GraApp, values: dict[str, object],
                                                  message: str) -> None:
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        fill(app.screen, values)
        await pilot.press("ctrl+r")
        for _ in range(200):
            await pilot.pause(0.05)
            if "not started" in str(app.screen.query_one("#estimate").render()):
                break
        assert app.current_mode == "new_run" and app.current_run is None
        assert f"not started: {message}" in str(app.screen.query_one("#estimate").render())
