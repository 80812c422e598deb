"""New run: seed file with a preview, the models per role, the run's numbers, the ETA.

Checking (seed scan, model headers and hashes, probe) runs in worker threads; the form
remembers the last settings.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static

from gra_local.core.config import Role
from gra_local.core.errors import GraError
from gra_local.core.seeds.scan import scan_seeds
from gra_local.tui.settings import LastRun
from gra_local.tui.widgets.path_prompt import PathPrompt

if TYPE_CHECKING:  # the engine loads with the first Start, not with the first frame
    from gra_local.core.engine.request import RunRequest

EXAMPLE_SEEDS = Path(__file__).resolve().parent.parent.parent / "data" / "example_seeds.jsonl"
NUMBERS = ("samples", "max_attempts", "rounds", "panel", "tau", "delta", "batch",
           "dedup_threshold", "canaries")
FLOATS = ("tau", "delta", "dedup_threshold")
OFF = ("off", "none", "no")
PLACEHOLDERS = {"max_attempts": "default", "batch": "default",
                "dedup_threshold": "cosine, e.g. 0.9; off: keep near-duplicates",
                "canaries": "per review batch; 0: off"}


class NewRunScreen(Screen):
    BINDINGS = [
        Binding("ctrl+r", "start", "Start run", id="new_run.start"),
        Binding("ctrl+t", "preview", "Check seeds", id="new_run.preview", show=False),
        Binding("ctrl+o", "browse", "Pick seed file", id="new_run.browse"),
    ]
    DEFAULT_CSS = """
    NewRunScreen #form { grid-size: 2; grid-columns: 16 1fr; grid-rows: 3; height: auto; padding: 0 1; }
    NewRunScreen #form Label { padding: 1 0 0 0; }
    NewRunScreen .box { border: round $primary-background; height: auto; padding: 0 1; }
    NewRunScreen #actions { height: 3; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        last = self.app.services.settings.last_run
        yield Header()
        with VerticalScroll():
            with Grid(id="form"):
                yield Label("seed file")
                yield Input(last.seeds or str(EXAMPLE_SEEDS), id="seeds")
                yield Label("output dir")
                yield Input(last.out_dir or str(Path(self.app.services.settings.default_out_dir) / "run"),
                            id="out")
                for name in NUMBERS:
                    value = getattr(last, name)
                    yield Label("dedup at" if name == "dedup_threshold" else name.replace("_", " "))
                    shown = ("off" if name == "dedup_threshold" else "") if value is None else str(value)
                    yield Input(shown, id=name, placeholder=PLACEHOLDERS.get(name, ""))
            yield Static("seeds: checking…", id="preview", classes="box")
            yield Static("models: loading the registry…", id="models", classes="box")
            yield Static("", id="estimate", classes="box")
            with Horizontal(id="actions"):
                yield Button("Start run", id="start", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.action_preview()
        self._models()

    @on(Input.Submitted, "#seeds")
    def action_preview(self) -> None:
        self._scan(Path(self.query_one("#seeds", Input).value).expanduser())

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
            registry, source = self.app.services.registry()
        except GraError as exc:
            self.app.call_from_thread(self._show, "#models", f"models: {exc}")
            return
        lines = [f"models from {source}:"]
        for role in Role:
            names = ", ".join(m.name for m in registry.with_role(role)) or "none"
            lines.append(f"  {role.value:12} {names}")
        self.app.call_from_thread(self._show, "#models", "\n".join(lines))

    def _show(self, selector: str, text: str) -> None:
        self.query_one(selector, Static).update(text)

    def _values(self) -> LastRun:
        raw = {name: self.query_one(f"#{name}", Input).value.strip() for name in NUMBERS}
        numbers: dict[str, float | int | None] = {}
        for key, text in raw.items():
            if key == "dedup_threshold" and text.lower() in OFF:
                numbers[key] = None
            elif text:
                numbers[key] = float(text) if key in FLOATS else int(text)
        return LastRun(seeds=self.query_one("#seeds", Input).value.strip(),
                       out_dir=self.query_one("#out", Input).value.strip(), **numbers)

    def action_browse(self) -> None:
        self.app.push_screen(PathPrompt("Seed file: type its path or pick it below",
                                        value=self.query_one("#seeds", Input).value,
                                        browse=(".jsonl", ".json", ".txt"),
                                        hint="Enter to use it, Escape to cancel"), self._picked)

    def _picked(self, path: str | None) -> None:
        if path:
            self.query_one("#seeds", Input).value = path
            self.action_preview()

    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        run = self.app.current_run
        if run is not None and run.running:
            self.notify("a run is already going: cancel it first (F3, then x)", severity="warning")
            return
        try:
            values = self._values()
        except ValueError as exc:
            self.notify(f"check the numbers: {exc}", severity="error")
            return
        self._show("#estimate", "checking seeds and models…")
        # Show the dashboard now, while the checks run: mounting it costs ~0.1 s of the
        # event loop, which must not fall inside the run.
        self.app.preparing = True
        self.app.switch_mode("dashboard")
        self._prepare(values)

    @work(thread=True, exclusive=True, group="prepare")
    def _prepare(self, values: LastRun) -> None:
        from gra_local.prepare import build_options, prepare_run

        try:
            numbers = {k: v for k, v in values.model_dump().items()
                       if k in NUMBERS and (v is not None or k == "dedup_threshold")}
            options = build_options(**numbers)
            registry, source = self.app.services.registry()
            request = prepare_run(Path(values.seeds).expanduser(), Path(values.out_dir).expanduser(),
                                  options, registry, source)
        except GraError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._ready, request, values)

    def _failed(self, message: str) -> None:
        self.app.preparing = False
        self.app.switch_mode("new_run")
        self._show("#estimate", f"not started: {message}")
        self.notify(message, title="Cannot start", severity="error", timeout=10)

    def _ready(self, request: RunRequest, values: LastRun) -> None:
        self.app.preparing = False
        self._show("#estimate", request.eta_note or "")
        services = self.app.services
        services.settings.last_run = values
        try:
            services.save_settings()
        except OSError as exc:
            self.notify(f"settings not saved: {exc}", severity="warning")
        self.app.start_run(request)
