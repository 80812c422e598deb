"""Runs and results: past runs, a filterable record browser, detail, plots, overrides.

A review-only run (`gra-local review`, or New run's review mode) is listed as "review"."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, OptionList, Static
from textual.widgets.option_list import Option

from gra_local.core.errors import GraError, error_message
from gra_local.core.rundir.journal import RUN_JSON
from gra_local.core.rundir.report import read_report
from gra_local.runs.browse import (
    RunInfo,
    effective_decision,
    facets,
    find_runs,
    load_overrides,
    load_records,
    run_info,
    write_override,
)
from gra_local.runs.export import export_run
from gra_local.runs.formatting import num
from gra_local.tui.errors import EXPECTED_ERRORS
from gra_local.tui.services import ShowsRuns
from gra_local.tui.widgets.export_dialog import ExportChoice, ExportDialog
from gra_local.tui.widgets.filter_bar import FilterBar
from gra_local.tui.widgets.override_dialog import OverrideDialog
from gra_local.tui.widgets.quality_report import QualityReport
from gra_local.tui.widgets.record_view import RecordView, escape
from gra_local.tui.widgets.score_plots import ScorePlots

COLUMNS = ("id", "decision", "reason", "domain", "μ", "σ", "generator", "instruction")
PREVIEW = 48


def is_review(run_dir: Path) -> bool:
    """A review-only run: its run.json's identity (or, before the identity had a mode, its
    input) says so. Read in the scan's worker thread; an unreadable run.json is no review."""
    try:
        report = read_report(run_dir / RUN_JSON, any_schema=True)
    except GraError:
        return False
    if report is None:
        return False
    mode = report.identity.mode if report.identity is not None else None
    return mode == "review" or report.seeds.mode == "review"


def _run_label(run: RunInfo, review: bool = False) -> str:
    if run.error:
        return f"{escape(run.path.name)}\n  [$error]unreadable[/]"
    unverified = f" ?{run.unverified}" if run.unverified else ""  # kept, neither accepted nor rejected
    mode = "review " if review else ""
    return (f"{escape(run.path.name)}\n  [dim]{mode}{escape(run.status)} ✓{run.accepted} "
            f"✗{run.rejected}{unverified}[/dim]")


class ResultsScreen(Screen):
    DEFAULT_CSS = """
    ResultsScreen #runs { width: 24; height: 1fr; border: round $primary-darken-2; }
    ResultsScreen #runs:focus-within { border: round $primary; }
    ResultsScreen.-narrow #runs { display: none; }
    ResultsScreen #main { width: 1fr; }
    ResultsScreen #browse { height: 1fr; }
    ResultsScreen #records { width: 11fr; height: 1fr; }
    ResultsScreen RecordView { width: 9fr; border-left: vkey $primary-darken-2; }
    ResultsScreen ScorePlots { height: 12; }
    ResultsScreen.-narrow ScorePlots { height: 8; }
    ResultsScreen #status { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="results.filter"),
        Binding("o", "override", "Override", id="results.override"),
        Binding("r", "refresh", "Refresh", id="results.refresh"),
        Binding("n", "next_run", "Next run", id="results.next_run"),
        Binding("p", "prev_run", "Prev run", id="results.prev_run", show=False),
        Binding("c", "clear_filters", "Clear filters", id="results.clear_filters"),
        Binding("t", "next_plot", "Next plot", id="results.next_plot", show=False),
        Binding("e", "export", "Export", id="results.export"),
        Binding("v", "quality", "Reviewers", id="results.quality"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunInfo] = []
        self.reviews: set[Path] = set()
        """The listed runs that are review-only runs."""
        self.run_dir: Path | None = None
        self.records: list[dict] = []
        self.overrides: dict[str, dict] = {}
        self.shown: list[dict] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield OptionList(id="runs")
            with Vertical(id="main"):
                yield FilterBar()
                with Horizontal(id="browse"):
                    yield DataTable(id="records", cursor_type="row", zebra_stripes=True)
                    yield RecordView()
                yield Static("Looking for runs…", id="status")
                yield ScorePlots()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#runs", OptionList).border_title = "Runs"
        table = self.query_one("#records", DataTable)
        for col in COLUMNS:
            table.add_column(col, key=col)
        self.sub_title = "Runs and results"
        self.scan_runs()

    def on_resize(self) -> None:
        self.set_class(self.size.width < 100, "-narrow")

    # --- finding runs (a directory scan: never on the event loop) -------------------

    def _roots(self) -> tuple[list[Path], Path | None]:
        app = self.app
        if not isinstance(app, ShowsRuns):  # a bare host: nothing to look in
            return [], None
        roots = [Path(app.services.settings.default_out_dir).expanduser()]
        wanted = app.run_dir
        if wanted is not None:
            roots.append(wanted.parent)
        return roots, wanted

    @work(thread=True, exclusive=True, group="results-scan")
    def scan_runs(self) -> None:
        roots, wanted = self._roots()
        seen: dict[Path, RunInfo] = {}
        for root in roots:
            for run in find_runs(root):
                seen.setdefault(run.path.resolve(), run)
        runs = list(seen.values())
        if wanted is not None and wanted.resolve() not in seen:
            runs.insert(0, run_info(wanted))  # e.g. a run whose run.json is not written yet
        reviews = {r.path for r in runs if not r.error and is_review(r.path)}
        self.app.call_from_thread(self._runs_found, runs, wanted, reviews)

    def _runs_found(self, runs: list[RunInfo], wanted: Path | None,
                    reviews: set[Path] | None = None) -> None:
        current = self.run_dir
        self.runs = runs
        self.reviews = reviews or set()
        olist = self.query_one("#runs", OptionList)
        olist.clear_options()
        olist.add_options([Option(_run_label(r, r.path in self.reviews), id=str(i))
                           for i, r in enumerate(runs)])
        if not runs:
            self._status("No runs found: start one from the New run screen (F2).")
            return
        pick = current or wanted
        index = 0
        if pick is not None:
            for i, r in enumerate(runs):
                if r.path.resolve() == Path(pick).resolve():
                    index = i
        olist.highlighted = index
        self.open_run(runs[index].path)

    @on(OptionList.OptionSelected, "#runs")
    @on(OptionList.OptionHighlighted, "#runs")
    def _run_chosen(self, event: OptionList.OptionSelected | OptionList.OptionHighlighted) -> None:
        i = int(event.option.id or 0)
        if 0 <= i < len(self.runs) and self.runs[i].path != self.run_dir:
            self.open_run(self.runs[i].path)

    # --- loading a run's records --------------------------------------------------

    def open_run(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.sub_title = run_dir.name
        self._status(f"Loading {run_dir.name}…")
        self.load_run(run_dir)

    @work(thread=True, exclusive=True, group="results-load")
    def load_run(self, run_dir: Path) -> None:
        try:
            records = load_records(run_dir)
            overrides = load_overrides(run_dir)
        except EXPECTED_ERRORS as exc:
            self.app.call_from_thread(self._load_failed, run_dir, str(exc))
            return
        self.app.call_from_thread(self._loaded, run_dir, records, overrides)

    def _load_failed(self, run_dir: Path, message: str) -> None:
        self.notify(message, title=f"Cannot read {run_dir.name}", severity="error", timeout=8)
        self._status(f"{run_dir.name}: unreadable")

    def _loaded(self, run_dir: Path, records: list[dict], overrides: dict[str, dict]) -> None:
        if run_dir != self.run_dir:
            return  # the user moved on to another run meanwhile
        self.records = records
        self.overrides = overrides
        self.query_one(FilterBar).set_facets(facets(records))
        self._apply_filter()

    # --- the table ------------------------------------------------------------------

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    def _apply_filter(self) -> None:
        flt = self.query_one(FilterBar).current()
        self.shown = flt.apply(self.records, self.overrides)
        table = self.query_one("#records", DataTable)
        keep = self._highlighted_id()
        table.clear()
        for r in self.shown:
            table.add_row(*self._row(r), key=str(r.get("id")))
        ids = [str(r.get("id")) for r in self.shown]
        if keep in ids:
            table.move_cursor(row=ids.index(keep), animate=False)
        n_ov = sum(1 for r in self.records if str(r.get("id")) in self.overrides)
        ov = f", {n_ov} overridden (*)" if n_ov else ""
        name = self.run_dir.name if self.run_dir else ""
        if self.run_dir in self.reviews:
            name += " (review)"
        self._status(f"{name}: {len(self.shown)} of {len(self.records)} records{ov}")
        self.query_one(ScorePlots).update_plots(self.shown, self.overrides)
        self._show_detail()

    def _row(self, r: dict) -> tuple[str, ...]:
        rid = str(r.get("id"))
        decision = effective_decision(r, self.overrides)
        if rid in self.overrides:
            decision += "*"
        instruction = " ".join(str(r.get("instruction") or "").split())
        if len(instruction) > PREVIEW:
            instruction = instruction[: PREVIEW - 1] + "…"
        return (rid, decision, str(r.get("reason")), str(r.get("domain")), num(r.get("mean")),
                num(r.get("std")), str(r.get("generator")), instruction)

    def _highlighted_id(self) -> str | None:
        table = self.query_one("#records", DataTable)
        if not table.row_count or not (0 <= table.cursor_row < len(self.shown)):
            return None
        return str(self.shown[table.cursor_row].get("id"))

    def highlighted_record(self) -> dict | None:
        rid = self._highlighted_id()
        return next((r for r in self.shown if str(r.get("id")) == rid), None)

    def _show_detail(self) -> None:
        record = self.highlighted_record()
        override = self.overrides.get(str(record.get("id"))) if record else None
        self.query_one(RecordView).show(record, override)

    @on(DataTable.RowHighlighted, "#records")
    def _row_highlighted(self) -> None:
        self._show_detail()

    @on(FilterBar.Changed)
    def _filter_changed(self) -> None:
        self._apply_filter()

    # --- actions --------------------------------------------------------------------

    def action_filter(self) -> None:
        self.query_one("#f-text", Input).focus()

    def action_clear_filters(self) -> None:
        self.query_one(FilterBar).clear()
        self.query_one("#records", DataTable).focus()

    def action_refresh(self) -> None:
        self.scan_runs()

    def _step_run(self, step: int) -> None:
        if not self.runs:
            return
        paths = [r.path for r in self.runs]
        i = paths.index(self.run_dir) if self.run_dir in paths else -1
        i = (i + step) % len(self.runs)
        self.query_one("#runs", OptionList).highlighted = i
        self.open_run(self.runs[i].path)

    def action_next_run(self) -> None:
        self._step_run(1)

    def action_prev_run(self) -> None:
        self._step_run(-1)

    def action_next_plot(self) -> None:
        plots = self.query_one(ScorePlots).tabs
        tabs = ["plot-scores", "plot-reviewers", "plot-acceptance"]
        plots.active = tabs[(tabs.index(plots.active) + 1) % len(tabs)] if plots.active in tabs else tabs[0]

    def action_override(self) -> None:
        record = self.highlighted_record()
        if record is None or self.run_dir is None:
            self.notify("Highlight a record first.", severity="warning")
            return
        rid, run_dir = str(record.get("id")), self.run_dir
        current = effective_decision(record, self.overrides)

        def done(result: tuple[str, str] | None) -> None:
            if result is None:
                return
            label, note = result
            try:
                entry = write_override(run_dir, rid, label, note)
            except EXPECTED_ERRORS as exc:  # GraError: names the file and the OS error
                self.notify(f"Could not record the override: {error_message(exc)}", severity="error")
                return
            if run_dir == self.run_dir:
                self.overrides[rid] = entry
                self._apply_filter()
            self.notify(f"{rid}: overridden to {label} (recorded in overrides.jsonl)")

        self.app.push_screen(OverrideDialog(rid, current), done)

    def action_quality(self) -> None:
        if self.run_dir is None:
            self.notify("Open a run first.", severity="warning")
            return
        try:
            report = read_report(self.run_dir / RUN_JSON, any_schema=True)
        except GraError as exc:
            self.notify(str(exc), severity="error")
            return
        if report is None:
            self.notify(f"{self.run_dir.name}: run.json is missing or unreadable", severity="error")
            return
        self.app.push_screen(QualityReport(f"Quality of {self.run_dir.name}", report))

    def action_export(self) -> None:
        if self.run_dir is None:
            self.notify("Open a run first.", severity="warning")
            return
        run_dir = self.run_dir

        def chosen(result: ExportChoice | None) -> None:
            if result is not None:
                self._export(run_dir, result)

        self.app.push_screen(ExportDialog(run_dir), chosen)

    @work(thread=True, group="export")
    def _export(self, run_dir: Path, choice: ExportChoice) -> None:
        try:
            result = export_run(run_dir, choice.fmt, choice.path,  # type: ignore[arg-type]
                                include_rejected=choice.include_rejected,
                                contested=choice.contested)
        except EXPECTED_ERRORS as exc:
            self.app.call_from_thread(self.notify, error_message(exc), title="Not exported",
                                      severity="error", timeout=10)
            return
        what = "pairs" if choice.fmt == "preference" else "records"
        extra = (f"; {result.contested_count} contested → {result.contested.name}"
                 if result.contested is not None else "")
        if result.unverified:
            extra += f"; {result.unverified} unverified left out"
        self.app.call_from_thread(self.notify, f"{result.exported} {what} → {result.out} "
                                  f"(card: {result.card.name}){extra}", title="Exported")
