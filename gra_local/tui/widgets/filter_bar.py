"""The results screen's filter bar: selects, score range, adjudicated, text search."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Checkbox, Input, Select

from gra_local.runs.browse import DECISIONS, RecordFilter


def _float(text: str) -> float | None:
    try:
        return float(text.strip()) if text.strip() else None
    except ValueError:
        return None


class FilterBar(Horizontal):
    """One compact row; posts `FilterBar.Changed` whenever any control changes."""

    DEFAULT_CSS = """
    FilterBar { height: auto; layout: grid; grid-size: 4 2; grid-gutter: 0 1;
                grid-columns: 1fr 1fr 1fr 1fr; height: 2; padding: 0 1; }
    FilterBar Select { height: 1; }
    FilterBar Select > SelectCurrent { border: none; height: 1; padding: 0 1; }
    FilterBar Select:focus > SelectCurrent { border: none; background: $boost; }
    FilterBar SelectOverlay { border: round $primary; }
    FilterBar Input { border: none; height: 1; padding: 0 1; }
    FilterBar Input:focus { border: none; background: $boost; }
    FilterBar Checkbox { border: none; height: 1; padding: 0; }
    FilterBar Checkbox:focus { border: none; }
    """

    class Changed(Message):
        def __init__(self, flt: RecordFilter) -> None:
            super().__init__()
            self.filter = flt

    def compose(self) -> ComposeResult:
        yield Select([(d, d) for d in DECISIONS], prompt="decision: any", id="f-decision")
        yield Select([], prompt="domain: any", id="f-domain")
        yield Select([], prompt="generator: any", id="f-generator")
        yield Select([], prompt="reviewer: any", id="f-reviewer")
        yield Input(placeholder="μ min", id="f-min", restrict=r"[0-9.]*")
        yield Input(placeholder="μ max", id="f-max", restrict=r"[0-9.]*")
        yield Checkbox("adjudicated", id="f-adjudicated")
        yield Input(placeholder="search…", id="f-text")

    def set_facets(self, facets: dict[str, list[str]]) -> None:
        """Offer the values found in the loaded run; keeps a choice that is still offered."""
        for key, values in facets.items():
            select: Select[str] = self.query_one(f"#f-{key}", Select)
            keep = select.value
            with select.prevent(Select.Changed):
                select.set_options([(v, v) for v in values])
                if isinstance(keep, str) and keep in values:
                    select.value = keep

    def current(self) -> RecordFilter:
        def sel(name: str) -> str | None:
            value = self.query_one(f"#f-{name}", Select).value
            return value if isinstance(value, str) else None

        return RecordFilter(
            decision=sel("decision"), domain=sel("domain"), generator=sel("generator"),
            reviewer=sel("reviewer"),
            min_mean=_float(self.query_one("#f-min", Input).value),
            max_mean=_float(self.query_one("#f-max", Input).value),
            adjudicated=True if self.query_one("#f-adjudicated", Checkbox).value else None,
            text=self.query_one("#f-text", Input).value.strip(),
        )

    def clear(self) -> None:
        for select in self.query(Select):
            select.clear()
        for inp in self.query(Input):
            inp.value = ""
        self.query_one("#f-adjudicated", Checkbox).value = False

    @on(Select.Changed)
    @on(Input.Changed)
    @on(Checkbox.Changed)
    def _changed(self, event: Message) -> None:
        event.stop()
        self.post_message(self.Changed(self.current()))
