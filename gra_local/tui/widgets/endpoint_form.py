"""A small modal for registering a model behind an OpenAI-compatible server: its URL(s),
model id, the name of the variable holding its key (never the key), its roles, and
whether to contact it now. Dismisses with an EndpointEntry, or None when cancelled."""

from __future__ import annotations

import re
from typing import NamedTuple

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label

from gra_local.core.config import Role

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EndpointEntry(NamedTuple):
    urls: list[str]
    """Base URLs as typed (checked again when registered)."""
    model: str | None
    api_key_env: str | None
    roles: list[Role]
    check: bool
    """Contact the server(s) once before registering (the CLI's default; off = --no-check)."""


class EndpointForm(ModalScreen[EndpointEntry | None]):
    DEFAULT_CSS = """
    EndpointForm { align: center middle; }
    EndpointForm > Vertical { width: 90; max-width: 100%; height: auto; border: thick $accent;
                              background: $surface; padding: 1 2; }
    EndpointForm Label { width: 100%; }
    EndpointForm Label.hint { color: $text-muted; }
    EndpointForm #endpoint-error { color: $error; }
    EndpointForm Horizontal { height: auto; }
    EndpointForm #endpoint-buttons { align-horizontal: right; margin-top: 1; }
    EndpointForm Button { margin-left: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="endpoint.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Add a model served by an OpenAI-compatible server (llama-server, vLLM, "
                        "Ollama, LM Studio, …)", markup=False)
            yield Input(placeholder="URL, e.g. http://gpu-box:8080/v1 (several: space-separated)",
                        id="endpoint-url")
            yield Input(placeholder="model id (blank: the only one the server lists)",
                        id="endpoint-model")
            yield Input(placeholder="key variable, e.g. JUDGE_KEY (blank: no key)", id="endpoint-key")
            yield Label("The key is read from that variable when a run starts, never stored.",
                        classes="hint", markup=False)
            with Horizontal():
                for role in Role:
                    yield Checkbox(role.value, True, id=f"endpoint-role-{role.value}")
            yield Checkbox("contact the server now to check it answers", True, id="endpoint-check")
            yield Label("", id="endpoint-error", markup=False)
            with Horizontal(id="endpoint-buttons"):
                yield Button("Cancel", id="endpoint-cancel")
                yield Button("Add", variant="primary", id="endpoint-add")

    def on_mount(self) -> None:
        self.query_one("#endpoint-url", Input).focus()

    def _value(self, field: str) -> str:
        return self.query_one(f"#endpoint-{field}", Input).value.strip()

    def _problem(self, entry: EndpointEntry) -> str | None:
        """What is wrong with the form, named by its field; None when it can be registered."""
        from gra_local.backends.endpoint.config import base_url

        if not entry.urls:
            return "URL: give the server's base URL, e.g. http://gpu-box:8080/v1"
        for url in entry.urls:
            try:
                base_url(url)
            except ValueError as exc:  # its message shows the URL without credentials
                return f"URL: {exc}"
        if entry.api_key_env and not ENV_NAME.match(entry.api_key_env):
            return f"key variable: {entry.api_key_env!r} is not an environment variable name"
        if not entry.roles:
            return "roles: tick at least one"
        return None

    @on(Button.Pressed, "#endpoint-add")
    @on(Input.Submitted)
    def submit(self) -> None:
        entry = EndpointEntry(
            urls=self._value("url").split(), model=self._value("model") or None,
            api_key_env=self._value("key") or None,
            roles=[r for r in Role if self.query_one(f"#endpoint-role-{r.value}", Checkbox).value],
            check=self.query_one("#endpoint-check", Checkbox).value)
        problem = self._problem(entry)
        if problem is not None:
            self.query_one("#endpoint-error", Label).update(problem)
            return
        self.dismiss(entry)

    @on(Button.Pressed, "#endpoint-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
