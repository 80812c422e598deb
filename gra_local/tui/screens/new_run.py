"""New run: seed file with a preview, the models per role, the run's options, and the
plan: per model its memory plan, the calls each stage is expected to make, the ETA.

The few basic options (samples, max attempts) are in view; the others are in the Advanced
section, folded at first (f6 opens and closes it), whose title names each option set away
from its default. The plan is computed in a worker (the hardware probed once) and again
shortly after an option changes (gra_local/tui/widgets/run_plan.py; the form is
option_form's).

In review mode (`gra-local review` in the app) the file is a dataset of pairs to judge:
the preview counts its usable pairs and names its bad lines, and the options of
generation and rounds (RunOptions fields without `Surface.review`) are hidden.

The options' rows are built from RunOptions (`option_fields`): label, hint, the value the
last run used. Checking (seed scan, model headers and hashes, probe) runs in worker
threads; the screen moves to the dashboard only once the run is prepared, and stays,
showing why, when it cannot be.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Collapsible, Footer, Header, Input, Label, Select, Static, Switch

from gra_local.core.errors import GraError
from gra_local.core.options import MAX_SAMPLES, RunOptions, option_fields
from gra_local.tui.app import gra_app
from gra_local.tui.services import demo_notice
from gra_local.tui.widgets import option_form

# The first frame imports none of the checks' modules (the seed scan, the registry, GGUF
# headers, the hardware probe, the plan): each worker imports its own once the form is
# drawn (tests/test_layout.py), and the engine loads with the first Start.
if TYPE_CHECKING:
    from gra_local.core.config import ModelSpec, Registry
    from gra_local.core.engine.request import RunRequest
    from gra_local.core.engine.source import Source
    from gra_local.models.gguf_info import GGUFInfo

EXAMPLE_SEEDS = Path(__file__).resolve().parent.parent.parent / "data" / "example_seeds.jsonl"
Mode = Literal["run", "review"]
MODES = [("generate", "run"), ("review a dataset", "review")]
FILE_LABEL = {"run": "seed file", "review": "pairs file"}
PLAN_TITLE = {"run": "plan (calls at 50% accepted)", "review": "plan"}
CHECKS_AFTER_S = 0.2
"""How long after its first frame New run starts its checks (see `on_mount`)."""


class NewRunScreen(Screen):
    BINDINGS = [
        Binding("ctrl+r", "start", "Start run", id="new_run.start"),
        Binding("ctrl+t", "preview", "Check seeds", id="new_run.preview", show=False),
        Binding("ctrl+o", "browse", "Pick file", id="new_run.browse"),
        Binding("f6", "advanced", "Advanced options", id="new_run.advanced"),
    ]
    DEFAULT_CSS = """
    NewRunScreen .options { grid-size: 4; grid-columns: 18 1fr 20 1fr; grid-rows: 3; height: auto; padding: 0 1; }
    NewRunScreen .options Label { padding: 1 0 0 1; }
    NewRunScreen .options .wide { column-span: 3; }
    NewRunScreen #advanced { border-top: none; padding: 0 1; background: $surface; }
    NewRunScreen #advanced > Contents { padding: 0; }
    NewRunScreen #advanced-form { padding: 0 1 0 0; }
    NewRunScreen #checks { height: auto; }
    NewRunScreen #checks .box { width: 1fr; }
    NewRunScreen #preview { text-wrap: nowrap; text-overflow: ellipsis; }
    NewRunScreen .box { border: round $primary-background; height: auto; padding: 0 1; }
    NewRunScreen #actions { height: 3; padding: 0 1; }
    NewRunScreen #estimate { width: 1fr; padding: 0 2; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._checking = False
        """Start was pressed and the checks have not answered yet."""
        self._plan_models: tuple[list[str], list[tuple[ModelSpec, GGUFInfo]], list[str]] | None = None
        """The plan's model lines, the GGUF models read and the endpoint names (worker-made)."""
        self._plan_generation = 0
        """Each request for a plan counts: an older worker's answer is dropped."""
        self._plan_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        settings = gra_app(self).services.settings
        last = settings.last_run.model_dump()
        self._unmounted: dict[str, object] | None = last
        """The advanced options' values until their rows are mounted (`_check_all`)."""
        yield Header()
        with VerticalScroll():
            with Grid(id="form", classes="options"):
                # generate, or review a dataset (`gra-local review`): it says what the file is
                yield Label("mode")
                yield Select(MODES, value="run", allow_blank=False, id="mode")
                yield Label("output dir")
                yield Input(settings.last_out_dir or str(Path(settings.default_out_dir) / "run"),
                            id="out")
                yield Label(FILE_LABEL["run"], id="seeds-label")
                yield Input(settings.last_seeds or str(EXAMPLE_SEEDS), id="seeds", classes="wide")
                # The options two to a row, so that the seed preview and the models stay in view.
                yield from option_form.option_rows(
                    [f for f in option_fields() if f.name in option_form.BASIC], last)
            with Collapsible(title=self._advanced_title(last), collapsed=True, id="advanced"):
                # its rows are mounted shortly after the first frame (`_check_all`): folded,
                # they only slowed it down
                yield Grid(id="advanced-form", classes="options")
            with Horizontal(id="checks"):
                yield Static("seeds: checking…", id="preview", classes="box", markup=False)
                yield Static("models: loading the registry…", id="models", classes="box")
            plan = Static("plan: probing this machine…", id="plan", classes="box", markup=False)
            plan.border_title = PLAN_TITLE["run"]
            yield plan
            with Horizontal(id="actions"):
                yield Button("Start run", id="start", variant="primary")
                yield Static("", id="estimate")
        yield Footer()

    def _advanced_title(self, values: dict[str, object] | None = None) -> str:
        """The Advanced section's title from `values` (default: the form's)."""
        review = self.is_mounted and self.mode == "review"
        changes = []
        for field in option_form.advanced_fields():
            if review and not field.surface.review:
                continue
            source = values if values is not None else self._unmounted
            if source is None:
                value = self.query_one(f"#{field.name}").value  # type: ignore[attr-defined]
            else:
                value = source[field.name]
            if (change := option_form.changed(field, value)) is not None:
                changes.append(change)
        return option_form.advanced_title(changes)

    def action_advanced(self) -> None:
        """Open or fold the Advanced section; opened, its first option takes the focus."""
        section = self.query_one("#advanced", Collapsible)
        section.collapsed = not section.collapsed
        if not section.collapsed:
            first = next((w for w in section.query("Input, Switch, Select") if w.display), None)
            if first is not None:
                first.focus()

    @on(Input.Changed)
    @on(Switch.Changed)
    @on(Select.Changed)
    def _option_changed(self, event: Input.Changed | Switch.Changed | Select.Changed) -> None:
        if event.control.id in RunOptions.model_fields:
            self.query_one("#advanced", Collapsible).title = self._advanced_title()
            self._plan_soon()

    def _plan_soon(self) -> None:
        """Plan again once typing pauses (a keystroke would otherwise start a worker)."""
        if self._plan_timer is not None:
            self._plan_timer.stop()
        self._plan_timer = self.set_timer(0.3, self._request_plan)

    def _request_plan(self) -> None:
        review = self.mode == "review"
        options = None
        values = self._values()
        if review:  # as prepare.review_options (every pair is judged)
            values = {"samples": MAX_SAMPLES, **values}
        try:
            options = RunOptions(**values)
        except ValidationError:
            pass  # the calls wait for a valid value; Start names the bad one
        self._plan_generation += 1
        self._plan(options, review, self._plan_generation)

    @work(thread=True, exclusive=True, group="plan")
    def _plan(self, options: RunOptions | None, review: bool, generation: int) -> None:
        from gra_local.tui.widgets import run_plan

        if self._plan_models is None:
            try:
                registry, _ = gra_app(self).services.registry()
            except GraError as exc:
                self.app.call_from_thread(self._show_plan, generation, f"plan: {exc}")
                return
            self._plan_models = self._model_plan(registry)
        lines, checked, endpoints = self._plan_models
        lines = lines + [run_plan.calls_line(options, review, reviewers=len(lines))]
        if eta := run_plan.eta_line(options, checked, endpoints, review):
            lines.append(eta)
        self.app.call_from_thread(self._show_plan, generation, "\n".join(lines))

    @staticmethod
    def _model_plan(registry: Registry) -> tuple[list[str], list[tuple[ModelSpec, GGUFInfo]], list[str]]:
        from gra_local.tui.widgets import run_plan

        hw = run_plan.probe_hardware() if any(not s.is_endpoint for s in registry.models) else None
        lines, checked = run_plan.plan_lines(registry, hw)
        return lines, checked, [s.name for s in registry.models if s.is_endpoint]

    def _show_plan(self, generation: int, text: str) -> None:
        if generation == self._plan_generation:
            self._show("#plan", text)

    def on_mount(self) -> None:
        # The checks start a little after the first frame is made: Textual's writer thread
        # sends it to the terminal, and the checks begun at once (their workers' imports,
        # the advanced rows' mount) held it back 100-170 ms (scripts/bench_tui.py).
        self.set_timer(CHECKS_AFTER_S, self._check_all)

    async def _check_all(self) -> None:
        self.action_preview()
        self._models()
        self._request_plan()
        if self._unmounted is not None:  # read as saved until every row is mounted (a
            # Select's value is blank before)
            await self.query_one("#advanced-form", Grid).mount_all(
                option_form.option_rows(option_form.advanced_fields(), self._unmounted))
            self._unmounted = None
            for widget in self.query("#advanced-form .generation-only"):
                widget.display = self.mode != "review"
            self.query_one("#advanced", Collapsible).title = self._advanced_title()

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
        self.query_one("#advanced", Collapsible).title = self._advanced_title()
        self._show("#estimate", "")
        self.query_one("#plan").border_title = PLAN_TITLE[self.mode]
        self._plan_soon()
        self.action_preview()

    @on(Input.Submitted, "#seeds")
    def action_preview(self) -> None:
        path = Path(self.query_one("#seeds", Input).value).expanduser()
        review = self.mode == "review"
        if review:
            self._show("#preview", "pairs: checking…")
        self._scan(path, review)

    @work(thread=True, exclusive=True, group="preview")
    def _scan(self, path: Path, review: bool) -> None:
        from gra_local.tui.widgets import file_preview

        preview = file_preview.pairs_preview if review else file_preview.seeds_preview
        self.app.call_from_thread(self._show, "#preview", preview(path))

    @work(thread=True, exclusive=True, group="models")
    def _models(self) -> None:
        from gra_local.core.config import Role

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
            if self._unmounted is not None and field.name not in option_form.BASIC:
                values[field.name] = self._unmounted[field.name]  # an advanced one, not drawn yet
            elif field.kind is bool:
                values[field.name] = self.query_one(f"#{field.name}", Switch).value
            elif field.choices:
                values[field.name] = self.query_one(f"#{field.name}", Select).value
            else:
                text = self.query_one(f"#{field.name}", Input).value.strip()
                if field.none_is_off and text.lower() in option_form.OFF:
                    values[field.name] = None
                elif text:
                    values[field.name] = text
        return values

    def action_browse(self) -> None:
        from gra_local.tui.widgets.path_prompt import PathPrompt

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
