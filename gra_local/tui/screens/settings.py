"""Settings screen: theme, default output folder, keymap; validated and saved as TOML."""

from __future__ import annotations

from textual.app import ComposeResult, InvalidThemeError
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static, TextArea

from gra_local.tui.errors import EXPECTED_ERRORS
from gra_local.tui.services import services_of
from gra_local.tui.settings import Settings, settings_path

KEYMAP_HELP = ("Keymap: one `binding.id = keys` per line (keys comma-separated, e.g. `f2` or "
               "`ctrl+m,f1`). Lines starting with # are ignored; ids not listed keep their keys.")


SCREENS = (("models", "ModelsScreen"), ("new_run", "NewRunScreen"),
           ("dashboard", "DashboardScreen"), ("results", "ResultsScreen"),
           ("settings", "SettingsScreen"))


def screen_classes() -> list[type]:
    """Every screen class the app can show (importing them is cheap: no widgets are built)."""
    import importlib

    classes: list[type] = []
    for module, name in SCREENS:
        try:
            classes.append(getattr(importlib.import_module(f"gra_local.tui.screens.{module}"), name))
        except ImportError:  # a screen whose dependency is missing has no bindings to list
            continue
    return classes


def binding_ids(app, sources: list[type] | None = None) -> dict[str, str]:
    """Binding id → its default key(s), for the app and the screen classes (default: all)."""
    found: dict[str, str] = {}
    for cls in [type(app), *(screen_classes() if sources is None else sources)]:
        for binding in getattr(cls, "BINDINGS", []):
            if isinstance(binding, Binding) and binding.id:
                found.setdefault(binding.id, binding.key)
    return found


def keymap_text(defaults: dict[str, str], keymap: dict[str, str]) -> str:
    lines = [f"{bid} = {keymap.get(bid, key)}" for bid, key in sorted(defaults.items())]
    lines += [f"{bid} = {key}" for bid, key in sorted(keymap.items()) if bid not in defaults]
    return "\n".join(lines)


def parse_keymap(text: str, defaults: dict[str, str]) -> dict[str, str]:
    """The lines that differ from the defaults; ValueError naming the bad line."""
    keymap: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        bid, sep, keys = (part.strip() for part in line.partition("="))
        keys = ",".join(k.strip() for k in keys.split(",") if k.strip())
        if not sep or not bid or not keys:
            raise ValueError(f"keymap line {n}: expected `binding.id = keys`, got {raw.strip()!r}")
        if bid not in defaults:
            raise ValueError(f"keymap line {n}: unknown binding id {bid!r}")
        if keys != defaults[bid]:
            keymap[bid] = keys
    return keymap


class SettingsScreen(Screen):
    DEFAULT_CSS = """
    SettingsScreen #form { padding: 0 2; height: 1fr; }
    SettingsScreen Label { margin-top: 1; text-style: bold; }
    SettingsScreen .help { color: $text-muted; }
    SettingsScreen #keymap { height: 1fr; min-height: 3; }
    SettingsScreen #buttons { height: auto; }
    """
    BINDINGS = [Binding("ctrl+s", "save", "Save", id="settings.save")]

    def __init__(self, sources: list[type] | None = None) -> None:
        super().__init__()
        self.sources = sources
        """Screen classes whose bindings the keymap lists; None: every screen of the app."""

    def compose(self) -> ComposeResult:
        settings = services_of(self.app).settings
        themes = sorted(self.app.available_themes)
        self._defaults = binding_ids(self.app, self.sources)
        yield Header()
        with Vertical(id="form"):
            yield Static(f"Settings file: {settings_path()}", id="path", markup=False, classes="help")
            yield Label("Theme")
            yield Select([(t, t) for t in themes], value=settings.theme if settings.theme in themes
                         else self.app.theme, allow_blank=False, id="theme")
            yield Label("Default output folder for new runs")
            yield Input(settings.default_out_dir, id="out_dir")
            yield Label("Keymap")
            yield Static(KEYMAP_HELP, classes="help", markup=False)
            yield TextArea(keymap_text(self._defaults, settings.keymap), id="keymap")
            with Horizontal(id="buttons"):
                yield Button("Save", variant="primary", id="save")
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            event.stop()
            self.action_save()

    def action_save(self) -> None:
        from pydantic import ValidationError

        services = services_of(self.app)
        theme = self.query_one("#theme", Select).value
        out_dir = self.query_one("#out_dir", Input).value.strip()
        try:
            if not out_dir:
                raise ValueError("the default output folder cannot be empty")
            keymap = parse_keymap(self.query_one("#keymap", TextArea).text, self._defaults)
            data = services.settings.model_dump()
            data.update(theme=str(theme), default_out_dir=out_dir, keymap=keymap)
            settings = Settings.model_validate(data)
        except (ValueError, ValidationError) as exc:
            self.notify(str(exc), title="Settings not saved", severity="error", timeout=10)
            return
        services.settings = settings
        try:
            services.save_settings()
        except EXPECTED_ERRORS as exc:  # OutputError (write_atomic's), or a folder not made
            self.notify(f"Cannot write {settings_path()}: {exc}", severity="error", timeout=10)
            return
        try:
            self.app.theme = settings.theme
            self.app.set_keymap(settings.keymap)
        except InvalidThemeError as exc:  # a theme gone since the list was shown
            self.notify(f"Saved, but could not apply: {exc}", severity="warning")
            return
        self.notify(f"Saved to {settings_path().name}")
