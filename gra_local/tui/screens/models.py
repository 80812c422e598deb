"""Models screen: the registry as a table with fit badges, a detail pane, and the model
actions (add a GGUF or an endpoint, discover, remove, bench, pull the default). Slow work
runs in thread workers; endpoint models' network work in EndpointWorker's, which report
back by message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, LoadingIndicator, Static

from gra_local.core.config import ModelSpec, Role
from gra_local.models.describe import human_size
from gra_local.models.hardware import Hardware
from gra_local.tui.errors import EXPECTED_ERRORS
from gra_local.tui.services import demo_notice, services_of
from gra_local.tui.widgets.confirm import ConfirmScreen
from gra_local.tui.widgets.endpoint_form import EndpointEntry, EndpointForm
from gra_local.tui.widgets.endpoint_worker import EndpointAdded, EndpointsChecked, EndpointWorker, Reach
from gra_local.tui.widgets.model_detail import Row, bench_text, describe_row, table_cells
from gra_local.tui.widgets.path_prompt import PathPrompt
from gra_local.tui.widgets.pick_list import PickList


def _probe() -> Hardware:
    from gra_local.models.hardware import probe

    return probe()


class ModelsScreen(Screen):
    DEFAULT_CSS = """
    ModelsScreen #body { height: 1fr; }
    ModelsScreen #table { width: 3fr; }
    ModelsScreen #detail-box { width: 2fr; border-left: solid $accent; padding: 0 1; }
    ModelsScreen #busy { height: 1; display: none; }
    ModelsScreen.busy #busy { display: block; }
    ModelsScreen #source { height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS = [
        Binding("a", "add", "Add", id="models.add"),
        Binding("e", "add_endpoint", "Add endpoint", id="models.add_endpoint"),
        Binding("d", "discover", "Discover", id="models.discover"),
        Binding("delete,x", "remove", "Remove", id="models.remove"),
        Binding("o", "roles", "Roles", id="models.roles"),
        Binding("b", "bench", "Bench", id="models.bench"),
        Binding("p", "pull_default", "Pull default", id="models.pull_default"),
        Binding("r", "refresh", "Refresh", id="models.refresh"),
    ]

    def __init__(self, hardware: Callable[[], Hardware] | None = None,
                 discover_dirs: list[Path] | None = None, discover_defaults: bool = True,
                 reach: Reach | None = None) -> None:
        super().__init__()
        self._probe = hardware or _probe
        self._endpoints = EndpointWorker(reach)
        self._generation = 0
        self.discover_dirs = list(discover_dirs or [])
        """Folders searched besides the tools' default stores (Hugging Face, Ollama, LM Studio)."""
        self.discover_defaults = discover_defaults
        self._hw: Hardware | None = None
        self.rows: list[Row] = []
        self._busy = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="source", markup=False)
        yield LoadingIndicator(id="busy")
        with Horizontal(id="body"):
            yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="detail-box"):
                yield Static("Loading the registry…", id="detail", markup=False)
        yield Footer()
        yield self._endpoints

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self._columns = table.add_columns("name", "quant", "size", "params", "ctx", "roles", "fit")
        self.action_refresh()

    # ---- helpers (UI thread) ----

    def _set_busy(self, delta: int) -> None:
        self._busy = max(0, self._busy + delta)
        self.set_class(self._busy > 0, "busy")

    def _fail(self, message: str) -> None:
        self.notify(message, severity="error", timeout=10)

    def _selected(self) -> Row | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def _show(self, rows: list[Row], source: str, select: str | None = None) -> None:
        self._set_busy(-1)
        keep = select or (sel.spec.name if (sel := self._selected()) else None)
        self.rows = rows
        self.query_one("#source", Static).update(source)
        table = self.query_one(DataTable)
        table.clear()
        for row in rows:
            table.add_row(*table_cells(row), key=row.spec.name)
        names = [r.spec.name for r in rows]
        if keep in names:
            table.move_cursor(row=names.index(keep))
        self._update_detail()
        self._generation += 1  # a check started for earlier rows is dropped when it lands
        endpoints = [row.spec for row in rows if row.spec.is_endpoint]
        if endpoints:
            self._endpoints.check(endpoints, self._generation)

    def on_endpoints_checked(self, message: EndpointsChecked) -> None:
        if message.generation != self._generation:
            return
        table = self.query_one(DataTable)
        for row in self.rows:
            if row.spec.is_endpoint:
                row.reach, row.problem = message.reaches.get(row.spec.name), message.error
                for column, value in zip(self._columns, table_cells(row), strict=True):
                    table.update_cell(row.spec.name, column, value, update_width=True)
        self._update_detail()

    def _update_detail(self) -> None:
        row = self._selected()
        text = describe_row(row) if row else (
            "No models registered. Press a to add a GGUF file, d to discover models on this "
            "machine, or p to fetch the embedded default model.")
        self.query_one("#detail", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._update_detail()

    # ---- loading (worker) ----

    def action_refresh(self, select: str | None = None) -> None:
        self._set_busy(1)
        self._load(select)

    @work(thread=True, group="load")
    def _load(self, select: str | None = None) -> None:
        from gra_local.core.errors import GraError
        from gra_local.models.fit import context_for, plan_for
        from gra_local.models.resolve import inspect_spec

        try:
            registry, where = services_of(self.app).registry()
            source = f"registry: {Path(where).name}  ({len(registry.models)} model(s))"
            if (notice := demo_notice(registry)) is not None:
                source += f"\nnote: {notice}"
        except GraError as exc:
            self.app.call_from_thread(self._show, [], "registry: none yet", None)
            if services_of(self.app).models_file is not None:
                self.app.call_from_thread(self._fail, str(exc))
            return
        except OSError as exc:  # a config folder it may not look into (reads raise ConfigError)
            self.app.call_from_thread(self._show, [], "registry: unreadable", None)
            self.app.call_from_thread(self._fail, str(exc))
            return
        if self._hw is None:
            try:
                self._hw = self._probe()
            except OSError as exc:  # each probe notes its own failure; the OS may still refuse
                self.app.call_from_thread(self._fail, f"hardware probe failed: {exc}")
        rows = []
        for spec in registry.models:
            row = Row(spec)
            if spec.is_endpoint:  # its servers are checked once the table is shown
                rows.append(row)
                continue
            try:
                row.info = inspect_spec(spec)
                row.n_ctx = context_for(spec, row.info)
                if self._hw is not None:
                    row.plan = plan_for(spec, row.info, hw=self._hw)
            except EXPECTED_ERRORS as exc:  # ModelError: missing, not GGUF, does not fit
                row.problem = str(exc)
            row.bench = bench_text(spec)
            rows.append(row)
        self.app.call_from_thread(self._show, rows, source, select)

    # ---- add ----

    def action_add(self) -> None:
        self.app.push_screen(PathPrompt("Add a GGUF model: type its path or pick it below",
                                        placeholder="~/models/x.gguf", browse=(".gguf",),
                                        hint="Enter to add, Escape to cancel"), self._add_path)

    def _add_path(self, text: str | None) -> None:
        if text:
            self._set_busy(1)
            self._add(text)

    @work(thread=True, group="add")
    def _add(self, text: str) -> None:
        from gra_local.models.registry import add_model

        try:
            spec, _ = add_model(Path(text))
        except EXPECTED_ERRORS as exc:
            self.app.call_from_thread(self._done, f"Cannot add {text}: {exc}", "error")
            return
        self.app.call_from_thread(self._done, f"Added {spec.name}", "information", spec.name)

    def _done(self, message: str, severity: str = "information", select: str | None = None,
              reload: bool = True) -> None:
        self._set_busy(-1)
        self.notify(message, severity=severity, timeout=10 if severity == "error" else 4)  # type: ignore[arg-type]
        if reload and severity != "error":
            self.action_refresh(select)

    # ---- add endpoint ----

    def action_add_endpoint(self) -> None:
        self.app.push_screen(EndpointForm(), self._add_endpoint_entry)

    def _add_endpoint_entry(self, entry: EndpointEntry | None) -> None:
        if entry is not None:
            self._set_busy(1)
            self._endpoints.add(entry)

    def on_endpoint_added(self, message: EndpointAdded) -> None:
        self._done(message.text, "information" if message.name else "error", message.name)

    # ---- remove ----

    def action_remove(self) -> None:
        row = self._selected()
        if row is None:
            self.notify("No model selected", severity="warning")
            return
        name = row.spec.name

        def answered(yes: bool | None) -> None:
            if yes:
                self._remove(name)

        kept = "Its server is not touched." if row.spec.is_endpoint else "The GGUF file itself is kept."
        self.app.push_screen(ConfirmScreen(f"Remove {name!r} from the registry? {kept}",
                                           yes="Remove"), answered)

    def _remove(self, name: str) -> None:
        from gra_local.models.registry import remove_model

        try:
            remove_model(name)
        except EXPECTED_ERRORS as exc:
            self._fail(str(exc))
            return
        self.notify(f"Removed {name}")
        self.action_refresh()

    # ---- roles ----

    def action_roles(self) -> None:
        row = self._selected()
        if row is None:
            self.notify("No model selected", severity="warning")
            return
        name, current = row.spec.name, set(row.spec.roles)
        options = [(role.value, role, role in current) for role in Role]

        def picked(roles: list | None) -> None:
            if roles:  # [] = cancelled or nothing ticked: a model keeps at least one role
                self._set_roles(name, roles)

        self.app.push_screen(PickList(f"Roles {name!r} may play", options, ok="Set"), picked)

    def _set_roles(self, name: str, roles: list[Role]) -> None:
        from gra_local.models.registry import set_roles

        try:
            spec, _ = set_roles(name, roles)
        except EXPECTED_ERRORS as exc:
            self._fail(str(exc))
            return
        self.notify(f"{name}: roles {', '.join(r.value for r in spec.roles)}")
        self.action_refresh(name)

    # ---- discover ----

    def action_discover(self) -> None:
        self.notify("Searching for GGUF models…")
        self._set_busy(1)
        self._discover()

    @work(thread=True, exclusive=True, group="discover")
    def _discover(self) -> None:
        from gra_local.models.discover import discover

        try:
            result = discover(self.discover_dirs, include_defaults=self.discover_defaults)
        except EXPECTED_ERRORS as exc:  # the walkers catch per folder: a safety net
            self.app.call_from_thread(self._done, f"Discovery failed: {exc}", "error")
            return
        self.app.call_from_thread(self._offer, result.found)

    def _offer(self, found: list) -> None:
        self._set_busy(-1)
        usable = [f for f in found if f.usable]
        if not usable:
            self.notify(f"No usable models found ({len(found)} with problems)", severity="warning")
            return
        options = [(f"{f.name}  {f.source}  {f.info.file_type}  {human_size(f.size_bytes)}",
                    i, False) for i, f in enumerate(usable)]

        def picked(chosen: list | None) -> None:
            if chosen:
                self._set_busy(1)
                self._register([usable[i] for i in chosen])

        self.app.push_screen(PickList(f"{len(usable)} usable model(s) found: pick what to add",
                                      options), picked)

    @work(thread=True, group="add")
    def _register(self, chosen: list) -> None:
        from gra_local.models.registry import register_found

        try:
            _, added, skipped = register_found(chosen)
        except EXPECTED_ERRORS as exc:
            self.app.call_from_thread(self._done, str(exc), "error", None)
            return
        if skipped:
            self.app.call_from_thread(
                self.notify, "Not added: " + "; ".join(f"{f.name}: {why}" for f, why in skipped),
                severity="warning", timeout=10)
        self.app.call_from_thread(self._done, f"Added {len(added)} model(s)", "information",
                                  added[0][0] if added else None)

    # ---- bench ----

    def action_bench(self) -> None:
        row = self._selected()
        if row is None:
            self.notify("No model selected", severity="warning")
            return
        if row.spec.is_endpoint:
            return self.notify("Bench measures GGUF models run here, not a server", severity="warning")
        self.notify(f"Benchmarking {row.spec.name}… (loads the model)")
        self._set_busy(1)
        self._bench(row.spec)

    @work(thread=True, exclusive=True, group="bench")
    def _bench(self, spec: ModelSpec) -> None:
        import tempfile

        from gra_local.core import paths
        from gra_local.models.bench import BenchStore, run_bench
        from gra_local.models.resolve import model_path

        try:
            with tempfile.TemporaryDirectory(prefix="gra-bench-") as logs:
                result = run_bench(spec, services_of(self.app).backend(Path(logs), probe_speed=False))
            BenchStore(paths.cache_dir()).save(model_path(spec), result)
        except EXPECTED_ERRORS as exc:  # ModelError, BackendError, WorkerLost; a disk error
            self.app.call_from_thread(self._done, f"Bench of {spec.name} failed: {exc}", "error")
            return
        self.app.call_from_thread(
            self._done, f"{spec.name}: decode {result.decode_tokens_per_s:.0f} tok/s, "
                        f"prompt {result.prompt_tokens_per_s:.0f} tok/s", "information", spec.name)

    # ---- pull default ----

    def action_pull_default(self) -> None:
        self.notify("Fetching the embedded default model…")
        self._set_busy(1)
        self._pull()

    @work(thread=True, exclusive=True, group="pull")
    def _pull(self) -> None:
        from gra_local.core import paths
        from gra_local.models.embedded import pull_default
        from gra_local.models.registry import register_default

        try:
            path = pull_default(paths.data_dir())
            _, added = register_default()
        except EXPECTED_ERRORS as exc:  # DownloadError, ConfigError; a disk error
            self.app.call_from_thread(self._done, f"Cannot fetch the default model: {exc}", "error")
            return
        what = "registered" if added else "already registered"
        self.app.call_from_thread(self._done, f"Default model ready at {path} ({what})")
