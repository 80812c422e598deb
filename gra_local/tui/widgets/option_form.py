"""New run's form of options: the widget each RunOptions field gets, and the folded
Advanced section's title, which names every option set away from its default.

Imported with the first frame; what a run will cost (the plan box) is run_plan's, imported
by the plan's worker once the form is drawn.
"""

from __future__ import annotations

from collections.abc import Iterator

from textual.widget import Widget
from textual.widgets import Input, Label, Select, Switch

from gra_local.core.options import OptionField, option_fields

BASIC = ("samples", "max_attempts")
"""The options New run shows unfolded; every other one is in the Advanced section."""
SYMBOL = {"tau": "τ", "delta": "δ"}
"""How the folded line names a threshold the method writes as a letter."""
OFF = ("off", "none", "no")
"""What turns a threshold off when typed in its field (RunOptions' None)."""


def advanced_fields() -> list[OptionField]:
    return [f for f in option_fields() if f.name not in BASIC]


def _same(field: OptionField, value: object) -> bool:
    """`value` (as the form holds it: text, a switch, a choice) is the field's default."""
    if value is None or isinstance(value, bool) or field.kind is str:
        return value == field.default
    text = str(value).strip()
    if field.none_is_off and text.lower() in OFF:
        return field.default is None
    if not text:  # an empty field takes the default
        return True
    try:
        return field.default is not None and float(text) == float(field.default)  # type: ignore[arg-type]
    except ValueError:
        return False


def changed(field: OptionField, value: object) -> str | None:
    """How the folded line names an option set away from its default ("τ 7.5", "no
    minhash", "dedup at off"); None when it is at its default."""
    if _same(field, value):
        return None
    name = SYMBOL.get(field.name, field.surface.label)
    if isinstance(value, bool):
        return name if value else f"no {name}"
    if field.none_is_off and (value is None or str(value).strip().lower() in OFF):
        return f"no {name.removesuffix(' at')}"
    return f"{name} {str(value).strip()}"


def advanced_title(changes: list[str], key: str = "f6") -> str:
    """The Advanced section's title: the changed options, so that a folded one still shows."""
    if not changes:
        return f"Advanced options ({key}): all at their defaults"
    return f"Advanced options ({key}): {', '.join(changes)}"


def option_input(field: OptionField, value: object) -> Widget:
    """The form's widget for one option: a switch, a choice, or text that RunOptions parses."""
    if field.kind is bool:
        return Switch(bool(value), id=field.name)
    if field.choices:
        return Select([(c, c) for c in field.choices], value=str(value), allow_blank=False,
                      id=field.name)
    return Input(field.show(value), id=field.name, placeholder=field.surface.hint)


def option_rows(fields: list[OptionField], last: dict[str, object]) -> Iterator[Widget]:
    """A label and a widget per option, two to a row of the form's grid; the options a
    review takes none of are classed `generation-only` (hidden in review mode)."""
    for field in fields:
        only = "" if field.surface.review else "generation-only"
        yield Label(field.surface.label, classes=only)
        yield option_input(field, last[field.name]).set_classes(only)
