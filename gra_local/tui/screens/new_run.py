"""New run: seed file with a preview, the models per role, the run's options, the ETA.

In review mode (`gra-local review` in the app) the file is a dataset of pairs to judge:
the preview counts its usable pairs and names its bad lines, and the options of
generation and rounds (RunOptions fields without `Surface.review`) are hidden.

The options' rows are built from RunOptions (`option_fields`): label, hint, the value the
last run used. Checking (seed scan, model headers and hashes, probe) runs in worker
threads; the screen moves to the dashboard only once the run is prepared, and stays,
showing why, when it cannot be.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static, Switch

from gra_local.core.config import Role
from gra_local.core.errors import GraError
from gra_local.core.options import OptionField, RunOptions, option_fields
from gra_local.core.seeds.scan import scan_seeds
from gra_local.tui.app import gra_app
from gra_local.tui.services import demo_notice
from gra_local.tui.widgets.path_prompt import PathPrompt

if TYPE_CHECKING:  # the engine loads with the first Start, not with the first frame
    from gra_local.core.engine.request import RunRequest
    from gra_local.core.engine.review_only import ReviewData
    from gra_local.core.engine.source import Source

EXAMPLE_SEEDS = Path(__file__).resolve().parent.parent.parent / "data" / "example_seeds.jsonl"
OFF = ("off", "none", "no")
"""What turns a threshold off when typed in its field (RunOptions' None)."""
Mode = Literal["run", "review"]
MODES = [("generate", "run"), ("review a dataset", "review")]
FILE_LABEL = {"run": "seed file", "review": "pairs file"}


def pairs_preview(data: ReviewData) -> list[str]:
    """A review's input as the preview shows it: the usable pairs, then for each kind of
    bad line how many and the first (a record that is not a pair is skipped; one with no
    response is not reviewed), then a few pairs."""
    lines = [f"pairs: {len(data.pairs)} usable ({data.format})"]
    if data.skipped:
        first = data.skipped[0]
        lines.append(f"  {len(data.skipped)} bad line(s) skipped, the first line {first.line}: "
                     f"{first.reason}")
    if data.without_response:
        lines.append(f"  {len(data.without_response)} record(s) with no response, not reviewed, "
                     f"the first line {data.without_response[0]}")
    for pair in data.pairs[:5]:
        instruction = " ".join(pair.instruction.split())[:50]
        response = " ".join((pair.response or "").split())[:36]
        lines.append(f"  · {instruction} → {response}")
    return lines


def option_input(field: OptionField, value: object) -> Widget:
    """The form's widget for one option: a switch, a choice, or text that RunOptions parses."""
    if field.kind is bool:
        return Switch(bool(value), id=field.name)
    if field.choices:
        return Select([(c, c) for c in field.choices], value=str(value), allow_blank=False,
                      id=field.name)
    return Input(field.show(value), id=field.name, placeholder=field.surface.hint)


class NewRunScreen(Screen):
    BINDINGS = [
        Binding("ctrl+r", "start", "Start run", id="new_run.start"),
        Binding("ctrl+t", "preview", "Check seeds", id="new_run.preview", show=False),
        Binding("ctrl+o", "browse", "Pick file", id="new_run.browse"),
    ]
    DEFAULT_CSS = """
    NewRunScreen #form { grid-size: 4; grid-columns: 18 1fr 20 1fr; grid-rows: 3; height: auto; padding: 0 1; }
    NewRunScreen #form Label { padding: 1 0 0 1; }
    NewRunScreen #form .wide { column-span: 3; }
    NewRunScreen .box { border: round $primary-background; height: auto; padding: 0 1; }
    NewRunScreen #actions { height: 3; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._checking = False
        """Start was pressed and the checks have not answered yet."""

    def compose(self) -> ComposeResult:
        settings = gra_app(self).services.settings
        last = settings.last_run.model_dump()
        yield Header()
        with VerticalScroll():
            with Grid(id="form"):
                # generate, or review a dataset (`gra-local review`): it says what the file is
                yield Label("mode")
                yield Select(MODES, value="run", allow_blank=False, id="mode")
                yield Label("output dir")
                yield Input(settings.last_out_dir or str(Path(settings.default_out_dir) / "run"),
                            id="out")
                yield Label(FILE_LABEL["run"], id="seeds-label")
                yield Input(settings.last_seeds or str(EXAMPLE_SEEDS), id="seeds", classes="wide")
                # The options two to a row, so that the seed preview and the models stay in view.
                for field in option_fields():
                    only = "" if field.surface.review else "generation-only"
                    yield Label(field.surface.label, classes=only)
                    yield option_input(field, last[field.name]).set_classes(only)
            yield Static("seeds: checking…", id="preview", classes="box")
            yield Static("models: loading the registry…", id="models", classes="box")
            yield Static("", id="estimate", classes="box")
            with Horizontal(id="actions"):
                yield Button("Start run", id="start", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.action_preview()
        self._models()

    @property
    def mode(self) -> Mode:
        return "review" if self.query_one("#mode", Select).value == "review" else "run"

    @on(Select.Changed, "#mode")
    def _mode_changed(self) -> None:
        review = self.mode == "review"
        self.query_one("#seeds-label", Label).update(FILE_LABEL[self.mode])
        for widget in self.query(".generation-only"):
            widget.display = not review
        self.query_one("#start", Button).label = "Start review" if review else "Start run"
        self._show("#estimate", "")
        self.action_preview()

    @on(Input.Submitted, "#seeds")
    def action_preview(self) -> None:
        path = Path(self.query_one("#seeds", Input).value).expanduser()
        if self.mode == "review":
            self._show("#preview", "pairs: checking…")
            self._scan_pairs(path)
        else:
            self._scan(path)

    @work(thread=True, exclusive=True, group="preview")
    def _scan_pairs(self, path: Path) -> None:
        from gra_local.core.engine.review_only import read_review_data

        try:
            lines = pairs_preview(read_review_data(path))
        except GraError as exc:
            lines = [f"pairs: {exc}"]
        self.app.call_from_thread(self._show, "#preview", "\n".join(lines))

    @work(thread=True, exclusive=True, group="preview")
    def _scan(self, path: Path) -> None:
        try:
            scan = scan_seeds(path, 5, random.Random(0))
        except GraError as exc:
            self.app.call_from_thread(self._show, "#preview", f"seeds: {exc}")
            return
        lines = [f"seeds: {scan.usable} usable, {scan.skipped} skipped ({scan.format})"]
        lines += [f"  line {s.line}: skipped, {s.reason}" for s in scan.skipped_examples[:3]]
        lines += [f"  · {' '.join(s.instruction.split())[:90]}" for s in scan.sample[:5]]
        self.app.call_from_thread(self._show, "#preview", "\n".join(lines))

    @work(thread=True, exclusive=True, group="models")
    def _models(self) -> None:
        try:
            registry, source = gra_app(self).services.registry()
        except GraError as exc:
            self.app.call_from_thread(self._show, "#models", f"models: {exc}")
            return
        lines = [f"models from {source}:"]
        for role in Role:
            names = ", ".join(m.name for m in registry.with_role(role)) or "none"
            lines.append(f"  {role.value:12} {names}")
        if (notice := demo_notice(registry)) is not None:
            lines.append(f"note: {notice}")
        self.app.call_from_thread(self._show, "#models", "\n".join(lines))

    def _show(self, selector: str, text: str) -> None:
        self.query_one(selector, Static).update(text)

    def _values(self) -> dict[str, object]:
        """The options as typed: text stays text (RunOptions parses it and names the field
        when it cannot), an empty field takes the default, "off" turns a threshold off."""
        values: dict[str, object] = {}
        for field in option_fields():
            if self.mode == "review" and not field.surface.review:
                continue  # generation only: a review takes none
            if field.kind is bool:
                values[field.name] = self.query_one(f"#{field.name}", Switch).value
            elif field.choices:
                values[field.name] = self.query_one(f"#{field.name}", Select).value
            else:
                text = self.query_one(f"#{field.name}", Input).value.strip()
                if field.none_is_off and text.lower() in OFF:
                    values[field.name] = None
                elif text:
                    values[field.name] = text
        return values

    def action_browse(self) -> None:
        review = self.mode == "review"
        what = "Pairs file (to review)" if review else "Seed file"
        self.app.push_screen(PathPrompt(f"{what}: type its path or pick it below",
                                        value=self.query_one("#seeds", Input).value,
                                        browse=(".jsonl", ".json") if review else (".jsonl", ".json", ".txt"),
                                        hint="Enter to use it, Escape to cancel"), self._picked)

    def _picked(self, path: str | None) -> None:
        if path:
            self.query_one("#seeds", Input).value = path
            self.action_preview()

    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        if gra_app(self).run_going:
            self.notify("a run is already going: cancel it first (F3, then x)", severity="warning")
            return
        if self._checking:
            return
        self._checking = True
        self._show("#estimate", f"checking {'pairs' if self.mode == 'review' else 'seeds'} "
                                "and models…")
        self._prepare(self.mode, self.query_one("#seeds", Input).value.strip(),
                      self.query_one("#out", Input).value.strip(), self._values())

    @work(thread=True, exclusive=True, group="prepare")
    def _prepare(self, mode: Mode, seeds: str, out: str, values: dict[str, object]) -> None:
        """As `gra-local run` or `gra-local review` prepares (commands/run.py)."""
        # Imported here, off the event loop: the checks and the engine the run will need.
        import gra_local.tui.run_session  # noqa: F401
        from gra_local.core.engine.review_only import ReviewSource
        from gra_local.prepare import build_options, prepare_run, review_options

        review = mode == "review"
        try:
            options = review_options(values, "app") if review else build_options(values, "app")
            registry, models_source = gra_app(self).services.registry()
            request = prepare_run(Path(seeds).expanduser(), Path(out).expanduser(), options,
                                  registry, models_source, review=review)
        except GraError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        source = ReviewSource() if review else None
        self.app.call_from_thread(self._ready, request, seeds, out, options, source)

    def _failed(self, message: str) -> None:
        self._checking = False
        self._show("#estimate", f"not started: {message}")
        self.notify(message, title="Cannot start", severity="error", timeout=10)

    def _ready(self, request: RunRequest, seeds: str, out: str, options: RunOptions,
               source: Source | None) -> None:
        self._checking = False
        self._show("#estimate", request.eta_note or "")
        app = gra_app(self)
        if source is not None:  # a review keeps the seed file and the generation options
            last = app.services.settings
            seeds = last.last_seeds
            options = last.last_run.model_copy(update={
                f.name: getattr(options, f.name) for f in option_fields() if f.surface.review})
        try:
            app.services.remember_run(seeds, out, options)
        except OSError as exc:
            self.notify(f"settings not saved: {exc}", severity="warning")
        app.start_run(request, source)
