"""The Models screen's network work for endpoint models, off the UI thread: checking their
servers and registering a new one. A hidden widget runs it in thread workers and reports
back only by messages, which bubble to the screen; no widget is touched from a worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import work
from textual.message import Message
from textual.widget import Widget

from gra_local.core.config import ModelSpec
from gra_local.tui.errors import EXPECTED_ERRORS
from gra_local.tui.widgets.endpoint_form import EndpointEntry

if TYPE_CHECKING:
    from gra_local.backends.endpoint.reach import EndpointReach

Reach = Callable[[list[ModelSpec]], "dict[str, EndpointReach]"]


def check_servers(specs: list[ModelSpec]) -> dict[str, EndpointReach]:
    """Every endpoint model's servers, at once, with the short timeout of `models list`."""
    from gra_local.backends.endpoint.reach import check_specs

    return check_specs(specs)


class EndpointsChecked(Message):
    """The servers of the endpoint models shown, as a check found them."""

    def __init__(self, generation: int, reaches: dict[str, EndpointReach], error: str | None) -> None:
        super().__init__()
        self.generation, self.reaches, self.error = generation, reaches, error


class EndpointAdded(Message):
    """A registration finished: what to tell the user, and the new model's name (None: it
    failed, and `text` says why)."""

    def __init__(self, text: str, name: str | None) -> None:
        super().__init__()
        self.text, self.name = text, name


class EndpointWorker(Widget):
    DEFAULT_CSS = "EndpointWorker { display: none; }"

    def __init__(self, reach: Reach | None = None) -> None:
        super().__init__()
        self.reach = reach or check_servers
        """Checks the servers (called in a worker thread); tests stub it."""

    @work(thread=True, group="reach")
    def check(self, specs: list[ModelSpec], generation: int) -> None:
        try:
            reaches, error = self.reach(specs), None
        except EXPECTED_ERRORS as exc:  # shown on the rows (each server's own failure is its state)
            reaches, error = {}, f"the check failed: {exc}"
        self.post_message(EndpointsChecked(generation, reaches, error))

    @work(thread=True, group="add")
    def add(self, entry: EndpointEntry) -> None:
        """Register it like `models add --endpoint` (contacting it first unless unticked)."""
        from gra_local.backends.endpoint.reach import register_endpoint

        try:
            spec, _, _ = register_endpoint(
                entry.urls, model=entry.model, api_key_env=entry.api_key_env, roles=entry.roles,
                check=entry.check, hint='untick "contact the server now" to add it anyway')
        except EXPECTED_ERRORS as exc:  # ConfigError: a bad URL or key name, a server not up
            self.post_message(EndpointAdded(f"Cannot add the endpoint: {exc}", None))
            return
        self.post_message(EndpointAdded(f"Added {spec.name}", spec.name))
