"""Review mode in the app: New run judges an existing dataset as `gra-local review` does
(pairs preview, generation options hidden), the dashboard follows it, Results lists it as
a review; and a snapshot of the form in review mode."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS, write_models_toml
from fakes import FakeBackend
from harness import finish_run, tables_settled
from textual.widgets import Button, Input, Label, OptionList

from gra_local.core.options import MAX_SAMPLES, RunOptions, option_fields
from gra_local.models.hardware import Hardware, LlamaBuild
from gra_local.tui.app import GraApp
from gra_local.tui.services import Services
from gra_local.tui.settings import Settings
from gra_local.tui.widgets import run_plan

PAIRS = [{"instruction": f"Add {n} and {n}.", "output": f"{2 * n}", "domain": "math"}
         for n in range(4)]
BAD = [["not", "an", "object"], {"instruction": "No answer here."}, {"output": "no question"}]


def fixed_hardware() -> Hardware:
    return Hardware(system="Linux", machine="x86_64", cpu_logical=8, cpu_physical=4,
                    ram_total_bytes=16 * 1024**3, ram_available_bytes=8 * 1024**3, llama=LlamaBuild())


def write_pairs(path: Path, rows: list[object]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


@pytest.fixture
def app(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> GraApp:
    monkeypatch.chdir(tmp_path)  # relative paths on screen: the snapshot is the same anywhere
    monkeypatch.setenv("GRA_LOCAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(run_plan, "probe_hardware", fixed_hardware)  # the plan box: same anywhere
    shutil.copy(EXAMPLE_SEEDS, tmp_path / "seeds.jsonl")
    shutil.copy(tiny_gguf, tmp_path / "tiny.gguf")
    write_models_toml(Path("models.toml"), [("tiny", Path("tiny.gguf"))])
    # a line that is no pair (line 3), one without a response (line 4), one with no
    # instruction (line 7): the preview counts the bad lines and names the first
    write_pairs(tmp_path / "pairs.jsonl", PAIRS[:2] + BAD[:2] + PAIRS[2:] + BAD[2:])
    settings = Settings(last_seeds="seeds.jsonl", last_out_dir="out",
                        last_run=RunOptions(samples=3, max_attempts=6, relevance=False,
                                            judge="panel"))
    return GraApp(Services(models_file=Path("models.toml"), backend_factory=lambda d: FakeBackend(),
                           settings=settings), start="new_run")


def text(pilot, selector: str) -> str:
    return str(pilot.app.screen.query_one(selector).render())


async def wait_for(pilot, selector: str, wanted: str) -> str:
    for _ in range(100):
        await pilot.pause(0.05)
        if wanted in (shown := text(pilot, selector)):
            return shown
    raise AssertionError(f"{selector} never showed {wanted!r}: {text(pilot, selector)!r}")


async def to_review_mode(pilot, pairs: str = "pairs.jsonl", out: str = "out/judged") -> None:
    await wait_for(pilot, "#models", "generator")
    await wait_for(pilot, "#preview", "seeds: 21 usable")
    screen = pilot.app.screen
    screen.query_one("#mode").value = "review"
    screen.query_one("#seeds", Input).value = pairs
    screen.query_one("#out", Input).value = out
    await pilot.pause()
    await pilot.press("ctrl+t")
    await wait_for(pilot, "#preview", "pairs:")


async def test_review_mode_previews_pairs_and_hides_generation_options(app: GraApp) -> None:
    async with app.run_test(size=(100, 40)) as pilot:
        await to_review_mode(pilot)
        screen = app.screen
        preview = await wait_for(pilot, "#preview", "pairs: 4 usable (jsonl)")
        assert "2 bad line(s) skipped, the first line 3: not a JSON object" in preview
        assert "1 record(s) with no response, not reviewed, the first line 4" in preview
        assert "· Add 0 and 0. → 0" in preview
        assert str(screen.query_one("#seeds-label", Label).render()) == "pairs file"
        assert str(screen.query_one("#start", Button).label) == "Start review"
        for field in option_fields():
            assert screen.query_one(f"#{field.name}").display is field.surface.review
        assert not screen.query_one("#samples").display and not screen.query_one("#rounds").display
        # a file with no pair at all: the preview says why, as the run would refuse it
        screen.query_one("#seeds", Input).value = "seeds.jsonl"
        write_pairs(Path("questions.jsonl"), [{"instruction": "Why?"}])
        screen.query_one("#seeds", Input).value = "questions.jsonl"
        await pilot.press("ctrl+t")
        assert "no record has a response (line 1" in await wait_for(pilot, "#preview", "no record")
        # back to generation: the seed preview and every option again
        screen.query_one("#mode").value = "run"
        screen.query_one("#seeds", Input).value = "seeds.jsonl"
        await pilot.pause()
        await pilot.press("ctrl+t")
        await wait_for(pilot, "#preview", "seeds: 21 usable")
        assert all(screen.query_one(f"#{f.name}").display for f in option_fields())
        assert str(screen.query_one("#seeds-label", Label).render()) == "seed file"


async def test_a_review_runs_like_the_cli_and_results_lists_it_as_a_review(app: GraApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await to_review_mode(pilot)
        await wait_for(pilot, "#preview", "pairs: 4 usable")
        await finish_run(pilot)
        assert app.current_run is not None and app.current_run.finished
        assert app.current_mode == "dashboard"
        request = app.current_run.request
        assert request.seeds == Path("pairs.jsonl") and request.options.samples == MAX_SAMPLES
        log = "\n".join(str(line) for line in app.screen.query_one("#log").lines)
        assert "run complete" in log
        assert str(app.screen.query_one("#accepted-label").render()).startswith("accepted (a review")
        assert app.screen.query_one("#accepted-bar").total is None  # no target of ten million
        out = Path("out/judged")
        run_json = orjson.loads((out / "run.json").read_bytes())
        assert run_json["identity"]["mode"] == "review" and run_json["seeds"]["mode"] == "review"
        records = [orjson.loads(line) for name in ("accepted.jsonl", "rejected.jsonl")
                   for line in (out / name).read_bytes().splitlines() if line.strip()]
        assert sorted(r["id"] for r in records) == ["d-000001", "d-000002", "d-000005", "d-000006"]
        assert all(r["generator"] == "" for r in records)
        # the generation options and seed file the form remembers are left as they were
        saved = app.services.settings
        assert saved.last_seeds == "seeds.jsonl" and saved.last_run.samples == 3

        await app.switch_mode("results")
        await wait_for(pilot, "#status", "(review): 4 of 4 records")
        label = str(app.screen.query_one("#runs", OptionList).get_option_at_index(0).prompt)
        assert label.startswith("judged\n") and "review complete ✓" in label


def test_snapshot_review_mode(snap_compare, app: GraApp) -> None:
    async def review_mode(pilot) -> None:
        await to_review_mode(pilot)
        await wait_for(pilot, "#preview", "pairs: 4 usable")
        await wait_for(pilot, "#plan", "every usable pair")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 40), run_before=review_mode)


def test_snapshot_review_mode_advanced_open(snap_compare, app: GraApp) -> None:
    """Review mode with its advanced options open: the judging options only."""
    async def opened(pilot) -> None:
        await to_review_mode(pilot)
        await wait_for(pilot, "#preview", "pairs: 4 usable")
        await wait_for(pilot, "#plan", "every usable pair")
        await pilot.press("f6")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 40), run_before=opened)


def test_snapshot_results_of_a_review(snap_compare, app: GraApp) -> None:
    """Results after a review run made in the app: the run listed as a review, its verdicts."""

    async def reviewed(pilot) -> None:
        await to_review_mode(pilot)
        await wait_for(pilot, "#preview", "pairs: 4 usable")
        await finish_run(pilot)
        await pilot.app.switch_mode("results")
        await wait_for(pilot, "#status", "(review): 4 of 4 records")
        pilot.app.clear_notifications()  # "run complete" times out: the same image anyway
        await tables_settled(pilot)

    assert snap_compare(app, terminal_size=(120, 34), run_before=reviewed)
